"""The op attributes a call's cost depends on beyond its FLOPs and bytes, read from the op's own
arguments at count time.

A registry in the style of the rules (:mod:`torch_tos.rules`): aten op → a small pure function
``attrs(args, kwargs, out, bos) -> tuple`` whose result becomes the ``attrs`` field of the call's
work bin (:attr:`torch_tos.counts.Counts.work`). Most ops have none (``None``): their FLOPs and the
bytes they read and write say what their kernel does. The ones here do not:

- **convolutions** (forward and backward): ``(kind, taps, stride)`` — ``kind`` is ``"dense"``
  (``groups == 1``), ``"depthwise"`` (``groups`` equal to the input channels), ``"grouped"``
  (between) or ``"transposed"``; ``taps`` the kernel's spatial elements (kh·kw·…); ``stride`` the
  largest stride. Libraries run different kernels for these (e.g. a depthwise kernel with a fast
  path for some sizes and strides), at different speeds for the same FLOPs and bytes;
- **foreach ops** (``_foreach_*``, fused optimizers): ``(tensors,)`` — the length of the tensor
  list: such a call loops over its tensors, with a cost per tensor;
- **fused recurrent layers** (``mkldnn_rnn_layer``, cuDNN/MIOpen RNNs, fused LSTM/GRU cells and their
  backwards), which have no FLOPs formula: ``(multiplications,)`` — the multiplications the call's
  rule counts (its GEMMs over every time step), the work its time follows.

The cost model (:mod:`torch_tos.energy.opclasses`) reads these to pick the measured kernels a call
is priced from.
"""

from __future__ import annotations

from typing import Callable

import torch

from ._compat import OpOverload

AttrFn = Callable[..., tuple]

#: op name (``"aten.convolution"``) → attribute function
ATTRS: dict[str, AttrFn] = {}


def _shape(t) -> tuple[int, ...] | None:
    if isinstance(t, torch.Tensor):
        try:
            return tuple(int(s) for s in t.shape)
        except (TypeError, ValueError, RuntimeError):  # symbolic sizes
            return None
    return None


def conv_attrs(weight, input_channels, stride, transposed, groups) -> tuple:
    """``(kind, taps, stride)`` of a convolution (module doc)."""
    w = _shape(weight)
    taps = 1
    for k in (w[2:] if w else ()):
        taps *= k
    groups = int(groups or 1)
    if transposed:
        kind = "transposed"
    elif groups == 1:
        kind = "dense"
    elif input_channels is not None and groups == input_channels:
        kind = "depthwise"
    else:
        kind = "grouped"
    strides = [int(s) for s in stride] if isinstance(stride, (list, tuple)) else [int(stride or 1)]
    return (kind, taps, max(strides or [1]))


def _channels(x) -> int | None:
    s = _shape(x)
    return s[1] if s and len(s) > 1 else None


def _convolution(args, kwargs, out, bos):
    # convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
    a = list(args) + [None] * 9
    return conv_attrs(a[1], _channels(a[0]), kwargs.get("stride", a[3]), kwargs.get("transposed", a[6]),
                      kwargs.get("groups", a[8]))


def _convolution_backward(args, kwargs, out, bos):
    # convolution_backward(grad_output, input, weight, bias_sizes, stride, padding, dilation, transposed,
    #                      output_padding, groups, output_mask)
    a = list(args) + [None] * 11
    return conv_attrs(a[2], _channels(a[1]), kwargs.get("stride", a[4]), kwargs.get("transposed", a[7]),
                      kwargs.get("groups", a[9]))


def _mkldnn_convolution(args, kwargs, out, bos):
    # mkldnn_convolution(input, weight, bias, padding, stride, dilation, groups)
    a = list(args) + [None] * 7
    return conv_attrs(a[1], _channels(a[0]), kwargs.get("stride", a[4]), False, kwargs.get("groups", a[6]))


def _conv2d(args, kwargs, out, bos):
    # conv1d/2d/3d(input, weight, bias, stride, padding, dilation, groups)
    a = list(args) + [None] * 7
    return conv_attrs(a[1], _channels(a[0]), kwargs.get("stride", a[3] or 1), False,
                      kwargs.get("groups", a[6]))


def _depthwise(args, kwargs, out, bos):
    # _conv_depthwise2d(input, weight, kernel_size, bias, stride, padding, dilation)
    a = list(args) + [None] * 7
    ch = _channels(a[0])
    return conv_attrs(a[1], ch, kwargs.get("stride", a[4] or 1), False, ch)


def _tensor_list(args, kwargs, out, bos):
    first = args[0] if args else None
    return (len(first),) if isinstance(first, (list, tuple)) else (1,)


def _multiplications(args, kwargs, out, bos):
    return (int(bos[2]),)


def _register(names, fn: AttrFn) -> None:
    for n in names:
        ATTRS[f"aten.{n}"] = fn


def _cudnn_convolution(args, kwargs, out, bos):
    # cudnn_convolution(input, weight, padding, stride, dilation, groups, ...)
    a = list(args) + [None] * 6
    return conv_attrs(a[1], _channels(a[0]), kwargs.get("stride", a[3]), False, kwargs.get("groups", a[5]))


def _cudnn_transpose(args, kwargs, out, bos):
    # cudnn_convolution_transpose(input, weight, padding, output_padding, stride, dilation, groups, ...)
    a = list(args) + [None] * 7
    return conv_attrs(a[1], _channels(a[0]), kwargs.get("stride", a[4]), True, kwargs.get("groups", a[6]))


def _miopen_transpose(args, kwargs, out, bos):
    # miopen_convolution_transpose(input, weight, bias, padding, output_padding, stride, dilation, groups, ...)
    a = list(args) + [None] * 8
    return conv_attrs(a[1], _channels(a[0]), kwargs.get("stride", a[5]), True, kwargs.get("groups", a[7]))


_register(("convolution", "_convolution", "convolution_overrideable"), _convolution)
_register(("convolution_backward", "convolution_backward_overrideable"), _convolution_backward)
_register(("mkldnn_convolution", "miopen_convolution", "miopen_depthwise_convolution"), _mkldnn_convolution)
_register(("cudnn_convolution",), _cudnn_convolution)
_register(("cudnn_convolution_transpose",), _cudnn_transpose)
_register(("miopen_convolution_transpose",), _miopen_transpose)
_register(("conv1d", "conv2d", "conv3d"), _conv2d)
_register(("_conv_depthwise2d", "conv_depthwise3d"), _depthwise)
_register(("mkldnn_rnn_layer", "mkldnn_rnn_layer_backward", "_cudnn_rnn", "_cudnn_rnn_backward", "miopen_rnn",
           "miopen_rnn_backward", "_thnn_fused_lstm_cell", "_thnn_fused_lstm_cell_backward",
           "_thnn_fused_lstm_cell_backward_impl", "_thnn_fused_gru_cell", "_thnn_fused_gru_cell_backward"),
          _multiplications)


def attrs_function(func) -> AttrFn | None:
    """The attribute function of the aten op ``func`` (an OpOverload or its name), or None."""
    name = str(func.overloadpacket) if isinstance(func, OpOverload) else str(func)
    fn = ATTRS.get(name)
    if fn is None and name.startswith(("aten._foreach_", "aten._fused_")):
        return _tensor_list
    return fn


__all__ = ["ATTRS", "attrs_function", "conv_attrs"]
