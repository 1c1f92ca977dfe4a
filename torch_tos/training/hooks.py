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

import sys
import threading

import torch

from .._compat import MODULE_CALL_CODE, eager_under_compile, resnapshot_python_keys
from ..attribution import OUTSIDE_LAYER, ModuleScope, node_key
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


class CounterScope(ModuleScope):
    """A :class:`ModuleScope` whose hooks are :class:`Hook` objects bound to ``thread``; while
    they run, the tracker's tracer is off (their tensor accesses are not part of the step).

    **Recording.** While a segment of a step is counted with the cache on, its cache node
    (``recording``) receives every claim (autograd node → layer), keyed by the node's sequence
    number relative to the step's first (``seq0``) — a gradient accumulator by its own (negative)
    key — and a *mark* at the segment's start and after every module entry or exit: the number
    of claims so far and the module stack. The same events run the same code, so they make the
    same autograd nodes in the same order: relative numbers of one step name the same nodes in
    the next.

    **Partial steps.** When counting starts in the middle of a step, right after cached event
    ``node``, :meth:`resume` takes over what a count from the step's start would know at that
    moment: every claim of the cached segments before ``node``, the claims of ``node``'s own
    segment up to the point where its counted run left the modules the step has left now (the
    running modules are read from the Python frames), and that module stack. The rest of the step
    is then attributed as if it had been counted from its start — equal to an
    ``Engine(model=...)`` around the step, row for row. When that point cannot be found (the
    step left the cache inside a submodule's forward, whose hooks were not there when it was
    entered; the counted run entered another module first; a module claimed a node made before
    the step; the cached run was itself coarse), the forward already running is booked under the
    model (layer ``""``) and :attr:`coarse` is set: the tracker then counts the next step in full.
    """

    tracker = None
    recording = None  # the cache node whose counted segment claims and marks go to
    seq0 = None       # the autograd sequence number when the step opened
    coarse = False    # this partial step's earlier work could not all be attributed exactly

    def mark(self) -> None:
        """Note the module stack in the recording node's timeline (see the class docstring)."""
        rec = self.recording
        if rec is not None:
            rec.marks.append((len(rec.claims), tuple(self.stack), tuple(self._frames)))

    def resume(self, node, seq0, running: tuple) -> bool:
        """Counting starts right after cached event ``node``; ``running`` is the stack of the
        model's modules whose forward runs now (``()`` or ``("",)``; longer: a submodule is
        mid-forward). Returns whether the attribution is exact (see the class docstring)."""
        owner = self.node_owner
        exact = seq0 is not None and len(running) <= 1
        path = node.path()
        upto = None  # how many of node's own claims precede this point
        marks = node.marks or ()
        if exact and not running and marks and not marks[-1][1]:
            # back outside the model, as the counted run was at the end of this segment (e.g.
            # right after a forward event): the whole segment ran as counted
            upto, self.stack[:], self._frames[:] = len(node.claims or ()), (), ()
        elif exact:
            for i, (n, stack, frames) in enumerate(marks):
                if i and len(stack) >= len(marks[i - 1][1]):  # entered a module first
                    break
                if stack == running:
                    upto, self.stack[:], self._frames[:] = n, stack, frames
                    break
        if upto is None:
            exact = False
            if running and not self.stack:  # as if the root's pre-hook had run
                self.stack.append("")
                self._frames.append((id(self.model), False))
        for n in path:
            if n.claims is None or not n.exact:
                exact = False
            claims = n.claims
            if claims and seq0 is not None:
                for key, layer in (claims[:upto] if n is node and upto is not None else claims):
                    owner[key + seq0 if key >= 0 else key] = layer
        self.coarse = not exact
        return exact

    def forget_nodes(self) -> None:
        super().forget_nodes()
        self.coarse = False
        self.recording = None

    def _claim(self, roots, layer: str) -> None:
        owner = self.node_owner
        rec = self.recording
        seq0 = self.seq0
        if rec is not None and (seq0 is None or rec.claims is None):
            rec.exact, rec = False, None
        todo = list(roots)
        while todo:
            node = todo.pop()
            key = node_key(node)
            if key in owner:
                continue
            owner[key] = layer
            if rec is not None:
                if key < 0:  # a gradient accumulator: its key is the same in every step
                    rec.claims.append((key, layer))
                elif key >= seq0:
                    rec.claims.append((key - seq0, layer))
                elif layer != OUTSIDE_LAYER:  # a node made before the step: not the same next time
                    rec.exact = False
            for nxt, _ in node.next_functions:
                if nxt is not None:
                    todo.append(nxt)

    def enter_root(self, args, kwargs) -> None:
        ModuleScope.enter_root(self, args, kwargs)
        self.mark()

    def __init__(self, model: torch.nn.Module, thread: int):
        super().__init__(model)
        self.thread = thread

    def _untraced(self, fn):
        def hook(*args):
            tracker = self.tracker
            if tracker is None or not tracker.tracing:
                fn(*args)
            else:
                tracker.trace(False)
                try:
                    fn(*args)
                finally:
                    tracker.trace(True)
            if self.recording is not None:
                self.mark()
            return None

        return hook

    def _pre(self, name: str):
        return ModuleHook(self._untraced(super()._pre(name)), self.thread)

    def _post(self, name: str):
        return ModuleHook(self._untraced(super()._post(name)), self.thread)


def running_modules(model: torch.nn.Module) -> int:
    """How many of ``model``'s modules have a call running in this thread now, read from the
    Python frames of ``Module._call_impl`` (a module entered before its hooks existed is seen
    too)."""
    if MODULE_CALL_CODE is None:  # pragma: no cover - depends on the installed torch
        return 2 ** 31  # unknown: more than can be taken over
    ids = {id(m) for m in model.modules()}
    n = 0
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is MODULE_CALL_CODE and id(frame.f_locals.get("self")) in ids:
            n += 1
        frame = frame.f_back
    return n


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
