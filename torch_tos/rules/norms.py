"""Normalisation layers: batch norm (train and eval), layer norm, group norm; forward and backward.

Statistics of a group of n elements (textbook two-pass form, used by every norm here):
mean = Σx/n (n−1 add, 1 div); d = x − mean (n sub); var = Σd²/n (n mul, n−1 add, 1 div);
rstd = rsqrt(var + eps) (1 add, 1 div, 1 root) → ``STATS(n) = [2n−1, n, n, 3, 1]``.

* **layer norm** over rows of n = Π normalized_shape: STATS(n), y = d·rstd (n mul), affine
  y·w + b (n mul with weight, n add with bias).
* **group norm**: STATS over each (sample, group) of n = C/G·H·W, then as layer norm with a
  per-channel affine.
* **batch norm, training**, per channel over M = N·H·W: STATS(M); the kernels fold the affine into
  a per-channel scale α = rstd·w and shift β = b − mean·α (2 mul, 1 sub) and compute y = x·α + β
  (M mul, M add); running statistics (when tracked): r_mean = (1−m)·r_mean + m·mean (2 mul,
  1 add) and r_var with the unbiased variance var·M/(M−1) (3 mul, 1 div, 1 add).
* **batch norm, eval**: rstd from the running variance (1 add, 1 div, 1 root per channel), the same
  fold (2 mul, 1 sub) and y = x·α + β (1 mul, 1 add per element).

Backward (``g`` = incoming gradient; only the gradients requested by ``output_mask``):

* **batch norm** per channel over M: Σg (M−1 add) and Σ(x−mean)·g (M sub, M mul, M−1 add);
  grad_input in training: k = Σ(x−mean)g·rstd²/M (2 mul, 1 div), mean_g = Σg/M (1 div),
  w·rstd (1 mul), then per element ((g − mean_g) − (x−mean)·k)·w·rstd (3 sub, 2 mul); in eval
  mode grad_input = g·w·rstd (rstd from the running variance: 1 add, 1 div, 1 root; 1 mul per
  channel, 1 mul per element); grad_weight = Σ(x−mean)g·rstd (1 mul per channel); grad_bias = Σg.
* **layer/group norm** per row of n: x̂ = (x−mean)·rstd (n sub, n mul), g·w (n mul with weight);
  grad_input: Σg and Σg·x̂ (n mul, 2n−2 add), rstd/n (1 div), rstd/n·(n·g − Σg − x̂·Σg·x̂)
  (3n mul, 2n sub); grad_weight = Σ over rows of g·x̂ (mul per element, adds per element − per
  weight); grad_bias = Σ over rows of g (adds per element − per weight).
"""

from math import prod

import torch

from ..bos import BOs
from .registry import numel, register


def stats(n: int) -> BOs:
    """Mean, variance and rsqrt(var + eps) of n elements: ``[2n−1, n, n, 3, 1]``."""
    return BOs(add=2 * n - 1, sub=n, mul=n, div=3, root=1)


def _affine(elements: int, weight, bias) -> BOs:
    return BOs(mul=elements if weight is not None else 0, add=elements if bias is not None else 0)


@register("native_layer_norm")
def layer_norm(out, x, normalized_shape, weight=None, bias=None, eps=1e-5, **kwargs) -> BOs:
    """Per row of n: STATS(n) + n mul (+ n mul, n add for the affine)."""
    n = prod(int(s) for s in normalized_shape)
    rows = numel(x) // max(n, 1)
    return stats(n) * rows + BOs(mul=numel(x)) + _affine(numel(x), weight, bias)


@register("native_group_norm")
def group_norm(out, x, weight, bias, N, C, HxW, group, eps, **kwargs) -> BOs:
    """Per (sample, group) of n = C/G·HxW: STATS(n) + n mul, then the per-channel affine."""
    N, C, HxW, group = int(N), int(C), int(HxW), int(group)
    n = (C // group) * HxW
    return stats(n) * (N * group) + BOs(mul=numel(x)) + _affine(numel(x), weight, bias)


def _batch_norm(x, weight, bias, running_mean, running_var, training) -> BOs:
    c = int(x.shape[1]) if x.dim() > 1 else 1
    m = numel(x) // max(c, 1)
    fold = BOs(mul=2, sub=1) * c
    apply = BOs(mul=numel(x), add=numel(x))
    if training:
        total = stats(m) * c + fold + apply
        if running_mean is not None:
            total += BOs(mul=2, add=1) * c
        if running_var is not None:
            total += BOs(mul=3, div=1, add=1) * c
        return total
    return BOs(add=1, div=1, root=1) * c + fold + apply


@register("native_batch_norm", "_native_batch_norm_legit_functional", "cudnn_batch_norm",
          "miopen_batch_norm")
def batch_norm(out, x, weight, bias, running_mean, running_var, training, momentum, eps, **kw) -> BOs:
    """Training: STATS(M) per channel, fold, x·α + β, running stats. Eval: see module doc."""
    return _batch_norm(x, weight, bias, running_mean, running_var, bool(training))


@register(torch.ops.aten._native_batch_norm_legit.default, torch.ops.aten._native_batch_norm_legit.out)
def batch_norm_legit(out, x, weight, bias, running_mean, running_var, training, momentum, eps, **kw) -> BOs:
    """``_native_batch_norm_legit`` with running stats: as :func:`batch_norm`."""
    return _batch_norm(x, weight, bias, running_mean, running_var, bool(training))


@register(torch.ops.aten._native_batch_norm_legit.no_stats, torch.ops.aten._native_batch_norm_legit.no_stats_out)
def batch_norm_legit_no_stats(out, x, weight, bias, training, momentum, eps, **kw) -> BOs:
    """``_native_batch_norm_legit.no_stats`` (no running statistics): as :func:`batch_norm`."""
    return _batch_norm(x, weight, bias, None, None, bool(training))


@register("_native_batch_norm_legit_no_training")
def batch_norm_no_training(out, x, weight, bias, running_mean, running_var, momentum, eps, **kw) -> BOs:
    """Eval-mode batch norm: see module doc."""
    return _batch_norm(x, weight, bias, running_mean, running_var, False)


def _batch_norm_backward(g, x, weight, train: bool, mask) -> BOs:
    c = int(x.shape[1]) if x.dim() > 1 else 1
    m = numel(x) // max(c, 1)
    total = BOs()
    if (mask[0] and train) or mask[1] or mask[2]:
        total += BOs(add=2 * (m - 1), sub=m, mul=m) * c
    if mask[0]:
        if train:
            total += BOs(mul=3, div=2) * c + BOs(sub=3, mul=2) * numel(x)
        else:
            total += BOs(add=1, div=1, root=1, mul=1) * c + BOs(mul=numel(x))
    if mask[1]:
        total += BOs(mul=c)
    return total


@register("native_batch_norm_backward", "batch_norm_backward")
def batch_norm_backward(out, g, x, weight, running_mean, running_var, save_mean, save_invstd,
                        train, eps, output_mask, *args, **kwargs) -> BOs:
    """Batch-norm gradients (see module doc)."""
    return _batch_norm_backward(g, x, weight, bool(train), output_mask)


@register("cudnn_batch_norm_backward", "miopen_batch_norm_backward")
def cudnn_batch_norm_backward(out, x, g, weight, *args, **kwargs) -> BOs:
    """cuDNN/MIOpen training-mode batch-norm backward: all three gradients (see module doc)."""
    return _batch_norm_backward(g, x, weight, True, (True, True, True))


def _row_norm_backward(rows: int, n: int, weight, mask, weight_numel: int) -> BOs:
    total = BOs()
    elements = rows * n
    if mask[0] or mask[1]:
        total += BOs(sub=elements, mul=elements)  # x̂
    if mask[0]:
        if weight is not None:
            total += BOs(mul=elements)
        total += BOs(mul=n, add=2 * n - 2, div=1) * rows + BOs(mul=3 * elements, sub=2 * elements)
    if mask[1] and weight is not None:
        total += BOs(mul=elements, add=elements - weight_numel)
    if mask[2]:
        total += BOs(add=elements - weight_numel)
    return total


@register("native_layer_norm_backward")
def layer_norm_backward(out, g, x, normalized_shape, mean, rstd, weight, bias, output_mask, **kw) -> BOs:
    """Layer-norm gradients per row of n (see module doc)."""
    n = prod(int(s) for s in normalized_shape)
    return _row_norm_backward(numel(x) // max(n, 1), n, weight, output_mask, n)


@register("native_group_norm_backward")
def group_norm_backward(out, g, x, mean, rstd, weight, N, C, HxW, group, output_mask, **kw) -> BOs:
    """Group-norm gradients per (sample, group) row of C/G·HxW (see module doc)."""
    N, C, HxW, group = int(N), int(C), int(HxW), int(group)
    return _row_norm_backward(N * group, (C // group) * HxW, weight, output_mask, C)


def _weight_norm_slices(v, g) -> tuple[int, int]:
    """(slices, elements per slice): one norm per element of ``g``."""
    s = max(numel(g), 1)
    return s, numel(v) // s


@register("_weight_norm_interface")
def weight_norm(out, v, g, dim=0, **kwargs) -> BOs:
    """w = v·(g/‖v‖), one norm per slice of n elements (per element of g): squares and sum
    (n mul, n−1 add), √ (1 root), g/‖v‖ (1 div), the scaling (n mul)."""
    s, n = _weight_norm_slices(v, g)
    return BOs(add=s * (n - 1), mul=2 * n * s, div=s, root=s)


@register("_weight_norm_interface_backward")
def weight_norm_backward(out, grad_w, v, g, norms, dim=0, **kwargs) -> BOs:
    """Per slice of n: dot = Σ grad_w·v (n mul, n−1 add), grad_g = dot/‖v‖ (1 div), ‖v‖² (1 mul),
    dot/‖v‖² and g/‖v‖ (2 div); per element grad_v = (g/‖v‖)·(grad_w − v·dot/‖v‖²)
    (2 mul, 1 sub) — the formula of WeightNorm.cpp's kernels."""
    s, n = _weight_norm_slices(v, g)
    return BOs(add=s * (n - 1), sub=s * n, mul=s * (3 * n + 1), div=3 * s)
