"""Convolutions: ``convolution`` (1-d, 2-d, 3-d, grouped, strided, dilated, transposed) and
``convolution_backward``.

Forward (paper Eq. 5): each output element is a dot product over ``K = (C_in/groups)·Πk`` input
taps: K mul and K-1 accumulations, plus one add for the bias — so with a bias
``m²·c_out·c_in·k²`` adds and muls per image, exactly as the paper. Taps that fall on zero padding
are counted as computed (im2col/GEMM kernels multiply them; the paper counts the full k²).

Transposed convolution scatters each input element into ``(C_out/groups)·Πk`` products; every
output sums the products that land on it, so adds = products − outputs (+ outputs for the bias).
This assumes every output receives at least one product (true unless stride > kernel); it is
exact otherwise.

Backward, per requested gradient (``output_mask``):

* grad_input: every forward product ``x·w`` contributes one product ``g·w`` to ``grad_input``;
  same muls as forward, adds = muls − numel(grad_input);
* grad_weight: every forward product contributes ``g·x`` to ``grad_weight``: same muls,
  adds = muls − numel(weight);
* grad_bias: a sum of ``grad_output`` over batch and space: numel(grad_output) − C_out adds.
"""

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


def _conv_bos(out, x, w, bias, transposed: bool) -> BOs:
    if isinstance(out, (tuple, list)):
        out = out[0]
    muls = _products(tuple(x.shape), tuple(w.shape), tuple(out.shape), transposed)
    n_out = numel(out)
    adds = max(muls - n_out, 0)
    if isinstance(bias, torch.Tensor):
        adds += n_out
    return BOs(add=adds, mul=muls)


@register("convolution", "_convolution", "convolution_overrideable")
def convolution(out, x, w, bias, stride, padding, dilation, transposed, *args, **kwargs) -> BOs:
    """Forward convolution: K mul + (K−1) add per output (+1 add with bias); see module doc."""
    return _conv_bos(out, x, w, bias, bool(transposed))


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


@register("cudnn_convolution_transpose", "miopen_convolution_transpose", "slow_conv_transpose2d",
          "slow_conv_transpose3d")
def convolution_transpose(out, x, w, *args, **kwargs) -> BOs:
    """Backend transposed convolutions: as :func:`convolution` with ``transposed=True``."""
    bias = next((a for a in args if isinstance(a, torch.Tensor)), None)
    return _conv_bos(out, x, w, bias, True)


@register("convolution_backward")
def convolution_backward(out, grad_out, x, w, bias_sizes, stride, padding, dilation, transposed,
                         output_padding, groups, output_mask, **kwargs) -> BOs:
    """grad_input / grad_weight / grad_bias as selected by ``output_mask``; see module doc."""
    muls = _products(tuple(x.shape), tuple(w.shape), tuple(grad_out.shape), bool(transposed))
    total = BOs()
    if output_mask[0]:
        total += BOs(add=muls - numel(x), mul=muls)
    if output_mask[1]:
        total += BOs(add=muls - numel(w), mul=muls)
    if len(output_mask) > 2 and output_mask[2]:
        c_out = int(grad_out.shape[1])
        total += BOs(add=numel(grad_out) - c_out)
    return total
