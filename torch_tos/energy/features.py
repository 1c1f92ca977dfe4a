"""The counted features of one training step: what an energy law may regress on.

:func:`step_features` turns the :class:`~torch_tos.counts.Counts` of ONE step (a
:func:`torch_tos.profile` report, training mode) into a flat ``{name: float}`` dict whose names are
runs-CSV column names (:data:`FEATURE_NAMES`):

- ``tos``: transistor operations (exact, priced per dtype with ``table``); ``flops``: the
  ``torch.utils.flop_counter`` FLOPs; ``bos_add … bos_root``: basic operations per kind;
- ``tos_<dtype>`` (``tos_float32``, ``tos_bfloat16``, …): TOs computed in each dtype;
- ``calls``: compute-kernel calls — aten ops that do real work: BOs > 0 or FLOPs > 0, plus the
  zero-BO data kernels of :data:`DATA_KERNELS` (copies, fills, concatenation, gathers such as
  ``aten.embedding``, random-number generation). Views and metadata ops (``aten.view``,
  ``aten.t``, ``aten.detach``, allocation with ``aten.empty``) are not kernels;
- ``bytes``: Σ bytes of each op's tensor inputs and outputs — an *estimate* of data movement
  (each tensor once; caches, re-reads and fusion ignored; views move 0);
- per op class ``c`` of :data:`CLASSES`: ``tos_<c>``, ``bytes_<c>``, ``calls_<c>`` (``calls_<c>``
  counts kernels only, like ``calls``);
- kernel efficiency (:mod:`.efficiency`, per row, fixed thresholds): ``bytes_<c>_lowai`` (bytes of
  matmul/conv/dwconv rows below 32 FLOP/B: memory-bound), ``tos_<c>_small`` (TOs of those rows doing
  < 10⁶ FLOPs per call: latency-bound), ``bytes_large`` (bytes of rows moving ≥ 32 MiB per call) and
  ``tos_dwconv_slow`` (TOs of the backward of depthwise convs larger than 3×3 or strided: oneDNN's
  slow path; needs the layer map below), ``bytes_<c>_big`` (bytes of matmul/conv/dwconv rows moving
  ≥ 8 MiB per call: operands beyond the L2 cache) and ``tos_<c>_lowai_big`` (TOs of those rows that
  are also below 32 FLOP/B: weight-streaming GEMMs), ``calls_rnn`` (calls of fused recurrent-layer
  ops such as ``aten.mkldnn_rnn_layer``: a fixed cost per call).

Op classes (:func:`op_class`), keyed by aten op name in the one table :data:`OP_CLASSES`:

- ``matmul`` (mm, addmm, bmm, attention kernels, fused recurrent layers such as
  ``mkldnn_rnn_layer``: GEMMs with their gates), ``conv`` (dense convolutions), ``dwconv``
  (grouped/depthwise convolutions: ``groups > 1``), ``elementwise`` (arithmetic, activations,
  softmax, losses' pointwise parts), ``norm`` (batch/layer/group norm), ``optimizer`` (every op of
  the optimizer phase, and the gradient accumulation of the backward phase: ``aten.add``/
  ``aten.add_`` there — approximate: a backward formula that itself adds is booked here too),
  ``rng`` (``bernoulli_``, dropout: little or no TOs but real work), ``memory`` (copies, fills,
  cat, gathers/scatters, embedding), ``other`` (reductions, pooling, losses, everything not listed).

The grouped/depthwise split needs each conv's ``groups``, which a counts row does not hold (its key
is layer, phase, dtype, op). Pass ``model=`` (the profiled ``nn.Module``) or ``groups=`` (layer path
→ :class:`ConvLayer` from :func:`conv_layers`, or layer path → groups from :func:`conv_groups`) and
conv rows of a layer with ``groups > 1`` are ``dwconv``; without either, every convolution is
``conv``. ``tos_dwconv_slow`` also needs the layer's kernel size and stride: a :class:`ConvLayer`
map (``model=`` builds one); with a plain groups map it stays 0. (Splitting inside the engine would
need the op key to carry them, e.g. an op name ``aten.convolution[g>1]``.)

Only counted quantities are features: :func:`is_counted_feature` is the whitelist (measured columns
such as ``joules`` and ``seconds`` are rejected with :func:`check_features`).
"""

from __future__ import annotations

from fractions import Fraction
from typing import NamedTuple

import torch

from .._compat import CONV_TYPES
from ..bos import BO_NAMES
from ..counts import BYTES, CALLS, FLOPS, N_BOS, Counts, price_bos
from ..tables import COMPLEX_COMPONENT, FLOAT_FORMATS, INT_FORMATS, dtype_name
from .efficiency import (EFFICIENCY_FEATURES, EFFICIENCY_UNITS, FUSED_RNN, big_names, dwconv_slow, efficiency_names,
                         rnn_calls)

#: The op classes, in print order.
CLASSES: tuple[str, ...] = ("matmul", "conv", "dwconv", "elementwise", "norm", "optimizer", "rng",
                            "memory", "other")

_MATMUL = ("mm", "addmm", "bmm", "baddbmm", "addbmm", "mv", "addmv", "dot", "vdot", "matmul", "linear",
           "_scaled_mm", "_scaled_dot_product_flash_attention_for_cpu",
           "_scaled_dot_product_flash_attention_for_cpu_backward", "_scaled_dot_product_flash_attention",
           "_scaled_dot_product_flash_attention_backward", "_scaled_dot_product_efficient_attention",
           "_scaled_dot_product_efficient_attention_backward", "_scaled_dot_product_cudnn_attention",
           "_scaled_dot_product_cudnn_attention_backward", "_flash_attention_forward",
           "_flash_attention_backward", "_efficient_attention_forward", "_efficient_attention_backward",
           # fused recurrent layers and cells: GEMMs plus pointwise gates in one kernel
           *(op[5:] for op in FUSED_RNN), "_thnn_fused_lstm_cell", "_thnn_fused_lstm_cell_backward_impl",
           "_thnn_fused_gru_cell", "_thnn_fused_gru_cell_backward")
_CONV = ("convolution", "convolution_backward", "_convolution", "conv1d", "conv2d", "conv3d",
         "cudnn_convolution", "mkldnn_convolution", "_slow_conv2d_forward", "_slow_conv2d_backward",
         "slow_conv3d_forward", "convolution_overrideable", "convolution_backward_overrideable",
         "_conv_depthwise2d", "conv_depthwise3d", "cudnn_convolution_transpose", "slow_conv_transpose2d",
         "slow_conv_transpose3d")
_NORM = ("native_batch_norm", "native_batch_norm_backward", "_native_batch_norm_legit",
         "_native_batch_norm_legit_no_training", "_native_batch_norm_legit_functional",
         "cudnn_batch_norm", "cudnn_batch_norm_backward", "miopen_batch_norm", "batch_norm_backward",
         "native_layer_norm", "native_layer_norm_backward", "native_group_norm",
         "native_group_norm_backward", "_fused_rms_norm", "_fused_rms_norm_backward", "rms_norm")
_ELEMENTWISE = ("add", "add_", "sub", "sub_", "rsub", "mul", "mul_", "div", "div_", "neg", "neg_",
                "abs", "reciprocal", "sqrt", "rsqrt", "pow", "exp", "log", "log1p", "expm1", "sin", "cos",
                "sign", "clamp", "clamp_", "clamp_min", "clamp_max", "minimum", "maximum", "where",
                "addcmul", "addcdiv", "lerp", "relu", "relu_", "threshold", "threshold_backward",
                "gelu", "gelu_backward", "silu", "silu_", "silu_backward", "sigmoid", "sigmoid_",
                "sigmoid_backward", "tanh", "tanh_", "tanh_backward", "hardswish", "hardswish_",
                "hardswish_backward", "hardsigmoid", "hardsigmoid_", "hardsigmoid_backward",
                "hardtanh", "hardtanh_", "hardtanh_backward", "leaky_relu", "leaky_relu_",
                "leaky_relu_backward", "elu", "elu_", "elu_backward", "softplus", "softplus_backward",
                "mish", "mish_backward", "_softmax", "_softmax_backward_data", "_safe_softmax",
                "_log_softmax", "_log_softmax_backward_data", "erf", "masked_fill", "masked_fill_",
                "mse_loss", "mse_loss_backward", "square", "eq", "ne", "lt", "le", "gt", "ge",
                "logical_not", "pow_", "exp_", "sqrt_", "erfinv")
_RNG = ("bernoulli", "bernoulli_", "native_dropout", "native_dropout_backward", "rand", "rand_like",
        "randn", "randn_like", "normal_", "uniform_", "randint", "randperm", "exponential_")
_MEMORY = ("clone", "copy_", "_to_copy", "copy", "contiguous", "cat", "stack", "zeros", "zeros_like",
           "ones", "ones_like", "full", "full_like", "fill_", "zero_", "new_zeros", "new_ones",
           "new_full", "embedding", "embedding_dense_backward", "index_select", "gather", "scatter",
           "scatter_", "scatter_add", "scatter_add_", "index", "index_put", "index_put_",
           "index_add", "index_add_", "constant_pad_nd", "repeat", "flip", "roll", "tril", "triu",
           "select_backward", "slice_backward", "narrow_copy", "masked_scatter", "_unsafe_index",
           "_unsafe_index_put", "lift_fresh_copy", "arange")

#: aten op name → op class (the one table; ops not in it are ``other`` unless the phase decides).
OP_CLASSES: dict[str, str] = {f"aten.{op}": cls for cls, ops in (
    ("matmul", _MATMUL), ("conv", _CONV), ("norm", _NORM), ("elementwise", _ELEMENTWISE),
    ("rng", _RNG), ("memory", _MEMORY)) for op in ops}

#: Zero-BO ops that still run a kernel (they move or make data): counted in ``calls``.
DATA_KERNELS: frozenset[str] = frozenset(op for op, cls in OP_CLASSES.items() if cls in ("rng", "memory"))

#: Ops of the backward phase booked as gradient accumulation (class ``optimizer``).
GRAD_ACCUMULATION: frozenset[str] = frozenset({"aten.add", "aten.add_"})

#: dtypes with a ``tos_<dtype>`` column (every dtype the transistor table prices).
DTYPES: tuple[str, ...] = tuple(dict.fromkeys(dtype_name(d) for d in (*FLOAT_FORMATS, *INT_FORMATS,
                                                                      *COMPLEX_COMPONENT)))
BASE_FEATURES: tuple[str, ...] = ("tos", "flops", *(f"bos_{b}" for b in BO_NAMES), "calls", "bytes")
#: Every counted feature, in CSV column order.
FEATURE_NAMES: tuple[str, ...] = (*BASE_FEATURES, *(f"tos_{d}" for d in DTYPES),
                                  *(f"{kind}_{c}" for c in CLASSES for kind in ("tos", "bytes", "calls")),
                                  *EFFICIENCY_FEATURES)
_FEATURE_SET = frozenset(FEATURE_NAMES)
#: Printable unit names (a law prints ``J/TO · TOs``).
UNITS = {"tos": ("TO", "TOs"), "flops": ("FLOP", "FLOPs"), "calls": ("call", "calls"),
         "bytes": ("B", "bytes"), "bos": ("BO", "BOs")}


def op_class(op: str, phase: str = "forward", layer_groups: int = 1) -> str:
    """The class of aten op ``op`` (``"aten.mm"``) run in ``phase``; ``layer_groups`` is the
    ``groups`` of the conv module the row belongs to (1 when unknown)."""
    if phase == "optimizer":
        return "optimizer"
    if phase == "backward" and op in GRAD_ACCUMULATION:
        return "optimizer"
    cls = OP_CLASSES.get(op, "other")
    if cls == "conv" and layer_groups > 1:
        return "dwconv"
    return cls


def is_kernel(op: str, row) -> bool:
    """Whether a counts row's op runs a compute kernel: BOs or FLOPs > 0, or a data kernel."""
    return any(row[:N_BOS]) or row[FLOPS] > 0 or op in DATA_KERNELS


class ConvLayer(NamedTuple):
    """What a counts row needs to know of its grouped conv layer: ``groups``, ``taps`` (kernel
    elements per channel, kh·kw·…; None when unknown) and ``stride`` (the largest; None when unknown)."""

    groups: int
    taps: int | None = None
    stride: int | None = None


def conv_groups(model: torch.nn.Module) -> dict[str, int]:
    """``{module path: groups}`` of every convolution of ``model`` with ``groups > 1``."""
    return {name: int(m.groups) for name, m in model.named_modules()
            if isinstance(m, CONV_TYPES) and int(m.groups) > 1}


def conv_layers(model: torch.nn.Module) -> dict[str, ConvLayer]:
    """``{module path: ConvLayer(groups, taps, stride)}`` of every convolution of ``model`` with
    ``groups > 1`` (the layer map of ``tos_dwconv_slow``; read from the modules' attributes)."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, CONV_TYPES) and int(m.groups) > 1:
            taps = 1
            for k in m.kernel_size:
                taps *= int(k)
            out[name] = ConvLayer(int(m.groups), taps, max(int(s) for s in m.stride))
    return out


def _groups(model, groups) -> dict[str, ConvLayer]:
    if model is not None and groups is not None:
        raise ValueError("pass model= or groups=, not both")
    if model is not None:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        return conv_layers(model)
    return {k: (ConvLayer(*v) if isinstance(v, tuple) else ConvLayer(int(v))) for k, v in (groups or {}).items()}


def _row_class(key, g: dict) -> tuple[str, bool]:
    """(op class, slow-path depthwise backward) of the row ``key`` under the layer map ``g``."""
    layer, phase, _dtype, op = key
    lay = g.get(layer)
    if lay is not None and not isinstance(lay, ConvLayer):  # a plain groups map
        lay = ConvLayer(*lay) if isinstance(lay, tuple) else ConvLayer(int(lay))
    cls = op_class(op, phase, lay.groups if lay else 1)
    return cls, bool(lay) and dwconv_slow(cls, phase, lay.taps, lay.stride)


def row_features(key: tuple, row, table=None, groups: dict | None = None) -> dict[str, float]:
    """The non-zero features of ONE counts row ``(layer, phase, dtype, op) → fields``; summing
    them over a table gives :func:`step_features` (the law is linear, so per-row joules add up).
    ``groups``: the layer map (see the module doc)."""
    from ..tables import DEFAULT_TABLE

    layer, phase, dtype, op = key
    cls, slow = _row_class(key, groups or {})
    tos = float(price_bos(table or DEFAULT_TABLE, row, dtype)) if any(row[:N_BOS]) else 0.0
    calls = float(row[CALLS]) if is_kernel(op, row) else 0.0
    out = {"tos": tos, "flops": float(row[FLOPS]), "calls": calls, "bytes": float(row[BYTES]),
           f"tos_{dtype_name(dtype)}": tos, f"tos_{cls}": tos, f"bytes_{cls}": float(row[BYTES]),
           f"calls_{cls}": calls}
    for name, v in zip(BO_NAMES, row[:N_BOS]):
        out[f"bos_{name}"] = float(v)
    low, small, large = efficiency_names(cls, row[FLOPS], row[BYTES], row[CALLS])
    if low:
        out[low] = float(row[BYTES])
    if small:
        out[small] = tos
    if large:
        out["bytes_large"] = float(row[BYTES])
    if slow:
        out["tos_dwconv_slow"] = tos
    big_bytes, big_tos = big_names(cls, row[FLOPS], row[BYTES], row[CALLS])
    if big_bytes:
        out[big_bytes] = float(row[BYTES])
    if big_tos:
        out[big_tos] = tos
    if rnn_calls(op, row[CALLS]):
        out["calls_rnn"] = float(row[CALLS])
    return out


def step_features(counts: Counts, table=None, *, model: torch.nn.Module | None = None,
                  groups: dict | None = None) -> dict[str, float]:
    """Every feature of :data:`FEATURE_NAMES` for the counts of one step (zeros included, so rows
    of a runs CSV line up). ``table``: the transistor table (default
    :data:`~torch_tos.tables.DEFAULT_TABLE`); ``model``/``groups``: see the module doc (dwconv)."""
    counts = as_counts(counts)
    from ..tables import DEFAULT_TABLE

    table = table or DEFAULT_TABLE
    g = _groups(model, groups)
    out = dict.fromkeys(FEATURE_NAMES, 0.0)
    # TOs priced once per (layer, phase, op, dtype) group, exactly, then added as fractions
    tos: dict[str, Fraction] = {}
    for key, row in counts.rows.items():
        layer, phase, dtype, op = key
        cls, slow = _row_class(key, g)
        t = price_bos(table, row, dtype) if any(row[:N_BOS]) else Fraction(0)
        low, small, large = efficiency_names(cls, row[FLOPS], row[BYTES], row[CALLS])
        big_bytes, big_tos = big_names(cls, row[FLOPS], row[BYTES], row[CALLS])
        for name in ("tos", f"tos_{dtype_name(dtype)}", f"tos_{cls}", *((small,) if small else ()),
                     *(("tos_dwconv_slow",) if slow else ()), *((big_tos,) if big_tos else ())):
            tos[name] = tos.get(name, Fraction(0)) + t
        if low:
            out[low] += row[BYTES]
        if large:
            out["bytes_large"] += row[BYTES]
        if big_bytes:
            out[big_bytes] += row[BYTES]
        calls = row[CALLS] if is_kernel(op, row) else 0
        out["calls_rnn"] += rnn_calls(op, row[CALLS])
        out["calls"] += calls
        out[f"calls_{cls}"] += calls
        out["flops"] += row[FLOPS]
        out["bytes"] += row[BYTES]
        out[f"bytes_{cls}"] += row[BYTES]
        for name, v in zip(BO_NAMES, row[:N_BOS]):
            out[f"bos_{name}"] += v
    for name, t in tos.items():
        out[name] = float(t)
    return {k: float(v) for k, v in out.items()}


def as_counts(counts) -> Counts:
    """A :class:`Counts` from a Counts, a :class:`~torch_tos.report.Report` or a rows dict."""
    if isinstance(counts, Counts):
        return counts
    inner = getattr(counts, "counts", None)
    if isinstance(inner, Counts):
        return inner
    stats = getattr(counts, "_stats", None)
    if isinstance(stats, dict):
        return Counts(stats)
    if isinstance(counts, dict):
        return Counts(counts)
    raise TypeError(f"expected a torch_tos Counts table or a Report, got {type(counts).__name__}")


def is_counted_feature(name) -> bool:
    """Whether ``name`` is a counted quantity (a column :func:`step_features` produces, or
    ``tos_<dtype>`` for any dtype name). Measured columns (``joules``, ``seconds``, …) are not."""
    if not isinstance(name, str):
        return False
    return name in _FEATURE_SET or (name.startswith("tos_") and name[4:] in DTYPES)


def check_features(features) -> tuple[str, ...]:
    """``features`` as a tuple of counted feature names; a measured or unknown column is a
    one-line ``ValueError`` naming it and what is accepted."""
    if isinstance(features, str):
        features = (features,)
    try:
        features = tuple(features)
    except TypeError:
        raise ValueError(f"features must be feature names such as ('tos', 'calls', 'bytes'), got "
                         f"{features!r}") from None
    if not features:
        raise ValueError("features is empty; accepted: counted features such as tos, flops, calls, bytes, "
                         "tos_matmul (see torch_tos.energy.features.FEATURE_NAMES)")
    for f in features:
        if not is_counted_feature(f):
            what = ("a measured column, not a counted feature" if f in MEASURED else "not a counted feature")
            raise ValueError(f"feature {f!r} is {what}; accepted: {', '.join(BASE_FEATURES)}, tos_<dtype>, "
                             f"tos_/bytes_/calls_<class> with class in {', '.join(CLASSES)}, "
                             f"{', '.join(EFFICIENCY_FEATURES)}")
    if len(set(features)) != len(features):
        raise ValueError(f"features has duplicates: {', '.join(features)}")
    return features


#: Columns of a runs table that are measured, never features.
MEASURED = frozenset({"joules", "seconds", "cpu_seconds", "wall_seconds", "joules_raw", "seconds_raw",
                      "reference_joules", "reference_seconds", "power", "watts", "estimated"})


def unit(feature: str) -> tuple[str, str]:
    """``(singular, plural)`` unit names of a feature: ``tos_matmul`` → ``("TO", "matmul TOs")``."""
    if feature in EFFICIENCY_UNITS:
        return EFFICIENCY_UNITS[feature]
    kind, _, rest = feature.partition("_")
    sing, plural = UNITS.get(kind, (feature, feature))
    if kind == "bos" and rest:
        return "BO", f"{rest} BOs"
    return sing, (f"{rest} {plural}" if rest else plural)


__all__ = ["CLASSES", "OP_CLASSES", "DATA_KERNELS", "FEATURE_NAMES", "BASE_FEATURES", "DTYPES",
           "step_features", "row_features", "op_class", "is_kernel", "conv_groups", "conv_layers", "ConvLayer",
           "as_counts",
           "is_counted_feature", "check_features", "unit", "MEASURED"]
