"""Skipping the tracer over the loop's own code when the code itself shows the step's calls.

In a cached step the tracer (:class:`~.verify.Tracer`, a ``TorchFunctionMode``) watches the stretch
from the model's return to ``optimizer.step()``: on a small model that alone costs more than the
counter's whole budget. Where that stretch is straight code whose only calls are to library code
of known behaviour (:mod:`.bytecode`), :class:`StretchWatch` reads, when the model returns, what
the calls will be made with — from the frame, without running any of the loop's code — and the
step skips the tracer when a counted step made the same calls with the same values.

**Which calls** (:meth:`StretchWatch.key`): a ``torch.nn`` loss module of one of the
:data:`LOSS_MODULES` types (exactly; no hooks of its own, no global module hooks), a
``torch.nn.functional`` loss of :data:`LOSS_FUNCTIONS`, ``Tensor.backward`` of a tensor; then the
``step()`` of an optimizer the counter follows, whose step pre-hook of the counter's is the first to
run. Each argument is a tensor (``torch.Tensor`` or ``nn.Parameter``), a plain value (``None``,
``bool``, ``int``, ``float``, ``str``, ``dtype``, ``device``), the model's output or the result of an
earlier call of the stretch. The key is the stretch (its code and call site) with, for each call,
its callee (a loss module by type, its public attributes and buffers; a loss function by identity)
and the signature of each argument (:func:`~.signature.tensor_sig`; plain values by value) — what
the tracer's events would hold. Library code of these kinds makes the same events for the same key,
the same way a trusted forward does the same work for the same forward signature, so a key seen
with the cached path from the model's return to the optimizer (:attr:`~.cache.Node.shortcuts`,
learned while the tracer watched a step of that key and the step arrived at ``step()`` where the
code said) stands for those events. A stretch whose counted segments hold a data-dependent op is
never learned (it is counted every time, as with the tracer).

**Preconditions**, checked on each step: a trusted model (its forward runs no user code), no DDP,
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

What stays unseen is what the tracer does not see either: code run asynchronously (signal
handlers, finalizers), and Python code inside the library calls (``warnings.showwarning``,
tensor hooks in ``backward``).
"""

from __future__ import annotations

import builtins
import sys
import types
import warnings

import torch

from .._compat import (OPTIMIZER_GLOBAL_PRE_HOOKS, OPTIMIZER_STEP_CODE, WRAPPED_CALL_CODE,
                       torch_function_stack_len)
from .bytecode import SUPPORTED, exception_outcomes, instruction_offset, read_stretch, with_handler
from .signature import tensor_sig

__all__ = ["LOSS_MODULES", "LOSS_FUNCTIONS", "StretchWatch"]

_nn, _F = torch.nn, torch.nn.functional
#: Loss modules whose forward is one ``torch.nn.functional`` loss of its arguments and attributes.
LOSS_MODULES = frozenset(getattr(_nn, n) for n in (
    "MSELoss", "L1Loss", "CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss", "HuberLoss",
    "SmoothL1Loss", "KLDivLoss", "SoftMarginLoss", "MultiLabelSoftMarginLoss") if hasattr(_nn, n))
#: ``torch.nn.functional`` losses whose work is a function of their arguments' signatures.
LOSS_FUNCTIONS = frozenset(getattr(_F, n) for n in (
    "mse_loss", "l1_loss", "cross_entropy", "nll_loss", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "huber_loss", "smooth_l1_loss", "kl_div", "soft_margin_loss",
    "multilabel_soft_margin_loss") if hasattr(_F, n))

_Tensor, _Parameter, _Module = torch.Tensor, _nn.Parameter, _nn.Module
_TENSORS = (_Tensor, _Parameter)
_PLAIN = frozenset((type(None), bool, int, float, str, torch.dtype, torch.device))
_BACKWARD = torch.Tensor.backward
_MODULE_GETATTR = _Module.__getattr__
_OBJECT_GETATTRIBUTE = object.__getattribute__
_BUILTINS = builtins.__dict__
_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_ENABLED = SUPPORTED and None not in (OPTIMIZER_STEP_CODE, WRAPPED_CALL_CODE)
_gettrace, _getprofile, _exc_info, _getframe = sys.gettrace, sys.getprofile, sys.exc_info, sys._getframe


class _Unresolved(Exception):
    """A value of the stretch that cannot be read without running code, or is not allowed."""


def _attr(obj, name):
    """``obj.<name>`` where reading it runs no code of the loop's: a module's global, a plain
    instance attribute (no data descriptor such as a property on its type), an ``nn.Module``'s
    submodule, parameter or buffer."""
    t = type(obj)
    if t is types.ModuleType:
        d = obj.__dict__
        if name in d:
            return d[name]
        raise _Unresolved(name)
    if t.__getattribute__ is not _OBJECT_GETATTRIBUTE:
        raise _Unresolved(name)
    for klass in t.__mro__:
        if name in klass.__dict__:  # a class attribute: only where the instance's own one wins
            attr = klass.__dict__[name]
            if hasattr(type(attr), "__set__") or hasattr(type(attr), "__delete__"):
                raise _Unresolved(name)
            break
    d = getattr(obj, "__dict__", None)
    if d is not None and name in d:
        return d[name]
    if getattr(t, "__getattr__", None) is _MODULE_GETATTR:
        for store in ("_parameters", "_buffers", "_modules"):
            s = d.get(store) if d is not None else None
            if s is not None and name in s:
                return s[name]
    raise _Unresolved(name)


def _compile(expr):
    """A function ``env -> value`` reading symbolic value ``expr`` from ``env = (f_locals,
    f_globals, f_builtins, output)``; raises KeyError or :class:`_Unresolved` when it cannot."""
    kind = expr[0]
    if kind == "local":
        name = expr[1]
        return lambda env: env[0][name]
    if kind == "global":
        name = expr[1]
        return lambda env: env[1][name] if name in env[1] else env[2][name]
    if kind == "name":
        name = expr[1]
        return lambda env: env[0][name] if name in env[0] else (
            env[1][name] if name in env[1] else env[2][name])
    if kind == "const":
        value = expr[1]
        return lambda env: value
    if kind == "attr":
        base, name = _compile(expr[1]), expr[2]
        return lambda env: _attr(base(env), name)
    if kind == "output":
        return lambda env: env[3]
    raise _Unresolved(kind)


def _sig(v):
    t = type(v)
    if t in _PLAIN:
        return v
    if t is _Tensor or t is _Parameter:
        return tensor_sig(v)
    raise _Unresolved(t.__name__)


_STATE_NAMES: dict = {}


def _module_state(m) -> tuple:
    """A trusted loss module's callee key: its type, the attributes its ``__init__`` sets and
    its buffers (its forward reads nothing else); refused with hooks or parameters."""
    d = m.__dict__
    if d["_forward_hooks"] or d["_forward_pre_hooks"] or d["_backward_hooks"] or \
            d["_backward_pre_hooks"] or d["_parameters"]:
        raise _Unresolved("hooks")
    t = type(m)
    names = _STATE_NAMES.get(t)
    if names is None:
        names = _STATE_NAMES[t] = tuple(k for k in vars(t()) if k[0] != "_")
    return (t, tuple([_sig(d[k]) for k in names]), tuple([_sig(v) for v in d["_buffers"].values()]))


class _Reader:
    """The compiled reading of one stretch: getters of the model, the optimizer and every
    callee and argument; :meth:`parts` is the per-call part of the key."""

    __slots__ = ("model", "optimizer", "calls")

    def __init__(self, stretch):
        self.model = _compile(stretch.model)
        self.optimizer = _compile(stretch.optimizer)
        calls = []
        for callee, args, kwnames in stretch.calls:
            if callee[0] == "method":
                if callee[2] != "backward":
                    raise _Unresolved(callee[2])
                base = callee[1]
                get = base[1] if base[0] == "result" else _compile(base)
                kind = "backward"
            else:
                get, kind = _compile(callee), "call"
            calls.append((kind, get, tuple(x if x[0] == "result" else
                                           (None if x[0] == "output" else _compile(x)) for x in args),
                          kwnames))
        self.calls = tuple(calls)

    def parts(self, env) -> tuple:
        out, losses = [], set()
        for k, (kind, get, args, kwnames) in enumerate(self.calls):
            if kind == "backward":
                if _BACKWARD is not torch.Tensor.backward:
                    raise _Unresolved("backward")
                if type(get) is int:  # backward of a result of this stretch: a loss
                    if get not in losses:
                        raise _Unresolved("backward")
                    c = "backward"
                else:
                    v = get(env)
                    if type(v) is not _Tensor:
                        raise _Unresolved("backward")
                    c = ("backward", tensor_sig(v))
            else:
                f = get(env)
                if type(f) in LOSS_MODULES:
                    c = _module_state(f)
                elif f in LOSS_FUNCTIONS:
                    c = f
                else:
                    raise _Unresolved("callee")
                losses.add(k)
            a = []
            for x in args:
                if x is None:
                    v = env[3]
                elif type(x) is tuple:  # ("result", k)
                    a.append(x)
                    continue
                else:
                    v = x(env)
                t = type(v)
                if t is _Tensor or t is _Parameter:
                    a.append(tensor_sig(v))
                elif t in _PLAIN:
                    a.append(v)
                else:
                    raise _Unresolved(t.__name__)
            out.append((c, tuple(a), kwnames))
        return tuple(out)


_READERS: dict = {}  # stretch -> _Reader | None


def _reader(stretch):
    hit = _READERS.get(stretch, False)
    if hit is False:
        try:
            hit = _Reader(stretch)
        except _Unresolved:
            hit = None
        _READERS[stretch] = hit
    return hit


class StretchWatch:
    """What one tracker knows to skip its tracer over the loop's code (see the module doc):
    the frame and handler of the counter's ``with`` block, the callers already checked, the
    stretch being skipped (``expected``: ``(frame, stretch)``, until ``step()`` arrives) or learned
    (``pending``: ``(node, key, frame, stretch)``)."""

    def __init__(self, tracker):
        self.tracker = tracker
        self.enabled = False
        self.with_frame = self.with_target = None
        self.callers = None   # (frame, f_lasti, outcome) of the last caller chain checked
        self.expected = None
        self.pending = None
        self.hook_ids: tuple = ()  # the counter's optimizer pre-hook ids (global, per optimizer)
        self.skipped = 0      # stretches skipped (for tests and benchmarks)
        self._own: dict = {}  # (stretch, stop) -> exception outcomes inside the stretch
        self._depth = 4       # frames from skip() up to the model's Module._wrapped_call_impl

    def enter(self, frame, trusted: bool, ddp) -> None:
        """On entering the counter: ``frame`` is the caller of ``__enter__``."""
        self.enabled = _ENABLED and trusted and ddp is None and self.tracker.cache.enabled
        target = with_handler(frame.f_code, frame.f_lasti) if self.enabled else None
        self.with_frame, self.with_target = (frame, target) if target is not None else (None, None)

    def reset(self) -> None:
        self.with_frame = self.with_target = self.callers = self.expected = self.pending = None
        self._own.clear()

    # -- at the model's return --------------------------------------------------------------------
    def skip(self, step, output) -> bool:
        """Called as the model's trusted forward returns into the loop, inside an open step.
        True: the stretch is known and skipped (no tracer); False: trace it (and learn it when the
        step arrives at ``step()`` as the code says)."""
        if not self.enabled or _gettrace() is not None or _getprofile() is not None or \
                _exc_info()[0] is not None or torch_function_stack_len():
            return False
        try:
            frame = _getframe(self._depth)
        except ValueError:
            frame = None
        if frame is None or frame.f_code is not WRAPPED_CALL_CODE:
            frame, self._depth = _getframe(1), 1
            while frame is not None and frame.f_code is not WRAPPED_CALL_CODE:
                frame, self._depth = frame.f_back, self._depth + 1
            if frame is None:
                return False
        frame = frame.f_back
        if frame is None:
            return False
        stretch = read_stretch(frame.f_code, frame.f_lasti)
        if stretch is None or not self._propagates(frame, stretch):
            return False
        key = self.key(stretch, frame, output)
        if key is None:
            return False
        node = step.node
        hit = node.shortcuts.get(key) if node.shortcuts is not None else None
        if hit is not None and not step.counting and not step.full:
            target, n, generation = hit
            cache = self.tracker.cache
            if generation != cache.generation:  # a node was replaced since: check the path
                n = _path_length(node, target)
                if n is None:
                    del node.shortcuts[key]
                else:
                    node.shortcuts[key] = (target, n, cache.generation)
            if n is not None:
                step.node = target
                step.reused += n
                self.expected = (frame, stretch)
                self.skipped += 1
                return True
        self.pending = (node, key, frame, stretch)
        return False

    def key(self, stretch, frame, output):
        """The key of ``stretch`` run from ``frame`` now (see the module doc); None when a value
        is not allowed or cannot be read without running code."""
        reader = _reader(stretch)
        if reader is None:
            return None
        loc = frame.f_locals
        try:
            env = (loc, frame.f_globals, frame.f_builtins, output)
            if reader.model(env) is not self.tracker.model or not self._first_pre_hook(reader.optimizer(env)):
                return None
            return stretch, reader.parts(env)
        except (_Unresolved, KeyError):
            return None
        finally:
            if stretch.optimized:  # a function's locals snapshot: keep none of its values alive
                loc.clear()

    def _first_pre_hook(self, opt) -> bool:
        """``opt`` is followed, its ``step`` is the library's hooked one, and the counter's step
        pre-hook runs before any other (nothing of the loop's runs before the counter sees it)."""
        tracker = self.tracker
        if not isinstance(opt, torch.optim.Optimizer) or not tracker.is_ours(opt):
            return False
        if "step" in opt.__dict__ or getattr(type(opt).step, "__code__", None) is not OPTIMIZER_STEP_CODE:
            return False
        glob = OPTIMIZER_GLOBAL_PRE_HOOKS
        if glob is None:
            return False
        first = next(iter(glob or opt._optimizer_step_pre_hooks), None)
        return first in self.hook_ids

    def _propagates(self, frame, stretch) -> bool:
        """An exception raised anywhere in ``stretch`` reaches the counter's ``with`` block or
        leaves the thread, caught by no handler on the way (module doc)."""
        stop = self.with_target if frame is self.with_frame else None
        out = self._own.get((stretch, stop))
        if out is None:
            out = self._own[(stretch, stop)] = frozenset().union(
                *[exception_outcomes(stretch.code, offset, stop) for offset in stretch.offsets])
        if "caught" in out:
            return False
        if "out" not in out:
            return True
        caller = frame.f_back
        if caller is None:
            return True
        hit = self.callers
        if hit is not None and hit[0] is caller and hit[1] == caller.f_lasti:
            return hit[2]
        ok = self._callers_propagate(caller)
        self.callers = (caller, caller.f_lasti, ok)
        return ok

    def _callers_propagate(self, frame) -> bool:
        while frame is not None:
            code = frame.f_code
            out = exception_outcomes(code, instruction_offset(code, frame.f_lasti),
                                     self.with_target if frame is self.with_frame else None)
            if "caught" in out:
                return False
            if "out" not in out:
                return True
            frame = frame.f_back
        return True

    # -- at the optimizer's step pre-hook --------------------------------------------------------
    def arrived(self, step) -> bool:
        """The followed optimizer's ``step()`` started. Learns the pending stretch; for a skipped
        one, True when it was called where the code said (else the step cannot be known)."""
        expected, pending = self.expected, self.pending
        self.expected = self.pending = None
        if expected is not None:
            return self._at(expected[0], expected[1])
        if pending is not None and step is not None:
            node, key, frame, stretch = pending
            n = _path_length(node, step.node) if self._at(frame, stretch) else None
            if n is not None:
                if node.shortcuts is None:
                    node.shortcuts = {}
                node.shortcuts[key] = (step.node, n, self.tracker.cache.generation)
        return True

    @staticmethod
    def _at(frame, stretch) -> bool:
        f = _getframe(2)
        while f is not None and f.f_code is not OPTIMIZER_STEP_CODE:
            f = f.f_back
        caller = f.f_back if f is not None else None
        return caller is frame and stretch.end <= frame.f_lasti <= stretch.end_last

    def broken(self, where: str) -> None:
        """The skipped stretch did not arrive at ``step()``: the step cannot be known."""
        self.expected = self.pending = None
        warnings.warn(f"TOsCounter: a step left the loop's code it was verified by ({where}) — an "
                      "exception raised inside it was handled on its way up; the step is dropped",
                      RuntimeWarning, stacklevel=4)


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
