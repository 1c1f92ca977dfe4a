"""The Engine writes one typed Counts table; its report is a snapshot of it."""

import torch

import torch_tos
from torch_tos import BOs
from torch_tos.counts import Counts, CountKey


def test_engine_counts_table_by_hand():
    x = torch.randn(3)
    w = torch.randn(4, 3)
    with torch_tos.Engine() as engine:
        y = torch.sigmoid(x)
        wt = w.t()
    assert isinstance(engine.counts, Counts) and not hasattr(engine, "stats")  # one table
    sig = engine.counts.rows[("", "forward", torch.float32, "aten.sigmoid")]
    # sigmoid = 1 / (1 + exp(-x)) on 3 elements: [add, sub, mul, div, root] = [1, 1, 0, 1, 1] each;
    # one call, no FLOPs formula, reads 3 floats and writes 3 floats: 6 × 4 bytes
    assert sig == [3, 3, 0, 3, 3, 1, 0, 24]
    # a transpose is a view: no BOs, no bytes moved
    assert engine.counts.rows[("", "forward", torch.float32, "aten.t")] == [0, 0, 0, 0, 0, 1, 0, 0]
    assert [k for k, _ in engine.counts] == [CountKey("", "forward", torch.float32, "aten.sigmoid"),
                                             CountKey("", "forward", torch.float32, "aten.t")]
    assert y.shape == (3,) and wt.shape == (3, 4)
    assert engine.bos_by_op() == {"aten.sigmoid": BOs(3, 3, 0, 3, 3)}  # zero-cost ops left out


def test_engine_report_is_a_snapshot_and_reset_clears():
    x = torch.randn(5)
    with torch_tos.Engine() as engine:
        torch.sigmoid(x)
    report = engine.report()
    with engine:
        torch.sigmoid(x)
    assert report.bos == BOs(5, 5, 0, 5, 5)  # taken before the second run
    engine.reset()
    assert not engine.counts and not engine.unsupported


def test_engine_bos_by_op_per_phase():
    w = torch.randn(4, 3, requires_grad=True)
    x = torch.randn(2, 4)
    with torch_tos.Engine() as engine:
        (x @ w).sum().backward()
    # forward mm: 2×3 outputs of 4 products (3 adds each); backward dW = xᵀ·g: 4×3 outputs of 2
    assert engine.bos_by_op(phases=("forward",))["aten.mm"] == BOs(add=2 * 3 * 3, mul=2 * 3 * 4)
    assert engine.bos_by_op(phases=("backward",))["aten.mm"] == BOs(add=4 * 3 * 1, mul=4 * 3 * 2)
