"""Every private PyTorch API torch_tos uses, named once, each with a fallback or a clear error.

torch_tos counts what really runs at the aten level, which needs a few hooks PyTorch does not
document. They are all imported from here so that a PyTorch release that moves one breaks in one
place, with a message naming the API, instead of deep inside a count. Tested on torch 2.13 and
2.14 (see docs/conventions.md §8). Each entry says what happens when the API is missing. The
internals of modules and optimizers (the rows from ``_global_*_hooks`` to ``_ConvNd``, and
``_call_impl`` to ``_optimizer_step_pre_hooks``) are used in :mod:`torch_tos._compat_nn`, and the
state of devices and process groups (``_cuda_hasPrimaryContext``, the fake mode, the process-group
resolver) in :mod:`torch_tos._compat_dist`, both re-exported here; everything else lives in this
module:

``torch._disable_dynamo``                     ``torch.compiler.disable`` (imports ``torch._dynamo``,
                                              ~2 s, when the training counter is imported)
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
``Module._parameters``, ``_buffers``,         the public ``parameters(recurse=False)``,
``_modules`` (a module's own members)         ``buffers(recurse=False)``, ``children()``
``Module._forward_hooks``, ``_backward_hooks``  hooks assumed (no trusted-model shortcut: exact,
``_backward_pre_hooks`` (read)                slower)
``torch.Tensor._version``                     none: a shared tensor written by another thread
                                              during a profile is told by it
``torch._C._cuda_hasPrimaryContext``          ``True`` (a CUDA context assumed on every GPU)
``torch._C._select_conv_backend``             ``None`` (a convolution's backend unknown: priced by
                                              the nearest measured kernel of its kind)
``torch.nn.Module._call_impl``                a step that leaves the cache inside a forward is
                                              attributed coarsely (then counted in full once)
``torch.nn.Module._wrapped_call_impl``,       the step cache's tracer watches the loop's code on
``torch.optim.optimizer.Optimizer.``          every step (no frame-read stretch, see
``profile_hook_step``,                        ``training/stretch.py``): exact, slower
``_global_optimizer_pre_hooks``,
``Optimizer._optimizer_step_pre_hooks``
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

import torch

from ._compat_nn import (CONV_TYPES, LR_SCHEDULER_STEP_CODE, MODULE_CALL_CODE,  # noqa: F401
                         OPTIMIZER_GLOBAL_PRE_HOOKS, OPTIMIZER_STEP_CODE, WRAPPED_CALL_CODE, ScopeHooks,
                         child_modules, library_step, lr_scheduler_step,
                         ddp_internals, ddp_mixed_precision_hook, default_foreach, forward_hook_dicts,
                         global_module_hooks_set, has_module_hooks, module_call_impl,
                         optimizer_step_pre_hooks, own_buffers, own_parameters, qualified_name,
                         tensor_version)
from ._compat_dist import cuda_has_primary_context, fake_mode_active, process_group_size_and_rank  # noqa: F401


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


def eager_under_compile(fn):
    """``fn`` as ``torch.compiler.disable(fn)``: ``torch.compile`` runs it eagerly, outside the
    graph. ``torch._disable_dynamo`` imports ``torch._dynamo`` on the first call only, so
    ``import torch_tos`` does not pay for dynamo."""
    lazy = getattr(torch, "_disable_dynamo", None)
    return lazy(fn) if lazy is not None else torch.compiler.disable(fn)


# -- the convolution backend PyTorch selects (the cost model's op attributes) --------------------
#: ``torch._C._select_conv_backend(input, weight, bias, stride, padding, dilation, transposed,
#: output_padding, groups, bias_sizes)`` → a ``_ConvBackend``; None where torch lacks it (the
#: attribute is then unknown and the nearest measured kernel of the kind prices the call).
select_conv_backend = getattr(torch._C, "_select_conv_backend", None)


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
    "torch._C._select_conv_backend",
    "torch.nn.parallel.DistributedDataParallel._get_ddp_logging_data",
    "torch.distributed.algorithms.ddp_comm_hooks.mixed_precision_hooks._reducer_allreduce_and_upcast_hook",
    "torch._C._get_dispatch_mode",
    "torch._C._TorchDispatchModeKey.FAKE", "torch.distributed.distributed_c10d._resolve_process_group",
    "torch._disable_dynamo", "torch.Tensor._version", "torch._C._cuda_hasPrimaryContext",
)
#: Private attributes of every ``nn.Module`` instance read through :mod:`torch_tos._compat_nn`
#: (instance attributes: checked on a module, not resolved on the class).
PRIVATE_MODULE_ATTRIBUTES = ("_parameters", "_buffers", "_modules", "_forward_hooks", "_backward_hooks",
                             "_backward_pre_hooks", "_forward_pre_hooks")
