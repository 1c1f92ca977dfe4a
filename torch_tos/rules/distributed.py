"""Collective communication (``torch.ops.c10d``): the arithmetic of reductions, per rank.

Moving data costs no BOs: broadcast, all-gather, scatter, send/recv, barrier are zero. A
reduction over ``W = world_size`` ranks combines ``W`` values into each result element:
``W − 1`` binary operations per element for the whole group (a ring all-reduce's reduce-scatter
phase performs exactly these; the all-gather phase only moves data). The ring splits the ``N``
elements into ``W`` chunks (sizes as ``numpy.array_split``: the first ``N mod W`` chunks one
larger) and each chunk's reduction ends on one rank, so each rank books the ``W − 1``
operations per element of *its* chunk, ``(W − 1)·n_rank``: the ranks' books sum to exactly
``(W − 1)·N`` (what :meth:`torch_tos.TOsCounter.total_all_ranks` adds up). Which physical rank
performs each intermediate add of the ring differs per algorithm (gloo also has halving-doubling
and bcube); the group's total does not.

The operation: ``SUM`` → add; ``AVG`` → add, plus one div per element of the rank's chunk;
``PRODUCT`` → mul; ``MIN``/``MAX`` → sub (a comparator); ``PREMUL_SUM`` → one mul per element
of the rank's chunk plus the adds; bitwise ``BAND``/``BOR``/``BXOR`` are no BO kind: 0.

Under ``DistributedDataParallel`` the gradient buckets are all-reduced (``c10d.allreduce_`` with
``SUM``; DDP divides the gradients by ``W`` in a separate ``div_``, counted by its own rule) from
autograd hooks, so the engine books them in the ``backward`` phase.
"""

from __future__ import annotations

import torch

from ..bos import BOs
from .registry import FAMILY, RULES, ZERO_OPS, register

_SUM, _AVG, _PRODUCT, _MIN, _MAX, _BAND, _BOR, _BXOR, _PREMUL_SUM = 0, 1, 2, 3, 4, 5, 6, 7, 8


def _c10d(*names):
    ns = getattr(torch.ops, "c10d", None)
    out = []
    for name in names:
        try:
            out.append(getattr(ns, name))
        except (AttributeError, RuntimeError):  # not in this build (no distributed support)
            pass
    return out


def _world_and_rank(group) -> tuple[int, int]:
    try:
        pg = torch.distributed.ProcessGroup.unbox(group)
        return int(pg.size()), int(pg.rank())
    except Exception:  # noqa: BLE001 - fall back on the default group
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size(), dist.get_rank()
        return 1, 0


def own_chunk(n: int, world: int, rank: int) -> int:
    """Elements of the ring chunk whose reduction ends on ``rank`` (``numpy.array_split`` sizes)."""
    return n // world + (1 if rank < n % world else 0)


def reduction_bos(n: int, world: int, rank: int, op: int) -> BOs:
    """BOs ``rank`` books for reducing ``n`` elements over ``world`` ranks with ``op``."""
    mine = own_chunk(n, world, rank)
    steps = (world - 1) * mine
    if op in (_SUM,):
        return BOs(add=steps)
    if op == _AVG:
        return BOs(add=steps, div=mine)
    if op == _PRODUCT:
        return BOs(mul=steps)
    if op in (_MIN, _MAX):
        return BOs(sub=steps)
    if op == _PREMUL_SUM:
        return BOs(add=steps, mul=mine)
    return BOs()


def _op_code(reduce_op) -> int:
    try:
        return int(reduce_op.op())
    except Exception:  # noqa: BLE001 - a Python ReduceOp / RedOpType
        return int(getattr(reduce_op, "value", reduce_op))


@register(*_c10d("allreduce_", "allreduce_coalesced_"))
def allreduce(out, tensors, process_group, reduce_op, *args, **kwargs) -> BOs:
    """All-reduce of each tensor: the rank's share of the ``(W − 1)·N`` reductions (module doc)."""
    world, rank = _world_and_rank(process_group)
    code = _op_code(reduce_op)
    total = BOs()
    for t in tensors:
        total = total + reduction_bos(int(t.numel()), world, rank, code)
    return total


@register(*_c10d("reduce_scatter_", "_reduce_scatter_base_", "reduce_scatter_tensor_coalesced_"))
def reduce_scatter(out, output, inputs, process_group, reduce_op, *args, **kwargs) -> BOs:
    """Reduce-scatter: each rank reduces its own output chunk over ``W`` inputs: ``(W − 1)``
    operations per element of its output (``AVG``: plus one div per element)."""
    world, _rank = _world_and_rank(process_group)
    outs = output if isinstance(output, (list, tuple)) else [output]
    mine = sum(int(o.numel()) for o in outs)
    return reduction_bos(mine * world, world, 0, _op_code(reduce_op))  # chunk 0 of W equal chunks


@register(*_c10d("reduce_"))
def reduce(out, tensors, process_group, reduce_op, *args, **kwargs) -> BOs:
    """Reduce to one root: the same ``(W − 1)·N`` reductions as an all-reduce, shared alike."""
    return allreduce(out, tensors, process_group, reduce_op)


for _packet in _c10d("broadcast_", "allgather_", "_allgather_base_", "allgather_coalesced_",
                     "allgather_into_tensor_coalesced_", "scatter_", "gather_", "alltoall_",
                     "alltoall_base_", "send", "recv_", "recv_any_source_", "barrier", "monitored_barrier_"):
    if _packet not in RULES:  # data movement only
        ZERO_OPS.add(_packet)
        FAMILY.setdefault(_packet, __name__)
