"""Convolutions: ``convolution`` (1-d, 2-d, 3-d, grouped, strided, dilated, transposed) and
``convolution_backward``.

Forward (paper Eq. 5): each output element is a dot product over ``K = (C_in/groups)·Πk`` input
taps: K mul and K-1 accumulations, plus one add for the bias — so with a bias
``m²·c_out·c_in·k²`` adds and muls per image, exactly as the paper. Taps that fall on zero padding
are counted as computed (im2col/GEMM kernels multiply them; the paper counts the full k²).

Transposed convolution scatters each input element into ``(C_out/groups)·Πk`` products; the
kernel computes every one (GEMM, then col2im), so muls = numel(x)·(C_out/groups)·Πk. Only the
products that land inside the output are summed (col2im drops those that padding crops away), so
adds = Σ over outputs of (products landing there − 1) = N·C_out·((C_in/groups)·Π_d L_d − Π_d R_d),
where along each spatial dim L_d counts the (input position, tap) pairs that land in the output and
R_d the output positions that receive at least one (an output reached by none — stride > kernel, or
``output_padding`` — costs no add); + numel(out) adds with a bias.

Backward, per requested gradient (``output_mask``):

* grad_input of a convolution is the transposed convolution of ``grad_output``: every product
  ``g·w`` is computed (muls = forward products), adds only for the products landing inside the
  input, N·C_in·((C_out/groups)·Π_d L_d − Π_d R_d) as above (padding crops the rest); grad_input of
  a transposed convolution is a convolution of ``grad_output`` (taps on its padding included, as in
  the forward): adds = muls − numel(grad_input);
* grad_weight: every forward product contributes ``g·x`` to ``grad_weight``: same muls,
  adds = muls − numel(weight);
* grad_bias: a sum of ``grad_output`` over batch and space: numel(grad_output) − C_out adds.

Peers' hand-derived cases (tests/test_rules_conv.py): fvcore's transposed ConvTranspose2d(10→3,
k 3, pad 1) on 5×10×15×15: 273,975 adds; Conv2d(1→1, k 3, pad 1) on 1×1×4×4: grad_input 84 adds.
"""

from functools import lru_cache
from math import prod

import torch

from ..bos import BOs
from .registry import numel, register


def _products(x_shape, w_shape, out_shape, transposed: bool) -> int:
    """Number of multiplications of one convolution (without bias)."""
    if not transposed:
        # out: [N, C_out, *spatial], w: [C_out, C_in/g, *k]
        return prod(out_shape) * prod(w_shape[1:])
    # x: [N, C_in, *spatial_in], w: [C_in, C_out/g, *k]
    return prod(x_shape) * prod(w_shape[1:])


def _ints(v, nd: int) -> tuple[int, ...]:
    """A stride/padding/dilation argument as ``nd`` ints."""
    if isinstance(v, int):
        return (v,) * nd
    v = tuple(int(x) for x in v)
    return v * nd if len(v) == 1 else v


@lru_cache(maxsize=4096)
def _landing_1d(src: int, taps: int, tgt: int, stride: int, padding: int, dilation: int) -> tuple[int, int]:
    """Along one dim of a scatter (transposed convolution, or a convolution's grad_input): source
    position i and tap k write target position i·stride − padding + k·dilation. Returns (L, R): the
    (i, k) pairs whose target lies in [0, tgt), and the targets that receive at least one."""
    hit = bytearray(tgt)
    pairs = 0
    for k in range(taps):
        offset = k * dilation - padding
        for i in range(src):
            j = i * stride + offset
            if 0 <= j < tgt:
                pairs += 1
                hit[j] = 1
    return pairs, sum(hit)


def _scatter_adds(src_shape, tgt_shape, w_shape, stride, padding, dilation, fan_in: int) -> int:
    """Adds of a scatter that sums, into each target element of [N, C, *tgt], ``fan_in`` products per
    landing (source, tap) pair: Σ over targets (products − 1), targets with no product free."""
    nd = len(tgt_shape) - 2
    s, p, d = _ints(stride, nd), _ints(padding, nd), _ints(dilation, nd)
    landing, receiving = 1, 1
    for i in range(nd):
        L, R = _landing_1d(int(src_shape[2 + i]), int(w_shape[2 + i]), int(tgt_shape[2 + i]), s[i], p[i], d[i])
        landing, receiving = landing * L, receiving * R
    return int(tgt_shape[0]) * int(tgt_shape[1]) * (fan_in * landing - receiving)


def _conv_bos(out, x, w, bias, transposed: bool, stride=1, padding=0, dilation=1, groups=1) -> BOs:
    if isinstance(out, (tuple, list)):
        out = out[0]
    muls = _products(tuple(x.shape), tuple(w.shape), tuple(out.shape), transposed)
    n_out = numel(out)
    if transposed:  # only the products landing in the output are summed
        adds = _scatter_adds(x.shape, out.shape, w.shape, stride, padding, dilation,
                             int(x.shape[1]) // int(groups))
    else:
        adds = max(muls - n_out, 0)
    if isinstance(bias, torch.Tensor):
        adds += n_out
    return BOs(add=adds, mul=muls)


@register("convolution", "_convolution", "convolution_overrideable")
def convolution(out, x, w, bias, stride, padding, dilation, transposed, output_padding=0, groups=1,
                *args, **kwargs) -> BOs:
    """Forward convolution: K mul + (K−1) add per output (+1 add with bias); transposed: every
    product computed, adds only for those landing in the output; see module doc."""
    return _conv_bos(out, x, w, bias, bool(transposed), stride, padding, dilation, groups)


@register("_slow_conv2d_forward", "thnn_conv2d", "slow_conv3d_forward", "slow_conv3d",
          "slow_conv_dilated2d", "slow_conv_dilated3d", "_nnpack_spatial_convolution",
          "mkldnn_convolution")
def direct_convolution(out, x, w, kernel_or_bias=None, bias_or_stride=None, *args, **kwargs) -> BOs:
    """Backend convolution kernels (no transposition): as :func:`convolution`."""
    bias = kernel_or_bias if isinstance(kernel_or_bias, torch.Tensor) else bias_or_stride
    return _conv_bos(out, x, w, bias, False)


@register("cudnn_convolution", "miopen_convolution")
def cudnn_convolution(out, x, w, *args, **kwargs) -> BOs:
    """cuDNN/MIOpen forward convolution (bias added by a separate op): as :func:`convolution`."""
    bias = args[0] if args and isinstance(args[0], torch.Tensor) else None
    return _conv_bos(out, x, w, bias, False)


@register("cudnn_convolution_transpose")
def cudnn_convolution_transpose(out, x, w, padding, output_padding, stride, dilation, groups,
                                *args, **kwargs) -> BOs:
    """cuDNN transposed convolution (bias added by a separate op): as :func:`convolution` with
    ``transposed=True``."""
    return _conv_bos(out, x, w, None, True, stride, padding, dilation, groups)


@register("miopen_convolution_transpose")
def miopen_convolution_transpose(out, x, w, bias, padding, output_padding, stride, dilation, groups,
                                 *args, **kwargs) -> BOs:
    """MIOpen transposed convolution: as :func:`convolution` with ``transposed=True``."""
    return _conv_bos(out, x, w, bias, True, stride, padding, dilation, groups)


@register("slow_conv_transpose2d", "slow_conv_transpose3d")
def slow_convolution_transpose(out, x, w, kernel_size, bias=None, stride=1, padding=0,
                               output_padding=0, dilation=1, **kwargs) -> BOs:
    """CPU reference transposed convolutions: as :func:`convolution` with ``transposed=True``."""
    return _conv_bos(out, x, w, bias, True, stride, padding, dilation, 1)


@register("convolution_backward")
def convolution_backward(out, grad_out, x, w, bias_sizes, stride, padding, dilation, transposed,
                         output_padding, groups, output_mask, **kwargs) -> BOs:
    """grad_input / grad_weight / grad_bias as selected by ``output_mask``; see module doc."""
    muls = _products(tuple(x.shape), tuple(w.shape), tuple(grad_out.shape), bool(transposed))
    total = BOs()
    if output_mask[0]:
        if transposed:  # grad_input = convolution(grad_out, w): taps on padding included
            adds = muls - numel(x)
        else:           # grad_input = transposed convolution of grad_out: landing products only
            adds = _scatter_adds(grad_out.shape, x.shape, w.shape, stride, padding, dilation,
                                 int(grad_out.shape[1]) // int(groups))
        total += BOs(add=adds, mul=muls)
    if output_mask[1]:
        total += BOs(add=muls - numel(w), mul=muls)
    if len(output_mask) > 2 and output_mask[2]:
        c_out = int(grad_out.shape[1])
        total += BOs(add=numel(grad_out) - c_out)
    return total
