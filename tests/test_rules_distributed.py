"""Collective rules (rules/distributed.py), by hand: functional collectives (DTensor, tensor
parallelism), process-group ops, FSDP2's copies. One process, meta tensors: the collectives' meta
kernels communicate nothing, and the group's size and this rank are set per test."""

from __future__ import annotations

import pytest
import torch

from torch_tos import Engine
from torch_tos.bos import BOs
from torch_tos.rules import lookup
from torch_tos.rules import distributed as rules
from torch_tos.rules.registry import ALIAS_OPS

funcol = getattr(torch.ops, "_c10d_functional", None)
pytestmark = pytest.mark.skipif(funcol is None or not hasattr(funcol, "all_reduce"),
                                reason="this torch has no functional collectives")


@pytest.fixture
def group(monkeypatch):
    """Set the (world size, rank) every rule sees."""
    def set_group(world: int, rank: int) -> None:
        monkeypatch.setattr(rules, "_named_group", lambda name: (world, rank))
        monkeypatch.setattr(rules, "_world_and_rank", lambda pg: (world, rank))
    return set_group


def _rows(fn):
    with Engine() as engine:
        fn()
    return {k[3]: v for k, v in engine.counts.rows.items()}, engine.unsupported


def meta(*shape):
    return torch.empty(*shape, device="meta")


@pytest.mark.parametrize("op,expected", [
    # 10 elements on 4 ranks: ring chunks 3, 3, 2, 2; rank 1 reduces its 3 over W − 1 = 3 partners
    ("sum", BOs(add=9)), ("avg", BOs(add=9, div=3)), ("product", BOs(mul=9)), ("max", BOs(sub=9)),
    ("min", BOs(sub=9)), ("premul_sum", BOs(add=9, mul=3)), ("band", BOs()), ("bxor", BOs()),
])
def test_functional_all_reduce_books_the_ranks_ring_chunk(group, op, expected):
    group(4, 1)
    rows, unsupported = _rows(lambda: funcol.all_reduce(meta(10), op, "g"))
    assert BOs(*rows["_c10d_functional.all_reduce"][:5]) == expected and not unsupported
    assert rows["_c10d_functional.all_reduce"][7] == 2 * 10 * 4  # input and output buffers, bytes


def test_all_reduce_shares_sum_to_world_minus_one_per_element(group):
    total = BOs()
    for rank in range(4):
        group(4, rank)
        rows, _ = _rows(lambda: funcol.all_reduce(meta(10), "sum", "g"))
        total = total + BOs(*rows["_c10d_functional.all_reduce"][:5])
    assert total == BOs(add=3 * 10)
    group(4, 3)   # chunk of 2
    rows, _ = _rows(lambda: funcol.all_reduce_coalesced([meta(10), meta(5)], "sum", "g"))
    assert BOs(*rows["_c10d_functional.all_reduce_coalesced"][:5]) == BOs(add=3 * (2 + 1))


def test_functional_reduce_scatter_reduces_the_ranks_output(group):
    group(4, 0)
    # 24 elements over 4 ranks: each rank's output is 6 elements, each the sum of 4 inputs
    rows, _ = _rows(lambda: funcol.reduce_scatter_tensor(meta(24), "avg", 4, "g"))
    assert BOs(*rows["_c10d_functional.reduce_scatter_tensor"][:5]) == BOs(add=3 * 6, div=6)
    rows, _ = _rows(lambda: funcol.reduce_scatter_tensor_coalesced([meta(24), meta(8)], "sum", 4, "g"))
    assert BOs(*rows["_c10d_functional.reduce_scatter_tensor_coalesced"][:5]) == BOs(add=3 * (6 + 2))


def test_data_movement_is_zero_with_bytes_and_waits_move_nothing(group):
    import torch.distributed._functional_collectives  # noqa: F401 - defines _wrap_tensor_autograd

    group(4, 2)

    def run():
        y = funcol.all_gather_into_tensor(meta(6), 4, "g")
        funcol.wait_tensor(y)
        funcol.broadcast(meta(6), 0, "g")
        funcol.all_to_all_single(meta(6, 4), [2, 3, 0, 1], [1, 1, 2, 2], "g")  # uneven: 6 in, 6 out
        funcol._wrap_tensor_autograd(meta(6))

    rows, unsupported = _rows(run)
    assert not unsupported
    assert all(v[:5] == [0] * 5 for v in rows.values())
    assert rows["_c10d_functional.all_gather_into_tensor"][7] == (6 + 24) * 4
    assert rows["_c10d_functional.all_to_all_single"][7] == (6 * 4 + 6 * 4) * 4
    assert rows["_c10d_functional.wait_tensor"][7] == 0 == rows["_c10d_functional._wrap_tensor_autograd"][7]
    assert "_c10d_functional.wait_tensor" in ALIAS_OPS


def test_process_group_reduce_scatter_and_nan_check(group):
    group(2, 0)
    out = rules.reduce_scatter(None, [meta(5)], [[meta(5), meta(5)]], None, 0)  # SUM
    assert out == BOs(add=5)
    assert rules.reduce_scatter(None, meta(5), meta(10), None, 1) == BOs(add=5, div=5)  # AVG
    assert rules.check_for_nan(None, meta(7)) == BOs(sub=2 * 7 - 1)  # isnan + any, as priced alone


def test_every_collective_and_fsdp_copy_has_a_rule():
    import torch.distributed._functional_collectives  # noqa: F401 - defines _wrap_tensor_autograd
    import torch.distributed.fsdp  # noqa: F401 - defines torch.ops.fsdp

    names = {"c10d": ["allreduce_", "allreduce_coalesced_", "reduce_scatter_", "_reduce_scatter_base_",
                      "reduce_scatter_tensor_coalesced_", "reduce_", "broadcast_", "allgather_",
                      "_allgather_base_", "allgather_into_tensor_coalesced_", "alltoall_",
                      "alltoall_base_", "scatter_", "gather_", "send", "recv_", "barrier"],
             "_c10d_functional": ["all_reduce", "all_reduce_", "all_reduce_coalesced",
                                  "reduce_scatter_tensor", "reduce_scatter_tensor_coalesced",
                                  "all_gather_into_tensor", "all_gather_into_tensor_coalesced",
                                  "all_to_all_single", "broadcast", "wait_tensor", "_wrap_tensor_autograd"],
             "_c10d_functional_autograd": ["all_gather_into_tensor", "reduce_scatter_tensor",
                                           "all_to_all_single"],
             "fsdp": ["all_gather_copy_in", "split_with_sizes_copy", "chunk_cat", "copy_"]}
    missing = [f"{ns}.{n}" for ns, ops in names.items() for n in ops
               if hasattr(getattr(torch.ops, ns), n) and lookup(getattr(getattr(torch.ops, ns), n).default) is None]
    assert missing == []
    assert lookup(torch.ops.fsdp.chunk_cat.default)(None) == BOs()


def test_unknown_reduce_op_name_is_a_clear_error(group):
    group(2, 0)
    with pytest.raises(ValueError, match=r"unknown reduce op 'median'.*sum, avg"):
        rules.functional_all_reduce(None, meta(4), "median", "g")
