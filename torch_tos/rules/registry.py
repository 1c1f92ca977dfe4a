"""The rules registry: aten op → a small pure function that returns the op's :class:`BOs`.

In the style of ``torch.utils.flop_counter``: each rule is a plain function keyed by the aten
``OpOverloadPacket`` it prices (or, where overloads differ, by a single ``OpOverload``), called as
``rule(out, *args, **kwargs)`` with the op's real output and arguments, and returning the exact
counts of add, sub, mul, div and root the kernel performs. Memory-only ops are registered
explicitly as zero; an op with no entry is *unsupported* (reported, never silently zero).
"""

from __future__ import annotations

from typing import Callable

import torch

from ..bos import BOs, ZERO

Rule = Callable[..., BOs]

#: aten OpOverloadPacket / OpOverload → rule
RULES: dict[object, Rule] = {}
#: ops that move or create memory only (registered explicitly as zero arithmetic)
ZERO_OPS: set[object] = set()
#: aten op → name of the module that registered it (its family, for docs/rules.md)
FAMILY: dict[object, str] = {}
#: context-manager factories every counting Engine enters (e.g. meta runs picking CPU kernels)
ENGINE_CONTEXTS: list = []


def register_engine_context(factory) -> None:
    """Have every counting :class:`~torch_tos.counter.Engine` run inside ``factory()``."""
    if factory not in ENGINE_CONTEXTS:
        ENGINE_CONTEXTS.append(factory)


def _packets(ops):
    """Resolve aten names to packets; names missing from this PyTorch build are skipped."""
    for op in ops:
        if isinstance(op, str):
            op = getattr(torch.ops.aten, op, None)
        if op is not None:
            yield op


def register(*ops) -> Callable[[Rule], Rule]:
    """Decorator: register ``rule`` for each aten op given (packets, overloads, or aten names;
    names this PyTorch build does not have are skipped)."""

    def deco(rule: Rule) -> Rule:
        for op in _packets(ops):
            if op in RULES or op in ZERO_OPS:
                raise ValueError(f"{op} already has a counting rule ({_where(RULES.get(op))}); "
                                 "each aten op is registered once")
            RULES[op] = rule
            FAMILY[op] = _caller_module()
        return rule

    return deco


def _caller_module() -> str:
    """Module name of the code that called register()/register_zero() (two frames up)."""
    import sys

    return sys._getframe(2).f_globals.get("__name__", "?")


def register_zero(*names: str) -> None:
    """Register aten ops (by name) that do no arithmetic (views, copies, allocation, RNG, …).

    Names that do not exist in this PyTorch build are skipped, so the list can name ops of newer
    and older releases alike.
    """
    for op in _packets(names):
        if op in RULES:
            raise ValueError(f"{op} already has a counting rule ({_where(RULES[op])}); "
                             "each aten op is registered once")
        ZERO_OPS.add(op)
        FAMILY.setdefault(op, _caller_module())


def _where(rule) -> str:
    if rule is None:
        return "registered as memory-only"
    return f"{getattr(rule, '__module__', '?')}.{getattr(rule, '__qualname__', '?')}"


def zero_rule(*args, **kwargs) -> BOs:
    """Memory-only op: no arithmetic."""
    return ZERO


def lookup(func) -> Rule | None:
    """The rule for an aten ``OpOverload`` (overload-specific first, then its packet)."""
    rule = RULES.get(func)
    if rule is not None:
        return rule
    packet = getattr(func, "_overloadpacket", None)
    rule = RULES.get(packet)
    if rule is not None:
        return rule
    if func in ZERO_OPS or packet in ZERO_OPS:
        return zero_rule
    return None


def is_supported(func) -> bool:
    return lookup(func) is not None


# -- helpers shared by the rule families ------------------------------------------------

def numel(t) -> int:
    """Element count of a tensor (meta tensors included); 1 for Python scalars."""
    return int(t.numel()) if isinstance(t, torch.Tensor) else 1


def per_element(add: int = 0, sub: int = 0, mul: int = 0, div: int = 0, root: int = 0,
                doc: str = "") -> Rule:
    """A rule costing ``BOs(add, sub, mul, div, root)`` for each element of the output."""
    unit = BOs(add, sub, mul, div, root)

    def rule(out, *args, **kwargs) -> BOs:
        return unit * numel(out if not isinstance(out, (tuple, list)) else out[0])

    rule.__doc__ = doc or f"Per output element: {unit}."
    rule.unit = unit  # type: ignore[attr-defined]
    return rule


def dims_of(t: torch.Tensor, dim) -> list[int]:
    """Normalise a ``dim`` argument (int, list, None) to a list of non-negative dims of ``t``."""
    if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0):
        return list(range(t.dim()))
    if isinstance(dim, int):
        dim = [dim]
    nd = max(t.dim(), 1)
    return [d % nd for d in dim]


def reduced_size(t: torch.Tensor, dim) -> int:
    """Number of elements folded into each output of a reduction over ``dim``."""
    n = 1
    shape = t.shape if t.dim() else (1,)
    for d in dims_of(t, dim):
        n *= int(shape[d])
    return n
