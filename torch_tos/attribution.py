"""Which layer an op belongs to: module scopes in forward, autograd nodes in backward.

Forward ops belong to the innermost module whose ``forward`` is running (a stack kept by forward
pre-/post-hooks, registered on the profiled model only and removed on exit — also when forward
raises, through ``always_call=True``).

Backward ops belong to the layer whose forward *created the autograd node that is running*
(``torch._C._current_autograd_node()``). To know that, every module claims, when its forward
returns, the autograd nodes reachable from its outputs that nobody has claimed yet; when a module
is entered, the nodes reachable from its inputs are first claimed for the module that was running
before (they were created there). Since inner modules finish before outer ones, every node ends up
with the innermost module that created it. Nodes are remembered by sequence number (and gradient
accumulators by their variable), never by reference, so no autograd graph is kept alive.

The same forward hook records each module's output shapes (torchinfo's "Output Shape"), so a
report can show them without a second pass over the model.
"""

from __future__ import annotations

import torch

from ._compat import (ScopeHooks, child_modules, current_graph_task_id, own_parameters, sequence_nr,
                      tree_leaves)
from .counts import LOSS_LAYER, OPTIMIZER_LAYER, OUTSIDE_LAYER  # noqa: F401 - defined once, there

_UINT64_MAX = 2 ** 64 - 1
#: Distinct output-shape signatures kept per module (a module called with many shapes, e.g. an
#: RNN cell in a loop of varying length, keeps its first few).
MAX_SHAPES = 4


def _shape(t: torch.Tensor) -> tuple:
    try:
        return tuple(s if type(s) is int else str(s) for s in t.shape)
    except (RuntimeError, TypeError, ValueError):  # a tensor without a plain shape (nested, ...)
        return ("?",)


def output_shapes(output) -> tuple[tuple, ...]:
    """The shapes of the tensors in a module's output, in pytree order (a tensor: one shape; a
    tuple or a dict of tensors: one per tensor); symbolic sizes stay as their text."""
    if isinstance(output, torch.Tensor):
        return (_shape(output),)
    return tuple(_shape(t) for t in tree_leaves(output) if isinstance(t, torch.Tensor))


def node_key(node) -> int:
    """A stable key for an autograd node that does not keep it alive."""
    seq = sequence_nr(node)
    if seq == _UINT64_MAX:  # AccumulateGrad: one per leaf tensor
        var = getattr(node, "variable", None)
        return -id(var) if var is not None else -id(node)
    return seq


def _grad_fns(values):
    for t in tree_leaves(values):
        if isinstance(t, torch.Tensor):
            fn = t.grad_fn
            if fn is not None:
                yield fn


class ModuleScope:
    """Tracks the running module of one model (forward) and which layer owns each autograd node.

    **Shared modules** (one module object reachable under several names, e.g. ``submod1.submod``
    and ``submod2.submod``): each call is booked under the name *through which it was reached* —
    the name whose parent is the innermost running module (else an outer running module's
    descendant); among aliases under the same parent (``self.a = self.b = block``) the first
    registered name wins. A module called from outside the model's forward gets its first name.

    **Recompute**: a module entered while the autograd engine runs (activation checkpointing's
    recompute, reentrant or not) is marked, so the engine books its ops as recompute
    (:attr:`recomputing`).

    ``listeners`` are called as ``fn(name, module, args, kwargs, output)`` when a module's forward
    returns (module-class rules use this). ``called`` holds the ids of the module objects that ran.
    ``shapes`` maps each name that returned to the distinct :func:`output_shapes` of its calls, in
    call order (at most :data:`MAX_SHAPES`).
    """

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.stack: list[str] = []
        self.node_owner: dict[int, str] = {}
        self.types: dict[str, str] = {}
        self.order: dict[str, int] = {}
        self.names: dict[int, tuple[str, ...]] = {}  # id(module) -> every name it has
        self.called: set[int] = set()
        self.listeners: list = []
        self.shapes: dict[str, list[tuple]] = {}
        self.entered = False  # True once any forward of this model ran
        self._frames: list[tuple[int, bool]] = []  # parallel to stack: (id(module), in backward)
        self._handles: list = []

    # -- hooks ------------------------------------------------------------------------------
    def attach(self, root_pre_hook: bool = True) -> "ModuleScope":
        """Register the hooks. ``root_pre_hook=False`` leaves out the root module's pre-hook, for a
        caller that runs :meth:`enter_root` itself from its own root pre-hook (hooks cannot be
        added to or removed from a module while its pre-hooks are running)."""
        names: dict[int, list[str]] = {}
        mods = []
        for name, mod in self.model.named_modules(remove_duplicate=False):
            self.types.setdefault(name, type(mod).__name__)
            self.order.setdefault(name, len(self.order))
            if id(mod) not in names:
                names[id(mod)] = []
                mods.append(mod)
            names[id(mod)].append(name)
        self.names = {k: tuple(v) for k, v in names.items()}
        for mod in mods:  # a shared module is hooked once; its hooks pick the name per call
            first = names[id(mod)][0]
            pre = self._pre(first) if root_pre_hook or mod is not self.model else None
            self._handles.append(ScopeHooks(mod, pre, self._post(first)))
        return self

    def enter_root(self, args, kwargs) -> None:
        """What the root module's pre-hook does: claim the input nodes, push the root scope."""
        self._pre("")(self.model, args, kwargs)

    def _pre(self, name: str):
        """The forward pre-hook registered on the module first named ``name`` (subclasses wrap
        it, e.g. to bind it to a thread); the hook itself picks the name of each call."""
        return self._on_pre

    def _post(self, name: str):
        """The forward hook registered on the module first named ``name`` (see :meth:`_pre`)."""
        return self._on_post

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.stack.clear()
        self._frames.clear()

    def __enter__(self):
        return self.attach()

    def __exit__(self, *exc):
        self.detach()
        return False

    def name_of(self, module) -> str:
        """The name a call of ``module`` is booked under now (see the class docstring)."""
        names = self.names.get(id(module), ("",))
        if len(names) == 1:
            return names[0]
        for outer in reversed(self.stack):
            prefix = outer + "." if outer else ""
            below = [n for n in names if n.startswith(prefix) and n != outer]
            for n in below:
                if "." not in n[len(prefix):]:  # a direct child of the running module
                    return n
            if below:
                return below[0]
        return names[0]

    def _on_pre(self, module, args, kwargs):
        names = self.names.get(id(module))
        name = names[0] if names is not None and len(names) == 1 else self.name_of(module)
        if torch.is_grad_enabled():
            outer = self.stack[-1] if self.stack else OUTSIDE_LAYER
            self._claim(_grad_fns((args, kwargs)), outer)
        self.stack.append(name)
        self._frames.append((id(module), current_graph_task_id() != -1))
        self.called.add(id(module))
        self.entered = True
        return None

    def _on_post(self, module, args, kwargs, output):
        frames = self._frames
        at = len(frames) - 1
        while at >= 0 and frames[at][0] != id(module):  # unwinding after an exception
            at -= 1
        if at < 0:  # its pre-hook did not run (the scope was attached inside its forward)
            name = self.name_of(module)
        else:
            name = self.stack[at]
            del self.stack[at:], frames[at:]
        if torch.is_grad_enabled():
            self._claim(_grad_fns(output), name)
        if output is not None:
            sig = output_shapes(output)
            seen = self.shapes.get(name)
            if seen is None:
                self.shapes[name] = [sig]
            elif sig not in seen and len(seen) < MAX_SHAPES:
                seen.append(sig)
        for fn in self.listeners:
            fn(name, module, args, kwargs, output)
        return None

    def _claim(self, roots, layer: str) -> None:
        owner = self.node_owner
        todo = list(roots)
        while todo:
            node = todo.pop()
            key = node_key(node)
            if key in owner:
                continue
            owner[key] = layer
            for nxt, _ in node.next_functions:
                if nxt is not None:
                    todo.append(nxt)

    # -- queries ----------------------------------------------------------------------------
    @property
    def current(self) -> str | None:
        """The innermost running module's name, or None outside the model."""
        return self.stack[-1] if self.stack else None

    @property
    def recomputing(self) -> bool:
        """True while the innermost running module was entered inside the autograd engine (an
        activation-checkpointing recompute)."""
        return bool(self._frames) and self._frames[-1][1]

    def owner_of(self, node) -> str | None:
        """The layer whose forward created autograd ``node`` (None when unknown)."""
        if node is None:
            return None
        return self.node_owner.get(node_key(node))

    def uncalled(self) -> list[str]:
        """Names of the modules whose object never ran (under any of its names), model order."""
        return [n for n, mod in self.model.named_modules(remove_duplicate=False)
                if id(mod) not in self.called]

    def forget_nodes(self) -> None:
        self.node_owner.clear()


_PARAMETER_API = ("parameters", "named_parameters", "_named_members")


def _custom_parameters(cls) -> bool:
    """Whether ``cls`` overrides how ``Module.parameters()`` finds parameters."""
    return any(getattr(cls, n) is not getattr(torch.nn.Module, n) for n in _PARAMETER_API)


def own_params(model: torch.nn.Module) -> dict[str, int]:
    """Parameters each module holds itself (``parameters(recurse=False)``), every name of a shared
    module included, in model order; modules without parameters are left out."""
    out = {}
    for name, mod in model.named_modules(remove_duplicate=False):
        n = sum(p.numel() for p in mod.parameters(recurse=False))
        if n:
            out[name] = n
    return out


def module_params(model: torch.nn.Module) -> dict[str, int]:
    """Parameters per module *including* its submodules (``""`` is the whole model), each shared
    parameter counted once per module, in model order (thop's / ptflops' ``params``).

    One bottom-up pass (a module's own parameters plus its children's totals) when no module and
    no parameter is reachable twice; with sharing, each module's distinct parameters are summed."""
    named = list(model.named_modules(remove_duplicate=False))
    mods = {id(m): m for _, m in named}
    own = [p for m in mods.values() for p in own_parameters(m)]
    if len(mods) < len(named) or len({id(p) for p in own}) < len(own) or \
            any(_custom_parameters(c) for c in {type(m) for m in mods.values()}):  # walk each
        return {name: sum(p.numel() for p in mod.parameters()) for name, mod in named}
    total: dict[int, int] = {}
    for _, m in reversed(named):  # children come after their parent in named_modules
        total[id(m)] = sum(p.numel() for p in own_parameters(m)) + \
            sum(total[id(c)] for c in child_modules(m))
    return {name: total[id(m)] for name, m in named}
