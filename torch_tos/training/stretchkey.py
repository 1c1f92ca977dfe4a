"""The key of the loop's code from the model's return to ``optimizer.step()``, read from its frame.

:class:`~.stretch.StretchWatch` skips the tracer over that code when this key equals one a counted
step had; :mod:`.bytecode` gives the code's symbolic form (:class:`~.bytecode.Stretch`), this module
compiles it into a :class:`_Reader` of the values the calls will be made with.

**Which calls** (:meth:`~.stretch.StretchWatch.key`):

* a ``torch.nn`` loss module of one of the :data:`LOSS_MODULES` types (exactly; no hooks of its
  own, no global module hooks, no ``forward`` or compiled call of the instance's own, its class's
  ``forward``, the ``torch.nn.functional`` loss that forward calls and ``Module.__call__`` as
  imported), or a ``torch.nn.functional`` loss of :data:`LOSS_FUNCTIONS`;
* ``Tensor.backward`` of a loss's result;
* ``zero_grad()`` (setting gradients to ``None``, PyTorch's default) of the model or of an
  optimizer with the library's ``zero_grad``. It runs no op: its part of the key is which of the
  model's parameters will hold a gradient after it (those that hold one now and are not among its
  parameters), what the backward's event would be keyed by;
* the library's ``torch.nn.utils.clip_grad_norm_`` of ``model.parameters()``: its ops are a
  function of the gradients' signatures, which the keys before it fix; its plain arguments are in
  the key;
* then the ``step()`` of an optimizer the counter follows, whose step pre-hook of the counter's is
  the first to run.

Each argument is a tensor (``torch.Tensor`` or ``nn.Parameter``), a plain value (``None``,
``bool``, ``int``, ``float``, ``str``, ``dtype``, ``device``), the model's output or the result of
an earlier call of the stretch. The key is the stretch (its code and call site) with, for each call,
its callee (a loss module by type, its public attributes and buffers; a loss function by identity)
and the signature of each argument (:func:`~.signature.tensor_sig`; plain values by value) — what
the tracer's events would hold. Library code of these kinds makes the same events for the same key,
the same way a trusted forward does the same work for the same forward signature, so a key seen
with the cached path from the model's return to the optimizer (:attr:`~.cache.Node.shortcuts`,
learned while the tracer watched a step of that key and the step arrived at ``step()`` where the
code said) stands for those events. A stretch whose counted segments hold a data-dependent op is
never learned (it is counted every time, as with the tracer).
"""

from __future__ import annotations

import operator
import sys
import types

import torch

from .._compat import module_call_impl
from .signature import tensor_sig

__all__ = ["LOSS_MODULES", "LOSS_FUNCTIONS"]


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
_PLAIN = frozenset((type(None), bool, int, float, str, torch.dtype, torch.device))
_BACKWARD = torch.Tensor.backward
_MODULE_GETATTR = _Module.__getattr__
_MODULE_CALL, _MODULE_CALL_IMPL = _Module.__call__, module_call_impl()
_OBJECT_GETATTRIBUTE = object.__getattribute__
_Optimizer = torch.optim.Optimizer
_OPT_ZERO_GRAD, _MODULE_ZERO_GRAD = _Optimizer.zero_grad, _Module.zero_grad
_MODULE_PARAMETERS = _Module.parameters
_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_CLIP = torch.nn.utils.clip_grad_norm_
_CLIP_NS = sys.modules[_CLIP.__module__].__dict__
#: The helpers ``clip_grad_norm_`` reads from its module's namespace, as imported.
_CLIP_HELPERS = tuple((n, _CLIP_NS.get(n)) for n in ("_get_total_norm", "_clip_grads_with_norm_"))


def _clip_unchanged() -> bool:
    """``clip_grad_norm_`` runs the library's code: the helpers it reads are those imported."""
    return all(_CLIP_NS.get(n) is f for n, f in _CLIP_HELPERS)


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
            module_call_impl() is not _MODULE_CALL_IMPL:
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


_CALL, _BACKWARD_OF_RESULT, _ZERO_GRAD, _PARAMETERS = range(4)


def _sets_to_none(args, kwnames) -> bool:
    """A ``zero_grad`` call's arguments set gradients to ``None``: none, or the constant ``True``
    (by position or as ``set_to_none``)."""
    return not args or (len(args) == 1 and args[0] == ("const", True) and kwnames in ((), ("set_to_none",)))


def _zero_grad_part(obj, model, params) -> tuple:
    """The key part of ``obj.zero_grad()`` (module doc): which of ``params`` (the model's) hold a
    gradient after it; refused for another object or a ``zero_grad`` of its own."""
    if obj is model:
        if type(obj).zero_grad is not _MODULE_ZERO_GRAD or "zero_grad" in obj.__dict__:
            raise _Unresolved("zero_grad")
        return ("zero_grad", (False,) * len(params))
    if not isinstance(obj, _Optimizer) or type(obj).zero_grad is not _OPT_ZERO_GRAD or "zero_grad" in obj.__dict__:
        raise _Unresolved("zero_grad")
    dropped = {id(p) for g in obj.param_groups for p in g["params"]}
    return ("zero_grad", tuple([p.grad is not None and id(p) not in dropped for p in params]))


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
            if callee[0] == "method" and callee[2] == "zero_grad":
                if not _sets_to_none(args, kwnames):
                    raise _Unresolved("zero_grad")
                calls.append((_ZERO_GRAD, _compile(callee[1]), (), (), ()))
                continue
            if callee[0] == "method" and callee[2] == "parameters" and callee[1] == stretch.model:
                if args or kwnames:
                    raise _Unresolved("parameters")
                calls.append((_PARAMETERS, _compile(callee[1]), (), (), ()))
                continue
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
                calls.append((_BACKWARD_OF_RESULT, None, base[1], (), ()))  # the loss call's index
                continue
            template = tuple(x if x[0] in ("result", "output") else None for x in args)
            dynamic = tuple((i, _compile(x)) for i, x in enumerate(args) if template[i] is None)
            calls.append((_CALL, _compile(callee), dynamic, template, kwnames))
        self.calls = tuple(calls)

    def parts(self, env, model, params) -> tuple:
        """For each call: its callee key, its arguments' signatures (a result of the stretch or
        the model's output by position: fixed by the keys before them), its keyword names; for a
        ``zero_grad()``, which of ``params`` (``model``'s) hold a gradient after it."""
        if _BACKWARD is not torch.Tensor.backward:
            raise _Unresolved("backward")
        out = []
        for kind, get, dynamic, template, kwnames in self.calls:
            if kind == _ZERO_GRAD:
                out.append(_zero_grad_part(get(env), model, params))
            elif kind == _PARAMETERS:  # the model's own: a generator, no op
                m = get(env)
                if m is not model or type(m).parameters is not _MODULE_PARAMETERS or "parameters" in m.__dict__:
                    raise _Unresolved("parameters")
                out.append("parameters")
            elif kind == _CALL:
                f = get(env)
                if type(f) in LOSS_MODULES:
                    c = _module_state(f)
                elif f in LOSS_FUNCTIONS:
                    c = f
                elif f is _CLIP and _clip_unchanged() and template and template[0] is not None and \
                        template[0][0] == "result" and out[template[0][1]] == "parameters":
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
            else:  # backward() of a loss's result (not of a clipped norm)
                if out[dynamic][0] is _CLIP:
                    raise _Unresolved("backward")
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
