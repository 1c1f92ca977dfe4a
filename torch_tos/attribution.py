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
"""

from __future__ import annotations

import torch
from torch.utils._pytree import tree_leaves

from .counts import LOSS_LAYER, OPTIMIZER_LAYER, OUTSIDE_LAYER  # noqa: F401 - defined once, there

_UINT64_MAX = 2 ** 64 - 1


def node_key(node) -> int:
    """A stable key for an autograd node that does not keep it alive."""
    seq = node._sequence_nr()
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
    """Tracks the running module of one model (forward) and which layer owns each autograd node."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.stack: list[str] = []
        self.node_owner: dict[int, str] = {}
        self.types: dict[str, str] = {}
        self.order: dict[str, int] = {}
        self.entered = False  # True once any forward of this model ran
        self._handles: list = []

    # -- hooks ------------------------------------------------------------------------------
    def attach(self, root_pre_hook: bool = True) -> "ModuleScope":
        """Register the hooks. ``root_pre_hook=False`` leaves out the root module's pre-hook, for a
        caller that runs :meth:`enter_root` itself from its own root pre-hook (hooks cannot be
        added to or removed from a module while its pre-hooks are running)."""
        seen = set()
        for name, mod in self.model.named_modules(remove_duplicate=False):
            self.types.setdefault(name, type(mod).__name__)
            self.order.setdefault(name, len(self.order))
            if id(mod) in seen:  # a shared module is hooked once, under its first name
                continue
            seen.add(id(mod))
            if root_pre_hook or mod is not self.model:
                self._handles.append(mod.register_forward_pre_hook(self._pre(name), with_kwargs=True))
            self._handles.append(mod.register_forward_hook(self._post(name), with_kwargs=True,
                                                           always_call=True))
        return self

    def enter_root(self, args, kwargs) -> None:
        """What the root module's pre-hook does: claim the input nodes, push the root scope."""
        self._pre("")(self.model, args, kwargs)

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.stack.clear()

    def __enter__(self):
        return self.attach()

    def __exit__(self, *exc):
        self.detach()
        return False

    def _pre(self, name: str):
        def hook(module, args, kwargs):
            if torch.is_grad_enabled():
                outer = self.stack[-1] if self.stack else OUTSIDE_LAYER
                self._claim(_grad_fns((args, kwargs)), outer)
            self.stack.append(name)
            self.entered = True
            return None

        return hook

    def _post(self, name: str):
        def hook(module, args, kwargs, output):
            if self.stack and self.stack[-1] == name:
                self.stack.pop()
            elif name in self.stack:  # unwinding after an exception
                del self.stack[self.stack.index(name):]
            if torch.is_grad_enabled():
                self._claim(_grad_fns(output), name)
            return None

        return hook

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

    def owner_of(self, node) -> str | None:
        """The layer whose forward created autograd ``node`` (None when unknown)."""
        if node is None:
            return None
        return self.node_owner.get(node_key(node))

    def forget_nodes(self) -> None:
        self.node_owner.clear()
