"""Shadows of the user's modules and optimizers: new objects that profiling may change freely.

A *shadow* of a module is a new module object of the same class whose ``__dict__`` is a shallow
copy of the original's: every built-in container in it (``_parameters``, ``_buffers``,
``_modules``, the hook dictionaries, lists such as ``nn.LSTM``'s ``_flat_weights``) is a new
container, so registering hooks, switching ``train()``/``eval()``, assigning attributes or updating
buffers on the shadow leaves the original as it was; other attributes (a config, a
``threading.Lock``) are shared as they are — nothing is deep-copied or pickled. Submodules,
shared submodules included, are shadowed once each; references between modules (``_modules``,
attributes, containers) point at the shadows. Hook objects that define ``__copy__`` are copied
(the training counter's hooks become no-ops in a copy, so a shadow never reports to it).

Which tensor goes into a shadow is the caller's choice, through ``tensor_of(t, kind)`` (``kind``
is ``"param"``, ``"buffer"`` or ``"other"``): :func:`working_copy` gives every tensor a copy on the
target device (no data at all on ``meta``); :mod:`torch_tos.workspace` shares parameters read-only
and copies only what the step writes. A shadow optimizer is built the same way over the tensors
its parameters map to. TorchScript modules, which keep their state in C++, are deep-copied.
"""

from __future__ import annotations

import copy
from collections import OrderedDict, defaultdict

import torch

from ._compat import tree_leaves
from .sharded import is_dtensor, meta_dtensor

_CONTAINERS = frozenset((dict, OrderedDict, list, set, tuple, defaultdict))
_ATOMIC = frozenset((bool, int, float, str, bytes, type(None), torch.dtype, torch.device))


def copy_tensor(t: torch.Tensor, device=None, *, leaf_grad: bool = True) -> torch.Tensor:
    """A new tensor with ``t``'s size, strides and dtype on ``device`` (``t``'s own by default):
    empty on ``meta``, a copy of the data otherwise. Parameters stay parameters; a tensor that
    requires grad (a leaf or not) becomes a new leaf that requires grad when ``leaf_grad``, so the
    input-gradient work of a step is counted and nothing flows back into the user's graph."""
    target = torch.device(device) if device is not None else t.device
    if is_dtensor(t):  # the rank's shard copied, inside a DTensor of the same mesh and placements
        data = meta_dtensor(t, copy_tensor(t.to_local().detach(), target, leaf_grad=False))
        if isinstance(t, torch.nn.Parameter):
            return torch.nn.Parameter(data, requires_grad=t.requires_grad)
        return data.requires_grad_(True) if t.requires_grad and leaf_grad else data
    with torch.no_grad():
        if t.is_nested or t.layout != torch.strided:
            data = t.detach().to(target, copy=True)  # jagged / sparse: no strides to copy
        elif target.type == "meta":
            data = torch.empty_strided(t.size(), t.stride(), dtype=t.dtype, device="meta")
        elif target == t.device:
            data = t.detach().clone()
        else:
            data = t.detach().to(target, copy=True)
    if isinstance(t, torch.nn.Parameter):
        return torch.nn.Parameter(data, requires_grad=t.requires_grad)
    if t.requires_grad and leaf_grad and (data.is_floating_point() or data.is_complex()):
        data.requires_grad_(True)
    return data


def _copy_hook(v):
    """Hooks that define ``__copy__`` (the training counter's) decide what a copy of them is."""
    return copy.copy(v) if hasattr(type(v), "__copy__") else v


class Shadows:
    """Builds shadows of modules and optimizers over tensors chosen by ``tensor_of(t, kind)``.

    One instance serves a whole working set, so a tensor or module reached twice (tied weights,
    shared submodules, an optimizer over the model's parameters) maps to one shadow.
    ``tensors`` (id → new tensor) and ``modules`` (id → shadow) can be read afterwards.
    """

    def __init__(self, tensor_of):
        self.tensor_of = tensor_of
        self.tensors: dict[int, torch.Tensor] = {}
        self.modules: dict[int, torch.nn.Module] = {}
        self.originals: dict[int, torch.Tensor] = {}  # id → the user's tensor (kept alive)

    # -- tensors ------------------------------------------------------------------------------
    def tensor(self, t: torch.Tensor, kind: str = "other") -> torch.Tensor:
        key = id(t)
        new = self.tensors.get(key)
        if new is None:
            new = self.tensor_of(t, kind)
            self.tensors[key] = new
            self.originals[key] = t
        return new

    def value(self, v, kind: str = "other"):
        """``v`` with every tensor, module and optimizer inside built-in containers replaced."""
        if isinstance(v, torch.Tensor):
            return self.tensor(v, kind)
        if isinstance(v, torch.nn.Module):
            return self.module(v)
        if isinstance(v, torch.optim.Optimizer):
            return self.optimizer(v)
        t = type(v)
        if t in (list, tuple):
            return t(self.value(x, kind) for x in v)
        if t is dict or t is OrderedDict:
            return t((k, self.value(x, kind)) for k, x in v.items())
        if isinstance(v, tuple) and hasattr(v, "_fields"):  # namedtuple
            return t(*(self.value(x, kind) for x in v))
        return v

    # -- modules ------------------------------------------------------------------------------
    def module(self, m: torch.nn.Module) -> torch.nn.Module:
        new = self.modules.get(id(m))
        if new is not None:
            return new
        if isinstance(m, torch.jit.ScriptModule):
            return self._deepcopy_module(m)
        new = object.__new__(type(m))
        self.modules[id(m)] = new
        src = m.__dict__
        d = src.copy()
        tensor = self.tensor
        for k, v in src.items():
            tv = type(v)
            if tv in _ATOMIC:
                continue  # immutable: shared (training, in_channels, ...)
            if tv in _CONTAINERS:
                if not v:  # an empty container: a new one (the hook dictionaries, mostly)
                    if tv is not tuple:
                        d[k] = v.copy() if tv is defaultdict else tv()
                    continue
                if tv is tuple and all(type(x) in _ATOMIC for x in v):
                    continue  # immutable: shared (kernel_size, stride, ...)
            if k == "_parameters":
                d[k] = tv((n, None if p is None else tensor(p, "param")) for n, p in v.items())
            elif k == "_buffers":
                d[k] = tv((n, None if b is None else tensor(b, "buffer")) for n, b in v.items())
            elif k == "_modules":
                d[k] = tv((n, None if c is None else self.module(c)) for n, c in v.items())
            elif tv in _CONTAINERS:
                if "hooks" in k and isinstance(v, dict):  # a snapshot taken in one C call (the
                    # hooks and their flags, ``_forward_hooks_with_kwargs`` & co.): another thread
                    # may be adding its hooks to the user's module meanwhile
                    d[k] = tv((hk, _copy_hook(h)) for hk, h in list(v.items()))
                else:
                    d[k] = self._container(v)
            elif isinstance(v, (torch.Tensor, torch.nn.Module)):
                d[k] = self.value(v)
        new.__dict__.update(d)
        return new

    def _container(self, v):
        if type(v) is set:
            return set(v)
        if type(v) is defaultdict:
            out = defaultdict(v.default_factory)
            out.update((k, self.value(x)) for k, x in v.items())
            return out
        return self.value(v)

    def _deepcopy_module(self, m):
        memo = {}
        for t in (*m.parameters(), *m.buffers()):
            memo[id(t)] = self.tensor(t, "param" if isinstance(t, torch.nn.Parameter) else "buffer")
        new = copy.deepcopy(m, memo)
        self.modules[id(m)] = new
        return new

    # -- optimizers ---------------------------------------------------------------------------
    def optimizer(self, opt: torch.optim.Optimizer, host_scalars: bool = True):
        """A shadow of ``opt`` over the shadows of its parameters and state.

        Optimizer-state scalars kept on the CPU (``step`` of non-capturable, non-fused optimizers)
        stay on the CPU whatever the target device, as ``load_state_dict`` keeps them (torch reads
        them with ``.item()``, impossible on meta). An instance-level ``step`` (the wrapper an LR
        scheduler installs, which calls the *original* optimizer) is dropped.
        """
        new = self.modules.get(id(opt))
        if new is not None:
            return new
        new = object.__new__(type(opt))
        self.modules[id(opt)] = new
        d = {}
        for k, v in opt.__dict__.items():
            if k == "step":
                continue
            if k == "param_groups":
                d[k] = [{gk: ([self.tensor(p, "param") for p in gv] if gk == "params" else
                              self.value(gv, "state") if isinstance(gv, torch.Tensor) else gv)
                         for gk, gv in g.items()} for g in v]
            elif k == "state":
                state = defaultdict(dict)
                for p, s in v.items():
                    key = self.tensor(p, "param") if isinstance(p, torch.Tensor) else p
                    state[key] = {sk: self._state_value(sv, host_scalars) for sk, sv in s.items()}
                d[k] = state
            elif k.endswith("hooks") and isinstance(v, dict):
                d[k] = type(v)((hk, _copy_hook(h)) for hk, h in list(v.items()))
            elif type(v) in _CONTAINERS:
                d[k] = self._container(v)
            else:
                d[k] = v
        new.__dict__.update(d)
        return new

    def _state_value(self, v, host_scalars: bool):
        if isinstance(v, torch.Tensor):
            if host_scalars and v.dim() == 0 and v.device.type == "cpu":
                key = id(v)
                if key not in self.tensors:
                    self.tensors[key] = v.detach().clone()
                    self.originals[key] = v
                return self.tensors[key]
            return self.tensor(v, "state")
        if type(v) in (list, tuple):
            return type(v)(self._state_value(x, host_scalars) for x in v)
        if type(v) in _CONTAINERS:
            return self.value(v, "state")
        return v


def working_copy(objs, device=None):
    """A copy of ``objs`` (any nesting of modules, optimizers, tensors) onto ``device``.

    Every tensor is copied once (on ``meta``: only its size, strides and dtype), so sharing —
    tied weights, the optimizer's references to the parameters — is kept; modules and optimizers
    are shadows (see the module doc), so attributes that cannot be pickled are no obstacle.
    Gradients are not copied.
    """
    shadows = Shadows(lambda t, kind: copy_tensor(t, device))
    return shadows.value(objs)


def iter_tensors(obj):
    """The tensors of ``obj`` (modules: parameters and buffers; containers: their leaves)."""
    if isinstance(obj, torch.nn.Module):
        yield from obj.parameters()
        yield from obj.buffers()
        return
    for leaf in tree_leaves(obj):
        if isinstance(leaf, torch.Tensor):
            yield leaf
