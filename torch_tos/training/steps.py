"""Step detection: when a step opens and closes, which events it consists of, and when ops are
intercepted.

A step opens at the first forward of the model (the root module's forward pre-hook) after the
previous step closed, or at an explicit ``begin_step()``, and closes after ``optimizer.step()``
(its post-hook), at an explicit ``step()``, or at the end of the ``with`` block. Several forwards
before one ``optimizer.step()`` (gradient accumulation, LBFGS closures) are one step. A forward
with gradients disabled is a step of its own (it closes at the next forward, optimizer step,
``step()`` or exit); a no-grad forward *inside* an open training step gets its own ``inference``
record covering that forward, and the training step goes on.

Every event (a forward, the start of an optimizer step) goes through :meth:`StepTracker.event`,
the one place that decides whether the step keeps following the cache (nothing intercepted) or
counts from here (the engine's dispatch mode and the per-module attribution hooks switched on); a
step closes in :meth:`StepTracker.close`, the one place that turns a path of the cache into a
record (``"miss"``: every event counted, ``"hit"``: every event from the cache, ``"partial"``).
"""

from __future__ import annotations

import weakref

import torch

from .cache import Node, StepCache
from .signature import ForwardSignature, has_kv_cache, optimizer_signature

__all__ = ["Step", "StepTracker"]


class Step:
    """The open step. Class attributes are the defaults; an instance sets only what differs."""

    counting = False   # the engine is counting this step's current segment
    reused = 0         # events taken from the cache
    counted = 0        # events counted
    forwards = 0
    decoding = False   # a forward was given a key/value cache
    meter_ctx = None
    meter_m = None

    def __init__(self, grad: bool, explicit: bool, root: Node):
        self.grad = grad
        self.explicit = explicit
        self.node = root


class StepTracker:
    """The step state machine of one :class:`~torch_tos.TOsCounter` (see the module doc).
    ``record(summary, cache, energy, new)`` is called for every closed step."""

    def __init__(self, model, optimizer, engine, scope, cache: StepCache, meter, record):
        self.model, self.optimizer = model, optimizer
        self.engine, self.scope, self.cache = engine, scope, cache
        self.meter = meter
        self.record = record
        self.signature = ForwardSignature(model)
        self.param_ids = {id(p) for p in self.signature.params}
        self.optimizer_types: set[str] = set()
        if optimizer is not None:
            self.optimizer_types.add(type(optimizer).__name__)
        self.step: Step | None = None
        self.active = False
        self.engine_on = False
        self.scope_on = False
        self.inner_handle = None
        self._ours: dict = {}   # id(optimizer) -> (weakref, follows the model?) without optimizer=
        self._hyper_memo: dict = {}

    # -- the one decision: follow the cache or count -----------------------------------------
    def event(self, step: Step, key) -> None:
        node = step.node
        if not step.counting:
            child = self.cache.child(node, key)
            if child is not None:
                step.node = child
                step.reused += 1
                return
            self._start_counting()
            step.counting = True
        child = step.node = self.cache.new_child(node, key)
        step.counted += 1
        self.engine.counts, self.engine.unsupported = child.counts, child.unsupported

    def _start_counting(self) -> None:
        if not self.scope_on:
            self.scope.attach(root_pre_hook=False)  # the root's pre-hook is ours (see on_root_pre)
            self.scope_on = True
        if not self.engine_on:
            self.engine.__enter__()
            self.engine_on = True

    def stop_counting(self, *exc) -> None:
        if self.engine_on:
            self.engine_on = False
            self.engine.__exit__(*(exc or (None, None, None)))
        if self.scope_on:
            self.scope.detach()
            self.scope.forget_nodes()
            self.scope_on = False
        self.engine.in_optimizer = False

    # -- opening and closing -----------------------------------------------------------------
    def open(self, grad: bool, explicit: bool) -> Step:
        step = self.step = Step(grad, explicit, self.cache.roots["step"])
        if self.meter is not None:
            ctx = self.meter.measure()
            step.meter_m = ctx.__enter__()
            step.meter_ctx = ctx
        return step

    def close(self):
        """Close the open step; returns its record (None when nothing was recorded)."""
        step, self.step = self.step, None
        if step is None:
            return None
        if self.engine_on or self.scope_on:
            self.stop_counting()
        self.engine.in_optimizer = False
        energy = self._meter_stop(step) if step.meter_ctx is not None else None
        if step.node.parent is None:  # no event: nothing ran
            return None
        summary, new = self.cache.summary(step.node, step.decoding)
        cache = "hit" if not step.counted else ("miss" if not step.reused else "partial")
        return self.record(summary, cache, energy, new)

    def discard(self, *exc) -> None:
        """Drop the open step (the loop raised inside it)."""
        step, self.step = self.step, None
        self.stop_counting(*exc)
        if step is not None and step.meter_ctx is not None:
            try:
                step.meter_ctx.__exit__(*exc)
            except Exception:  # the loop's own exception is the one to report
                pass

    def _meter_stop(self, step: Step):
        step.meter_ctx.__exit__(None, None, None)
        m = step.meter_m if step.meter_m is not None else step.meter_ctx
        joules, seconds = getattr(m, "joules", None), getattr(m, "seconds", None)
        return (float(joules) if joules is not None else None,
                float(seconds) if seconds is not None else None, getattr(m, "estimated", None))

    # -- forwards --------------------------------------------------------------------------------
    def on_root_pre(self, module, args, kwargs):
        if not self.scope.stack:  # not the root called re-entrantly from inside its own forward
            self.forward(args, kwargs, explicit=False)
        if self.scope_on:  # the scope's own root pre-hook is left out (see ModuleScope.attach)
            self.scope.enter_root(args, kwargs)
        return None

    def forward(self, args, kwargs, explicit: bool) -> None:
        step = self.step
        grad = torch.is_grad_enabled()
        if step is not None:
            if step.explicit and not explicit:
                return  # forwards inside an explicitly opened step belong to it
            if step.grad and not grad and not explicit:
                self._inner_eval(args, kwargs)
                return
            if not step.grad or not grad or not step.forwards:
                # an evaluation step ends at the next forward; a step opened by a bare optimizer
                # step (no forward) takes no forwards
                self.close()
                step = None
        sig = self.signature(args, kwargs)
        if step is None:
            step = self.open(grad, explicit)
        step.forwards += 1
        if not grad and has_kv_cache(args, kwargs):
            step.decoding = True
        self.event(step, sig)

    def _inner_eval(self, args, kwargs) -> None:
        """A no-grad forward inside an open training step: its own ``inference`` record."""
        root = self.cache.roots["inner"]
        sig = self.signature(args, kwargs)
        node = self.cache.child(root, sig)
        if node is not None:
            summary, _ = self.cache.summary(node)
            self.record(summary, "hit", None, False)
            return
        node = self.cache.new_child(root, sig)
        engine = self.engine
        saved = (engine.counts, engine.unsupported)
        engine.counts, engine.unsupported = node.counts, node.unsupported
        started_scope, started_engine = not self.scope_on, not self.engine_on
        self._start_counting()
        tracker = self

        def done(module, a, k, out):
            tracker.inner_handle.remove()
            tracker.inner_handle = None
            if started_engine and tracker.engine_on:
                tracker.engine_on = False
                engine.__exit__(None, None, None)
            if started_scope and tracker.scope_on:  # the scope's post-hook ran before this one
                tracker.scope.detach()
                tracker.scope.forget_nodes()
                tracker.scope_on = False
            engine.counts, engine.unsupported = saved
            summary, new = tracker.cache.summary(node)
            tracker.record(summary, "miss", None, new)
            return None

        from .hooks import Hook

        self.inner_handle = self.model.register_forward_hook(Hook(done, self.scope.thread),
                                                             with_kwargs=True, always_call=True)

    # -- optimizer -----------------------------------------------------------------------------
    def is_ours(self, opt) -> bool:
        if opt is self.optimizer:
            return True
        if self.optimizer is not None:
            return False
        hit = self._ours.get(id(opt))
        if hit is None or hit[0]() is not opt:
            mine = any(id(p) in self.param_ids for g in opt.param_groups for p in g["params"])
            hit = self._ours[id(opt)] = (weakref.ref(opt), mine)
            if mine:
                self.optimizer_types.add(type(opt).__name__)
        return hit[1]

    def on_opt_pre(self, opt, args, kwargs):
        if not self.is_ours(opt):
            return None
        closure = kwargs.get("closure") if "closure" in kwargs else (args[1] if len(args) > 1 else None)
        if closure is None:
            self.optimizer_event(opt)
            return None
        tracker = self

        def counted_closure(*a, **k):  # forward/loss/backward inside the closure are not "optimizer"
            tracker.engine.in_optimizer = False
            try:
                return closure(*a, **k)
            finally:
                if tracker.active:
                    tracker.optimizer_event(opt)

        if "closure" in kwargs:
            kwargs = dict(kwargs, closure=counted_closure)
        else:
            args = (args[0], counted_closure, *args[2:])
        return args, kwargs

    def optimizer_event(self, opt) -> None:
        step = self.step
        if step is not None and not step.grad:
            self.close()
            step = None
        if step is None:
            step = self.open(True, False)
        self.engine.in_optimizer = True
        key = ("optimizer", optimizer_signature(opt, self._hyper_memo), self.signature.param_id)
        self.event(step, key)

    def on_opt_post(self, opt, args, kwargs):
        if self.step is not None and self.is_ours(opt):
            self.close()
        return None
