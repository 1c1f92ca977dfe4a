"""Step detection: when a step opens and closes, which events it consists of, and when ops are
intercepted.

A step opens at the first forward of the model (the root module's forward pre-hook) after the
previous step closed, or at an explicit ``begin_step()``, and closes after ``optimizer.step()``
(its post-hook), at an explicit ``step()``, or at the end of the ``with`` block. Several forwards
before one ``optimizer.step()`` (gradient accumulation, LBFGS closures) are one step. A forward
with gradients disabled is a step of its own (it closes at the next forward, optimizer step,
``step()`` or exit); a no-grad forward *inside* an open training step gets its own ``inference``
record covering that forward, and the training step goes on.

Events are forwards, optimizer steps and — through the :class:`~.verify.Tracer`, active in the
stretches of the step that are not trusted library code — every ``torch`` call. Every event goes
through :meth:`StepTracker.event`, the one place that decides whether the step keeps following
the cache (nothing intercepted) or counts from here (the engine's dispatch mode and the per-module
attribution hooks switched on); a step closes in :meth:`StepTracker.close`, the one place that
turns a path of the cache into a record.
"""

from __future__ import annotations

import torch

from .._compat import (global_module_hooks_set, next_sequence_nr, pop_torch_function_mode,
                       push_torch_function_mode, torch_function_mode_at_top)
from .cache import Node, StepCache
from .ddp import ddp_of, forward_state
from .hooks import running_modules
from .inner import inner_forward
from .optevents import OptimizerEvents
from .records import device_readings
from .replay import Replay
from .signature import ForwardSignature, has_kv_cache, without_grad
from .stretch import StretchWatch
from .verify import Tracer

__all__ = ["Step", "StepTracker"]

_grad_enabled = torch.is_grad_enabled


class Step:
    """The open step. Class attributes are the defaults; an instance sets only what differs."""

    counting = False   # the engine is counting this step's current segment
    reused = 0         # events taken from the cache
    counted = 0        # events counted
    forwards = 0
    decoding = False   # a forward was given a key/value cache
    reason = None      # why counting started (None: it did not)
    full = False       # count every event (the previous step was partial)
    seq0 = None        # the autograd sequence number when the step opened
    state = None       # parameter gradients and optimizer state when it opened (see open)
    meter_ctx = None
    meter_m = None
    skipped = None     # (forward node, site, key, node, reused) of a skipped stretch (.stretch)
    replayed = False   # opened by .replay

    def __init__(self, grad: bool, explicit: bool, root: Node):
        self.grad = grad
        self.explicit = explicit
        self.node = root


class _Replayed(Step):
    """A training step opened by :mod:`.replay`: one forward so far."""

    grad, explicit, forwards, replayed = True, False, 1, True

    def __init__(self, node: Node, seq0: int, state, reused: int):
        self.node, self.seq0, self.state, self.reused = node, seq0, state, reused


class StepTracker(OptimizerEvents):
    """The step state machine of one :class:`~torch_tos.TOsCounter` (see the module doc).
    ``record(summary, cache, energy, new, reason)`` is called for every closed step.

    The methods called on every step of a cached loop (the hooks, :meth:`open`,
    :meth:`event`, :meth:`close`) are its overhead: they are kept to a few attribute reads and
    dictionary lookups, with the rarer cases in other methods."""

    def __init__(self, model, optimizer, engine, scope, cache: StepCache, meter, record):
        self.model, self.optimizer = model, optimizer
        self.engine, self.scope, self.cache = engine, scope, cache
        engine.tracker = scope.tracker = self
        self.meter = meter
        self.record = record
        self.history = self.sinks = None  # the counter's History and sinks (see on_opt_post)
        self.signature = ForwardSignature(model)
        self.root = cache.roots["step"]
        self.params = self.signature.params
        self.param_ids = {id(p) for p in self.params}
        self.optimizer_types: set[str] = set()
        if optimizer is not None:
            self.optimizer_types.add(type(optimizer).__name__)
        self.step: Step | None = None
        self.segment: Node | None = None  # the node whose counts the engine is writing
        self.active = False
        self.full_next = False            # count the next step in full (see open)
        self.model_trusted = False        # set on entry (see verify.model_is_trusted)
        self.tracer = Tracer(self, self.params)
        self.tracing = False
        self.stretch = StretchWatch(self)  # the loop's code read from its frame instead of traced
        self.replay = Replay(self)        # the last step's path, compared instead of walked
        self.opt = None                   # the last optimizer event's optimizer (a weak reference)
        self.depth = 0                    # > 0 inside a traced call
        self.trusted = False              # inside a trusted forward or optimizer step
        self.root_depth = 0               # root forwards running (re-entrant calls)
        self.entering = False             # in the root's forward pre-hook
        self.engine_on = False
        self.scope_on = False
        self.inner_handle = None
        self._ours: dict = {}   # id(optimizer) -> (weakref, follows the model?) without optimizer=
        self.followed: tuple = (optimizer,) if optimizer is not None else ()
        self.hyper_memo: dict = {}
        self.ddp = ddp_of(model)          # a DistributedDataParallel model (see .ddp)
        # which parameters hold a gradient (p.grad is None, per parameter) as read when the step
        # opened, while nothing can have changed that: no backward and no setter seen since (the
        # code between runs traced or is a trusted forward); None once it may have changed
        self.grads: tuple | None = None

    # -- the one decision: follow the cache or count -----------------------------------------
    def event(self, step: Step, key) -> None:
        node = step.node
        if not step.counting:
            if not step.full:
                child = node.children.get(key)
                if child is not None and child.volatile is None:
                    step.node = child
                    step.reused += 1
                    return
            self._leave_cache(step, node, key)
        child = step.node = self.segment = self.cache.new_child(node, key)
        step.counted += 1
        self.engine.counts, self.engine.unsupported = child.counts, child.unsupported
        if self.cache.enabled:
            child.claims, child.marks = [], []
            self.scope.recording = child
            self.scope.mark()

    def _leave_cache(self, step: Step, node: Node, key) -> None:
        """Counting starts at event ``key`` after ``node``."""
        step.reason = self.cache.why_not(node, key, step.full)
        self._start_counting()
        step.counting = True
        self.scope.seq0 = step.seq0
        if step.reused:  # the step left the cache part-way: take over from the cached path
            self.scope.resume(node, step.seq0, self._running())

    def _running(self) -> tuple:
        """The model's modules running now, as :meth:`CounterScope.resume` takes them: ``()``,
        ``("",)`` for the root alone, else a stack it cannot take over."""
        n = running_modules(self.model) - self.entering
        if n == 1 and self.root_depth:
            return ("",)
        return ("?",) * n

    def trace(self, on: bool) -> None:
        """Push (``on``) or pop the tracer. With ``cache=False`` nothing is verified: no tracer."""
        if on:
            if not self.tracing and self.cache.enabled:
                push_torch_function_mode(self.tracer)
                self.tracing = True
        elif self.tracing and torch_function_mode_at_top() is self.tracer:
            pop_torch_function_mode()
            self.tracing = False
        # else a mode the loop pushed is above ours: keep tracing (exact, only slower)

    def _start_counting(self) -> None:
        if not self.scope_on:
            self.scope.attach(root_pre_hook=False)  # the root's pre-hook is ours (see on_root_pre)
            self.scope_on = True
        if not self.engine_on:
            self.engine.__enter__()
            self.engine_on = True

    def stop_counting(self, *exc) -> None:
        self.trace(False)
        if self.engine_on:
            self.engine_on = False
            self.engine.__exit__(*(exc or (None, None, None)))
        if self.scope_on:
            self.scope.detach()
            self.scope.forget_nodes()
            self.scope_on = False
        self.engine.in_optimizer = False
        self.segment = None

    # -- opening and closing -----------------------------------------------------------------
    def open(self, grad: bool, explicit: bool) -> Step:
        step = self.step = Step(grad, explicit, self.root)
        step.seq0 = next_sequence_nr()
        self.grads = None
        if grad:
            # what decides work later in the step and is known now: which parameters hold a
            # gradient (zero_grad() inside the step, accumulation into it) and how much state
            # the followed optimizers hold (their first step creates it). A step that starts
            # differently from every cached one is counted from its start, never part-way.
            grads = self.grads = without_grad(self.params)
            step.state = (grads, tuple([(len(o.state), sum(map(len, o.state.values())))
                                        for o in self.followed]))
        if self.full_next:
            # the last step could not take over the attribution of its cached part
            # (CounterScope.resume); counting this one in full makes the path exact
            step.full, self.full_next = True, False
        if self.meter is not None:
            self._meter_start(step)
        return step

    def open_replayed(self, node, state, grads, reused: int) -> Step:
        """The training step :meth:`open` would open with these ``state`` and ``grads``, at
        ``node`` after ``reused`` events (see :mod:`.replay`)."""
        step = self.step = _Replayed(node, next_sequence_nr(), state, reused)
        self.grads = grads
        if self.meter is not None:
            self._meter_start(step)
        return step

    def _meter_start(self, step: Step) -> None:
        ctx = self.meter.measure()
        step.meter_m = ctx.__enter__()
        step.meter_ctx = ctx

    def close(self):
        """Close the open step; returns its record (None when nothing was recorded)."""
        watch = self.stretch
        if watch.expected is not None:  # a skipped stretch that never reached step()
            self._drop("the step closed before its optimizer.step()")
        step, self.step = self.step, None
        self.grads = watch.pending = None
        if step is None:
            return None
        if self.tracing:
            self.trace(False)
        self.trusted = self.engine.in_optimizer = False
        if step.counting or self.engine_on or self.scope_on:
            if self.scope.coarse and step.reused:
                self.full_next = True
            self.stop_counting()
        energy = self._meter_stop(step) if step.meter_ctx is not None else None
        node = step.node
        if node.parent is None:  # no event: nothing ran
            return None
        summary = node.summary
        if summary is not None:
            new = False
        else:
            summary, new = self.cache.summary(node, step.decoding)
        if step.counted:
            cache = "miss" if not step.reused else "partial"
        else:
            cache = "hit"
            if not step.replayed and self.stretch.enabled:
                self.replay.learn(step)
        return self.record(summary, cache, energy, new, step.reason)

    def discard(self, *exc) -> None:
        """Drop the open step (the loop raised inside it)."""
        step, self.step = self.step, None
        self.stretch.expected = self.stretch.pending = None
        self.stop_counting(*exc)
        self.trusted, self.root_depth = False, 0
        if step is not None and step.meter_ctx is not None:
            try:
                step.meter_ctx.__exit__(*exc)
            except Exception:  # the loop's own exception is the one to report
                pass

    def _drop(self, where: str) -> None:
        """The step skipped the tracer over code it then did not run as read: drop it."""
        self.stretch.broken(where)
        self.discard(None, None, None)

    def _meter_stop(self, step: Step):
        step.meter_ctx.__exit__(None, None, None)
        m = step.meter_m if step.meter_m is not None else step.meter_ctx
        joules, seconds = getattr(m, "joules", None), getattr(m, "seconds", None)
        return (float(joules) if joules is not None else None,
                float(seconds) if seconds is not None else None, getattr(m, "estimated", None),
                device_readings(m))

    # -- forwards --------------------------------------------------------------------------------
    def on_root_pre(self, module, args, kwargs):
        if self.step is None and self.replay.first is not None and self.replay.forward(args, kwargs):
            return None
        if self.stretch.expected is not None:
            self._drop("the model was called before optimizer.step()")
        outer = self.tracing
        if outer:
            self.trace(False)  # the counter's own code is not part of the step
        if self.root_depth:  # the root called re-entrantly from inside its own forward
            self.root_depth += 1
            if outer:
                self.trace(True)
        else:
            self.entering = True  # in the root's call, before its forward (see _running)
            try:
                region = self.forward(args, kwargs, False)
            finally:
                self.entering = False
            self.root_depth = 1
            if region == "trusted" or region == "inner":  # the forward runs untraced
                self.trusted = True
                if region == "trusted" and self.step.grad:
                    self.stretch.at_forward(self.step)
            elif region == "traced":
                self.trace(True)
        if self.scope_on:  # the scope's own root pre-hook is left out (see ModuleScope.attach)
            self.scope.enter_root(args, kwargs)
        return None

    def on_root_post(self, module, args, output):
        depth = self.root_depth
        if depth == 1:
            self.root_depth = 0
            if self.step is not None:  # back in the step's own code: traced, unless read
                self.trusted = False
                if self.stretch.expected is None:
                    self.trace(True)
        elif depth:
            self.root_depth = depth - 1
        return None

    def forward(self, args, kwargs, explicit: bool):
        """A forward event; returns how the forward runs: ``"trusted"`` (untraced),
        ``"traced"``, ``"inner"`` (a separate record) or None (part of an explicit step)."""
        step = self.step
        grad = _grad_enabled()
        if step is not None:
            if step.explicit and not explicit:
                return "traced"  # forwards inside an explicitly opened step belong to it
            if step.grad and not grad and not explicit:
                self._inner_eval(args, kwargs)
                return "inner"
            if not step.grad or not grad or not step.forwards:
                # an evaluation step ends at the next forward; a step opened by a bare optimizer
                # step (no forward) takes no forwards
                self.close()
                step = None
        key = (self.signature(args, kwargs),
               self.model_trusted and not explicit and not global_module_hooks_set())
        if self.ddp is not None:
            key += (forward_state(self.ddp),)
        if step is None:
            step = self.open(grad, explicit)
            self.event(step, (key, step.state))
        else:
            self.event(step, key)
        step.forwards += 1
        if not grad and has_kv_cache(args, kwargs):
            step.decoding = True
        return "trusted" if key[1] else "traced"

    def begin(self, args, kwargs) -> None:
        """An explicit ``begin_step(*args, **kwargs)``: everything in the step is traced."""
        self.trace(False)
        self.forward(args, kwargs, explicit=True)
        self.trusted = False
        self.trace(True)

    def _inner_eval(self, args, kwargs) -> None:
        inner_forward(self, args, kwargs)
