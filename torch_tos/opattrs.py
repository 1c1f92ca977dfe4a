"""The op attributes a call's cost depends on beyond its FLOPs and bytes, read from the op's own
arguments at count time.

A registry in the style of the rules (:mod:`torch_tos.rules`): aten op → a small pure function
``attrs(args, kwargs, out, bos) -> tuple`` whose result becomes the ``attrs`` field of the call's
work bin (:attr:`torch_tos.counts.Counts.work`). Most ops have none (``None``): their FLOPs and the
bytes they read and write say what their kernel does. The ones here do not:

- **convolutions** (forward and backward): ``(kind, taps, stride, backend, positions)`` — ``kind`` is
  ``"dense"`` (``groups == 1``), ``"depthwise"`` (``groups`` equal to the input channels),
  ``"grouped"`` (between) or ``"transposed"``; ``taps`` the kernel's spatial elements (kh·kw·…);
  ``stride`` the largest stride; ``backend`` the convolution backend PyTorch selects for these
  arguments on the device (PyTorch's own selector: ``"Mkldnn"``, ``"Slow2d"``,
  ``"Cudnn"``, … — asked with CPU stand-ins of the same sizes, strides and dtype when counting on
  meta, under the thread count in force when counting: PyTorch's CPU heuristics pick oneDNN or
  its own im2col + GEMM path by batch size, kernel, dtype and threads); ``positions`` the output's
  spatial positions per image (H·W·…): the im2col path runs one GEMM per image, as wide as that.
  Different kernels and GEMM widths run at different speeds for the same FLOPs and bytes;
- **foreach ops** (``_foreach_*``, fused optimizers): ``(tensors,)`` — the length of the tensor
  list: such a call loops over its tensors, with a cost per tensor;
- **normalisations** (batch, layer, group norm, forward and backward): ``(statistics, positions,
  training)`` — how many independent means and variances the call computes (batch norm: the
  channels; layer norm: the rows; group norm: batch × groups), the positions of one image's plane
  (batch and group norm: H·W·…; layer norm: the normalised size) — kernels loop over planes, and a
  call over many small planes costs per plane beyond its bytes — and whether it computes the
  batch's statistics (a batch norm in eval mode only scales and shifts);
- **fused recurrent layers** (``mkldnn_rnn_layer``, cuDNN/MIOpen RNNs, fused LSTM/GRU cells and their
  backwards), which have no FLOPs formula: ``(multiplications, training)`` — the multiplications
  the call's rule counts (its GEMMs over every time step), the work its time follows, and whether
  it keeps what backward needs (a training forward writes a workspace an inference one does not).

The cost model (:mod:`torch_tos.energy.opclasses`) reads these to pick the measured kernels a call
is priced from.
"""

from __future__ import annotations

from typing import Callable

import torch

from ._compat import OpOverload, select_conv_backend

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


def conv_backend(x, weight, stride, padding, dilation, transposed, output_padding, groups) -> str | None:
    """The name of the convolution backend PyTorch selects for these arguments on the device
    (module doc); None when it cannot be asked."""
    select = select_conv_backend
    if select is None or not isinstance(x, torch.Tensor) or not isinstance(weight, torch.Tensor):
        return None
    try:
        if x.device.type == "meta" or weight.device.type == "meta":
            x = torch.empty_strided(tuple(x.shape), tuple(x.stride()), dtype=x.dtype, device="cpu")
            weight = torch.empty_strided(tuple(weight.shape), tuple(weight.stride()), dtype=weight.dtype,
                                         device="cpu")
        out = select(x, weight, None, _ints(stride), _ints(padding), _ints(dilation), bool(transposed),
                     _ints(output_padding), int(groups or 1), None)
    except (RuntimeError, TypeError, ValueError):
        return None
    return getattr(out, "name", str(out))


def _ints(v) -> list[int]:
    if isinstance(v, (list, tuple)):
        return [int(x) for x in v]
    return [int(v if v is not None else 0)]


def conv_attrs(weight, input_channels, stride, transposed, groups, backend=None, positions=None) -> tuple:
    """``(kind, taps, stride, backend, positions)`` of a convolution (module doc)."""
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
    return (kind, taps, max(strides or [1]), backend, positions)


def _channels(x) -> int | None:
    s = _shape(x)
    return s[1] if s and len(s) > 1 else None


def _positions(y) -> int | None:
    """Spatial positions per image of a convolution output (or its gradient) ``y``."""
    s = _shape(y)
    if not s or len(s) < 3:
        return None
    n = 1
    for d in s[2:]:
        n *= d
    return n


def _full_conv(x, weight, stride, padding, dilation, transposed, output_padding, groups, y) -> tuple:
    backend = conv_backend(x, weight, stride, padding, dilation, transposed, output_padding, groups)
    return conv_attrs(weight, _channels(x), stride, transposed, groups, backend, _positions(y))


def _convolution(args, kwargs, out, bos):
    # convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
    a = list(args) + [None] * 9
    names = ("stride", "padding", "dilation", "transposed", "output_padding", "groups")
    v = [kwargs.get(n, a[i]) for n, i in zip(names, (3, 4, 5, 6, 7, 8))]
    return _full_conv(a[0], a[1], *v, out)


def _convolution_backward(args, kwargs, out, bos):
    # convolution_backward(grad_output, input, weight, bias_sizes, stride, padding, dilation, transposed,
    #                      output_padding, groups, output_mask)
    a = list(args) + [None] * 11
    names = ("stride", "padding", "dilation", "transposed", "output_padding", "groups")
    v = [kwargs.get(n, a[i]) for n, i in zip(names, (4, 5, 6, 7, 8, 9))]
    return _full_conv(a[1], a[2], *v, a[0])


def _mkldnn_convolution(args, kwargs, out, bos):
    # mkldnn_convolution(input, weight, bias, padding, stride, dilation, groups)
    a = list(args) + [None] * 7
    return conv_attrs(a[1], _channels(a[0]), kwargs.get("stride", a[4]), False, kwargs.get("groups", a[6]),
                      positions=_positions(out))


def _conv2d(args, kwargs, out, bos):
    # conv1d/2d/3d(input, weight, bias, stride, padding, dilation, groups)
    a = list(args) + [None] * 7
    return conv_attrs(a[1], _channels(a[0]), kwargs.get("stride", a[3] or 1), False,
                      kwargs.get("groups", a[6]), positions=_positions(out))


def _depthwise(args, kwargs, out, bos):
    # _conv_depthwise2d(input, weight, kernel_size, bias, stride, padding, dilation)
    a = list(args) + [None] * 7
    ch = _channels(a[0])
    return conv_attrs(a[1], ch, kwargs.get("stride", a[4] or 1), False, ch, positions=_positions(out))


def _tensor_list(args, kwargs, out, bos):
    first = args[0] if args else None
    return (len(first),) if isinstance(first, (list, tuple)) else (1,)


#: Position of the ``train`` argument of the fused recurrent ops that have one.
_RNN_TRAIN = {"aten.mkldnn_rnn_layer": 15, "aten._cudnn_rnn": 12, "aten.miopen_rnn": 10}


def _multiplications(name):
    at = _RNN_TRAIN.get(name)

    def attrs(args, kwargs, out, bos):
        train = bool(kwargs.get("train", args[at] if at is not None and len(args) > at else True))
        return (int(bos[2]), train)
    return attrs


def _planes(x) -> tuple:
    """``(channels, positions per image)`` of a batch-norm or group-norm input."""
    s = _shape(x)
    if not s or len(s) < 2:
        return (1, 1)
    positions = 1
    for d in s[2:]:
        positions *= d
    return (s[1], positions)


def _channel_stats(args, kwargs, out, bos):
    # native_batch_norm / _native_batch_norm_legit(input, weight, bias, running_mean, running_var, training, ...)
    training = kwargs.get("training", args[5] if len(args) > 5 else True)
    return (*_planes(args[0] if args else None), bool(training))


def _channel_stats_eval(args, kwargs, out, bos):
    return (*_planes(args[0] if args else None), False)


def _channel_stats_backward(args, kwargs, out, bos):
    return (*_planes(args[1] if len(args) > 1 else None), True)  # (grad_out, input, ...)


def _row_stats(x, normalized) -> tuple:
    s = _shape(x)
    if not s:
        return (1, 1)
    inner = 1
    for d in (normalized if isinstance(normalized, (list, tuple)) else [normalized]):
        inner *= int(d)
    total = 1
    for d in s:
        total *= d
    return (max(1, total // max(inner, 1)), inner, True)


def _layer_norm(args, kwargs, out, bos):
    return _row_stats(args[0], kwargs.get("normalized_shape", args[1] if len(args) > 1 else 1))


def _layer_norm_backward(args, kwargs, out, bos):
    return _row_stats(args[1], kwargs.get("normalized_shape", args[2] if len(args) > 2 else 1))


def _group_norm(args, kwargs, out, bos):
    # native_group_norm(input, weight, bias, N, C, HxW, group, eps)
    a = list(args) + [None] * 8
    return (int(a[3] or 1) * int(a[6] or 1), int(a[5] or 1), True)


def _group_norm_backward(args, kwargs, out, bos):
    # native_group_norm_backward(grad_out, input, mean, rstd, weight, N, C, HxW, group, output_mask)
    a = list(args) + [None] * 10
    return (int(a[5] or 1) * int(a[8] or 1), int(a[7] or 1), True)


def _register(names, fn: AttrFn) -> None:
    for n in names:
        ATTRS[f"aten.{n}"] = fn


def _cudnn_convolution(args, kwargs, out, bos):
    # cudnn_convolution(input, weight, padding, stride, dilation, groups, ...)
    a = list(args) + [None] * 6
    return conv_attrs(a[1], _channels(a[0]), kwargs.get("stride", a[3]), False, kwargs.get("groups", a[5]),
                      positions=_positions(out))


def _cudnn_transpose(args, kwargs, out, bos):
    # cudnn_convolution_transpose(input, weight, padding, output_padding, stride, dilation, groups, ...)
    a = list(args) + [None] * 7
    return conv_attrs(a[1], _channels(a[0]), kwargs.get("stride", a[4]), True, kwargs.get("groups", a[6]),
                      positions=_positions(out))


def _miopen_transpose(args, kwargs, out, bos):
    # miopen_convolution_transpose(input, weight, bias, padding, output_padding, stride, dilation, groups, ...)
    a = list(args) + [None] * 8
    return conv_attrs(a[1], _channels(a[0]), kwargs.get("stride", a[5]), True, kwargs.get("groups", a[7]),
                      positions=_positions(out))


_register(("convolution", "_convolution", "convolution_overrideable"), _convolution)
_register(("convolution_backward", "convolution_backward_overrideable"), _convolution_backward)
_register(("mkldnn_convolution", "miopen_convolution", "miopen_depthwise_convolution"), _mkldnn_convolution)
_register(("cudnn_convolution",), _cudnn_convolution)
_register(("cudnn_convolution_transpose",), _cudnn_transpose)
_register(("miopen_convolution_transpose",), _miopen_transpose)
_register(("conv1d", "conv2d", "conv3d"), _conv2d)
_register(("_conv_depthwise2d", "conv_depthwise3d"), _depthwise)
_register(("native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_functional",
           "cudnn_batch_norm", "miopen_batch_norm"), _channel_stats)
_register(("_native_batch_norm_legit_no_training",), _channel_stats_eval)
_register(("native_batch_norm_backward", "batch_norm_backward", "cudnn_batch_norm_backward",
           "miopen_batch_norm_backward"), _channel_stats_backward)
_register(("native_layer_norm",), _layer_norm)
_register(("native_layer_norm_backward",), _layer_norm_backward)
_register(("native_group_norm",), _group_norm)
_register(("native_group_norm_backward",), _group_norm_backward)
for _name in ("mkldnn_rnn_layer", "mkldnn_rnn_layer_backward", "_cudnn_rnn", "_cudnn_rnn_backward", "miopen_rnn",
              "miopen_rnn_backward", "_thnn_fused_lstm_cell", "_thnn_fused_lstm_cell_backward",
              "_thnn_fused_lstm_cell_backward_impl", "_thnn_fused_gru_cell", "_thnn_fused_gru_cell_backward"):
    ATTRS[f"aten.{_name}"] = _multiplications(f"aten.{_name}")


def attrs_function(func) -> AttrFn | None:
    """The attribute function of the aten op ``func`` (an OpOverload or its name), or None."""
    name = str(func.overloadpacket) if isinstance(func, OpOverload) else str(func)
    fn = ATTRS.get(name)
    if fn is None and name.startswith(("aten._foreach_", "aten._fused_")):
        return _tensor_list
    return fn


__all__ = ["ATTRS", "attrs_function", "conv_attrs"]
