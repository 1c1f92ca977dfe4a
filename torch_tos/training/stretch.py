"""Skipping the tracer over the loop's own code when the code itself shows the step's calls.

In a cached step the tracer (:class:`~.verify.Tracer`, a ``TorchFunctionMode``) watches the stretch
from the model's return to ``optimizer.step()``: on a small model that alone costs more than the
counter's whole budget. Where that stretch is straight code whose only calls are to library code
of known behaviour (:mod:`.bytecode`), :class:`StretchWatch` reads, when the model returns, what
the calls will be made with — from the frame, without running any of the loop's code — and the
step skips the tracer when a counted step made the same calls with the same values.

**Which calls** (:meth:`StretchWatch.key`): a ``torch.nn`` loss module of one of the
:data:`LOSS_MODULES` types (exactly; no hooks of its own, no global module hooks, no ``forward``
or compiled call of the instance's own, its class's ``forward``, the ``torch.nn.functional`` loss
that forward calls and ``Module.__call__`` as imported), a
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

What stays unseen is what the tracer does not see either: code run asynchronously (signal
handlers, finalizers), and Python code inside the library calls (``warnings.showwarning``,
tensor hooks in ``backward``).
"""

from __future__ import annotations

import builtins
import inspect
import operator
import sys
import types
import warnings

import torch

from .._compat import (OPTIMIZER_GLOBAL_PRE_HOOKS, OPTIMIZER_STEP_CODE, WRAPPED_CALL_CODE,
                       torch_function_stack_len)
from .bytecode import SUPPORTED, exception_outcomes, instruction_offset, read_stretch, with_handler
from .hooks import Hook
from .signature import tensor_sig

__all__ = ["LOSS_MODULES", "LOSS_FUNCTIONS", "StretchWatch"]

_nn, _F = torch.nn, torch.nn.functional
#: Loss modules whose forward is one ``torch.nn.functional`` loss (named here) of its arguments and
#: attributes.
_LOSS_MODULE_FUNCTION = {
    "MSELoss": "mse_loss", "L1Loss": "l1_loss", "CrossEntropyLoss": "cross_entropy",
    "NLLLoss": "nll_loss", "BCELoss": "binary_cross_entropy",
    "BCEWithLogitsLoss": "binary_cross_entropy_with_logits", "HuberLoss": "huber_loss",
    "SmoothL1Loss": "smooth_l1_loss", "KLDivLoss": "kl_div", "SoftMarginLoss": "soft_margin_loss",
    "MultiLabelSoftMarginLoss": "multilabel_soft_margin_loss"}
#: Per loss-module type: its ``forward``, the name of the functional loss it calls and that
#: function, as imported. A step compares them with what a call would run now (a class, the
#: ``F`` its forward reads or ``Module.__call__`` replaced since runs other code: not skipped).
_LOSS_CODE = {getattr(_nn, m): (getattr(_nn, m).forward, f, getattr(_F, f))
              for m, f in _LOSS_MODULE_FUNCTION.items() if hasattr(_nn, m) and hasattr(_F, f)}
LOSS_MODULES = frozenset(_LOSS_CODE)
#: ``torch.nn.functional`` losses whose work is a function of their arguments' signatures.
LOSS_FUNCTIONS = frozenset(getattr(_F, f) for f in _LOSS_MODULE_FUNCTION.values() if hasattr(_F, f))
_LOSS_NS = sys.modules[_nn.modules.loss.__name__].__dict__  # where the loss modules' forwards read F

_Tensor, _Parameter, _Module = torch.Tensor, _nn.Parameter, _nn.Module
_TENSORS = (_Tensor, _Parameter)
_PLAIN = frozenset((type(None), bool, int, float, str, torch.dtype, torch.device))
_BACKWARD = torch.Tensor.backward
_MODULE_GETATTR = _Module.__getattr__
_MODULE_CALL, _MODULE_CALL_IMPL = _Module.__call__, _Module._call_impl
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
    f_globals, f_builtins)``; raises KeyError or :class:`_Unresolved` when it cannot."""
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
    raise _Unresolved(kind)


def _compile_local(expr):
    """:func:`_compile` for a reader whose every value is a local variable: ``f_locals -> value``
    (an ``operator.itemgetter``)."""
    if expr[0] != "local":
        raise _Unresolved(expr[0])
    return operator.itemgetter(expr[1])


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
    forward, name, function = _LOSS_CODE[t]
    # the code a call runs: no forward or compiled call of the instance's own, the class's forward,
    # the functional loss it reads from F and Module's call path all as imported
    if "forward" in d or d.get("_compiled_call_impl") is not None or t.forward is not forward or \
            getattr(_LOSS_NS["F"], name, None) is not function or t.__call__ is not _MODULE_CALL or \
            _Module._call_impl is not _MODULE_CALL_IMPL:
        raise _Unresolved("code")
    names = _STATE_NAMES.get(t)
    if names is None:
        names = _STATE_NAMES[t] = tuple(k for k in vars(t()) if k[0] != "_")
    values = tuple(map(d.__getitem__, names))
    if not _PLAIN.issuperset(map(type, values)):  # a tensor set as an attribute
        values = tuple(map(_sig, values))
    buffers = d["_buffers"]
    if not buffers:
        return (t, values, ())
    buffers = tuple(map(_sig, buffers.values()))
    if any(type(b) is tuple and b[2] for b in buffers):  # a buffer that requires grad
        raise _Unresolved("requires_grad")
    return (t, values, buffers)


_CALL, _BACKWARD_OF_RESULT = range(2)


class _Reader:
    """The compiled reading of one stretch: getters of the model, the optimizer and every
    callee and argument; :meth:`parts` is the per-call part of the key. A ``backward()`` of a
    result of the stretch is one of a loss call's (anything else is refused when compiling)."""

    __slots__ = ("stretch", "model", "optimizer", "calls", "local")

    def __init__(self, stretch):
        self.stretch = stretch
        try:  # every value a local variable: getters take f_locals itself
            self._compile(stretch, _compile_local)
            self.local = True
        except _Unresolved:
            self._compile(stretch, _compile)
            self.local = False

    def _compile(self, stretch, _compile):
        self.model = _compile(stretch.model)
        self.optimizer = _compile(stretch.optimizer)
        calls = []
        for callee, args, kwnames in stretch.calls:
            if callee[0] == "method" and callee[2] != "backward":  # a function of a module
                callee = ("attr",) + callee[1:]                     # (``F.mse_loss(...)``)
            if callee[0] == "method":
                base = callee[1]
                if args or kwnames:
                    raise _Unresolved("backward")
                # only of a loss this stretch computed: its graph is the forward's and the loss
                # call's (a tensor made before would bring a graph the key does not describe)
                if base[0] != "result" or calls[base[1]][0] != _CALL:
                    raise _Unresolved("backward")
                calls.append((_BACKWARD_OF_RESULT, None, (), (), ()))
                continue
            template = tuple(x if x[0] in ("result", "output") else None for x in args)
            dynamic = tuple((i, _compile(x)) for i, x in enumerate(args) if template[i] is None)
            calls.append((_CALL, _compile(callee), dynamic, template, kwnames))
        self.calls = tuple(calls)

    def parts(self, env) -> tuple:
        """For each call: its callee key, its arguments' signatures (a result of the stretch or
        the model's output by position: fixed by the keys before them), its keyword names."""
        if _BACKWARD is not torch.Tensor.backward:
            raise _Unresolved("backward")
        out = []
        for kind, get, dynamic, template, kwnames in self.calls:
            if kind == _CALL:
                f = get(env)
                if type(f) in LOSS_MODULES:
                    c = _module_state(f)
                elif f in LOSS_FUNCTIONS:
                    c = f
                else:
                    raise _Unresolved("callee")
                if dynamic:
                    a = list(template)
                    for i, arg in dynamic:
                        v = arg(env)
                        t = type(v)
                        if t is _Tensor or t is _Parameter:
                            a[i] = sig = tensor_sig(v)
                            if sig[2]:  # requires grad: backward would reach a graph or a
                                raise _Unresolved("requires_grad")  # leaf of the loop's
                        elif t in _PLAIN:
                            a[i] = v
                        else:
                            raise _Unresolved(t.__name__)
                    out.append((c, tuple(a), kwnames))
                else:
                    out.append((c, template, kwnames))
            else:
                out.append("backward")
        return tuple(out)


_READERS: dict = {}  # stretch -> _Reader | None
_MAX_CACHED = 4096


def _reader(stretch):
    hit = _READERS.get(stretch, False)
    if hit is False:
        if len(_READERS) >= _MAX_CACHED:  # a cache, bounded (code made on the fly, notebooks)
            _READERS.clear()
        try:
            hit = _Reader(stretch)
        except _Unresolved:
            hit = None
        _READERS[stretch] = hit
    return hit


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
        if not self.enabled or _gettrace() or _getprofile() or _exc_info()[0] or torch_function_stack_len():
            return
        model = self.tracker.model
        if len(model._forward_pre_hooks) != 1:  # a pre-hook of the loop's runs after the counter's
            return  # (prepended) one, which reads the values: it could change them
        for h in model._forward_hooks.values():  # so does a forward hook of the loop's
            if not isinstance(h, Hook) and getattr(h, "__self__", None) is not self.tracker.scope:
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
            return reader, reader.parts(env)
        except (_Unresolved, KeyError):
            return None
        finally:
            if reader.stretch.optimized:  # a function's locals snapshot: keep none of its values alive
                loc.clear()

    def _first_pre_hook(self, opt) -> bool:
        """``opt`` is followed, its ``step`` is the library's hooked one, and the counter's step
        pre-hook runs before any other (nothing of the loop's runs before the counter sees it)."""
        if opt is not self.tracker.optimizer and (
                not isinstance(opt, torch.optim.Optimizer) or not self.tracker.is_ours(opt)):
            return False
        if "step" in opt.__dict__ or getattr(type(opt).step, "__code__", None) is not OPTIMIZER_STEP_CODE:
            return False
        for first in (OPTIMIZER_GLOBAL_PRE_HOOKS or opt._optimizer_step_pre_hooks):
            return first in self.hook_ids
        return False

    # -- at the optimizer's step pre-hook --------------------------------------------------------
    def arrived(self, step) -> bool:
        """The followed optimizer's ``step()`` started. Learns the pending stretch; for a skipped
        one, True when it was called where the code said (else the step cannot be known)."""
        frame, expected, pending = self.frame, self.expected, self.pending
        self.frame = self.expected = self.pending = None
        if expected is not None:
            return _called_from(frame, expected)
        if pending is not None and step is not None:
            node, key = pending
            n = _path_length(node, step.node) if _called_from(frame, key[0].stretch) else None
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


def _called_from(frame, stretch) -> bool:
    """``optimizer.step()`` (whose pre-hook runs now) was called from ``frame`` at the end of
    ``stretch``."""
    f = _getframe(4)  # _called_from, arrived, on_opt_pre, Hook.__call__, the step's wrapper
    if f.f_code is not OPTIMIZER_STEP_CODE:
        f = _getframe(1)
        while f is not None and f.f_code is not OPTIMIZER_STEP_CODE:
            f = f.f_back
        if f is None:
            return False
    return f.f_back is frame and stretch.end <= frame.f_lasti <= stretch.end_last


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
