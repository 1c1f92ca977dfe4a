"""Skipping the tracer over the loop's own code when the code itself shows the step's calls.

In a cached step the tracer (:class:`~.verify.Tracer`, a ``TorchFunctionMode``) watches the stretch
from the model's return to ``optimizer.step()``: on a small model that alone costs more than the
counter's whole budget. Where that stretch is straight code whose only calls are to library code
of known behaviour (:mod:`.bytecode`), :class:`StretchWatch` reads, when the model returns, what
the calls will be made with — from the frame, without running any of the loop's code — and the
step skips the tracer when a counted step made the same calls with the same values.

**Which calls** are read (:mod:`.stretchkey`): ``torch.nn`` loss modules and functional losses of
known types, ``Tensor.backward`` of a loss the stretch computed, ``zero_grad()`` of the model or an
optimizer, ``clip_grad_norm_(model.parameters(), …)``, then ``step()`` of an optimizer the counter
follows (its ``step`` the library's, or an LR scheduler's wrapper of it); the key holds each callee
and the signature of each argument — what the tracer's events would hold.

**Preconditions**, checked on each step: a trusted model (its forward runs no user code) with no
forward pre-hook or forward hook but the counter's (one of the loop's would run after the values
are read: it could change them), no DDP,
no trace or profile function (debuggers, coverage), no torch-function mode of the loop's, no
exception being handled, and every variable the stretch reads has a value (attributes only where
reading them runs no code: a module's, a plain object's instance attribute, an ``nn.Module``'s
submodule, buffer or parameter). The frame's variables are read with ``frame.f_locals``, whose
snapshot of a function's locals is emptied again so that it keeps no value alive.

**Exceptions.** An exception raised inside the stretch (an out-of-range class index, out of
memory, Ctrl-C) would leave it before ``step()`` with the tracer off. The stretch is skipped only
when no handler can catch such an exception before the counter sees it
(:func:`~.bytecode.exception_outcomes` over the frame and every caller above it): it reaches the
counter's own ``with`` block (the unfinished step is dropped, as for any exception leaving the
loop) or leaves the thread. C functions between frames are assumed to let it through. Should the
next event still not be that ``step()`` call (e.g. a ``finally`` block on the way up calls the
model), the step is dropped with a warning.

What stays unseen is what the tracer does not see either: Python code inside the library calls
(tensor hooks and post-accumulate-grad hooks in ``backward``, saved-tensor hooks,
``warnings.showwarning``), and code run asynchronously (signal handlers, finalizers, another thread
writing a value the stretch reads: the tracer sees their calls only when they happen to fall inside
the stretch).
"""

from __future__ import annotations

import inspect
import sys
import warnings

import torch

from .._compat import (LR_SCHEDULER_STEP_CODE, OPTIMIZER_GLOBAL_PRE_HOOKS, OPTIMIZER_STEP_CODE,
                       WRAPPED_CALL_CODE, forward_hook_dicts, library_step, optimizer_step_pre_hooks,
                       torch_function_stack_len)
from .bytecode import SUPPORTED, exception_outcomes, instruction_offset, read_stretch, with_handler
from .hooks import Hook
from .stretchkey import LOSS_FUNCTIONS, LOSS_MODULES, _reader, _Unresolved  # noqa: F401

__all__ = ["LOSS_MODULES", "LOSS_FUNCTIONS", "StretchWatch", "called_from", "preconditions"]

_ENABLED = SUPPORTED and None not in (OPTIMIZER_STEP_CODE, WRAPPED_CALL_CODE)
_gettrace, _getprofile, _exc_info, _getframe = sys.gettrace, sys.getprofile, sys.exc_info, sys._getframe


class StretchWatch:
    """What one tracker knows to skip its tracer over the loop's code (see the module doc): the
    frame and handler of the counter's ``with`` block, the call site last read (``site``: its
    code, offset, caller and the caller's offset, with the stretch and whether exceptions in it
    reach the counter), the stretch being skipped (``frame``/``expected``, until ``step()``
    arrives) or learned (``pending``: ``(node, key)``)."""

    def __init__(self, tracker):
        self.tracker = tracker
        self.enabled = False
        self.with_frame = self.with_target = None
        self.site = (None, -1, None, -1, None)
        self.frame = self.expected = self.pending = None
        self.hook_ids: tuple = ()  # the counter's optimizer pre-hook ids (global, per optimizer)
        self.skipped = 0           # stretches skipped (for tests and benchmarks)
        self._depth = 4            # frames from at_forward() up to the model's _wrapped_call_impl

    def enter(self, frame, trusted: bool, ddp) -> None:
        """On entering the counter: ``frame`` is the caller of ``__enter__``."""
        self.enabled = _ENABLED and trusted and ddp is None and self.tracker.cache.enabled
        target = with_handler(frame.f_code, frame.f_lasti) if self.enabled else None
        self.with_frame, self.with_target = (frame, target) if target is not None else (None, None)

    def reset(self) -> None:
        self.with_frame = self.with_target = self.frame = self.expected = self.pending = None
        self.site = (None, -1, None, -1, None)

    # -- at the model's call ------------------------------------------------------------------
    def at_forward(self, step) -> None:
        """The model's trusted forward is about to run as an event of the open training step
        ``step`` (from its root pre-hook). Reads the stretch the forward returns into: skipped
        when a counted step made the same calls with the same values (``expected`` set: no
        tracer after the forward), else learned when ``step()`` arrives where the code says."""
        if not self.enabled or not preconditions(self):
            return
        try:
            frame = _getframe(self._depth)
        except ValueError:
            frame = None
        if frame is None or frame.f_code is not WRAPPED_CALL_CODE:
            frame, self._depth = _getframe(1), 1
            while frame is not None and frame.f_code is not WRAPPED_CALL_CODE:
                frame, self._depth = frame.f_back, self._depth + 1
            if frame is None:
                return
        frame = frame.f_back
        if frame is None:
            return
        code, lasti, caller = frame.f_code, frame.f_lasti, frame.f_back
        site = self.site
        if site[0] is code and site[1] == lasti and site[2] is caller and \
                (caller is None or site[3] == caller.f_lasti):
            reader = site[4]
        else:
            reader, same_callers = self._read(frame)
            # a frame suspended at the same instruction has the same callers, at the same
            # instructions, unless a generator (resumed from anywhere) is among them
            self.site = (code, lasti, caller, caller.f_lasti if caller is not None else -1, reader) \
                if same_callers else (None, -1, None, -1, None)
        if reader is None:
            return
        key = self.key(reader, frame)
        if key is None:
            return
        node = step.node
        shortcuts = node.shortcuts
        hit = shortcuts.get(key) if shortcuts is not None and not step.counting and not step.full else None
        if hit is not None:
            target, n, generation = hit
            cache = self.tracker.cache
            if generation != cache.generation:  # a node was replaced since: check the path
                n = _path_length(node, target)
                if n is None:
                    del shortcuts[key]
                else:
                    shortcuts[key] = (target, n, cache.generation)
            if n is not None:
                step.node = target
                step.reused += n
                step.skipped = (node, self.site, key, target, step.reused)  # see .replay
                self.frame, self.expected = frame, reader.stretch
                self.skipped += 1
                return
        self.frame, self.pending = frame, (node, key)

    def _read(self, frame) -> tuple:
        """The reader of the stretch at ``frame``'s call site (None when there is none or an
        exception raised in it could be caught before the counter sees it), and whether the
        answer holds for later steps from the same site (no generator among the callers)."""
        try:
            stretch = read_stretch(frame.f_code, frame.f_lasti)
            if stretch is None:
                return None, True
            stop = self.with_target if frame is self.with_frame else None
            out = frozenset().union(*[exception_outcomes(stretch.code, o, stop) for o in stretch.offsets])
            caller, same = frame.f_back, True
            while "caught" not in out and "out" in out and caller is not None:
                code = caller.f_code
                same = same and not code.co_flags & _RESUMABLE
                out = exception_outcomes(code, instruction_offset(code, caller.f_lasti),
                                         self.with_target if caller is self.with_frame else None)
                caller = caller.f_back
            return (None if "caught" in out else _reader(stretch)), same
        except Exception:  # noqa: BLE001 - code this reader does not know: the tracer watches it
            return None, True

    def key(self, reader, frame):
        """The key of the stretch run from ``frame`` now (see the module doc); None when a value
        is not allowed or cannot be read without running code."""
        loc = frame.f_locals
        try:
            env = loc if reader.local else (loc, frame.f_globals, frame.f_builtins)
            if reader.model(env) is not self.tracker.model or not self._first_pre_hook(reader.optimizer(env)):
                return None
            return reader, reader.parts(env, self.tracker.model, self.tracker.params)
        except (_Unresolved, KeyError):
            return None
        finally:
            if reader.stretch.optimized:  # a function's locals snapshot: keep none of its values alive
                loc.clear()

    def _first_pre_hook(self, opt) -> bool:
        """``opt`` is followed, its ``step`` is the library's hooked one (or an LR scheduler's
        wrapper of it, which runs no op), and the counter's step pre-hook runs before any other
        (nothing of the loop's runs before the counter sees it)."""
        if opt is not self.tracker.optimizer and (
                not isinstance(opt, torch.optim.Optimizer) or not self.tracker.is_ours(opt)):
            return False
        if not library_step(opt):
            return False
        for first in (OPTIMIZER_GLOBAL_PRE_HOOKS or optimizer_step_pre_hooks(opt) or ()):
            return first in self.hook_ids
        return False

    # -- at the optimizer's step pre-hook --------------------------------------------------------
    def arrived(self, step) -> bool:
        """The followed optimizer's ``step()`` started. Learns the pending stretch; for a skipped
        one, True when it was called where the code said (else the step cannot be known)."""
        frame, expected, pending = self.frame, self.expected, self.pending
        self.frame = self.expected = self.pending = None
        if expected is not None:
            return called_from(frame, expected)
        if pending is not None and step is not None:
            node, key = pending
            n = _path_length(node, step.node) if called_from(frame, key[0].stretch) else None
            if n is not None:
                if node.shortcuts is None:
                    node.shortcuts = {}
                node.shortcuts[key] = (step.node, n, self.tracker.cache.generation)
        return True

    def broken(self, where: str) -> None:
        """The skipped stretch did not arrive at ``step()``: the step cannot be known."""
        self.frame = self.expected = self.pending = None
        warnings.warn(f"TOsCounter: a step left the loop's code it was verified by ({where}) — an "
                      "exception raised inside it was handled on its way up; the step is dropped",
                      RuntimeWarning, stacklevel=4)


_RESUMABLE = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR


def preconditions(watch) -> bool:
    """What a stretch needs at the model's pre-hook besides its code (see the module doc): no
    trace or profile function, no exception being handled, no torch-function mode, and no forward
    pre-hook or forward hook of the loop's on the model."""
    if _gettrace() or _getprofile() or _exc_info()[0] or torch_function_stack_len():
        return False
    hooks = forward_hook_dicts(watch.tracker.model)
    if hooks is None or len(hooks[0]) != 1:  # a pre-hook of the loop's runs after the counter's
        return False  # (prepended) one, which reads the values: it could change them
    for h in hooks[1].values():  # so does a forward hook of the loop's
        if not isinstance(h, Hook) and getattr(h, "__self__", None) is not watch.tracker.scope:
            return False
    return True


def called_from(frame, stretch) -> bool:
    """``optimizer.step()`` (whose pre-hook runs now) was called from ``frame`` at the end of
    ``stretch``."""
    f = _getframe(4)  # called_from, its caller, on_opt_pre, Hook.__call__, the step's wrapper
    if f.f_code is not OPTIMIZER_STEP_CODE:
        f = _getframe(1)
        while f is not None and f.f_code is not OPTIMIZER_STEP_CODE:
            f = f.f_back
        if f is None:
            return False
    back = f.f_back
    if back is not frame and back is not None and back.f_code is LR_SCHEDULER_STEP_CODE:
        back = back.f_back  # an LR scheduler's wrapper of the step (see library_step)
    return back is frame and stretch.end <= frame.f_lasti <= stretch.end_last


def _path_length(node, target) -> int | None:
    """How many events lead from ``node`` down to ``target`` when each is a traced call still in
    the cache and not volatile; None otherwise."""
    n = 0
    while target is not node:
        parent = target.parent
        if parent is None or parent.children.get(target.key) is not target or \
                target.volatile is not None or not callable(target.key[0]):
            return None
        target = parent
        n += 1
    return n
