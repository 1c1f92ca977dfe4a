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
holds ``AutogradMeta`` kernels for these two ops (it is removed when the last one closes). The
kernels act only in a thread that has a counting context open (a thread-local depth; meta backward
runs on the calling thread); in every other thread they call PyTorch's own composite
(``OpOverload.decompose``), so other threads see stock behaviour op for op. Real (CPU, CUDA)
tensors never reach an ``AutogradMeta`` kernel. Nothing else of PyTorch is patched.
"""

from __future__ import annotations

import math
import threading
from contextlib import ExitStack, contextmanager

import torch
from torch.overrides import TorchFunctionMode

from . import _compat

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


_KERNELS = {"scaled_dot_product_attention": _sdpa_meta, "mish_backward": _mish_backward_meta}


def _install():
    lib = torch.library.Library("aten", "IMPL")
    for name, kernel in _KERNELS.items():
        lib.impl(name, kernel, "AutogradMeta")
    return lib


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
