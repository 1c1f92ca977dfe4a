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

from .._compat import eager_under_compile, next_sequence_nr, resnapshot_python_keys, sequence_nr
from ..attribution import ModuleScope, node_key
from ..counter import Engine
from .verify import data_dependent

__all__ = ["Hook", "ModuleHook", "Noop", "CounterScope", "CounterEngine"]


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
        if _get_ident() == self.thread:
            return self.fn(*args)
        return None

    def __deepcopy__(self, memo):
        return Noop()

    def __copy__(self):
        return Noop()

    def __reduce__(self):
        return (Noop, ())


class ModuleHook(Hook):
    """A :class:`Hook` for a module: when ``torch.compile`` traces the module's call, the hook
    runs for real, eagerly, outside the graph."""

    __slots__ = ()

    def __call__(self, *args):
        if _is_compiling():
            return _eager_call(self, args)
        if _get_ident() == self.thread:
            return self.fn(*args)
        return None


def _eager(hook: Hook, args):
    if _get_ident() == hook.thread:
        return hook.fn(*args)
    return None


_get_ident = threading.get_ident
_is_compiling = torch.compiler.is_compiling
_eager_call = eager_under_compile(_eager)


_ACCUMULATE_GRAD = 2 ** 64 - 1  # the sequence number of every AccumulateGrad node


class CounterScope(ModuleScope):
    """A :class:`ModuleScope` whose hooks are :class:`Hook` objects bound to ``thread``; while
    they run, the tracker's tracer is off (their tensor accesses are not part of the step).

    **Partial steps.** When counting starts in the middle of a step (the step left the cached
    sequence after its forward, or inside it), the autograd nodes made before that moment were
    never claimed by a module. :meth:`partial` records the autograd sequence number at that
    moment and the sequence ranges of the step's root forwards: a node made before it is owned
    by the model as a whole (layer ``""``) when it was made inside a root forward, else by nobody
    (the engine books its backward under ``(loss)``); module hooks do not claim such nodes. Ops of
    a forward that was already running when counting started are booked under the model."""

    tracker = None
    _param_owners = None
    first_seq = None  # sequence number when counting started in a partial step
    ranges = ()       # [start, end] sequence ranges of the step's root forwards before it

    coarse = False    # a booking of this partial step used the rules above

    def partial(self, ranges, inside_forward: bool) -> None:
        self.first_seq = next_sequence_nr()
        self.ranges = ranges
        if inside_forward and not self.stack:  # as if the root's pre-hook had run
            self.stack.append("")
            frames = getattr(self, "_frames", None)
            if frames is not None:
                frames.append((id(self.model), False))
            self.coarse = True

    def forget_nodes(self) -> None:
        super().forget_nodes()
        self.first_seq, self.ranges, self.coarse = None, (), False

    def owner_of(self, node):
        owner = super().owner_of(node)
        first = self.first_seq
        if owner is None and first is not None and node is not None:
            seq = sequence_nr(node)
            if seq < first:
                self.coarse = True
                for a, b in self.ranges:
                    if a <= seq and (b is None or seq < b):
                        return ""
            elif seq == _ACCUMULATE_GRAD:  # a parameter's gradient: the module holding it
                self.coarse = True
                var = getattr(node, "variable", None)
                return self._param_owner().get(id(var)) if var is not None else None
        return owner

    def _param_owner(self) -> dict:
        if self._param_owners is None:
            self._param_owners = {}
            for name, mod in self.model.named_modules():
                for p in mod.parameters(recurse=False):
                    self._param_owners.setdefault(id(p), name)
        return self._param_owners

    def _claim(self, roots, layer: str) -> None:
        first = self.first_seq
        if first is None:
            return ModuleScope._claim(self, roots, layer)
        owner = self.node_owner
        todo = list(roots)
        while todo:
            node = todo.pop()
            key = node_key(node)
            if key in owner or 0 <= key < first:  # made before counting started: not ours
                continue
            owner[key] = layer
            for nxt, _ in node.next_functions:
                if nxt is not None:
                    todo.append(nxt)

    def __init__(self, model: torch.nn.Module, thread: int):
        super().__init__(model)
        self.thread = thread

    def _untraced(self, fn):
        def hook(*args):
            tracker = self.tracker
            if tracker is None or not tracker.tracing:
                return fn(*args)
            tracker.trace(False)
            try:
                return fn(*args)
            finally:
                tracker.trace(True)

        return hook

    def _pre(self, name: str):
        return ModuleHook(self._untraced(super()._pre(name)), self.thread)

    def _post(self, name: str):
        return ModuleHook(self._untraced(super()._post(name)), self.thread)


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


def _resnapshot_dispatch_keys(include: bool) -> bool:
    """Inside a call compiled by ``torch.compile``, dynamo snapshots the thread's dispatch key set
    before the call and restores it after; a dispatch mode pushed *inside* the call would then stay
    on the mode stack with the ``Python`` keys gone, and the ops right after the compiled call would
    not reach it. This re-takes that snapshot with the ``Python`` keys ``include``-d (True after the
    engine entered, False after it left; :func:`torch_tos._compat.resnapshot_python_keys`).
    Returns whether it applied (False outside a compiled call, or on a torch without these APIs:
    nothing to do there)."""
    return resnapshot_python_keys(include)


class CounterEngine(Engine):
    """:class:`Engine` that lets the profiler's ``record_function`` markers through uncounted and
    keeps counting after a ``torch.compile``-d call that it was entered inside of."""

    _resnapshot = False
    tracker = None  # the StepTracker, for the checks that mark a counted segment volatile

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
        tracker = self.tracker
        if tracker is not None and tracker.cache.enabled and not self.paused:
            segment = tracker.segment
            if segment is not None and segment.volatile is None and not tracker.trusted:
                if data_dependent(func):
                    segment.volatile = f"data-dependent op {func.overloadpacket}"
                elif not tracker.depth:
                    segment.volatile = f"op {func.overloadpacket} outside any traced call"
        return Engine._handle(self, mode, func, args, kwargs)
