"""Working copies of (model, optimizer, inputs, …) so that profiling never touches the user's objects.

One ``copy.deepcopy`` over everything, with a memo pre-filled with a copy of every tensor on the
target device: on ``meta`` no data is copied at all (the copy costs nothing and counting runs
without compute); on a real device each tensor is cloned once, and parameters, their sharing, the
optimizer's references to them and its state all stay consistent because one memo serves all.
Gradients are dropped on the copy (profiling counts a step after ``optimizer.zero_grad()``).
"""

from __future__ import annotations

import copy

import torch
from torch.utils._pytree import tree_leaves


def _iter_tensors(obj, seen: set):
    """Tensors reachable from modules, optimizers, and nested containers."""
    if isinstance(obj, torch.Tensor):
        if id(obj) not in seen:
            seen.add(id(obj))
            yield obj
        return
    if isinstance(obj, torch.nn.Module):
        for t in obj.parameters():
            yield from _iter_tensors(t, seen)
        for t in obj.buffers():
            yield from _iter_tensors(t, seen)
        for m in obj.modules():
            for v in vars(m).values():
                if isinstance(v, torch.Tensor):
                    yield from _iter_tensors(v, seen)
        return
    if isinstance(obj, torch.optim.Optimizer):
        for group in obj.param_groups:
            for p in group["params"]:
                yield from _iter_tensors(p, seen)
            for v in group.values():
                if isinstance(v, torch.Tensor):
                    yield from _iter_tensors(v, seen)
        for state in obj.state.values():
            for v in tree_leaves(state):
                if isinstance(v, torch.Tensor):
                    yield from _iter_tensors(v, seen)
        return
    for leaf in tree_leaves(obj):
        if isinstance(leaf, (torch.Tensor, torch.nn.Module, torch.optim.Optimizer)):
            yield from _iter_tensors(leaf, seen)


def _copy_tensor(t: torch.Tensor, device) -> torch.Tensor:
    target = torch.device(device) if device is not None else t.device
    with torch.no_grad():
        if target.type == "meta":
            data = torch.empty_strided(t.size(), t.stride(), dtype=t.dtype, device="meta")
        else:
            data = t.detach().to(target, copy=True)
    if isinstance(t, torch.nn.Parameter):
        return torch.nn.Parameter(data, requires_grad=t.requires_grad)
    if t.requires_grad and t.is_leaf:
        data.requires_grad_(True)
    return data


def _host_scalars(objs) -> set:
    """ids of optimizer-state scalars kept on the CPU (``step`` of non-capturable, non-fused
    optimizers): torch keeps them there whatever the parameters' device (as ``load_state_dict``
    does), and reads them with ``.item()`` — impossible on meta."""
    ids = set()
    for leaf in tree_leaves(objs, is_leaf=lambda o: isinstance(o, torch.optim.Optimizer)):
        if isinstance(leaf, torch.optim.Optimizer):
            for state in leaf.state.values():
                for v in tree_leaves(state):
                    if isinstance(v, torch.Tensor) and v.dim() == 0 and v.device.type == "cpu":
                        ids.add(id(v))
    return ids


def working_copy(objs, device=None):
    """Deep-copy ``objs`` (any nesting of modules, optimizers, tensors) onto ``device``."""
    memo: dict = {}
    host = _host_scalars(objs)
    for t in _iter_tensors(objs, set()):
        memo[id(t)] = _copy_tensor(t, None if id(t) in host else device)
    return copy.deepcopy(objs, memo)
