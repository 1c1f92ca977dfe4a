"""Every private PyTorch API torch_tos uses, named once, each with a fallback or a clear error.

torch_tos counts what really runs at the aten level, which needs a few hooks PyTorch does not
document. They are all imported from here so that a PyTorch release that moves one breaks in one
place, with a message naming the API, instead of deep inside a count. Tested on torch 2.13 and
2.14 (see docs/conventions.md §8). Each entry says what happens when the API is missing:

============================================  =======================================================
API                                           without it
============================================  =======================================================
``torch._C._current_graph_task_id``           ``-1`` (never "inside backward": phase from hooks only)
``torch._C._current_autograd_node``           ``None`` (backward ops booked under the current layer)
``Node._sequence_nr``                         ``id(node)`` (attribution still works within a step)
``torch._C._AutoDispatchBelowAutograd``       :class:`CompatError` (meta ``mish_backward`` shim)
``torch._C._dispatch_get_all_op_names``       the ``aten`` names ``dir(torch.ops.aten)`` lists
``torch.utils._python_dispatch``:             :class:`CompatError` at import (the engine *is* one)
  ``TorchDispatchMode``,
  ``_disable_current_modes``,
  ``_get_current_dispatch_mode_stack``
``torch.utils._pytree.tree_leaves``,          a small recursive walk over lists, tuples and dicts
``tree_map``
``flop_counter.shape_wrapper`` and the        ``flop_registry`` entries are called as they are
``_get_raw`` flag of custom FLOP formulas     (pytree's walk: same FLOPs, slower per op)
``aten._fused_sdp_choice``                    :class:`CompatError` (meta SDPA kernel choice)
``torch._decomp.meta_table``                  the CPU's shape function (meta ``_grouped_mm`` in
                                              threads that count nothing)
``torch.library.Library._destroy``            dropping the last reference (its finalizer
                                              deregisters the kernels)
``torch._ops.OpOverload``,                    none: the rules are keyed by them (needed at import)
``OpOverloadPacket``
``torch._ops.HigherOrderOperator`` and its    no higher-order op is recognised (``torch.cond``
``py_kernels[CompositeExplicitAutograd]``     then fails inside PyTorch, as before); a HOP without
                                              the eager kernel is reported unsupported
``torch._C._push_on_torch_function_stack``,   :class:`CompatError` when the step cache starts
``_pop_torch_function_stack``,                tracing a step (pass ``cache=False`` to count
``_len_torch_function_stack``,                without it)
``_get_function_stack_at``
``torch._C._autograd._get_sequence_nr``       ``None`` (backward roots keyed without their node's
                                              position; a partial step's earlier nodes unowned)
``torch._C.``                                 no re-snapshot: ops right after a ``torch.compile``-d
``_dynamo_save_local_dispatch_key_set``,      call made inside counting may go uncounted
``_dynamo_restore_local_dispatch_key_set``,
``_dispatch_tls_set_dispatch_key_included``,
``DispatchKey.Python``
``torch._C._is_any_autocast_enabled``         ``True`` (autocast state always in the signature)
``torch._C._set_grad_enabled``                ``None`` (grad-mode switches stay events in the step
                                              fingerprint: fewer cache hits, same counts)
``torch._C.DisableTorchFunction``             a null context (hf_meta's value stand-ins are then
                                              visible to a TOsCounter's tracer: fewer cache hits)
``torch.nn.modules.module._global_*_hooks``   ``True`` (global hooks assumed set: no trusted-model
                                              shortcut, exact but slower)
``torch.fx.node._get_qualified_name``         ``module.qualname`` of the target
``torch.optim.optimizer.``                    ``None`` (the shadow optimizer keeps its for-loop
``_default_to_fused_or_foreach``              default)
``Module._forward_pre_hooks`` & co. (the      the public ``register_forward_pre_hook`` /
hook dicts), ``RemovableHandle.next_id``      ``register_forward_hook`` (slower attach)
``torch.nn.modules.conv._ConvNd``             the six public ``Conv*``/``ConvTranspose*`` classes
``torch.nn.Module._call_impl``                a step that leaves the cache inside a forward is
                                              attributed coarsely (then counted in full once)
``torch.nn.Module._wrapped_call_impl``,       the step cache's tracer watches the loop's code on
``torch.optim.optimizer.Optimizer.``          every step (no frame-read stretch, see
``profile_hook_step``,                        ``training/stretch.py``): exact, slower
``_global_optimizer_pre_hooks``
``DistributedDataParallel.``                  the backward of a DDP model is counted every step
``_get_ddp_logging_data`` and the DDP's       (its bucket rebuild and communication hook cannot
``_comm_hooks``, ``_has_rebuilt_buckets``,    be told apart otherwise)
``_lazy_init_ran``
``mixed_precision_hooks.``                    DDP's ``mixed_precision`` hook is user code to the
``_reducer_allreduce_and_upcast_hook``        cache: its backward is counted every step
``torch._C._get_dispatch_mode``,              never "in fake mode": DTensor's shape propagation
``_TorchDispatchModeKey.FAKE``                (a fake-tensor run of the global op) is counted too
``torch.distributed.distributed_c10d.``       the default process group's size and rank price a
``_resolve_process_group``                    functional collective of a named subgroup
============================================  =======================================================
"""

from __future__ import annotations

import contextlib
import importlib
from collections import OrderedDict

import torch


class CompatError(RuntimeError):
    """A private PyTorch API torch_tos needs is missing from the installed torch."""


def _missing(api: str, use: str) -> CompatError:
    return CompatError(f"torch_tos needs {api} ({use}), which torch {torch.__version__} does not "
                       "have; install a torch version torch_tos supports (2.13 or 2.14)")


# -- the dispatch-mode machinery (the engine is a TorchDispatchMode) ------------------------------
try:
    from torch.utils._python_dispatch import (TorchDispatchMode, _disable_current_modes,
                                              _get_current_dispatch_mode_stack)
except ImportError as exc:  # pragma: no cover - depends on the installed torch
    raise _missing("torch.utils._python_dispatch.TorchDispatchMode", "the counting engine") from exc

disable_current_modes = _disable_current_modes


def dispatch_mode_stack() -> list:
    """The TorchDispatchModes active in this thread (innermost last)."""
    return _get_current_dispatch_mode_stack()


# -- autograd state ---------------------------------------------------------------------------------
_graph_task_id = getattr(torch._C, "_current_graph_task_id", None)
_autograd_node = getattr(torch._C, "_current_autograd_node", None)


def current_graph_task_id() -> int:
    """Id of the backward pass running in this thread, ``-1`` outside backward."""
    return _graph_task_id() if _graph_task_id is not None else -1


def current_autograd_node():
    """The autograd node whose backward is running (``None`` outside backward)."""
    return _autograd_node() if _autograd_node is not None else None


def sequence_nr(node) -> int:
    """The node's sequence number (``2**64 − 1`` for AccumulateGrad); ``id(node)`` without it."""
    seq = getattr(node, "_sequence_nr", None)
    return seq() if seq is not None else id(node)


def below_autograd():
    """Context: dispatch below the autograd keys (``torch._C._AutoDispatchBelowAutograd``)."""
    guard = getattr(torch._C, "_AutoDispatchBelowAutograd", None)
    if guard is None:  # pragma: no cover - depends on the installed torch
        raise _missing("torch._C._AutoDispatchBelowAutograd", "meta mish_backward as on CPU")
    return guard()


# -- the operator registry -------------------------------------------------------------------------
def all_op_names() -> list[str]:
    """Qualified names (``aten::add.Tensor``) of every operator registered with the dispatcher."""
    names = getattr(torch._C, "_dispatch_get_all_op_names", None)
    if names is not None:
        return list(names())
    return [f"aten::{n}" for n in dir(torch.ops.aten) if not n.startswith("__")]  # pragma: no cover


def destroy_library(lib) -> None:
    """Deregister every kernel a ``torch.library.Library`` registered."""
    destroy = getattr(lib, "_destroy", None)
    if destroy is not None:
        destroy()
    # otherwise the caller drops its reference; the Library's finalizer deregisters


def fused_sdp_choice(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa) -> int:
    """The SDPA backend (``aten._fused_sdp_choice``: 0 math, 1 flash, …) for these CPU tensors."""
    op = getattr(torch.ops.aten, "_fused_sdp_choice", None)
    if op is None:  # pragma: no cover - depends on the installed torch
        raise _missing("aten._fused_sdp_choice", "the CPU's SDPA kernel choice on meta")
    return int(op(query, key, value, attn_mask, dropout_p, is_causal, scale=scale,
                  enable_gqa=enable_gqa))


def stock_meta_kernel(op, fallback):
    """PyTorch's Python meta function of ``op`` (``torch._decomp.meta_table``), or ``fallback``."""
    try:
        from torch._decomp import meta_table
    except ImportError:  # pragma: no cover - depends on the installed torch
        return fallback
    return meta_table.get(op, fallback)


# -- operator objects -------------------------------------------------------------------------------
OpOverload = torch._ops.OpOverload
OpOverloadPacket = torch._ops.OpOverloadPacket


# -- pytrees ---------------------------------------------------------------------------------------
try:
    from torch.utils._pytree import tree_leaves, tree_map
except ImportError:  # pragma: no cover - depends on the installed torch
    def tree_leaves(tree) -> list:
        """Leaves of nested lists, tuples and dicts (the containers models pass around)."""
        if isinstance(tree, (list, tuple)):
            return [leaf for t in tree for leaf in tree_leaves(t)]
        if isinstance(tree, dict):
            return [leaf for t in tree.values() for leaf in tree_leaves(t)]
        return [tree]

    def tree_map(fn, tree):
        """``fn`` applied to the leaves of nested lists, tuples and dicts, structure kept."""
        if isinstance(tree, (list, tuple)):
            return type(tree)(tree_map(fn, t) for t in tree)
        if isinstance(tree, dict):
            return {k: tree_map(fn, t) for k, t in tree.items()}
        return fn(tree)


# -- FlopCounterMode's formula wrapper ---------------------------------------------------------------
try:
    from torch.utils.flop_counter import shape_wrapper
    _SHAPE_WRAPPER_CODE = getattr(shape_wrapper(lambda: 0), "__code__", None)
except ImportError:  # pragma: no cover - depends on the installed torch
    _SHAPE_WRAPPER_CODE = None


def shape_level_formula(f):
    """The shape-level formula inside a ``shape_wrapper``-wrapped ``flop_registry`` entry, or
    ``None`` when ``f`` is not one (a raw formula, or a torch whose wrapper looks different)."""
    if _SHAPE_WRAPPER_CODE is not None and getattr(f, "__code__", None) is _SHAPE_WRAPPER_CODE:
        return getattr(f, "__wrapped__", None)
    return None


# -- higher-order operators (torch.cond & co., see torch_tos/hops.py) ---------------------------------
HigherOrderOperator = getattr(getattr(torch, "_ops", None), "HigherOrderOperator", None) or type(
    "NoHigherOrderOperator", (), {})


def eager_kernel(hop):
    """The eager (``CompositeExplicitAutograd``) Python kernel of a higher-order op, or ``None``."""
    key = getattr(getattr(torch._C, "DispatchKey", None), "CompositeExplicitAutograd", None)
    kernels = getattr(hop, "py_kernels", None)
    return kernels.get(key) if key is not None and kernels is not None else None


# -- the torch-function mode stack (the step cache's tracer, torch_tos/training/steps.py) -------------
def _tf_api(name: str):
    """``torch._C.<name>`` itself (the tracer calls these on every step: no wrapper), or a
    function raising :class:`CompatError` when called."""
    api = getattr(torch._C, name, None)
    if api is not None:
        return api

    def missing(*args):  # pragma: no cover - depends on the installed torch
        raise _missing(f"torch._C.{name}", "the step cache's tracer; pass cache=False")

    return missing


#: ``push_torch_function_mode(mode)``: push ``mode`` on this thread's torch-function mode stack
#: (no ``__enter__``); ``pop_torch_function_mode()``: pop the innermost one.
push_torch_function_mode = _tf_api("_push_on_torch_function_stack")
pop_torch_function_mode = _tf_api("_pop_torch_function_stack")
_tf_len = _tf_api("_len_torch_function_stack")
_tf_at = _tf_api("_get_function_stack_at")


#: How many torch-function modes are on this thread's stack.
torch_function_stack_len = _tf_len


def torch_function_mode_at_top():
    """The innermost torch-function mode of this thread, ``None`` when the stack is empty."""
    n = _tf_len()
    return _tf_at(n - 1) if n else None


# -- autograd sequence numbers, grad mode, autocast --------------------------------------------------
_get_sequence_nr = getattr(getattr(torch._C, "_autograd", None), "_get_sequence_nr", None)


def _no_sequence_nr() -> None:
    return None


#: ``next_sequence_nr()``: the sequence number the next autograd node made in this thread gets
#: (the C function itself: the step counter calls it on every step); None without it.
next_sequence_nr = _get_sequence_nr if _get_sequence_nr is not None else _no_sequence_nr


#: The C function ``torch.set_grad_enabled``/``no_grad`` call (a torch-function event), or None.
C_SET_GRAD_ENABLED = getattr(torch._C, "_set_grad_enabled", None)

is_any_autocast_enabled = getattr(torch._C, "_is_any_autocast_enabled", None) or (lambda: True)

#: A context in which torch-function handling (and so any TorchFunctionMode) is off.
disable_torch_function = getattr(torch._C, "DisableTorchFunction", None) or contextlib.nullcontext


# -- dispatch keys around torch.compile-d calls (torch_tos/training/hooks.py) ------------------------
_save_keys = getattr(torch._C, "_dynamo_save_local_dispatch_key_set", None)
_restore_keys = getattr(torch._C, "_dynamo_restore_local_dispatch_key_set", None)
_include_key = getattr(torch._C, "_dispatch_tls_set_dispatch_key_included", None)
_keys = getattr(torch._C, "DispatchKey", None)
_PYTHON_KEYS = tuple(getattr(_keys, k) for k in ("Python", "PythonTLSSnapshot") if hasattr(_keys, k))


#: APIs that not every supported torch has: name → the first version with it (the fallback in
#: the table above applies on older versions; torch 2.13 lacks dynamo's key-set snapshot, so an
#: op run right after a ``torch.compile``'d call inside a counted step may go uncounted there).
NEWER_PRIVATE_APIS = {"torch._C._dynamo_save_local_dispatch_key_set": "2.14",
                      "torch._C._dynamo_restore_local_dispatch_key_set": "2.14"}
#: True when a counted step sees every op around a ``torch.compile``'d call (the APIs above exist).
COMPILED_CALLS_COUNTED = _save_keys is not None and _restore_keys is not None


def resnapshot_python_keys(include: bool) -> bool:
    """Re-take dynamo's saved dispatch key set of the running compiled call with the ``Python``
    keys ``include``-d. False outside a compiled call or on a torch without these APIs."""
    if _save_keys is None or _restore_keys is None or _include_key is None or not _PYTHON_KEYS:
        return False
    try:
        _restore_keys()
    except RuntimeError:  # no snapshot: not inside a compiled call
        return False
    for key in _PYTHON_KEYS:
        _include_key(key, include)
    _save_keys()
    return True


# -- module internals ----------------------------------------------------------------------------
_mod = torch.nn.modules.module
_GLOBAL_HOOKS = tuple(getattr(_mod, n) for n in ("_global_forward_pre_hooks", "_global_forward_hooks",
                                                 "_global_backward_hooks", "_global_backward_pre_hooks")
                      if isinstance(getattr(_mod, n, None), dict))


def global_module_hooks_set() -> bool:
    """Whether hooks for every module (``register_module_forward_hook`` …) are registered;
    True (assume so) on a torch where they cannot be found."""
    return any(_GLOBAL_HOOKS) if _GLOBAL_HOOKS else True


from torch.utils.hooks import RemovableHandle as _RemovableHandle  # noqa: E402

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
OPTIMIZER_GLOBAL_PRE_HOOKS = getattr(importlib.import_module("torch.optim.optimizer"),
                                     "_global_optimizer_pre_hooks", None)
if not isinstance(OPTIMIZER_GLOBAL_PRE_HOOKS, dict):  # pragma: no cover - depends on torch
    OPTIMIZER_GLOBAL_PRE_HOOKS = None

#: The code of ``Module._call_impl``, which every module call runs: a Python frame running it is a
#: module call in progress (None on a torch without it).
MODULE_CALL_CODE = getattr(getattr(torch.nn.Module, "_call_impl", None), "__code__", None)


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


_FAKE_KEY = getattr(getattr(torch._C, "_TorchDispatchModeKey", None), "FAKE", None)
_get_dispatch_mode = getattr(torch._C, "_get_dispatch_mode", None)


def fake_mode_active() -> bool:
    """Whether a ``FakeTensorMode`` is active (``torch._C._get_dispatch_mode(FAKE)``): ops run now
    compute shapes only. False where that cannot be told."""
    if _FAKE_KEY is None or _get_dispatch_mode is None:  # pragma: no cover - depends on torch
        return False
    return _get_dispatch_mode(_FAKE_KEY) is not None


def process_group_size_and_rank(group_name) -> tuple[int, int] | None:
    """(size, this process's rank) of the process group a functional collective names
    (``distributed_c10d._resolve_process_group``); None where it cannot be resolved."""
    try:
        from torch.distributed.distributed_c10d import _resolve_process_group

        pg = _resolve_process_group(group_name)
        return int(pg.size()), int(pg.rank())
    except Exception:  # noqa: BLE001 - unknown name, no distributed build, a moved helper
        return None


#: Every private API above, as a dotted path from ``torch`` (tests/test_compat.py resolves each).
PRIVATE_APIS = (
    "torch._C._current_graph_task_id", "torch._C._current_autograd_node",
    "torch.autograd.graph.Node._sequence_nr", "torch._C._AutoDispatchBelowAutograd",
    "torch._C._dispatch_get_all_op_names", "torch.utils._python_dispatch.TorchDispatchMode",
    "torch.utils._python_dispatch._disable_current_modes",
    "torch.utils._python_dispatch._get_current_dispatch_mode_stack",
    "torch.utils._pytree.tree_leaves", "torch.utils._pytree.tree_map",
    "torch.utils.flop_counter.shape_wrapper",
    "torch.ops.aten._fused_sdp_choice", "torch._decomp.meta_table", "torch.library.Library._destroy",
    "torch._ops.OpOverload", "torch._ops.OpOverloadPacket", "torch._ops.HigherOrderOperator",
    "torch._C.DispatchKey.CompositeExplicitAutograd",
    "torch._C._push_on_torch_function_stack", "torch._C._pop_torch_function_stack",
    "torch._C._len_torch_function_stack", "torch._C._get_function_stack_at",
    "torch._C._autograd._get_sequence_nr", "torch._C._dynamo_save_local_dispatch_key_set",
    "torch._C._dynamo_restore_local_dispatch_key_set",
    "torch._C._dispatch_tls_set_dispatch_key_included", "torch._C.DispatchKey.Python",
    "torch._C._is_any_autocast_enabled", "torch._C._set_grad_enabled", "torch._C.DisableTorchFunction",
    "torch.nn.modules.module._global_forward_pre_hooks", "torch.nn.modules.module._global_forward_hooks",
    "torch.nn.modules.module._global_backward_hooks",
    "torch.nn.modules.module._global_backward_pre_hooks", "torch.fx.node._get_qualified_name",
    "torch.optim.optimizer._default_to_fused_or_foreach", "torch.nn.modules.conv._ConvNd",
    "torch.utils.hooks.RemovableHandle.next_id", "torch.nn.Module._call_impl",
    "torch.nn.Module._wrapped_call_impl", "torch.optim.optimizer.Optimizer.profile_hook_step",
    "torch.optim.optimizer._global_optimizer_pre_hooks",
    "torch.nn.parallel.DistributedDataParallel._get_ddp_logging_data",
    "torch.distributed.algorithms.ddp_comm_hooks.mixed_precision_hooks._reducer_allreduce_and_upcast_hook",
    "torch._C._get_dispatch_mode",
    "torch._C._TorchDispatchModeKey.FAKE", "torch.distributed.distributed_c10d._resolve_process_group",
)
