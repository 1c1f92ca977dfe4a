"""The steady state of a cached loop: a step that repeats the last one, seen in a few comparisons.

Most steps of a training loop repeat the previous one: same batch shapes, same loss, same
optimizer. :class:`Replay` remembers the path such a step took through the cache and, on the next
step, computes the values the step tracker decides on and compares them with that path's keys,
instead of walking the cache event by event and building a record per step:

* at the model's forward (its root pre-hook, no step open), for one plain tensor argument that
  does not require grad, without autocast: what :class:`~.signature.ForwardSignature` reads
  (grad and inference mode, the input's :func:`~.signature.tensor_sig`, each parameter's dtype
  and ``requires_grad``, the train/eval flags it keys, the global module hooks), the step's
  starting state :meth:`~.steps.StepTracker.open` reads (which parameters hold a gradient, how
  much state the followed optimizers hold) and the stretch of the loop's code the forward returns
  into, as :meth:`~.stretch.StretchWatch.at_forward` reads it (its preconditions, its call site
  with the caller's, the key read from the frame — or, when the key's objects are the very ones
  its last full reading had, :class:`~.replaykey.SameKey`'s comparisons, which tell that the full
  key would be equal again; the model's hooks as :func:`~.stretch.preconditions` allows them, or
  the counter's two alone in the very hook dicts of last time). When all equal the remembered
  path's, the step
  opens where that path's skipped stretch led, as the tracker's forward event and ``at_forward``
  would open it. Without a remembered gradient the dtypes, ``requires_grad`` and gradients are read
  in one pass (any gradient present then differs);
* at ``optimizer.step()`` of such a step (no closure): the arrival where the code said
  (:func:`~.stretch.called_from`) and each part of the optimizer event's key (the optimizer, its
  type's trust, the number of states and state values, each group's hyperparameter class —
  through :func:`~.signature._group_hyper`'s own memo — and which of its parameters hold a
  gradient; the parameters' ``param_id`` is the forward's, which a path is remembered only with,
  and nothing between the forward and the step can change it: the stretch calls no model). When
  equal, the step moves to the remembered optimizer event, as
  :meth:`~.optevents.OptimizerEvents.optimizer_event` would;
* at its step post-hook, a replayed step that is still on the remembered path, without a meter
  or a log sink, is recorded as what :meth:`~.steps.StepTracker.close` would record — a cache hit
  of the path's summary — in a run of such records that is built, and counted in the step
  count, the records per summary and the running TOs, when read (:meth:`~.records.History.repeat`).

The values compared are those the tracker's own keys are made of, read by the same functions, so
a replayed step reaches the node the tracker would reach and is recorded as it would be; the path
is followed only while no node of the cache was replaced since it was remembered
(:attr:`~.cache.StepCache.generation`: nodes are never removed, and only new ones are marked
volatile). At the first value that differs nothing has been changed yet and the tracker's own path
runs, from the start of the hook. A path is remembered after two consecutive steps took it through
the tracker's path (each a cache hit whose stretch was skipped, one trusted forward, then a trusted
optimizer's step), so a loop whose steps alternate between kinds compares nothing in vain.
"""

from __future__ import annotations

import itertools
import operator
import sys

import torch

from .._compat import (OPTIMIZER_STEP_CODE, WRAPPED_CALL_CODE, forward_hook_dicts, is_any_autocast_enabled,
                       torch_function_stack_len)
from .._compat_nn import _GLOBAL_HOOKS
from .hooks import Hook
from .replaykey import SameKey
from .signature import _DTYPE_RG, _TRAINING, _group_hyper, sig_reader, without_grad
from .stretch import called_from, preconditions
from .verify import TRUSTED_OPTIMIZERS

__all__ = ["Replay"]

_getframe, _gettrace, _getprofile, _exc_info = sys._getframe, sys.gettrace, sys.getprofile, sys.exc_info
_Tensor = torch.Tensor
_grad_enabled, _inference_mode = torch.is_grad_enabled, torch.is_inference_mode_enabled
_DTYPE_RG_GRAD = operator.attrgetter("dtype", "requires_grad", "grad")
_GRAD, _is, _NONE = operator.attrgetter("grad"), operator.is_, itertools.repeat(None)
# the global module hook dicts (global_module_hooks_set(): where they cannot be read, assume set)
_GLOBAL_HOOKS = _GLOBAL_HOOKS or ({None: None},)


class Replay:
    """The remembered path of one :class:`~.steps.StepTracker` (see the module doc): ``first`` (the
    forward event's node, whose key is ``(forward key, starting state)``), decomposed into what a
    step compares (``xsig``, ``training``, ``params``/``param_id``, ``grads``, ``ostate``;
    ``fused``: dtype, ``requires_grad`` and ``None`` per parameter when no gradient is remembered),
    ``site`` and ``key`` (the stretch's call site and key), ``middle`` (the node the skipped
    stretch led to, ``reused`` events after the step's start), ``last`` (the optimizer event's
    node) and ``opt`` (a weak reference to its optimizer)."""

    __slots__ = ("tracker", "first", "xsig", "training", "params", "param_id", "grads", "ostate",
                 "state", "fused", "site", "key", "middle", "reused", "last", "opt", "generation",
                 "candidate", "depth", "replayed", "identical", "same", "misses", "hook_dicts")

    def __init__(self, tracker):
        self.tracker = tracker
        self.first = None       # None: nothing remembered
        self.candidate = None   # the last step that could be remembered, until the next one
        self.depth = 5          # frames from forward() up to the model's _wrapped_call_impl
        self.replayed = 0       # steps opened here (for tests and benchmarks)
        self.identical = 0      # of them, steps whose stretch key was seen by identity (SameKey)
        self.hook_dicts = (None, None, None, None)  # the model's hook dicts, the counter's hook

    def forget(self) -> None:
        self.first = self.candidate = self.same = None

    # -- remembering -------------------------------------------------------------------------
    def learn(self, step) -> None:
        """``step`` closed as a cache hit through the tracker's path: remember it when the step
        before took the same path (see the module doc)."""
        skipped, last, opt = step.skipped, step.node, self.tracker.opt
        if skipped is None or step.forwards != 1 or not step.grad or step.explicit or \
                skipped[1][0] is None or last.parent is not skipped[3] or type(last.key) is not tuple \
                or last.key[0] != "optimizer" or last.key[3] is not True or opt is None:
            self.forget()
            return
        seen = (skipped, last, opt)
        candidate, self.candidate = self.candidate, seen
        if candidate is None or candidate[1] is not last or candidate[2] is not opt or \
                candidate[0][0] is not skipped[0] or candidate[0][1] != skipped[1] or \
                candidate[0][2] != skipped[2]:
            self.first = None
            return
        first, site, key, middle, reused = skipped
        (sig, trusted), (grads, ostate) = first.key
        inputs = sig[-1]
        # only the form ForwardSignature gives one plain tensor argument that does not require
        # grad (then tensor_sig alone), without autocast
        if trusted is not True or sig[0] != (True, False) or len(inputs) != 1 or last.key[2] != sig[-2] or \
                type(inputs[0]) is not tuple or len(inputs[0]) != 5 or inputs[0][2] is not False:
            self.forget()
            return
        ids = self.tracker.signature.param_ids
        self.params = next((k for k, v in ids.items() if v == sig[-2]), None)
        if self.params is None:
            self.forget()
            return
        self.xsig, self.training, self.param_id = sig_reader(inputs[0]), sig[1] if len(sig) == 4 else None, sig[-2]
        self.grads, self.ostate, self.state = grads, ostate, first.key[1]
        self.fused = tuple([(*p, None) for p in self.params]) if all(grads) else None
        self.site, self.key, self.middle, self.reused = site, key, middle, reused
        self.last, self.opt, self.first = last, opt, first
        self.generation = self.tracker.cache.generation
        self.same, self.misses = None, 0

    # -- at the model's forward --------------------------------------------------------------
    def forward(self, args, kwargs) -> bool:
        """No step is open and the model's forward starts: open the step at the remembered
        ``middle`` when every value equals the remembered path's (True), else change nothing.
        The values are those :meth:`~.steps.StepTracker.forward`, ``open`` and
        :meth:`~.stretch.StretchWatch.at_forward` compute, for one plain tensor argument."""
        if kwargs or len(args) != 1:
            return False
        x = args[0]
        xsig = self.xsig
        if type(x) is not _Tensor or xsig[0](x) != xsig[1] or not _grad_enabled() or \
                _inference_mode() or is_any_autocast_enabled() or _gettrace() or _getprofile() or \
                _exc_info()[0] or torch_function_stack_len() or any(_GLOBAL_HOOKS):
            return False
        t = self.tracker
        watch = t.stretch
        if t.cache.generation != self.generation or t.full_next or t.scope_on or t.root_depth or \
                watch.expected is not None:
            return False
        sg = t.signature
        if self.fused is not None:  # no gradient remembered: dtypes, requires_grad, grads in one read
            if tuple(map(_DTYPE_RG_GRAD, sg.params)) != self.fused:
                return False
            params, grads = self.params, self.grads
        else:
            params = tuple(map(_DTYPE_RG, sg.params))
            grads = without_grad(sg.params)
        if params != self.params or (sg.modules and tuple(map(_TRAINING, sg.modules)) != self.training):
            return False
        followed = t.followed
        if len(followed) == 1:
            state = followed[0].state
            ostate = ((len(state), sum(map(len, state.values()))),)
        else:
            ostate = tuple([(len(o.state), sum(map(len, o.state.values()))) for o in followed])
        if grads != self.grads or ostate != self.ostate:
            return False
        # the model's hooks: the counter's pre-hook and forward hook alone, as last time, or as
        # preconditions() reads them
        md = t.model.__dict__
        pre, post = md.get("_forward_pre_hooks"), md.get("_forward_hooks")
        if pre is not self.hook_dicts[0] or post is not self.hook_dicts[1] or len(pre) != 1 or \
                len(post) != 1 or post.get(self.hook_dicts[2]) is not self.hook_dicts[3]:
            if not self._hooks_allowed(t, watch):
                return False
        f = _getframe(self.depth)
        if f.f_code is not WRAPPED_CALL_CODE:
            f, self.depth = _getframe(1), 1
            while f is not None and f.f_code is not WRAPPED_CALL_CODE:
                f, self.depth = f.f_back, self.depth + 1
            if f is None:
                return False
        frame = f.f_back
        code, lasti, caller, caller_lasti, reader = self.site
        if frame is None or frame.f_code is not code or frame.f_lasti != lasti or \
                frame.f_back is not caller or (caller is not None and caller.f_lasti != caller_lasti):
            return False
        same = self.same
        if same and same.same(frame):
            self.identical += 1
        else:  # the key's objects differ (or were never taken): read it in full
            key = watch.key(reader, frame)
            if key != self.key:
                return False
            if same is not False:  # (re)take the key's objects, unless they keep differing
                self.misses += same is not None
                same = SameKey.take(reader, frame, key, t) if self.misses < 8 else None
                self.same = same if same is not None else False
        if params is not sg.param_sig:  # as the signature would have noted them
            sg.param_sig, sg.param_id = params, self.param_id
        t.open_replayed(self.middle, self.state, grads, self.reused)
        t.root_depth = 1
        t.trusted = True
        watch.frame, watch.expected = frame, reader.stretch
        watch.skipped += 1
        self.replayed += 1
        return True

    def _hooks_allowed(self, t, watch) -> bool:
        """The model's forward hooks as :func:`~.stretch.preconditions` allows them; remembered
        when they are the counter's two alone."""
        hooks = forward_hook_dicts(t.model)
        if hooks is None or len(hooks[0]) != 1 or (len(hooks[1]) != 1 and not preconditions(watch)):
            return False
        if len(hooks[1]) == 1:
            for k, h in hooks[1].items():
                if not isinstance(h, Hook) and getattr(h, "__self__", None) is not t.scope:
                    return False
                if isinstance(h, Hook):
                    self.hook_dicts = (*hooks, k, h)
        return True

    # -- at optimizer.step() -----------------------------------------------------------------
    def optimizer(self, step, opt) -> bool:
        """``opt.step()`` (no closure) of a replayed step starts: move to the remembered optimizer
        event when the step arrived where the code said and the optimizer's key is the remembered
        one (:func:`~.signature.optimizer_signature`'s parts compared one by one)."""
        t = self.tracker
        watch = t.stretch
        expected = watch.expected
        if opt is not self.opt() or expected is None or type(opt) not in TRUSTED_OPTIMIZERS:
            return False
        f = _getframe(3)  # as called_from() reads it: this, on_opt_pre, the hook, the step's wrapper
        if f.f_code is not OPTIMIZER_STEP_CODE or f.f_back is not watch.frame or \
                not expected.end <= watch.frame.f_lasti <= expected.end_last:
            if not called_from(watch.frame, expected):
                return False
        last = self.last
        key = last.key[1]  # (id, states, state values, ((hyperparameters, grads) per group))
        state, groups = opt.state, opt.param_groups
        if len(state) != key[1] or sum(map(len, state.values())) != key[2] or len(groups) != len(key[3]):
            return False
        memo = t.hyper_memo
        for g, (hyper, grads) in zip(groups, key[3]):
            hit = memo.get(id(g))  # _group_hyper's own memo: the same values, the same class
            if (hit is None or hit[1] != hyper or hit[0] != tuple(g.values())) and \
                    _group_hyper(g, memo) != hyper:
                return False
            if True in grads:
                if tuple([p.grad is None for p in g["params"]]) != grads:
                    return False
            else:  # every parameter held a gradient (read in C: p.grad is None for none)
                params = g["params"]
                if len(params) != len(grads) or any(map(_is, map(_GRAD, params), _NONE)):
                    return False
        watch.frame = watch.expected = None
        step.node = last
        step.reused += 1
        t.engine.in_optimizer = True
        t.trusted = True
        return True
