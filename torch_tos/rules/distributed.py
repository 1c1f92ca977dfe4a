"""Collective communication: the arithmetic of reductions, per rank.

Covers the process-group ops (``torch.ops.c10d``: ``dist.all_reduce`` & co., DDP's gradient
buckets, FSDP2's all-gather and reduce-scatter), the functional collectives DTensor and tensor
parallelism run (``torch.ops._c10d_functional``, their autograd variants
``_c10d_functional_autograd``, ``_dtensor.shard_dim_alltoall``) and FSDP2's copy ops
(``torch.ops.fsdp``).

**Data movement costs no BOs**: broadcast, all-gather, all-to-all (single and ``_base``, even or
uneven splits: an expert-parallel token dispatch), scatter, gather, send/recv, barrier, and the
copies FSDP2 makes around its collectives (``fsdp.all_gather_copy_in``,
``fsdp.split_with_sizes_copy``, ``fsdp.chunk_cat``, ``fsdp.copy_``) are zero; the engine books
the bytes of the rank's input and output buffers, as for any copy (the bytes a rank's memory
reads and writes, not the bytes on the wire). ``wait_tensor`` and ``_wrap_tensor_autograd``
return the tensor they are given: zero BOs and, like views, zero bytes.

**A reduction** over ``W = world_size`` ranks combines ``W`` values into each result element:
``W − 1`` binary operations per element for the whole group, whatever the algorithm. The
convention fixes which rank books them: a ring. The ring splits the ``N`` elements into ``W``
chunks (sizes as ``numpy.array_split``: the first ``N mod W`` chunks one larger) and each chunk's
reduction ends on one rank, so rank ``r`` books the ``W − 1`` operations per element of *its*
chunk, ``(W − 1)·n_r``, and the ranks' books sum to exactly ``(W − 1)·N`` (what
:meth:`torch_tos.TOsCounter.total_all_ranks` adds up). Other algorithms (gloo's
halving-doubling and bcube, NCCL's trees, in-network reductions) move the intermediate adds
between ranks, and one that reduces in a higher precision performs the same adds in another
format; the group's count of each operation is the same, which is why it is the quantity
counted. A reduce-scatter's output chunk *is* the rank's chunk: ``(W − 1)`` operations per
element of its output. A reduce to one root performs the all-reduce's ``(W − 1)·N``, booked as
the ring shares them.

The operation of the reduction: ``SUM`` → add; ``AVG`` → add, plus one div per element of the
rank's chunk; ``PRODUCT`` → mul; ``MIN``/``MAX`` → sub (a comparator); ``PREMUL_SUM`` → one mul
per element of the rank's chunk (the scaling of its inputs, counted where the chunk is reduced)
plus the adds; bitwise ``BAND``/``BOR``/``BXOR`` are no BO kind: 0.

Under ``DistributedDataParallel`` the gradient buckets are all-reduced (``c10d.allreduce_`` with
``SUM``; DDP scales each gradient by ``1/W`` as it copies it into the bucket, a ``mul`` counted by
its own rule) from autograd hooks, so the engine books them in the ``backward`` phase; FSDP2's
reduce-scatter of gradients likewise (``AVG`` for fp32/bf16 gradients, else ``SUM`` with ``div_``
before and after it, counted by their own rule).
"""

from __future__ import annotations

import torch

from .._compat import process_group_size_and_rank
from ..bos import BOs
from .registry import ALIAS_OPS, FAMILY, RULES, ZERO_OPS, register, register_zero

_SUM, _AVG, _PRODUCT, _MIN, _MAX, _BAND, _BOR, _BXOR, _PREMUL_SUM = 0, 1, 2, 3, 4, 5, 6, 7, 8
#: the functional collectives' reduce-op names (``_c10d_functional.all_reduce(t, "sum", group)``)
REDUCE_OP_NAMES = {"sum": _SUM, "avg": _AVG, "product": _PRODUCT, "min": _MIN, "max": _MAX,
                   "band": _BAND, "bor": _BOR, "bxor": _BXOR, "premul_sum": _PREMUL_SUM}


def _ops(namespace: str, *names) -> list:
    """The packets of ``namespace`` among ``names`` that this build has (none without
    ``torch.distributed``)."""
    ns = getattr(torch.ops, namespace, None)
    out = []
    for name in names:
        try:
            out.append(getattr(ns, name))
        except (AttributeError, RuntimeError):  # not in this build (no distributed support)
            pass
    return out


def _c10d(*names):
    return _ops("c10d", *names)


def _functional(*names):
    return _ops("_c10d_functional", *names) + _ops("_c10d_functional_autograd", *names)


def _default_group() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def _world_and_rank(group) -> tuple[int, int]:
    """(size, this process's rank) of a c10d op's ``ProcessGroup`` argument."""
    try:
        pg = torch.distributed.ProcessGroup.unbox(group)
        return int(pg.size()), int(pg.rank())
    except Exception:  # noqa: BLE001 - fall back on the default group
        return _default_group()


def _named_group(group_name) -> tuple[int, int]:
    """(size, this process's rank) of a functional collective's group (given by name); the
    default group's where the name cannot be resolved."""
    return process_group_size_and_rank(group_name) or _default_group()


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
    """The ``ReduceOp`` code of a c10d ``ReduceOp``, a ``RedOpType`` or a functional op name."""
    if isinstance(reduce_op, str):
        try:
            return REDUCE_OP_NAMES[reduce_op.lower()]
        except KeyError:
            raise ValueError(f"unknown reduce op {reduce_op!r}; known: "
                             f"{', '.join(REDUCE_OP_NAMES)}") from None
    try:
        return int(reduce_op.op())
    except Exception:  # noqa: BLE001 - a Python ReduceOp / RedOpType
        return int(getattr(reduce_op, "value", reduce_op))


def _tensors(value) -> list:
    return [t for t in (value if isinstance(value, (list, tuple)) else [value])
            if isinstance(t, torch.Tensor)]


def _numel(value) -> int:
    return sum(int(t.numel()) for t in _tensors(value))


# -- process-group ops (torch.ops.c10d) ----------------------------------------------------------

@register(*_c10d("allreduce_", "allreduce_coalesced_"))
def allreduce(out, tensors, process_group, reduce_op, *args, **kwargs) -> BOs:
    """All-reduce of each tensor: the rank's ring share of the ``(W − 1)·N`` reductions."""
    world, rank = _world_and_rank(process_group)
    code = _op_code(reduce_op)
    return sum((reduction_bos(int(t.numel()), world, rank, code) for t in _tensors(tensors)), BOs())


@register(*_c10d("reduce_scatter_", "_reduce_scatter_base_", "reduce_scatter_tensor_coalesced_"))
def reduce_scatter(out, output, inputs, process_group, reduce_op, *args, **kwargs) -> BOs:
    """Reduce-scatter: each rank reduces its own output chunk over ``W`` inputs: ``(W − 1)``
    operations per element of its output (``AVG``: plus one div per element)."""
    world, _rank = _world_and_rank(process_group)
    mine = _numel(output)
    return reduction_bos(mine * world, world, 0, _op_code(reduce_op))  # chunk 0 of W equal chunks


@register(*_c10d("reduce_"))
def reduce(out, tensors, process_group, reduce_op, *args, **kwargs) -> BOs:
    """Reduce to one root: the same ``(W − 1)·N`` reductions as an all-reduce, shared alike."""
    return allreduce(out, tensors, process_group, reduce_op)


@register(*_c10d("check_for_nan"))
def check_for_nan(out, tensor, *args, **kwargs) -> BOs:
    """``isnan(t).any()`` before a collective: ``n`` compares and ``n − 1`` logical folds
    (compares), as ``aten.isnan`` and ``aten.any`` are priced."""
    n = int(tensor.numel())
    return BOs(sub=max(2 * n - 1, 0))


# -- functional collectives (torch.ops._c10d_functional, DTensor, tensor parallelism) -----------

@register(*_functional("all_reduce", "all_reduce_", "all_reduce_coalesced", "all_reduce_coalesced_"))
def functional_all_reduce(out, inputs, reduce_op, group_name, *args, **kwargs) -> BOs:
    """All-reduce of each input: the rank's ring share of the ``(W − 1)·N`` reductions."""
    world, rank = _named_group(group_name)
    code = _op_code(reduce_op)
    return sum((reduction_bos(int(t.numel()), world, rank, code) for t in _tensors(inputs)), BOs())


@register(*_functional("reduce_scatter_tensor", "reduce_scatter_tensor_coalesced",
                       "reduce_scatter_tensor_out"))
def functional_reduce_scatter(out, inputs, reduce_op, group_size, group_name, *args, **kwargs) -> BOs:
    """Reduce-scatter of each input (``W·n`` elements) to the rank's ``n``: ``(W − 1)`` operations
    per element of its output (``AVG``: plus one div per element)."""
    world = int(group_size)
    code = _op_code(reduce_op)
    mine = sum(int(t.numel()) // world for t in _tensors(inputs))
    return reduction_bos(mine * world, world, 0, code)


# data movement (and DTensor's lookup of a mesh dimension's group): zero BOs, the buffers' bytes
# counted by the engine
for _packet in (*_c10d("broadcast_", "allgather_", "_allgather_base_", "allgather_coalesced_",
                       "allgather_into_tensor_coalesced_", "scatter_", "gather_", "gather_into_tensor_",
                       "alltoall_", "alltoall_base_", "send", "recv_", "recv_any_source_", "barrier",
                       "monitored_barrier_"),
                *_functional("all_gather_into_tensor", "all_gather_into_tensor_coalesced",
                             "all_gather_into_tensor_out", "all_to_all_single", "broadcast", "broadcast_",
                             "batch_p2p_ops", "isend", "irecv"),
                *_ops("_dtensor", "shard_dim_alltoall", "mesh_get_process_group")):
    if _packet not in RULES and _packet not in ZERO_OPS:
        ZERO_OPS.add(_packet)
        FAMILY.setdefault(_packet, __name__)

# the tensor they are given, returned: no arithmetic, no bytes (``_wrap_tensor_autograd`` is
# defined by torch.distributed._functional_collectives, registered once that is loaded)
for _packet in _functional("wait_tensor"):
    if _packet not in ZERO_OPS:
        ZERO_OPS.add(_packet)
        FAMILY.setdefault(_packet, __name__)
if _functional("wait_tensor"):
    register_zero("_c10d_functional::_wrap_tensor_autograd")
ALIAS_OPS.update(("_c10d_functional.wait_tensor", "_c10d_functional._wrap_tensor_autograd"))

# FSDP2's copies around its collectives (torch.distributed.fsdp defines them when it is loaded):
# the all-gather's input packed from the shards, its output split into the unsharded parameters,
# the gradients packed for the reduce-scatter, a parameter's storage refilled
register_zero("fsdp::all_gather_copy_in", "fsdp::split_with_sizes_copy", "fsdp::chunk_cat",
              "fsdp::copy_", "_chunk_cat")
