"""Quantized tensors: ``quantize_per_tensor`` / ``dequantize`` and the ``quantized::*`` kernels
(eager-mode post-training quantization, e.g. ``torchvision.models.quantization``).

Affine quantization maps a real x to q = clamp(round(x/s) + z, qmin, qmax) and back x = (q − z)·s.
Per element: **quantize** x·(1/s) + z, round, clamp: ``Q = [1, 2, 1, 0, 0]`` (the reciprocal of the
scale is computed once per tensor, rounding is a conversion); **dequantize** (q − z)·s:
``DQ = [0, 1, 1, 0, 0]``; **requantize** an accumulator into the output's scale, acc·(s_in/s_out)
+ z_out, round, clamp: ``RQ = [1, 2, 1, 0, 0]``.

* ``quantized::conv*d`` / ``conv_transpose*d`` / ``linear`` (and the ``_relu`` fusions, whose ReLU
  is the clamp's lower bound): the integer GEMM of the float rule — per output K products and K − 1
  accumulations (transposed: as :mod:`.conv`) — then, per output, the input zero-point correction
  acc − z_x·Σw (1 mul, 1 sub), the bias (1 add, float bias), and RQ.
* ``quantized::add`` / ``mul`` (``_relu`` fused): DQ of both inputs, the op, RQ; ``add_scalar`` /
  ``mul_scalar``: DQ of one input, the op, RQ.
* element-wise kernels (``hardswish``, ``sigmoid``, ``leaky_relu``, ``elu``, ``celu``, ``softmax``,
  ``layer_norm``, ``group_norm``, ``instance_norm``, ``batch_norm*d``): DQ + the float rule + RQ;
  ``relu6`` / ``clamp`` / ``threshold``: compares on the integers; ``max_pool*d``: the float rule
  (compares commute with the affine map); ``cat``: RQ of every element into the output's scale.
* ``linear_dynamic`` (dynamic quantization, float input and output): the input's min and max
  (2(n − 1) compares), Q of every input element, the integer GEMM, and per output the zero-point
  correction (1 mul, 1 sub), the dequantization acc·s_x·s_w (1 mul) and the bias (1 add).

**Approximate**: the fbgemm/qnnpack kernels compute the same arithmetic in fixed point (integer
multipliers and shifts), which these counts price as the equivalent float operations, each in the
op's own format (8-bit integer ALU for ``quint8``/``qint8``, see docs/conventions.md §4). Packing,
unpacking and quantization-parameter queries cost nothing.
"""

from __future__ import annotations

from math import prod

import torch

from ..bos import BOs
from . import activations, conv, norms, pooling, reductions  # noqa: F401  (float rules first)
from .registry import RULES, numel, register, register_zero

aten = torch.ops.aten

Q = BOs(add=1, sub=2, mul=1)
DQ = BOs(sub=1, mul=1)
RQ = BOs(add=1, sub=2, mul=1)
ZP_CORRECTION = BOs(sub=1, mul=1)


def _out(out):
    return out[0] if isinstance(out, (tuple, list)) else out


@register("quantize_per_tensor", "quantize_per_channel", "fake_quantize_per_tensor_affine",
          "fake_quantize_per_channel_affine")
def quantize(out, x, *args, **kwargs) -> BOs:
    """Per element x·(1/s) + z, round, clamp: [1, 2, 1, 0, 0] (fake quantization, whose output is
    float: + the dequantization (q − z)·s → [1, 3, 2, 0, 0])."""
    if isinstance(x, (list, tuple)):  # quantize_per_tensor.tensors
        return Q * sum(numel(t) for t in x)
    o = _out(out)
    return (Q + DQ) * numel(x) if o.is_floating_point() else Q * numel(x)


@register("quantize_per_tensor_dynamic", "_choose_qparams_per_tensor")
def quantize_dynamic(out, x, *args, **kwargs) -> BOs:
    """Choose the scale from the tensor's range (min and max: 2(n−1) compares; then scalar work),
    then quantize each element (quantize_per_tensor_dynamic only): [1, 2, 1, 0, 0] per element."""
    n = numel(x)
    scan = BOs(sub=2 * max(n - 1, 0))
    return scan + Q * n if isinstance(_out(out), torch.Tensor) and _out(out).numel() == n else scan


@register("dequantize")
def dequantize(out, x, *args, **kwargs) -> BOs:
    """Per element (q − z)·s: [0, 1, 1, 0, 0]."""
    if isinstance(x, (list, tuple)):
        return DQ * sum(numel(t) for t in x)
    return DQ * numel(x)


register_zero("q_scale", "q_zero_point", "q_per_channel_scales", "q_per_channel_zero_points",
              "q_per_channel_axis", "int_repr", "_empty_affine_quantized",
              "_empty_per_channel_affine_quantized", "_make_per_tensor_quantized_tensor",
              "_make_per_channel_quantized_tensor", "qscheme")


# -- quantized::conv / linear: the integer GEMM + zero-point correction, bias, requantization -----

def _unpacked(packed):
    """(weight, bias) of a packed conv / linear parameter object (``unpack()``)."""
    w, b = packed.unpack()
    return w, b


def _gemm(out, x, packed, transposed: bool) -> BOs:
    w, b = _unpacked(packed)
    o = _out(out)
    if transposed:
        groups = int(packed.groups())
        c = RULES[aten.convolution](o, x, w, None, list(packed.stride()), list(packed.padding()),
                                    list(packed.dilation()), True, list(packed.output_padding()),
                                    groups)
    elif w.dim() == 2:       # linear: out [*, O], K = in_features
        K = int(w.shape[1])
        c = BOs(add=numel(o) * (K - 1), mul=numel(o) * K)
    else:                    # conv: w [C_out, C_in/g, *k]
        K = prod(int(s) for s in w.shape[1:])
        c = BOs(add=numel(o) * (K - 1), mul=numel(o) * K)
    per_out = ZP_CORRECTION + RQ + (BOs(add=1) if isinstance(b, torch.Tensor) else BOs())
    return c + per_out * numel(o)


def _conv_rule(transposed: bool):
    def rule(out, x, packed, *args, **kwargs) -> BOs:
        return _gemm(out, x, packed, transposed)

    rule.__doc__ = ("Quantized {}: per output K mul, K − 1 add (transposed: as the float rule), "
                    "zero-point correction [0, 1, 1, 0, 0], bias 1 add, requantize [1, 2, 1, 0, 0]"
                    ).format("transposed convolution" if transposed else "convolution / linear")
    return rule


register("quantized::conv1d", "quantized::conv2d", "quantized::conv3d", "quantized::conv1d_relu",
         "quantized::conv2d_relu", "quantized::conv3d_relu", "quantized::linear",
         "quantized::linear_relu")(_conv_rule(False))
register("quantized::conv_transpose1d", "quantized::conv_transpose2d",
         "quantized::conv_transpose3d")(_conv_rule(True))


@register("quantized::linear_dynamic", "quantized::linear_relu_dynamic")
def linear_dynamic(out, x, packed, *args, **kwargs) -> BOs:
    """Dynamic quantization: input min/max (2(n−1) compares) and quantize [1, 2, 1, 0, 0] per
    input element; integer GEMM (K mul, K−1 add per output); per output zero-point correction
    [0, 1, 1, 0, 0], dequantize acc·s_x·s_w (1 mul), bias (1 add)."""
    w, b = _unpacked(packed)
    n, o, K = numel(x), numel(_out(out)), int(w.shape[1])
    total = BOs(sub=2 * max(n - 1, 0)) + Q * n + BOs(add=o * (K - 1), mul=o * K)
    return total + (ZP_CORRECTION + BOs(mul=1) + (BOs(add=1) if isinstance(b, torch.Tensor) else BOs())) * o


# -- element-wise quantized kernels ---------------------------------------------------------------

def _binary(op: BOs, inputs: int, doc: str):
    unit = DQ * inputs + op + RQ

    def rule(out, *args, **kwargs) -> BOs:
        return unit * numel(_out(out))

    rule.__doc__ = doc
    rule.unit = unit  # type: ignore[attr-defined]
    return rule


register("quantized::add", "quantized::add_relu", "quantized::add_out", "quantized::add_relu_out")(
    _binary(BOs(add=1), 2, "Per element: dequantize both, add, requantize: [2, 4, 3, 0, 0]."))
register("quantized::mul", "quantized::mul_relu", "quantized::mul_out", "quantized::mul_relu_out")(
    _binary(BOs(mul=1), 2, "Per element: dequantize both, multiply, requantize: [1, 4, 4, 0, 0]."))
register("quantized::add_scalar", "quantized::add_scalar_relu", "quantized::add_scalar_out",
         "quantized::add_scalar_relu_out")(
    _binary(BOs(add=1), 1, "Per element: dequantize, add the scalar, requantize: [2, 3, 2, 0, 0]."))
register("quantized::mul_scalar", "quantized::mul_scalar_relu", "quantized::mul_scalar_out",
         "quantized::mul_scalar_relu_out")(
    _binary(BOs(mul=1), 1, "Per element: dequantize, multiply by the scalar, requantize: [1, 3, 3, 0, 0]."))


def _wrapped(float_op, doc: str, call=None):
    """DQ + the float rule of ``float_op`` on the same tensors + RQ, per output element."""

    def rule(out, x, *args, **kwargs) -> BOs:
        o = _out(out)
        inner = call(o, x, *args) if call is not None else RULES[float_op](o, x)
        return inner + (DQ + RQ) * numel(o)

    rule.__doc__ = doc
    return rule


register("quantized::hardswish")(_wrapped(aten.hardswish, "Dequantize, hardswish, requantize per element."))
register("quantized::sigmoid")(_wrapped(aten.sigmoid, "Dequantize, sigmoid, requantize per element."))
register("quantized::elu", "quantized::celu")(_wrapped(aten.elu, "Dequantize, ELU, requantize per element."))
register("quantized::leaky_relu")(_wrapped(aten.leaky_relu, "Dequantize, leaky ReLU, requantize per element."))
register("quantized::softmax")(_wrapped(
    aten._softmax, "Dequantize, softmax over ``dim``, requantize per element.",
    lambda o, x, dim, *a: RULES[aten._softmax](o, x, dim, False)))
register("quantized::layer_norm")(_wrapped(
    aten.native_layer_norm, "Dequantize, layer norm, requantize per element.",
    lambda o, x, shape, w=None, b=None, *a: RULES[aten.native_layer_norm](None, x, shape, w, b, 1e-5)))
register("quantized::group_norm")(_wrapped(
    aten.native_group_norm, "Dequantize, group norm, requantize per element.",
    lambda o, x, groups, w=None, b=None, *a: RULES[aten.native_group_norm](
        None, x, w, b, int(x.shape[0]), int(x.shape[1]), numel(x) // max(int(x.shape[0]) * int(x.shape[1]), 1),
        int(groups), 1e-5)))
register("quantized::instance_norm")(_wrapped(
    aten.native_group_norm, "Dequantize, instance norm (a group norm with one channel per group), "
    "requantize per element.",
    lambda o, x, w=None, b=None, *a: RULES[aten.native_group_norm](
        None, x, w, b, int(x.shape[0]), int(x.shape[1]), numel(x) // max(int(x.shape[0]) * int(x.shape[1]), 1),
        int(x.shape[1]), 1e-5)))


@register("quantized::batch_norm1d", "quantized::batch_norm2d", "quantized::batch_norm3d",
          "quantized::batch_norm1d_relu", "quantized::batch_norm2d_relu",
          "quantized::batch_norm3d_relu", "quantized::batch_norm", "quantized::batch_norm_relu",
          "quantized_batch_norm")
def quantized_batch_norm(out, x, *args, **kwargs) -> BOs:
    """Per element: dequantize, x·a + b with per-channel a, b folded from the statistics (1 mul,
    1 add), requantize: [2, 3, 3, 0, 0]."""
    return (DQ + BOs(add=1, mul=1) + RQ) * numel(_out(out))


@register("quantized::relu6", "quantized::clamp", "quantized::threshold")
def quantized_clamp(out, x, *args, **kwargs) -> BOs:
    """Compares on the integer values: 2 per element (the bounds mapped once to integers)."""
    return BOs(sub=2 * numel(_out(out)))


@register("quantized::cat", "quantized::cat_relu", "quantized::cat_out", "quantized::cat_relu_out")
def quantized_cat(out, tensors, *args, **kwargs) -> BOs:
    """Every element requantized into the output's scale: dequantize + requantize [1, 3, 2, 0, 0]."""
    return (DQ + RQ) * sum(numel(t) for t in tensors)


@register("quantized::max_pool1d", "quantized::max_pool2d")
def quantized_max_pool(out, x, kernel_size, *args, **kwargs) -> BOs:
    """As the float max pool: Πk − 1 compares per output (compares commute with the affine map)."""
    k = prod(int(v) for v in kernel_size) if isinstance(kernel_size, (list, tuple)) else int(kernel_size)
    return BOs(sub=numel(_out(out)) * (k - 1))


register_zero("quantized::conv1d_prepack", "quantized::conv2d_prepack", "quantized::conv3d_prepack",
              "quantized::conv_transpose1d_prepack", "quantized::conv_transpose2d_prepack",
              "quantized::conv_transpose3d_prepack", "quantized::linear_prepack",
              "quantized::linear_prepack_fp16", "quantized::conv1d_unpack", "quantized::conv2d_unpack",
              "quantized::conv3d_unpack", "quantized::linear_unpack", "quantized::linear_unpack_fp16",
              "quantized::conv2d_stride", "quantized::conv2d_padding", "quantized::conv2d_dilation",
              "quantized::conv2d_groups", "quantized::conv2d_output_padding",
              "quantized::conv2d_transpose", "quantized::conv2d_unpack_sizes")
