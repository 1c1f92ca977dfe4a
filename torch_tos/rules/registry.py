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
#: names (``"_c10d_functional.wait_tensor"``) of memory-only ops whose output is the tensor they
#: were given: like views, they move no bytes
ALIAS_OPS: set[str] = set()
#: aten op → name of the module that registered it (its family, for docs/rules.md)
FAMILY: dict[object, str] = {}
#: ops that some supported torch versions lack: name → the versions that have it (``">=2.14"``,
#: ``">=2.13,<2.15"``). Any other name a rule registers must exist, or importing torch_tos fails.
OPTIONAL_OPS: dict[str, str] = {}
#: registrations for ops of other libraries, resolved when the library is loaded:
#: namespace → [(op name, rule or None for memory-only, family)]
PENDING: dict[str, list] = {}
#: namespace → the Python module whose import loads its ops
NAMESPACE_MODULES = {"torchvision": "torchvision", "fsdp": "torch.distributed.fsdp",
                     "_c10d_functional": "torch.distributed._functional_collectives"}


class ApproximateCountWarning(UserWarning):
    """A data-dependent op was priced without its values (on meta): its count is approximate."""


def warn_approximate(op: str, why: str) -> None:
    """Warn (once per op and reason) that ``op``'s count is approximate, and why."""
    import warnings

    warnings.warn(f"torch_tos: {op} is priced approximately on meta: {why}",
                  ApproximateCountWarning, stacklevel=2)


class MissingOpError(RuntimeError):
    """A rule names an operator the installed torch (or library) does not have."""


def _in_versions(spec: str, version=None) -> bool:
    """Whether ``version`` (default: the installed torch) matches ``spec`` (``">=2.13,<2.15"``)."""
    from torch.torch_version import TorchVersion

    v = TorchVersion(version or torch.__version__.split("+")[0])
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        op = next(o for o in (">=", "<=", "==", ">", "<") if part.startswith(o))
        ref = part[len(op):].strip()
        ok = {">=": v >= ref, "<=": v <= ref, "==": v == ref, ">": v > ref, "<": v < ref}[op]
        if not ok:
            return False
    return True


def _split(name: str) -> tuple[str, str]:
    return tuple(name.split("::", 1)) if "::" in name else ("aten", name)  # type: ignore[return-value]


def _resolve(name: str):
    """The op packet for ``name`` (``"mm"``, ``"profiler::_record_function_exit"``), or ``None`` when
    it is declared optional and this torch is outside its versions; else :class:`MissingOpError`."""
    ns, short = _split(name)
    op = getattr(getattr(torch.ops, ns), short, None)
    spec = OPTIONAL_OPS.get(name)
    if op is not None:
        return op
    if spec is not None and not _in_versions(spec):
        return None
    where = f"torch {torch.__version__}" if ns == "aten" else f"the loaded {ns} library"
    hint = (f" (declared optional for torch {spec}: the declaration is wrong)" if spec else
            "; declare it in torch_tos.rules.registry.OPTIONAL_OPS with the versions that have it")
    raise MissingOpError(f"torch_tos has a counting rule for {ns}.{short}, but {where} has no such "
                         f"operator{hint}")


def _packets(ops):
    """Resolve names to packets (packets and overloads pass through); fails closed."""
    for op in ops:
        if isinstance(op, str):
            op = _resolve(op)
        if op is not None:
            yield op


def _add(op, rule, family: str) -> None:
    if op in RULES or op in ZERO_OPS:
        raise ValueError(f"{op} already has a counting rule ({_where(RULES.get(op))}); "
                         "each aten op is registered once")
    if rule is None:
        ZERO_OPS.add(op)
    else:
        RULES[op] = rule
    FAMILY[op] = family


def _register(ops, rule, family: str) -> None:
    for op in ops:
        if isinstance(op, str) and _split(op)[0] in NAMESPACE_MODULES:
            ns = _split(op)[0]
            PENDING.setdefault(ns, []).append((op, rule, family))
            if _namespace_loaded(ns):
                resolve_namespace(ns)
            continue
        for packet in _packets((op,)):
            _add(packet, rule, family)


def register(*ops) -> Callable[[Rule], Rule]:
    """Decorator: register ``rule`` for each op given: packets, overloads, or names (``"mm"`` for
    aten, ``"torchvision::nms"`` for another library's ops, registered once that library is
    loaded). A name the installed torch lacks is an error unless declared in :data:`OPTIONAL_OPS`."""

    def deco(rule: Rule) -> Rule:
        _register(ops, rule, _caller_module())
        return rule

    return deco


def _caller_module() -> str:
    """Module name of the code that called register()/register_zero() (two frames up)."""
    import sys

    return sys._getframe(2).f_globals.get("__name__", "?")


def register_zero(*names) -> None:
    """Register ops (names as for :func:`register`, or packets) that do no arithmetic (views,
    copies, allocation, RNG, …)."""
    _register(names, None, _caller_module())


def _namespace_loaded(ns: str) -> bool:
    import sys

    module = NAMESPACE_MODULES.get(ns)
    return module in sys.modules


def resolve_namespace(ns: str) -> None:
    """Register the pending rules of namespace ``ns`` (its library is loaded); fails closed."""
    for name, rule, family in PENDING.pop(ns, []):
        for packet in _packets((name,)):
            _add(packet, rule, family)


def resolve_all() -> None:
    """Load every library that has pending rules and is installed, and register its rules
    (docs/rules.md and the registry test see every rule, whatever was imported before)."""
    import importlib
    import importlib.util

    for ns in list(PENDING):
        module = NAMESPACE_MODULES[ns]
        if importlib.util.find_spec(module) is None:
            continue
        try:
            importlib.import_module(module)
        except (ImportError, OSError, RuntimeError):  # a broken install: its ops cannot run either
            continue
        resolve_namespace(ns)


def _where(rule) -> str:
    if rule is None:
        return "registered as memory-only"
    return f"{getattr(rule, '__module__', '?')}.{getattr(rule, '__qualname__', '?')}"


def zero_rule(*args, **kwargs) -> BOs:
    """Memory-only op: no arithmetic."""
    return ZERO


def lookup(func) -> Rule | None:
    """The rule for an ``OpOverload`` (overload-specific first, then its packet). An op of a
    library with pending rules (torchvision) registers them first, once the library is loaded."""
    if PENDING:
        ns = getattr(func, "namespace", None)
        if ns in PENDING and _namespace_loaded(ns):
            resolve_namespace(ns)
    rule = RULES.get(func)
    if rule is not None:
        return rule
    packet = getattr(func, "overloadpacket", None)
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
