"""Every Report view reads one Counts table and prices each group once, exactly."""

from fractions import Fraction

import pytest
import torch
import torch.nn as nn

import torch_tos
from torch_tos import BOs
from torch_tos.counts import Counts, CountKey
from torch_tos.report import OP_COLUMNS, Report
from torch_tos.tables import DEFAULT_TABLE

F32 = DEFAULT_TABLE.costs(torch.float32)  # add 236, sub 236, mul 12736.25, div 15548.75, root 57042


def _per_row_tos(counts: Counts, dtype=None) -> Fraction:
    """The slow reference: every op row priced on its own."""
    return sum((DEFAULT_TABLE.tos_exact(row[:5], dtype or key.dtype) for key, row in counts),
               Fraction(0))


def test_linear_by_op_by_hand():
    r = torch_tos.profile(nn.Linear(2, 3, bias=False), torch.randn(1, 2))
    ops = r.by_op().set_index("op")
    assert list(r.by_op().columns) == OP_COLUMNS
    # y = x·Wᵀ, x 1×2, W 3×2: aten.t (a view: no BOs, no bytes) then aten.mm with 1×3 outputs of
    # 2 products and 1 add each
    mm = ops.loc["aten.mm"]
    assert (mm.calls, mm["add"], mm["mul"], mm.flops) == (1, 3, 6, 2 * 1 * 2 * 3)
    assert mm.tos == 3 * 236 + 6 * 12736.25  # = 77,125.5
    # mm reads x (2 floats) and Wᵀ (6 floats) and writes y (3 floats): (2 + 6 + 3) × 4 bytes
    assert mm.bytes == 44 and ops.loc["aten.t", "bytes"] == 0 and ops.loc["aten.t", "calls"] == 1
    assert (r.calls, r.bytes) == (2, 44)
    assert r.counts == r.counts.copy() and len(r.counts) == 2


def test_group_pricing_is_exactly_per_row_pricing():
    model = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.LayerNorm(8), nn.Linear(8, 2))
    r = torch_tos.profile(model, torch.randn(3, 4), mode="training",
                          optimizer=torch.optim.Adam(model.parameters()))
    assert r.tos_exact == _per_row_tos(r.counts)
    for phase, total in r.by_phase().items():
        assert total.tos == float(_per_row_tos(r.counts.where(phases=[phase])))
    assert sum(row["tos"] for row in r.rows()) == pytest.approx(r.tos, rel=1e-15)
    assert r.bos == r.counts.bos and r.flops == r.counts.flops
    ops = r.by_op()
    assert int(ops.calls.sum()) == r.calls and int(ops["bytes"].sum()) == r.bytes
    half = r.__class__(r.counts, {}, dtype=torch.float16)
    assert half.tos_exact == _per_row_tos(r.counts, torch.float16)
    assert {row["dtype"] for row in half.rows()} == {"float16"}


def test_views_are_cached_but_not_shared():
    r = torch_tos.profile(nn.Linear(2, 3), torch.randn(1, 2))
    rows = r.rows()
    rows[0]["add"] = -1
    assert r.rows()[0]["add"] != -1  # callers get copies of the cached rows
    assert str(r) == str(r) and r.to_json() == r.to_json()


def test_report_from_a_plain_mapping_and_its_own_copy():
    key = ("fc", "forward", torch.float32, "aten.mm")
    counts = Counts()
    counts.add(key, BOs(add=6, mul=8), flops=16)
    r = Report(counts, {})
    counts.add(key, BOs(add=6, mul=8), flops=16)  # the report keeps its own copy
    assert r.bos == BOs(add=6, mul=8) and r.flops == 16 and r.calls == 1
    legacy = Report({key: [6, 0, 8, 0, 0, 1, 16]}, {})  # rows without bytes are padded with 0
    assert legacy.counts.rows[key] == [6, 0, 8, 0, 0, 1, 16, 0] and legacy == r
    assert r.tos_exact == 6 * F32[0] + 8 * F32[2]  # 1,416 + 101,890 = 103,306
    assert list(r.counts)[0][0] == CountKey(*key)


def test_empty_report():
    r = Report(Counts(), {})
    assert r.bos == BOs() and r.tos == 0 and r.flops == 0 and r.by_phase() == {} and r.rows() == []
    assert "(no operations recorded)" in str(r)
    assert list(r.by_op().columns) == OP_COLUMNS and len(r.by_op()) == 0
