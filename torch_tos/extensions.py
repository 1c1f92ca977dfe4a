"""User extensions on the engine side: module-class rules and ignored ops or modules.

``module_rules={MyBlock: fn}`` (thop's ``custom_ops``): ``fn(module, args, output)`` returns the
:class:`~torch_tos.bos.BOs` (or 5 non-negative integers ``add, sub, mul, div, root``, or a dict of
some of them) of one call of a module of that class (or of a subclass; the nearest class in the MRO
wins). The rule *replaces* the counting of the module's forward: the aten ops running inside it in
forward (and in an activation-checkpointing recompute) are not counted; the rule's BOs are booked
under the module's name as the op ``module:MyBlock``, in the dtype of its first floating-point input
(else its output), with no FLOPs. Its backward is still counted op by op (the rule prices the
forward only, as thop does). In a ruled module nested inside another ruled module only the outer
rule applies.

``ignore=[...]`` (fvcore's ``set_op_handle(name, None)``, ptflops' ``ignore_modules``): an op
(``torch.ops.aten.add``, one of its overloads, or the name ``"aten.add"``) runs and counts nothing,
and is not reported as unsupported; a module class (every instance) or a module instance counts
nothing, submodules included, in every phase (forward, backward, recompute).

A rule that raises, or returns anything but BOs, is an error naming the module class and layer
(:func:`~torch_tos.rules.extend.call_rule`, the one path every user rule is called through).

Validation happens once, when an :class:`Extensions` is built (by :func:`torch_tos.profile`,
:class:`~torch_tos.TOsCounter` or an :class:`~torch_tos.Engine` given ``ignore`` /
``module_rules``); the engines those build receive it as ``extensions=`` and check nothing again.
"""

from __future__ import annotations

import torch

from ._compat import OpOverload, OpOverloadPacket
from .rules.extend import RuleError, call_rule  # noqa: F401 - one error type and one call path for every user rule


def module_op_name(cls: type) -> str:
    """The op name a module-class rule's BOs are booked under: ``module:MyBlock``."""
    return f"module:{cls.__name__}"


def _resolve_op_name(name: str):
    ns, _, op = name.partition(".")
    packet = getattr(getattr(torch.ops, ns, None), op, None) if op and "." not in op else None
    if not isinstance(packet, OpOverloadPacket):
        raise ValueError(f"ignore: unknown op {name!r}; accepted: an op name such as 'aten.add', "
                         f"torch.ops.aten.add or one of its overloads")
    return packet


class Extensions:
    """Validated ``ignore`` and ``module_rules`` (see the module docstring)."""

    def __init__(self, ignore=None, module_rules=None):
        self.ops: set = set()          # OpOverloadPacket / OpOverload
        self.classes: tuple = ()       # ignored module classes
        self.instances: list = []      # ignored module instances
        classes = []
        for item in ignore or ():
            if isinstance(item, (OpOverloadPacket, OpOverload)):
                self.ops.add(item)
            elif isinstance(item, str):
                self.ops.add(_resolve_op_name(item))
            elif isinstance(item, type) and issubclass(item, torch.nn.Module):
                classes.append(item)
            elif isinstance(item, torch.nn.Module):
                self.instances.append(item)
            else:
                raise TypeError(f"ignore: cannot ignore {item!r}; accepted: ops (torch.ops.aten.add, "
                                f"'aten.add'), nn.Module classes, nn.Module instances")
        self.classes = tuple(classes)
        self.rules: dict[type, object] = {}
        if module_rules is not None and not isinstance(module_rules, dict):
            raise TypeError(f"module_rules must be a dict {{nn.Module class: fn}}, got "
                            f"{type(module_rules).__name__}")
        for cls, fn in (module_rules or {}).items():
            if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)) or not callable(fn):
                raise TypeError(f"module_rules: {cls!r}: {fn!r} is not an nn.Module class mapped "
                                f"to a function fn(module, args, output) -> BOs")
            self.rules[cls] = fn

    def __bool__(self) -> bool:
        return bool(self.ops or self.classes or self.instances or self.rules)

    @property
    def has_modules(self) -> bool:
        return bool(self.classes or self.instances or self.rules)

    def translated(self, src: torch.nn.Module, dst: torch.nn.Module) -> "Extensions":
        """The same extensions with module instances of ``src`` replaced by the modules of ``dst``
        under the same names (``profile()`` counts on a working copy)."""
        out = Extensions()
        out.ops, out.classes, out.rules = set(self.ops), self.classes, dict(self.rules)
        names = {id(m): n for n, m in src.named_modules(remove_duplicate=False)} \
            if self.instances else {}  # (no instances to translate: no walk)
        for mod in self.instances:
            if id(mod) not in names:
                raise ValueError(f"ignore: the {type(mod).__name__} instance is not a submodule "
                                 f"of the profiled {type(src).__name__}")
            out.instances.append(dst.get_submodule(names[id(mod)]))
        return out

    def layers(self, model: torch.nn.Module) -> tuple[frozenset, frozenset, dict]:
        """``(ignored layers, ruled layers, {outermost ruled layer: (class, fn)})`` of ``model``;
        both sets include every descendant's name."""
        named = list(model.named_modules(remove_duplicate=False))
        known = {id(m) for _, m in named}
        for mod in self.instances:
            if id(mod) not in known:
                raise ValueError(f"ignore: the {type(mod).__name__} instance is not a submodule "
                                 f"of the counted {type(model).__name__}")
        wanted = {id(m) for m in self.instances}
        ignored_roots = [n for n, m in named if isinstance(m, self.classes) or id(m) in wanted] \
            if (self.classes or wanted) else []
        ruled: dict[str, tuple] = {}
        for name, mod in named:
            cls = next((c for c in type(mod).__mro__ if c in self.rules), None)
            if cls is not None:
                ruled[name] = (type(mod), self.rules[cls])
        # only the outermost of nested ruled modules applies
        ruled = {n: r for n, r in ruled.items() if not any(_below(n, o) for o in ruled if o != n)}
        names = [n for n, _ in named]
        return (frozenset(n for n in names if any(_below(n, r) or n == r for r in ignored_roots)),
                frozenset(n for n in names if any(_below(n, r) or n == r for r in ruled)), ruled)


def _below(name: str, root: str) -> bool:
    """``name`` is a strict descendant of ``root``."""
    return name != root and (root == "" or name.startswith(root + "."))
