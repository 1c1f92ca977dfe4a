"""The stretch's key seen again by identity: what a replayed step reads from the loop's frame.

:meth:`~.stretch.StretchWatch.key` reads the key of the loop's code from the model's return to
``optimizer.step()`` in full: every callee's state (a loss module's public attributes, buffers,
hooks and code), every argument's signature, the optimizer's hooks. In a loop that repeats a step
most of these are the very same objects as last time. :class:`SameKey` is taken right after the
full key of a stretch equalled the remembered one, for a stretch whose every value is a local
variable of a function's frame (the common ``def train_step(...)``), and tells in a few
comparisons that the full key would be equal again:

* the model, the optimizer and each callee are the same objects (``is``), read from ``f_locals``
  by one ``operator.itemgetter``;
* each loss module's ``__dict__`` equals a copy of it taken then: plain values (``None``,
  ``bool``, ``int``, ``float``, ``str``, ``dtype``, ``device``) by value, its containers (hook
  dicts, ``_parameters``, ``_buffers``, ``_modules``, …) by content — so a changed ``reduction``,
  a tensor or any new attribute set on it, a hook registered on it, a buffer set, an instance
  ``forward`` or a compiled call all differ. A loss module holding anything else (a tensor
  attribute, a buffer that is a tensor, a hook of another kind) gets no copy: its state is read
  in full every step. Its type, its class's ``forward``, the functional loss that forward reads,
  ``Module.__call__``/``_call_impl`` and ``Tensor.backward`` are compared with the objects the
  full key requires, as it does;
* the optimizer's instance ``step``, its class's ``step`` code and its first step pre-hook, read
  as the full key reads them (:meth:`~.stretch.StretchWatch._first_pre_hook`);
* each other argument's signature (:func:`~.signature.tensor_sig`, or the plain value) equals the
  one in the remembered key.

Anything else — an argument that is not a tensor or a plain value, a name missing from the
frame — fails the check, and the full key is read (and, when it is equal, a new copy taken).
"""

from __future__ import annotations

import operator

import torch

from .._compat import OPTIMIZER_GLOBAL_PRE_HOOKS, OPTIMIZER_STEP_CODE, module_call_impl
from .signature import sig_reader
from .stretchkey import (_BACKWARD, _CALL, _LOSS_CODE, _LOSS_NS, _MODULE_CALL, _MODULE_CALL_IMPL, _STATE_NAMES,
                         LOSS_FUNCTIONS, LOSS_MODULES)

__all__ = ["SameKey"]

_Tensor, _Parameter = torch.Tensor, torch.nn.Parameter
_PLAIN = frozenset((type(None), bool, int, float, str, torch.dtype, torch.device))
_GLOBAL_PRE = OPTIMIZER_GLOBAL_PRE_HOOKS
_STEP_CODE = OPTIMIZER_STEP_CODE


class SameKey:
    """The objects and values of one stretch's key, taken when its full key was read (see the
    module doc); :meth:`same` compares a frame's with them."""

    __slots__ = ("getter", "objs", "modules", "args", "hook_ids")

    @classmethod
    def take(cls, reader, frame, key, hook_ids) -> "SameKey | None":
        """Right after ``key`` (the full key, as :meth:`~.stretch.StretchWatch.key` read it at
        ``frame``) equalled the remembered one; None where the stretch's values are not all
        local variables or a loss module's state cannot be copied."""
        stretch = reader.stretch
        if not reader.local or not stretch.optimized:
            return None
        calls = tuple(zip(stretch.calls, reader.calls, key[1]))  # one part per call, in order
        callees = [(c, part) for c, r, part in calls if r[0] == _CALL]
        if any(c[0][0] != "local" for c, _ in callees):
            return None
        names = [stretch.model[1], stretch.optimizer[1]] + [c[0][1] for c, _ in callees]
        args, modules = [], []
        for (_, expr_args, _), (_, _, dynamic, _, _), part in ((c, r, p) for c, r, p in calls if r[0] == _CALL):
            for i, _ in dynamic:
                if expr_args[i][0] != "local":
                    return None
                names.append(expr_args[i][1])
                expected = part[1][i]
                args.append((len(names) - 1, *(sig_reader(expected) if type(expected) is tuple else
                                               (None, expected))))
        self = cls()
        self.getter = operator.itemgetter(*names)
        loc = frame.f_locals
        try:
            vals = self.getter(loc)
        except KeyError:
            return None
        finally:
            loc.clear()
        for pos in range(2, 2 + len(callees)):
            c = vals[pos]
            t = type(c)
            if t in LOSS_MODULES:
                d, names = c.__dict__, _STATE_NAMES.get(t)
                if names is None:
                    return None
                values = tuple(map(d.__getitem__, names))
                buffers = tuple(d["_buffers"].values())
                if not _PLAIN.issuperset(map(type, values)) or any(b is not None for b in buffers):
                    return None  # a tensor attribute or buffer: its state is read in full
                modules.append((pos, t, names, values, len(buffers), *_LOSS_CODE[t]))
            elif c not in LOSS_FUNCTIONS:
                return None
        self.objs, self.modules, self.args = vals[:2 + len(callees)], tuple(modules), tuple(args)
        self.hook_ids = hook_ids
        return self

    def same(self, frame) -> bool:
        """The full key read at ``frame`` now would equal the one this was taken with."""
        try:
            return self._same(frame)
        except KeyError:  # a name or attribute gone: the full key says what it is
            return False

    def _same(self, frame) -> bool:
        loc = frame.f_locals
        try:
            vals = self.getter(loc)
        except KeyError:
            return False
        finally:
            loc.clear()  # a function's locals snapshot: keep none of its values alive
        for a, b in zip(vals, self.objs):
            if a is not b:
                return False
        opt = vals[1]
        od = opt.__dict__
        if "step" in od or getattr(type(opt).step, "__code__", None) is not _STEP_CODE or \
                torch.Tensor.backward is not _BACKWARD:
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
        for pos, getter, expected in self.args:  # a signature (tensor) or a plain value
            v = vals[pos]
            t = type(v)
            if t is _Tensor or t is _Parameter:
                if getter is None or getter(v) != expected:
                    return False
            elif t not in _PLAIN or v != expected:
                return False
        return True

