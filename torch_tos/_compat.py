"""Every private PyTorch API torch_tos uses, named once, each with a fallback or a clear error.

torch_tos counts what really runs at the aten level, which needs a few hooks PyTorch does not
document. They are all imported from here so that a PyTorch release that moves one breaks in one
place, with a message naming the API, instead of deep inside a count. Tested on torch 2.13 and
2.14 (see docs/conventions.md §8). Each entry says what happens when the API is missing:

==========================================  =======================================================
API                                         without it
==========================================  =======================================================
``torch._C._current_graph_task_id``         ``-1`` (never "inside backward": phase from hooks only)
``torch._C._current_autograd_node``         ``None`` (backward ops booked under the current layer)
``Node._sequence_nr``                       ``id(node)`` (attribution still works within a step)
``torch._C._AutoDispatchBelowAutograd``     :class:`CompatError` (meta ``mish_backward`` shim)
``torch._C._dispatch_get_all_op_names``     the ``aten`` names ``dir(torch.ops.aten)`` lists
``torch.utils._python_dispatch``:           :class:`CompatError` at import (the engine *is* one)
  ``TorchDispatchMode``,
  ``_disable_current_modes``,
  ``_get_current_dispatch_mode_stack``
``torch.utils._pytree.tree_leaves``         a small recursive walk over lists, tuples and dicts
``flop_counter.shape_wrapper`` and the      a local copy of the same wrapper (shapes for tensors)
``_get_raw`` flag of custom FLOP formulas
``aten._fused_sdp_choice``                  :class:`CompatError` (meta SDPA kernel choice)
``torch.library.Library._destroy``          dropping the last reference (its finalizer
                                            deregisters the kernels)
``torch._ops.OpOverload(Packet)``           none: the rules are keyed by them (needed at import)
``torch._ops.HigherOrderOperator`` and its  no higher-order op is recognised (``torch.cond``
``py_kernels[CompositeExplicitAutograd]``   then fails inside PyTorch, as before); a HOP without
                                            the eager kernel is reported unsupported
==========================================  =======================================================
"""

from __future__ import annotations

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


# -- operator objects -------------------------------------------------------------------------------
OpOverload = torch._ops.OpOverload
OpOverloadPacket = torch._ops.OpOverloadPacket


# -- pytrees ---------------------------------------------------------------------------------------
try:
    from torch.utils._pytree import tree_leaves
except ImportError:  # pragma: no cover - depends on the installed torch
    def tree_leaves(tree) -> list:
        """Leaves of nested lists, tuples and dicts (the containers models pass around)."""
        if isinstance(tree, (list, tuple)):
            return [leaf for t in tree for leaf in tree_leaves(t)]
        if isinstance(tree, dict):
            return [leaf for t in tree.values() for leaf in tree_leaves(t)]
        return [tree]


# -- FlopCounterMode's formula wrapper ---------------------------------------------------------------
def _local_shape_wrapper(f):
    """``FlopCounterMode``'s wrapper: call a shape-level formula with tensors replaced by shapes."""
    from functools import wraps

    def shape(x):
        return x.shape if isinstance(x, torch.Tensor) else x

    def tree_shapes(x):
        if isinstance(x, (list, tuple)):
            return type(x)(tree_shapes(v) for v in x)
        if isinstance(x, dict):
            return {k: tree_shapes(v) for k, v in x.items()}
        return shape(x)

    @wraps(f)
    def nf(*args, out_val=None, **kwargs):
        return f(*tree_shapes(args), out_shape=tree_shapes(out_val), **tree_shapes(kwargs))

    return nf


try:
    from torch.utils.flop_counter import shape_wrapper
except ImportError:  # pragma: no cover - depends on the installed torch
    shape_wrapper = _local_shape_wrapper


def wrap_flop_formula(f):
    """A FLOP formula as ``FlopCounterMode(custom_mapping=...)`` wraps it: raw (``_get_raw``)
    formulas take tensors, the others shapes."""
    return f if getattr(f, "_get_raw", False) else shape_wrapper(f)


# -- higher-order operators (torch.cond & co., see torch_tos/hops.py) ---------------------------------
HigherOrderOperator = getattr(getattr(torch, "_ops", None), "HigherOrderOperator", None) or type(
    "NoHigherOrderOperator", (), {})


def eager_kernel(hop):
    """The eager (``CompositeExplicitAutograd``) Python kernel of a higher-order op, or ``None``."""
    key = getattr(getattr(torch._C, "DispatchKey", None), "CompositeExplicitAutograd", None)
    kernels = getattr(hop, "py_kernels", None)
    return kernels.get(key) if key is not None and kernels is not None else None
