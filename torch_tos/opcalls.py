"""What the engine records of one op call besides its BOs: the dtype it computes in, the bytes its
tensors hold and its name (:class:`~torch_tos.counter.Engine` books each call under these)."""

from __future__ import annotations

import torch

from ._compat import OpOverload

_SCALARS = frozenset((int, float, bool, type(None)))


def op_dtype(args, out):
    """The data type an op computes in: its first floating-point tensor argument, else its output.

    Under autocast the casts are separate ops, so every op sees tensors already in the dtype it
    runs in — mixed precision is priced per op.
    """
    first = None
    for a in args:
        for b in (a if isinstance(a, (list, tuple)) else (a,)):
            if isinstance(b, torch.Tensor):
                if b.is_floating_point() or b.is_complex():
                    return b.dtype
                if first is None:
                    first = b.dtype
    o = out[0] if isinstance(out, (list, tuple)) and out else out
    if isinstance(o, (list, tuple)) and o:
        o = o[0]
    if isinstance(o, torch.Tensor) and (o.is_floating_point() or first is None):
        return o.dtype
    return first if first is not None else torch.float32


def tensor_bytes(values) -> int:
    """Σ ``numel × element_size`` of the tensors in ``values`` (and in lists/tuples inside it): the
    bytes an op reads or writes, an *estimate* of its data movement: each tensor once, caches and
    re-reads ignored; view ops (``aten.t``, ``aten.view``) move nothing and are booked as 0."""
    total = 0
    for v in values:
        if isinstance(v, torch.Tensor):
            try:
                n = v.numel()
                total += (n if type(n) is int else int(n)) * v.element_size()
            except (RuntimeError, TypeError, ValueError):  # symbolic / nested sizes: unknown, 0
                pass
        elif type(v) in _SCALARS:
            continue
        elif isinstance(v, (list, tuple)):
            total += tensor_bytes(v)
    return total


def op_name(func) -> str:
    """``aten.mm`` style name of an OpOverload (overload dropped)."""
    return str(func.overloadpacket) if isinstance(func, OpOverload) else str(func)
