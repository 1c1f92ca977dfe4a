"""The public extension point: a counting rule for a user's own operator.

``torch_tos.register_rule(op)`` prices an operator the built-in rules do not know — a
``torch.library`` custom op (``@torch.library.custom_op``, ``torch.library.triton_op`` for a Triton
kernel, or a ``Library.define``'d op) — exactly like the built-in rules: a function called as
``rule(out, *args, **kwargs)`` with the op's real output and arguments, returning its basic
operations as :class:`~torch_tos.BOs` (or 5 non-negative integers ``add, sub, mul, div, root``, or a
dict of some of them)::

    @torch.library.custom_op("mylib::scaled_add", mutates_args=())
    def scaled_add(x: torch.Tensor, y: torch.Tensor, a: float) -> torch.Tensor:
        return x + a * y

    @torch_tos.register_rule(scaled_add)          # or "mylib::scaled_add", torch.ops.mylib.scaled_add
    def _(out, x, y, a):
        return torch_tos.BOs(add=out.numel(), mul=out.numel())

A kernel that is not an operator (a bare Triton launch, a Python ``autograd.Function``) is invisible
at the dispatch level — the engine sees the aten ops it calls, if any; wrap it in
``torch.library.custom_op`` (with ``register_autograd`` for its backward, which can get its own
rule) to price it as one op. A rule that raises, or returns something else, stops the count with a
:class:`RuleError` naming the op.
"""

from __future__ import annotations

from typing import Callable

import torch

from .._compat import OpOverload, OpOverloadPacket
from ..bos import BO_NAMES, BOs
from . import registry


class RuleError(RuntimeError):
    """A user counting rule failed or returned something other than BOs."""


def _packet(op):
    """The OpOverloadPacket / OpOverload an ``op`` argument names."""
    if isinstance(op, (OpOverload, OpOverloadPacket)):
        return op
    inner = getattr(op, "_opoverload", None)          # torch.library.custom_op's CustomOpDef
    if isinstance(inner, OpOverload):
        return inner.overloadpacket
    if isinstance(op, str) and "::" in op:
        ns, rest = op.split("::", 1)
        name, _, overload = rest.partition(".")
        packet = getattr(getattr(torch.ops, ns), name, None)
        if packet is not None:
            found = getattr(packet, overload, None) if overload else packet
            if found is not None:
                return found
    raise ValueError(f"register_rule: {op!r} is not an operator; accepted: a torch.library custom op, "
                     "torch.ops.<namespace>.<name>[.<overload>], or a 'namespace::name[.overload]' string")


def as_bos(value, what: str) -> BOs:
    """A user rule's return value as BOs, or a :class:`RuleError` starting with ``what`` (the rule
    and where it ran). Accepted: :class:`BOs`, 5 non-negative integers ``add, sub, mul, div,
    root``, or a dict of some of them — for operator rules and module-class rules alike."""
    try:
        if isinstance(value, BOs):
            bos = value
        elif isinstance(value, dict) and set(value) <= set(BO_NAMES):
            bos = BOs(**value)
        elif isinstance(value, (tuple, list)) and len(value) == 5:
            bos = BOs(*value)
        else:
            bos = None
    except (TypeError, ValueError):  # BOs refuses negative or non-integer counts
        raise RuleError(f"{what} returned {value!r}; every count must be a non-negative integer") from None
    if bos is None:
        raise RuleError(f"{what} returned {value!r}; expected BOs(add, sub, mul, div, root), 5 "
                        "non-negative integers, or a dict of them")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in bos):
        raise RuleError(f"{what} returned {value!r}; every count must be a non-negative integer")
    return bos


def call_rule(rule: Callable, args: tuple, what: str, kwargs: dict | None = None,
              failed: str = "raised") -> BOs:
    """``rule(*args, **kwargs)`` as checked BOs: the one path every user rule (operator or module class) is
    called through. A failure of the rule is a :class:`RuleError` ``"<what> <failed> <error>"``;
    a wrong return value one from :func:`as_bos`."""
    try:
        value = rule(*args, **(kwargs or {}))
    except RuleError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of user code, reported with the rule
        raise RuleError(f"{what} {failed} {type(exc).__name__}: {exc}") from exc
    return as_bos(value, what)


def _checked(rule: Callable, op_label: str) -> Callable:
    what = f"torch_tos: the counting rule for {op_label}"

    def checked(out, *args, **kwargs) -> BOs:
        return call_rule(rule, (out, *args), what, kwargs)

    checked.__doc__ = rule.__doc__ or f"User rule for {op_label}."
    checked.__wrapped__ = rule  # type: ignore[attr-defined]
    return checked


def register_rule(op, rule: Callable | None = None, *, replace: bool = False):
    """Register ``rule`` (or decorate it) as the counting rule of ``op``; ``replace=True`` overrides
    a rule torch_tos already has. Returns the rule (decorator use)."""
    target = _packet(op)
    label = str(target).replace("::", ".")

    def deco(fn: Callable) -> Callable:
        if not callable(fn):
            raise ValueError(f"register_rule({label}): the rule must be callable, got {fn!r}")
        if target in registry.RULES or target in registry.ZERO_OPS:
            if not replace:
                raise ValueError(f"register_rule: {label} already has a counting rule; pass "
                                 "replace=True to override it")
            unregister_rule(target)
        registry.RULES[target] = _checked(fn, label)
        registry.FAMILY[target] = getattr(fn, "__module__", "user")
        return fn

    return deco(rule) if rule is not None else deco


def unregister_rule(op) -> None:
    """Remove the counting rule of ``op`` (its calls are then unsupported again)."""
    target = _packet(op)
    registry.RULES.pop(target, None)
    registry.ZERO_OPS.discard(target)
    registry.FAMILY.pop(target, None)
