"""Higher-order operators (``torch.cond``, ``while_loop``, ``scan``, ``map``, …) under the Engine.

A HOP reaches the engine's dispatch mode as one call wrapping Python functions. The engine counts
*what runs*: it runs the HOP's eager (``CompositeExplicitAutograd``) implementation with the
counting mode active, so every aten op inside the branch, loop body or subgraph is priced like any
other op.

``torch.cond`` on a real predicate counts the branch taken. On the meta device the predicate has
no value, so the engine does what ``FlopCounterMode`` does: it runs both branches and keeps, per
counts row, the larger of the two (an upper bound), and warns that it did. A HOP without an eager
implementation runs uncounted and is reported in ``unsupported`` as ``higher_order.<name>``.
"""

from __future__ import annotations

import warnings

import torch

from ._compat import eager_kernel
from .counts import Counts


class UpperBoundWarning(UserWarning):
    """A data-dependent construct was counted as an upper bound (e.g. ``torch.cond`` on meta)."""


_COND = getattr(torch.ops.higher_order, "cond", None)


def handle_higher_order(engine, mode, func, args, kwargs):
    if func is _COND and _COND is not None:
        return _cond(engine, mode, *args, **kwargs)
    kernel = eager_kernel(func)
    if kernel is not None:
        with mode:
            return kernel(*args, **kwargs)
    layer, phase, _ = engine._where()
    key = (f"higher_order.{func.name()}", layer, phase)
    engine.unsupported[key] = engine.unsupported.get(key, 0) + 1
    return func(*args, **kwargs)


def _cond(engine, mode, pred, true_fn, false_fn, operands):
    if not (isinstance(pred, torch.Tensor) and pred.device.type == "meta"):
        taken = true_fn if bool(pred) else false_fn
        with mode:
            return taken(*operands)
    saved = engine.counts, engine.unsupported
    results = []
    try:
        for branch in (true_fn, false_fn):
            engine.counts, engine.unsupported = Counts(), {}
            with mode:
                out = branch(*operands)
            results.append((out, engine.counts, engine.unsupported))
    finally:
        engine.counts, engine.unsupported = saved
    (out, a, ua), (_, b, ub) = results
    for key in {**a.rows, **b.rows}:
        ra, rb = a.rows.get(key), b.rows.get(key)
        row = ra if rb is None else rb if ra is None else [max(x, y) for x, y in zip(ra, rb)]
        # one branch's row keeps its work per call; a row of both is one bin, its mean per call
        work = a.work_of(key) if rb is None else b.work_of(key) if ra is None else None
        engine.counts.add(key, row[:5], calls=row[5], flops=row[6], bytes=row[7], work=work)
    for key in {**ua, **ub}:
        engine.unsupported[key] = engine.unsupported.get(key, 0) + max(ua.get(key, 0), ub.get(key, 0))
    warnings.warn("torch_tos: torch.cond on the meta device has no predicate value; both branches "
                  "ran and each counts row keeps the larger branch (an upper bound, as "
                  "FlopCounterMode does)", UpperBoundWarning, stacklevel=2)
    return out
