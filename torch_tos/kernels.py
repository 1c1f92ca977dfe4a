"""Kernel choices of a counting run on the meta device: meta runs the kernels the CPU would.

The meta device has no kernels of its own for a few composite ops, so PyTorch decomposes them
there while the CPU runs one fused kernel; counted on meta they would cost what the decomposition
costs, not what a CPU run costs. The engine layer (not the rules, which only price) closes these
gaps while a counting :class:`~torch_tos.counter.Engine` (or :func:`torch_tos.flops.flop_counter`)
is open, through :func:`kernel_choices`:

* ``F.scaled_dot_product_attention`` on meta takes the kernel the CPU selector picks for tensors
  of the same sizes, dtypes, last-dim strides and ``requires_grad`` (asked of PyTorch's own
  selector, ``aten._fused_sdp_choice``, on CPU stand-ins backed by one row of memory): the CPU
  flash kernel ``_scaled_dot_product_flash_attention_for_cpu`` (bool masks converted to 0/−∞ by a
  ``where`` op, as the composite does) or the math path;
* ``mish_backward`` on meta dispatches as the one op the CPU runs (below autograd; the meta
  backend then computes its output shape unseen) instead of its decomposition;
* ``aten._grouped_mm`` (the Mixture-of-Experts grouped GEMM) on meta gets the CPU kernel's shape
  function: PyTorch's meta kernel checks the CUDA kernel's dtypes (bf16, or fp16 with cuBLASLt) and
  rejects float32, which the CPU kernel runs; in a counting thread meta validates the inputs as
  the CPU kernel does (float32, bfloat16 or float16, strides aligned to 16 bytes, int32 offsets,
  no bias) and returns an output of the CPU kernel's sizes, strides and dtype
  (:func:`torch_tos.cpu_shapes.grouped_mm_shape`);
* ``aten.nonzero`` on meta (``torch.where(mask)``, the expert loops of transformers' ``eager``
  experts) raises :class:`MetaValueError` naming the model's line: its output size is data, which
  meta cannot know (PyTorch's meta function refuses too, pointing at a flag that would assume every
  element non-zero — a wrong count);
* under ``torch.autocast("cpu", dtype=...)`` meta tensors get the CPU autocast cast policy (the
  meta device has no autocast key, so PyTorch would run everything in float32): the ops of the
  CPU's lower-precision list (linear, convolutions, matmuls, SDPA, prelu, vecdot) cast their
  floating-point inputs to the autocast dtype and those of its float32 list (the losses, prod,
  cdist, …) cast lower-precision inputs to float32, through ``Tensor.to`` (autograd-recorded and
  cached for leaf weights, as autocast does), so each op is priced in the dtype the CPU would run
  it in. Applied by a thread-local ``TorchFunctionMode`` that the counting context pushes when CPU
  autocast is enabled as it opens (so enter ``torch.autocast`` before ``profile()`` or the
  engine); it sees the functions model code calls — casts the CPU does for listed ops called
  inside another torch function (``F.multi_head_attention_forward``'s projections, a C++
  composite such as ``aten::lstm``) are not reproduced (**approximate** there).

Mechanism: while at least one counting context is open anywhere, one ``torch.library`` fragment
holds ``AutogradMeta`` kernels for SDPA and ``mish_backward`` and ``Meta`` kernels for
``_grouped_mm`` and ``nonzero`` (it is removed when the last one closes, which restores PyTorch's own). The
kernels act only in a thread that has a counting context open (a thread-local depth; meta backward
runs on the calling thread); in every other thread they call PyTorch's own composite
(``OpOverload.decompose``) or meta function, so other threads see stock behaviour op for op. Real
(CPU, CUDA) tensors never reach these kernels. Nothing else of PyTorch is patched.

**Meta adaptations of other libraries** are not this module's business: an integration registers
a context with :func:`register_meta_adaptation` and every counting context enters it (the
Hugging Face one, :mod:`torch_tos.integrations.hf_meta`, answers transformers' mask checks). The
engine imports no integration: :func:`autoload_meta_adaptation` names, as strings, a module to
import when its library has been imported by the time a counting context opens (the package root
declares the Hugging Face one), and :data:`STANDS_FOR` maps the method wrappers an adaptation
installs back to the methods they stand for (the training counter's tracer reads it).
"""

from __future__ import annotations

import math
import sys
import threading
from contextlib import ExitStack, contextmanager
from typing import Callable, ContextManager

import torch
from torch.overrides import TorchFunctionMode

from . import _compat
from .cpu_shapes import grouped_mm_shape
from .plugins import Plugins

aten = torch.ops.aten

#: SDPBackend values returned by ``aten._fused_sdp_choice``
SDP_MATH, SDP_FLASH = 0, 1

_LOCAL = threading.local()            # .depth: counting contexts open in this thread
_LOCK = threading.Lock()
_STATE = {"open": 0, "lib": None}     # counting contexts open in all threads; the fragment


def active() -> bool:
    """Whether this thread has a counting context open (the meta kernel choices apply)."""
    return getattr(_LOCAL, "depth", 0) > 0


# -- SDPA: the CPU's kernel choice ------------------------------------------------------------------

def _standin(t):
    """A CPU tensor with ``t``'s sizes, dtype, last-dim stride and ``requires_grad``, backed by one
    row of memory (the kernel selector reads nothing else)."""
    if not isinstance(t, torch.Tensor):
        return t
    if t.dim() == 0:
        return torch.empty((), dtype=t.dtype, requires_grad=t.requires_grad and t.is_floating_point())
    last, n = int(t.stride(-1)), int(t.shape[-1])
    base = torch.empty(max((n - 1) * last + 1, 1), dtype=t.dtype)
    out = base.as_strided(tuple(int(s) for s in t.shape), (0,) * (t.dim() - 1) + (last,))
    if t.requires_grad:  # the selector rejects flash for a mask that needs a gradient
        out.requires_grad_(True)
    return out


def cpu_sdp_backend(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                    enable_gqa=False) -> int:
    """The SDPA backend (0 math, 1 flash) the CPU picks for tensors shaped like these."""
    with _compat.disable_current_modes():
        return _compat.fused_sdp_choice(_standin(query), _standin(key), _standin(value),
                                        _standin(attn_mask), dropout_p, is_causal, scale,
                                        enable_gqa)


def _sdpa_meta(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, *, scale=None,
               enable_gqa=False):
    """``AutogradMeta`` kernel of ``aten.scaled_dot_product_attention``: the CPU's kernel in a
    counting thread, PyTorch's composite everywhere else."""
    if not active() or cpu_sdp_backend(query, key, value, attn_mask, dropout_p, is_causal, scale,
                                       enable_gqa) != SDP_FLASH:
        return aten.scaled_dot_product_attention.default.decompose(
            query, key, value, attn_mask, dropout_p, is_causal, scale=scale, enable_gqa=enable_gqa)
    mask = attn_mask
    if isinstance(mask, torch.Tensor) and mask.dtype == torch.bool:  # as sdpa's convert_boolean_attn_mask
        opts = dict(dtype=query.dtype, device=query.device)
        mask = torch.where(mask, torch.scalar_tensor(0.0, **opts), torch.scalar_tensor(-math.inf, **opts))
    three_d = query.dim() == 3
    if three_d:
        query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
    out = aten._scaled_dot_product_flash_attention_for_cpu(query, key, value, dropout_p, is_causal,
                                                           attn_mask=mask, scale=scale)[0]
    return out.squeeze(0) if three_d else out


# -- mish_backward: one op, as on CPU ---------------------------------------------------------------

def _mish_backward_meta(grad, x):
    """``AutogradMeta`` kernel of ``aten.mish_backward``: one op below autograd in a counting
    thread (as the CPU kernel), PyTorch's composite everywhere else."""
    if not active():
        return aten.mish_backward.default.decompose(grad, x)
    with _compat.below_autograd():
        return aten.mish_backward.default(grad, x)


# -- _grouped_mm: the CPU kernel's checks and output -----------------------------------------------

def _grouped_mm_meta(mat_a, mat_b, offs=None, bias=None, out_dtype=None):
    """``Meta`` kernel of ``aten._grouped_mm``: the CPU kernel's shape function in a counting
    thread, PyTorch's own meta function everywhere else."""
    if not active():
        return _compat.stock_meta_kernel(aten._grouped_mm.default, grouped_mm_shape)(
            mat_a, mat_b, offs, bias, out_dtype)
    return grouped_mm_shape(mat_a, mat_b, offs, bias, out_dtype)


# -- nonzero: data-dependent, refused with the line that asked --------------------------------------

class MetaValueError(RuntimeError):
    """A meta tensor's value was needed to decide what to compute."""


def user_frame(depth: int = 2):
    """The first frame, ``depth`` frames up or further, outside torch and torch_tos: the model
    code that made the call."""
    frame = sys._getframe(depth)
    while frame.f_back is not None and \
            frame.f_globals.get("__name__", "").split(".")[0] in ("torch", "torch_tos"):
        frame = frame.f_back
    return frame


def _nonzero_meta(x):
    """``Meta`` kernel of ``aten.nonzero``: in a counting thread a :class:`MetaValueError` naming
    the model's line (its output size is the count of non-zero values: an expert loop's routing, a
    mask), PyTorch's own meta function (which refuses too) everywhere else."""
    if not active():
        return _compat.stock_meta_kernel(aten.nonzero.default, None)(x)
    frame = user_frame(2)
    raise MetaValueError(
        f"torch_tos: {frame.f_code.co_filename}:{frame.f_lineno} takes the non-zero positions of a "
        "meta tensor (aten.nonzero: its output size depends on the values — routing, masking); "
        "counting on meta cannot decide it: count on a real device (a small config gives the same "
        "per-shape counts)")


#: op name → (dispatch key, kernel) held by the fragment while a counting context is open
_KERNELS = {"scaled_dot_product_attention": ("AutogradMeta", _sdpa_meta),
            "mish_backward": ("AutogradMeta", _mish_backward_meta),
            "_grouped_mm": ("Meta", _grouped_mm_meta),
            "nonzero": ("Meta", _nonzero_meta)}


def _install():
    lib = torch.library.Library("aten", "IMPL")
    for name, (key, kernel) in _KERNELS.items():
        lib.impl(name, kernel, key)
    return lib


# -- meta adaptations registered by integrations --------------------------------------------------

#: name → a function returning the context every counting context enters (registered by
#: integrations), and the integration module to import once its library has been imported
_ADAPTATIONS = Plugins("meta adaptation", expects=" returning a context manager")
#: method wrapper an adaptation installs → the method it stands in for (a ``TorchFunctionMode``
#: that keys calls by function maps the wrapper back: the same call with and without an Engine)
STANDS_FOR: dict = {}


def register_meta_adaptation(name: str, adaptation: Callable[[], ContextManager]) -> None:
    """Enter ``adaptation()`` in every counting context opened from now on, in its thread (an
    integration registers itself when imported; registering ``name`` again replaces it)."""
    _ADAPTATIONS.register(name, adaptation)


def unregister_meta_adaptation(name: str) -> None:
    """Stop entering the adaptation registered as ``name`` (no error if there is none)."""
    _ADAPTATIONS.unregister(name)


def autoload_meta_adaptation(library: str, module: str) -> None:
    """When ``library`` (a module name, ``"transformers.masking_utils"``) has been imported by the
    time a counting context opens, import ``module`` first: it registers its adaptation on import.
    Neither is imported before that."""
    _ADAPTATIONS.autoload(library, module)


# -- autocast on meta: the CPU's cast policy -----------------------------------------------------

def _policy() -> dict:
    """Python-level function → "lower" (cast to the autocast dtype) or "fp32" (cast up), after the
    CPU autocast lists of aten/src/ATen/autocast_mode.cpp (tests check each against the CPU)."""
    F, T, linalg = torch.nn.functional, torch.Tensor, torch.linalg
    lower = [F.linear, F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d,
             F.conv_transpose3d, F.prelu, F.scaled_dot_product_attention, torch.matmul, T.matmul,
             T.__matmul__, T.__rmatmul__, torch.mm, T.mm, torch.bmm, T.bmm, torch.baddbmm,
             T.baddbmm, torch.addmm, T.addmm, torch.addbmm, T.addbmm, linalg.vecdot]
    fp32 = [F.mse_loss, F.l1_loss, F.smooth_l1_loss, F.huber_loss, F.nll_loss, F.cross_entropy,
            F.binary_cross_entropy, F.binary_cross_entropy_with_logits, F.kl_div,
            F.poisson_nll_loss, F.margin_ranking_loss, F.soft_margin_loss, F.multi_margin_loss,
            F.multilabel_margin_loss, F.hinge_embedding_loss, F.cosine_embedding_loss,
            F.triplet_margin_loss, F.ctc_loss, torch.prod, T.prod, torch.cdist, torch.trace,
            F.grid_sample, F.avg_pool3d, F.adaptive_avg_pool3d, F.max_unpool2d, F.max_unpool3d,
            torch.quantile, torch.nanquantile, torch.stft, torch.inverse, torch.pinverse,
            torch.cholesky]
    policy = {f: "lower" for f in lower}
    policy.update({f: "fp32" for f in fp32})
    return policy


_POLICY: dict = {}


def _any_meta(values) -> bool:
    for v in values:
        if isinstance(v, torch.Tensor):
            if v.device.type == "meta":
                return True
        elif isinstance(v, (list, tuple)) and _any_meta(v):
            return True
    return False


class _MetaAutocast(TorchFunctionMode):
    """CPU autocast's cast policy for meta tensors (see the module docstring)."""

    def __init__(self):
        super().__init__()
        self.cache: dict = {}   # id(leaf weight) → (weight, its cast): autocast's weight cache

    def _cast(self, v, to, lower: bool):
        if isinstance(v, torch.Tensor):
            if not v.is_floating_point() or v.dtype == to or v.dtype == torch.float64:
                return v
            if not lower and v.dtype == torch.float32:
                return v
            if lower and v.is_leaf and v.requires_grad:
                hit = self.cache.get(id(v))
                if hit is None or hit[0] is not v:
                    hit = self.cache[id(v)] = (v, v.to(to))
                return hit[1]
            return v.to(to)
        if isinstance(v, (list, tuple)):
            return type(v)(self._cast(x, to, lower) for x in v)
        return v

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        kind = _POLICY.get(func)
        if kind is None or not torch.is_autocast_enabled("cpu") or \
                not (_any_meta(args) or _any_meta(kwargs.values())):
            return func(*args, **kwargs)
        lower = kind == "lower"
        to = torch.get_autocast_dtype("cpu") if lower else torch.float32
        args = tuple(self._cast(a, to, lower) for a in args)
        kwargs = {k: self._cast(v, to, lower) for k, v in kwargs.items()}
        return func(*args, **kwargs)


@contextmanager
def kernel_choices():
    """Open a counting context in this thread: meta runs the CPU's kernels (see the module
    docstring). Re-entrant and safe to nest or interleave across engines and threads."""
    with _LOCK:
        if _STATE["open"] == 0:
            _STATE["lib"] = _install()
        _STATE["open"] += 1
    _LOCAL.depth = getattr(_LOCAL, "depth", 0) + 1
    try:
        with ExitStack() as stack:
            for adaptation in _ADAPTATIONS.current():  # registered by integrations (register_meta_adaptation)
                stack.enter_context(adaptation())
            if torch.is_autocast_enabled("cpu"):
                if not _POLICY:
                    _POLICY.update(_policy())
                stack.enter_context(_MetaAutocast())
            yield
    finally:
        _LOCAL.depth -= 1
        with _LOCK:
            _STATE["open"] -= 1
            if _STATE["open"] == 0:
                lib, _STATE["lib"] = _STATE["lib"], None
                _compat.destroy_library(lib)
