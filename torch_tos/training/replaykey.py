"""The stretch's key seen again by identity: what a replayed step reads from the loop's frame.

:meth:`~.stretch.StretchWatch.key` reads the key of the loop's code from the model's return to
``optimizer.step()`` in full: every callee's state (a loss module's public attributes, buffers,
hooks and code), every argument's signature, the optimizer's hooks, and builds it. In a loop that
repeats a step most of these are the very objects of last time. :class:`SameKey` is taken right
after the full key of a stretch equalled the remembered one and tells, in a few comparisons, that
the full key would be equal again — it reads the same values with the same getters (one
``operator.itemgetter`` over ``f_locals`` where every value is a local variable) and compares:

* the model, the optimizer and each functional loss: the same objects (``is``); an optimizer the
  counter was not given (followed because it steps the model's parameters) is held weakly;
* each loss module by its state, as :func:`~.stretchkey._module_state` reads it: its type; no
  hook, parameter, instance ``forward`` or compiled call; each public attribute its forward reads
  the very object it was (so an equal string made anew, or a tensor or numpy scalar that compares
  equal to a float, differs and the full key decides); its buffers all ``None`` as they were; its
  class's ``forward``, the functional loss that forward reads and ``Module.__call__``/
  ``_call_impl`` the library's. A loss module with a tensor attribute or buffer gets no
  :class:`SameKey`: its state is read in full every step. The module itself is not kept alive;
* ``Tensor.backward``, the optimizer's instance ``step`` (none, or an LR scheduler's wrapper of its
  class's), its class's ``step`` code and its first step pre-hook, read as
  :meth:`~.stretch.StretchWatch._first_pre_hook` reads them;
* each ``zero_grad()``'s part, read again (which of the model's parameters hold a gradient after it:
  that follows the gradients, not the objects);
* each other argument's signature (:func:`~.signature.tensor_sig`, read without a device object on
  the CPU: :func:`~.signature.sig_reader`), or the plain value, equal to the remembered key's.

A stretch that clips gradients (``clip_grad_norm_(model.parameters(), …)``) gets no
:class:`SameKey`: its key is read in full every step.

Any difference, a name missing from the frame or a value that cannot be read without running
code fails the check: the full key is read (and, when it is still equal, a new one taken).
"""

from __future__ import annotations

import operator
import weakref

import torch

from .._compat import OPTIMIZER_GLOBAL_PRE_HOOKS, library_step, module_call_impl
from .signature import sig_reader
from .stretchkey import (_BACKWARD, _CALL, _LOSS_CODE, _LOSS_NS, _MODULE_CALL, _MODULE_CALL_IMPL, _PARAMETERS,
                         _STATE_NAMES, _ZERO_GRAD, LOSS_FUNCTIONS, LOSS_MODULES, _compile, _Unresolved,
                         _zero_grad_part)

__all__ = ["SameKey"]

_Tensor, _Parameter = torch.Tensor, torch.nn.Parameter
_PLAIN = frozenset((type(None), bool, int, float, str, torch.dtype, torch.device))
_GLOBAL_PRE = OPTIMIZER_GLOBAL_PRE_HOOKS


class SameKey:
    """The objects and values of one stretch's key, taken when its full key was read (see the
    module doc); :meth:`same` compares a frame's with them."""

    __slots__ = ("getter", "env", "optimized", "model", "opt", "weak", "functions", "modules", "args",
                 "hook_ids", "zero_grads", "params")

    @classmethod
    def take(cls, reader, frame, key, tracker) -> "SameKey | None":
        """Right after ``key`` (the full key, as :meth:`~.stretch.StretchWatch.key` read it at
        ``frame``) equalled the remembered one; None where the stretch's values are not all
        local variables or a loss module's state cannot be copied."""
        stretch = reader.stretch
        if any(r[0] == _PARAMETERS for r in reader.calls):  # clipping: its key is read in full
            return None
        calls = [(c, p) for c, r, p in zip(stretch.calls, reader.calls, key[1]) if r[0] == _CALL]
        exprs = [stretch.model, stretch.optimizer]
        for (callee, _, _), _ in calls:  # as _Reader compiles it: F.mse_loss is an attribute
            exprs.append(("attr",) + callee[1:] if callee[0] == "method" else callee)
        zero_grads = []  # a zero_grad()'s object: its part is read again from the gradients
        for (callee, _, _), r, part in zip(stretch.calls, reader.calls, key[1]):
            if r[0] == _ZERO_GRAD:
                exprs.append(callee[1])
                zero_grads.append((len(exprs) - 1, part))
        args, modules = [], []
        for (_, expr_args, _), part in calls:
            for i, x in enumerate(expr_args):
                if x[0] not in ("result", "output"):  # a value of the stretch's own: by position
                    exprs.append(x)
                    expected = part[1][i]
                    args.append((len(exprs) - 1, *(sig_reader(expected) if type(expected) is tuple
                                                   else (None, expected))))
        self = cls()
        self.optimized = stretch.optimized
        if reader.local:  # every value a local variable: one read of f_locals
            self.getter, self.env = operator.itemgetter(*[x[1] for x in exprs]), False
        else:
            getters = tuple(map(_compile, exprs))
            self.getter, self.env = (lambda env: tuple([g(env) for g in getters])), True
        try:
            vals = self.read(frame)
        except (KeyError, _Unresolved):
            return None
        functions = []
        for pos in range(2, 2 + len(calls)):
            c = vals[pos]
            t = type(c)
            if t in LOSS_MODULES:  # by its state alone, as _module_state reads it: not kept alive
                d, names = c.__dict__, _STATE_NAMES.get(t)
                if names is None:
                    return None
                values = tuple(map(d.__getitem__, names))
                buffers = tuple(d["_buffers"].values())
                if not _PLAIN.issuperset(map(type, values)) or any(b is not None for b in buffers):
                    return None  # a tensor attribute or buffer: its state is read in full
                modules.append((pos, t, names, values, len(buffers), *_LOSS_CODE[t]))
            elif c in LOSS_FUNCTIONS:
                functions.append((pos, c))
            else:
                return None
        opt = vals[1]
        self.model, self.weak = vals[0], opt is not tracker.optimizer  # a followed one: weakly
        self.opt = weakref.ref(opt) if self.weak else opt
        self.functions, self.modules, self.args = tuple(functions), tuple(modules), tuple(args)
        self.zero_grads, self.params = tuple(zero_grads), tracker.params
        self.hook_ids = tracker.stretch.hook_ids
        return self

    def same(self, frame) -> bool:
        """The full key read at ``frame`` now would equal the one this was taken with."""
        try:
            return self._same(frame)
        except (KeyError, _Unresolved):  # a name or attribute gone: the full key says what it is
            return False

    def read(self, frame) -> tuple:
        """The key's values at ``frame``, in the order of the reader's getters."""
        loc = frame.f_locals
        try:
            return self.getter((loc, frame.f_globals, frame.f_builtins) if self.env else loc)
        finally:
            if self.optimized:  # a function's locals snapshot: keep none of its values alive
                loc.clear()

    def _same(self, frame) -> bool:
        vals = self.read(frame)
        opt = vals[1]
        if vals[0] is not self.model or opt is not (self.opt() if self.weak else self.opt):
            return False
        for pos, f in self.functions:
            if vals[pos] is not f:
                return False
        od = opt.__dict__
        if not library_step(opt) or torch.Tensor.backward is not _BACKWARD:
            return False
        for first in (_GLOBAL_PRE or od.get("_optimizer_step_pre_hooks") or ()):
            if first not in self.hook_ids:
                return False
            break
        else:
            return False
        if self.modules:
            if module_call_impl() is not _MODULE_CALL_IMPL:
                return False
            F = _LOSS_NS["F"]
            for pos, t, names, values, buffers, forward, name, function in self.modules:
                m = vals[pos]
                if type(m) is not t or t.forward is not forward or t.__call__ is not _MODULE_CALL or \
                        getattr(F, name, None) is not function:
                    return False
                d = m.__dict__  # what _module_state reads, its values the very same objects
                if d["_forward_hooks"] or d["_forward_pre_hooks"] or d["_backward_hooks"] or \
                        d["_backward_pre_hooks"] or d["_parameters"] or "forward" in d or \
                        d.get("_compiled_call_impl") is not None:
                    return False
                for a, b in zip(map(d.__getitem__, names), values):
                    if a is not b:
                        return False
                b = d["_buffers"]
                if len(b) != buffers or (buffers and any(v is not None for v in b.values())):
                    return False
        for pos, part in self.zero_grads:  # which parameters hold a gradient after it, read again
            if _zero_grad_part(vals[pos], self.model, self.params) != part:
                return False
        for pos, getter, expected in self.args:  # a signature (tensor) or a plain value
            v = vals[pos]
            t = type(v)
            if t is _Tensor or t is _Parameter:
                if getter is None or getter(v) != expected:
                    return False
            elif t not in _PLAIN or v != expected:
                return False
        return True

