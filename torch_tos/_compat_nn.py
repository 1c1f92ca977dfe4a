"""Private APIs of the objects a user's model and optimizer are made of — ``torch.nn.Module``'s
hook dictionaries and global hooks, ``RemovableHandle`` ids, the convolution base class, FX's
qualified names, the optimizer's foreach default — with their fallbacks.

Part of :mod:`torch_tos._compat` (its table lists these APIs and what happens without each; it
re-exports everything here): the dispatch and autograd internals stay there, what belongs to
modules and optimizers is here.
"""

from __future__ import annotations

import importlib
import types
import weakref
from collections import OrderedDict

import torch
from torch.utils.hooks import RemovableHandle as _RemovableHandle

__all__ = ["CONV_TYPES", "MODULE_CALL_CODE", "OPTIMIZER_GLOBAL_PRE_HOOKS", "OPTIMIZER_STEP_CODE",
           "LR_SCHEDULER_STEP_CODE", "library_step", "lr_scheduler_step",
           "WRAPPED_CALL_CODE", "ScopeHooks", "child_modules", "ddp_internals",
           "ddp_mixed_precision_hook", "default_foreach", "global_module_hooks_set", "has_module_hooks",
           "own_buffers", "own_parameters", "qualified_name", "tensor_version", "forward_hook_dicts",
           "module_call_impl", "optimizer_step_pre_hooks"]

_mod = torch.nn.modules.module
_GLOBAL_HOOKS = tuple(getattr(_mod, n) for n in ("_global_forward_pre_hooks", "_global_forward_hooks",
                                                 "_global_backward_hooks", "_global_backward_pre_hooks")
                      if isinstance(getattr(_mod, n, None), dict))


def global_module_hooks_set() -> bool:
    """Whether hooks for every module (``register_module_forward_hook`` …) are registered;
    True (assume so) on a torch where they cannot be found."""
    return any(_GLOBAL_HOOKS) if _GLOBAL_HOOKS else True



# -- a module's own members and hooks, read without the public iterators' generator overhead ----
_m = torch.nn.Linear(1, 1)
_MEMBER_DICTS = all(isinstance(getattr(_m, n, None), dict) for n in ("_parameters", "_buffers", "_modules"))
_HOOK_DICTS = ("_forward_hooks", "_backward_hooks", "_backward_pre_hooks", "_forward_pre_hooks")
_HOOKS_READABLE = all(isinstance(getattr(_m, n, None), dict) for n in _HOOK_DICTS)
del _m


def own_parameters(module) -> list:
    """The parameters ``module`` holds itself (``Module._parameters``; else the public
    ``parameters(recurse=False)``), each once per name it is registered under."""
    if _MEMBER_DICTS:
        return [p for p in module._parameters.values() if p is not None]
    return [p for _, p in module.named_parameters(recurse=False, remove_duplicate=False)]  # pragma: no cover


def own_buffers(module) -> list:
    """The buffers ``module`` holds itself (``Module._buffers``; else ``buffers(recurse=False)``)."""
    if _MEMBER_DICTS:
        return [b for b in module._buffers.values() if b is not None]
    return [b for _, b in module.named_buffers(recurse=False, remove_duplicate=False)]  # pragma: no cover


def child_modules(module) -> list:
    """The direct submodules of ``module`` (``Module._modules``; else ``children()``), each once
    per name it is registered under."""
    if _MEMBER_DICTS:
        return [c for c in module._modules.values() if c is not None]
    return list(module.children())  # pragma: no cover


def has_module_hooks(module, *, pre: bool = True) -> bool:
    """Whether ``module`` has forward or backward hooks (and, with ``pre``, forward pre-hooks) of
    its own (``Module._forward_hooks`` & co.); True (assume so) on a torch where they cannot be
    read."""
    if not _HOOKS_READABLE:
        return True  # pragma: no cover - depends on the installed torch
    return bool(module._forward_hooks or module._backward_hooks or module._backward_pre_hooks or
                (pre and module._forward_pre_hooks))


def tensor_version(t) -> int:
    """The version counter of ``t``'s storage (``Tensor._version``: bumped by every in-place
    write); not defined for inference tensors."""
    return t._version


_HANDLE_IDS = isinstance(getattr(_RemovableHandle, "next_id", None), int)
_HOOK_DICT_TYPES = (dict, OrderedDict)
_SCOPE_HOOK_DICTS = ("_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_forward_hooks",
                     "_forward_hooks_with_kwargs", "_forward_hooks_always_called")


def _prepend(hooks: dict, key, value) -> None:
    """``hooks[key] = value`` as the first entry (``register_forward_pre_hook(prepend=True)``)."""
    if isinstance(hooks, OrderedDict):
        hooks[key] = value
        hooks.move_to_end(key, last=False)
        return
    rest = list(hooks.items())
    hooks.clear()
    hooks[key] = value
    hooks.update(rest)


class ScopeHooks:
    """A forward pre-hook (none when ``pre`` is None), run before the module's other pre-hooks
    (the work of those — FSDP2's all-gather, a parallel style's input redistribution — belongs to
    the module), and a forward hook of one module, both ``with_kwargs`` and the latter
    ``always_call`` — what ``register_forward_pre_hook`` and ``register_forward_hook`` store —
    entered under one fresh hook id straight into the module's hook dictionaries (the two
    ``RemovableHandle`` objects cost more than the hooks' own work on a small model).
    :meth:`remove` takes them out again. Where a torch keeps hooks elsewhere, the public
    ``register_*`` calls are used."""

    __slots__ = ("dicts", "hid", "handles")

    def __init__(self, module, pre, post):
        d = module.__dict__
        self.dicts = self.handles = None
        dicts = tuple(d.get(n) for n in _SCOPE_HOOK_DICTS)
        if _HANDLE_IDS and all(type(x) in _HOOK_DICT_TYPES for x in dicts):
            self.hid = _RemovableHandle.next_id  # the id a RemovableHandle would take
            _RemovableHandle.next_id += 1
            self.dicts = dicts
            if pre is not None:  # first: the module's own pre-hooks' work runs inside its scope
                _prepend(dicts[0], self.hid, pre)
                dicts[1][self.hid] = True
            dicts[2][self.hid], dicts[3][self.hid], dicts[4][self.hid] = post, True, True
        else:  # pragma: no cover - depends on the installed torch
            self.handles = (*(() if pre is None else
                              (module.register_forward_pre_hook(pre, with_kwargs=True, prepend=True),)),
                            module.register_forward_hook(post, with_kwargs=True, always_call=True))

    def remove(self) -> None:
        if self.dicts is not None:
            for hooks in self.dicts:
                hooks.pop(self.hid, None)
            self.dicts = None
        elif self.handles is not None:  # pragma: no cover
            for h in self.handles:
                h.remove()
            self.handles = None


_nn = torch.nn
#: Every convolution module type (``isinstance`` argument).
CONV_TYPES = getattr(_nn.modules.conv, "_ConvNd", None) or (
    _nn.Conv1d, _nn.Conv2d, _nn.Conv3d, _nn.ConvTranspose1d, _nn.ConvTranspose2d, _nn.ConvTranspose3d)


def qualified_name(target) -> str:
    """The FX name of a call target (``torch.fx.node._get_qualified_name``)."""
    get = getattr(torch.fx.node, "_get_qualified_name", None)
    if get is not None:
        return get(target)
    return f"{target.__module__}.{target.__qualname__}"  # pragma: no cover


def default_foreach(params, differentiable: bool) -> bool | None:
    """Whether an optimizer with ``foreach=None`` would take the foreach path for ``params``
    (``torch.optim.optimizer._default_to_fused_or_foreach``); None when that cannot be told."""
    try:
        from torch.optim.optimizer import _default_to_fused_or_foreach

        return bool(_default_to_fused_or_foreach(params, differentiable, use_fused=False)[1])
    except Exception:  # noqa: BLE001 - a private helper; the caller keeps its default
        return None


# -- DistributedDataParallel internals (torch_tos/training/ddp.py) ------------------------------------
_DDP_FIELDS = ("_has_rebuilt_buckets", "_lazy_init_ran", "_delay_all_reduce_all_params",
               "_static_graph_delay_allreduce_enqueued")


def ddp_internals(ddp) -> dict | None:
    """What a ``DistributedDataParallel`` keeps about its own state: ``logging`` (its
    ``_get_ddp_logging_data()``: iteration, bucket sizes, communication hook name), ``hooks``
    (its ``_comm_hooks``: ``[(hook, state)]`` of the Python hooks) and the flags of
    :data:`_DDP_FIELDS` (by name, without the underscore). None when this torch lacks them."""
    get = getattr(ddp, "_get_ddp_logging_data", None)
    hooks = getattr(ddp, "_comm_hooks", None)
    if get is None or hooks is None or not hasattr(ddp, "_has_rebuilt_buckets"):
        return None  # pragma: no cover - depends on the installed torch
    try:
        logging = get()
    except RuntimeError:  # pragma: no cover - no reducer (e.g. DDP of a model without parameters)
        logging = {}
    out = {name[1:]: getattr(ddp, name, None) for name in _DDP_FIELDS}
    out.update(logging=logging, hooks=hooks)
    return out


def ddp_mixed_precision_hook():
    """The hook DDP registers for its ``mixed_precision`` option (fixed work per step), or None."""
    try:
        from torch.distributed.algorithms.ddp_comm_hooks import mixed_precision_hooks
    except ImportError:  # pragma: no cover - depends on the installed torch
        return None
    return getattr(mixed_precision_hooks, "_reducer_allreduce_and_upcast_hook", None)


#: The code of ``Module._call_impl``, which every module call runs: a Python frame running it is a
#: module call in progress (None on a torch without it).
MODULE_CALL_CODE = getattr(getattr(torch.nn.Module, "_call_impl", None), "__code__", None)


#: The code of ``Module._wrapped_call_impl`` (the frame a module call enters from its caller), of the
#: wrapper ``Optimizer.profile_hook_step`` puts around every optimizer's ``step`` (the frame
#: ``opt.step()`` enters), and the dict of global optimizer step pre-hooks; None where not found.
WRAPPED_CALL_CODE = getattr(getattr(torch.nn.Module, "_wrapped_call_impl", None), "__code__", None)


def _optimizer_step_code():
    try:
        wrapper = torch.optim.Optimizer.profile_hook_step(lambda *a, **k: None)
    except Exception:  # noqa: BLE001 - moved or changed: no frame-read stretch
        return None
    return getattr(wrapper, "__code__", None)


OPTIMIZER_STEP_CODE = _optimizer_step_code()


def _lr_scheduler_step_code():
    """The code of the wrapper an LR scheduler sets as its optimizer's instance ``step`` (to see
    that ``optimizer.step()`` ran before ``scheduler.step()``): a function nested in
    ``LRScheduler.__init__`` with the free variables ``func`` (the class's ``step``) and
    ``opt_ref`` (a weak reference to the optimizer)."""
    lr = getattr(torch.optim, "lr_scheduler", None)
    init = getattr(getattr(getattr(lr, "LRScheduler", None), "__init__", None), "__code__", None)
    stack = [init] if init is not None else []
    while stack:
        for k in stack.pop().co_consts:
            if isinstance(k, types.CodeType):
                if k.co_name == "wrapper" and sorted(k.co_freevars) == ["func", "opt_ref"]:
                    return k
                stack.append(k)
    return None


LR_SCHEDULER_STEP_CODE = _lr_scheduler_step_code()


def library_step(opt) -> bool:
    """Whether ``opt.step()`` runs the library's hooked step: its class's ``step`` is wrapped by
    ``Optimizer.profile_hook_step`` and the instance has no ``step`` of its own but an LR
    scheduler's wrapper of it (:func:`lr_scheduler_step`)."""
    return getattr(type(opt).step, "__code__", None) is OPTIMIZER_STEP_CODE and \
        ("step" not in opt.__dict__ or lr_scheduler_step(opt))


def lr_scheduler_step(opt) -> bool:
    """Whether ``opt``'s instance ``step`` is exactly an LR scheduler's wrapper of ``opt``'s own
    class ``step`` (which sets ``opt._opt_called`` and calls it: no op of its own)."""
    w = opt.__dict__.get("step")
    code = getattr(w, "__code__", None)
    if code is None or code is not LR_SCHEDULER_STEP_CODE or w.__closure__ is None:
        return False
    cells = dict(zip(code.co_freevars, w.__closure__))
    ref = cells["opt_ref"].cell_contents
    return cells["func"].cell_contents is type(opt).step and type(ref) is weakref.ref and ref() is opt


OPTIMIZER_GLOBAL_PRE_HOOKS = getattr(importlib.import_module("torch.optim.optimizer"),
                                     "_global_optimizer_pre_hooks", None)
if not isinstance(OPTIMIZER_GLOBAL_PRE_HOOKS, dict):  # pragma: no cover - depends on torch
    OPTIMIZER_GLOBAL_PRE_HOOKS = None


def forward_hook_dicts(module):
    """``module``'s forward pre-hooks and forward hooks (``Module._forward_pre_hooks``,
    ``_forward_hooks``: id → hook, in running order); None where they cannot be read."""
    d = module.__dict__
    pre, post = d.get("_forward_pre_hooks"), d.get("_forward_hooks")
    return (pre, post) if type(pre) in _HOOK_DICT_TYPES and type(post) in _HOOK_DICT_TYPES else None


def module_call_impl():
    """``torch.nn.Module._call_impl`` as it is now (a replaced one runs other code); None without it."""
    return getattr(torch.nn.Module, "_call_impl", None)


def optimizer_step_pre_hooks(opt):
    """``opt``'s own step pre-hooks (``Optimizer._optimizer_step_pre_hooks``: id → hook, in running
    order); None where they cannot be read."""
    hooks = opt.__dict__.get("_optimizer_step_pre_hooks")
    return hooks if isinstance(hooks, dict) else None
