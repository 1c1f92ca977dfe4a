"""The optimizer's events of a step: which optimizers close this counter's steps, and what their
``step()`` is as an event (:class:`OptimizerEvents`, the optimizer half of
:class:`~.steps.StepTracker`).

``optimizer.step()`` of a followed optimizer is an event keyed by the optimizer signature
(:func:`~.signature.optimizer_signature`), the parameters' dtypes (the forward signature's
``param_id``) and whether the optimizer is trusted (:data:`~.verify.TRUSTED_OPTIMIZERS`: its step
runs untraced); it opens a training step when none is open and closes the step after it returns
(its post-hook). A closure passed to ``step()`` runs inside a wrapper that books its forward, loss
and backward outside the ``optimizer`` phase and makes the optimizer event when it returns.
"""

from __future__ import annotations

import weakref

from .signature import optimizer_signature
from .verify import TRUSTED_OPTIMIZERS

__all__ = ["OptimizerEvents"]


class OptimizerEvents:
    """The optimizer hooks and events of :class:`~.steps.StepTracker` (see the module doc)."""

    def is_ours(self, opt) -> bool:
        """Whether ``opt``'s steps close this counter's steps (the optimizer given, else any
        optimizer of the model's parameters; those found are followed from then on)."""
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
            self.followed = tuple(o for o in (r() for r, m in self._ours.values() if m) if o is not None)
        return hit[1]

    def on_opt_pre(self, opt, args, kwargs):
        if opt is not self.optimizer and not self.is_ours(opt):
            return None
        step = self.step
        if step is not None and step.replayed and len(args) == 1 and not kwargs and \
                self.replay.optimizer(step, opt):
            return None
        if self.tracing:
            self.trace(False)
        watch = self.stretch
        if (watch.expected is not None or watch.pending is not None) and not watch.arrived(self.step):
            self._drop("optimizer.step() was called from elsewhere")
        closure = kwargs["closure"] if "closure" in kwargs else (args[1] if len(args) > 1 else None)
        if closure is None:
            self.optimizer_event(opt)
            return None
        tracker = self

        def counted_closure(*a, **k):  # forward/loss/backward inside the closure are not "optimizer"
            tracker.engine.in_optimizer = False
            tracker.trusted = False
            if tracker.step is not None:
                tracker.trace(True)
            try:
                return closure(*a, **k)
            finally:
                if tracker.active:
                    tracker.trace(False)
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
        self.engine.in_optimizer = True
        if self.stretch.enabled:  # for .replay (an engine's step, with no weak references, is not)
            try:
                self.opt = weakref.ref(opt)
            except TypeError:
                self.opt = None
        trusted = type(opt) in TRUSTED_OPTIMIZERS
        key = ("optimizer", optimizer_signature(opt, self.hyper_memo), self.signature.param_id, trusted)
        if step is None:
            step = self.open(True, False)
            self.event(step, (key, step.state))
        else:
            self.event(step, key)
        self.trusted = trusted
        if not trusted:
            self.trace(True)

    def on_opt_post(self, opt, args, kwargs):
        step = self.step
        if step is not None and (opt is self.optimizer or self.is_ours(opt)):
            if step.replayed and step.node is self.replay.last and not step.counted and \
                    step.meter_ctx is None and step.node.summary is not None and not self.sinks and \
                    not (self.tracing or self.engine_on or self.scope_on) and \
                    self.stretch.expected is None and self.stretch.pending is None:
                # what close() does for this step: a hit, recorded without energy or sinks
                self.step = self.grads = None
                self.trusted = self.engine.in_optimizer = False
                self.history.repeat(step.node.summary)
            else:
                self.close()
        return None
