"""What the training counter places on the user's objects, and the engine it counts with.

* :class:`Hook` — a hook object that calls the counter only from the thread that entered the
  counter and turns into a no-op (:class:`Noop`) in a deep copy or a pickle, so copying or saving
  the model/optimizer while a counter is active neither fails nor gets counted, and a copy used in
  another thread (e.g. by :func:`torch_tos.profile`) books nothing here.
  When ``torch.compile`` traces a module carrying such a hook, the hook runs eagerly outside the
  graph (a graph break); :class:`CounterEngine` keeps counting after the compiled call returns
  (see :func:`_resnapshot_dispatch_keys`), so the counter sees every op around a compiled module.
* :class:`CounterScope` — :class:`~torch_tos.attribution.ModuleScope` whose per-module hooks are
  such :class:`Hook` objects.
* :class:`CounterEngine` — :class:`~torch_tos.counter.Engine` that passes the profiler's
  ``record_function`` markers (zero-cost bookkeeping around ``optimizer.step()``, which fire before
  the step pre-hook and after the post-hook) through uncounted. Every other op is booked where the
  engine infers it belongs; autograd's gradient seed (``ones_like`` in ``loss.backward()``, zero
  BOs) therefore lands in the phase inferred for it (``loss``).
"""

from __future__ import annotations

import threading

import torch

from ..attribution import ModuleScope
from ..counter import Engine

__all__ = ["Hook", "Noop", "CounterScope", "CounterEngine"]


class Noop:
    """What a :class:`Hook` becomes in a deep copy or a pickle: a hook that does nothing."""

    def __call__(self, *args):
        return None

    def __reduce__(self):
        return (Noop, ())


class Hook:
    """Calls ``fn`` when called from thread ``thread`` (an ident); from any other thread, and in
    copies and pickles (:class:`Noop`), it does nothing."""

    __slots__ = ("fn", "thread")

    def __init__(self, fn, thread: int):
        self.fn = fn
        self.thread = thread

    def __call__(self, *args):
        if _is_compiling():  # traced by torch.compile: run it for real, outside the graph
            return _eager_call(self, args)
        if threading.get_ident() == self.thread:
            return self.fn(*args)
        return None

    def __deepcopy__(self, memo):
        return Noop()

    def __copy__(self):
        return Noop()

    def __reduce__(self):
        return (Noop, ())


def _eager(hook: Hook, args):
    if threading.get_ident() == hook.thread:
        return hook.fn(*args)
    return None


_is_compiling = torch.compiler.is_compiling
_eager_call = torch.compiler.disable(_eager)


class CounterScope(ModuleScope):
    """A :class:`ModuleScope` whose hooks are :class:`Hook` objects bound to ``thread``."""

    def __init__(self, model: torch.nn.Module, thread: int):
        super().__init__(model)
        self.thread = thread

    def _pre(self, name: str):
        return Hook(super()._pre(name), self.thread)

    def _post(self, name: str):
        return Hook(super()._post(name), self.thread)


def _profiler_ops() -> frozenset:
    out = set()
    prof = getattr(torch.ops, "profiler", None)
    for name in ("_record_function_enter", "_record_function_enter_new", "_record_function_exit"):
        packet = getattr(prof, name, None) if prof is not None else None
        if packet is None:
            continue
        for overload in packet.overloads():
            out.add(getattr(packet, overload))
    return frozenset(out)


PROFILER_OPS = _profiler_ops()


_save_keys = getattr(torch._C, "_dynamo_save_local_dispatch_key_set", None)
_restore_keys = getattr(torch._C, "_dynamo_restore_local_dispatch_key_set", None)
_PYTHON_KEYS = tuple(getattr(torch._C.DispatchKey, k) for k in ("Python", "PythonTLSSnapshot")
                     if hasattr(torch._C.DispatchKey, k))


def _resnapshot_dispatch_keys(include: bool) -> bool:
    """Inside a call compiled by ``torch.compile``, dynamo snapshots the thread's dispatch key set
    before the call and restores it after (private ``torch._C._dynamo_save/restore_local_dispatch_
    key_set``); a dispatch mode pushed *inside* the call would then stay on the mode stack with the
    ``Python`` keys gone, and the ops right after the compiled call would not reach it. This
    re-takes that snapshot with the ``Python`` keys ``include``-d (True after the engine entered,
    False after it left). Returns whether it applied (False outside a compiled call, or on a
    torch without these APIs: nothing to do there)."""
    if _save_keys is None or _restore_keys is None or not _PYTHON_KEYS:
        return False
    try:
        _restore_keys()
    except RuntimeError:  # no snapshot: not inside a compiled call
        return False
    for key in _PYTHON_KEYS:
        torch._C._dispatch_tls_set_dispatch_key_included(key, include)
    _save_keys()
    return True


class CounterEngine(Engine):
    """:class:`Engine` that lets the profiler's ``record_function`` markers through uncounted and
    keeps counting after a ``torch.compile``-d call that it was entered inside of."""

    _resnapshot = False

    def __enter__(self) -> "CounterEngine":
        Engine.__enter__(self)
        self._resnapshot = _resnapshot_dispatch_keys(True)
        return self

    def __exit__(self, *exc):
        Engine.__exit__(self, *exc)
        if self._resnapshot:
            self._resnapshot = False
            _resnapshot_dispatch_keys(False)
        return False

    def _handle(self, mode, func, args, kwargs):
        if func in PROFILER_OPS:
            return func(*args, **kwargs)
        return Engine._handle(self, mode, func, args, kwargs)
