"""Kernel-efficiency features: where a counts row's kernel sits on the roofline.

A law linear in per-class totals gives every conv TO the same joules, but on a CPU the same
convolution TOs cost up to ~8× more when the kernel is memory-bound (many channels on a tiny map:
weights dominate the bytes) or latency-bound (a kernel doing almost no work per call). Measured on a
2-core x86 host with oneDNN, one thread (torch dispatch timings of every call of the calibration
suite): dense convolutions run at ~180 GFLOP/s when flops/bytes > 100 FLOP/B, ~23–40 GFLOP/s below
32 FLOP/B (resnet18's 512-channel 3×3 convs on 2×2 maps), and 0.05–2 GFLOP/s below 10⁶ FLOPs per
call (1×1 squeeze-and-excitation convs on 1×1 maps); their time is ≈ flops/P + bytes/B with
B ≈ 2–3 GB/s, i.e. the bytes of memory-bound convs cost joules of their own.

Each feature is a *counted* quantity, computed from ONE counts row ``(layer, phase, dtype, op) →
(BOs, calls, flops, bytes)`` and its op class (:func:`~torch_tos.energy.features.op_class`), so it
is reproducible from any Report (:func:`~torch_tos.energy.features.row_features` and
:func:`~torch_tos.energy.features.step_features` add them up). For a row of class ``c`` in
:data:`GEMM_CLASSES` (``matmul``, ``conv``, ``dwconv``) with FLOPs > 0:

- ``bytes_<c>_lowai`` = the row's bytes when its arithmetic intensity flops/bytes is below
  :data:`RIDGE` (32 FLOP/B): memory-bound GEMM-like kernels, one J/B of their own;
- ``tos_<c>_small`` = the row's TOs when it does fewer than :data:`SMALL_KERNEL` (10⁶) FLOPs per
  call (flops/calls): latency-bound tiny kernels, one J/TO of their own;
- ``bytes_<c>_big`` = the row's bytes when it moves at least :data:`BIG_ROW` (8 MiB) per call
  (bytes/calls): operands 4× the per-core L2 (2 MiB here) stream from L3/DRAM on every call, e.g.
  a 512-channel 3×3 conv's 9.4 MB of weights (resnet18's last stage);
- ``tos_<c>_lowai_big`` = the row's TOs when it is both below :data:`RIDGE` and at least
  :data:`BIG_ROW` per call: weight-streaming GEMMs whose arithmetic itself runs slowly, e.g. a
  2048×2048 linear layer at batch 32 (16 FLOP/B, 16.8 MB of weights): measured 46 GFLOP/s against
  59 for the 1024×1024 one at the same intensity and 157 for 512×512 (a compute-bound GEMM that
  moves as much, such as a language-model head at 512 tokens, is above the ridge and not in it);

for a ``dwconv`` row of the backward phase whose layer's kernel and stride are known (the layer map
of :func:`~torch_tos.energy.features.conv_layers`, from ``model=``):

- ``tos_dwconv_slow`` = the row's TOs when the depthwise/grouped conv has a kernel larger than 3×3
  (``kh·kw >`` :data:`FAST_DW_TAPS`) or a stride > 1: oneDNN's depthwise backward (grad input +
  grad weight) has a fast path only for 3×3 stride 1; measured on the same host (one thread, maps
  2²–32², 32–512 channels, batch 8), 3×3 s1 runs at 0.3–0.5 ns per tap and 5×5 or stride 2 at
  1.0–1.9 ns per tap (3–4× more per TO; forward is 0.05–0.4 ns per tap for all four). A counts row
  cannot tell them apart (its key is layer, phase, dtype, op), hence the layer map;

for a row of a fused recurrent-layer op (:data:`FUSED_RNN`: ``aten.mkldnn_rnn_layer``, cuDNN/MIOpen
RNNs and their backwards; class ``matmul``):

- ``calls_rnn`` = the row's calls: one fused call runs a whole layer over every time step and has
  a fixed cost of its own, ~20–50× an ordinary GEMM call's. Measured on the same host (one thread,
  torch profiler, nn.LSTM with 32 inputs): at batch 4, 4 steps, hidden 32 (0.26 M FLOPs forward)
  ``mkldnn_rnn_layer`` takes 95 µs and its backward 152 µs (≈ 4 and 9 µs of arithmetic at the
  60 GFLOP/s they reach on large layers); a training step of a 1-layer LSTM costs 536 µs against
  126 µs for a 2-layer 32-wide MLP, +210–240 µs per added layer. Time grows with the time steps
  and batch only as fast as the FLOPs do (batch 16, hidden 64: +23 µs per step of sequence, 1.2 M
  FLOPs), so the excess is per call, not per time step;

and for a row of any class:

- ``bytes_large`` = the row's bytes when it moves at least :data:`LARGE_ROW` (32 MiB) per call
  (bytes/calls): beyond glibc's largest mmap threshold, so its tensors are fresh pages each step
  (page faults) and stream from DRAM — e.g. a 100 k × 256 embedding's dense gradient.

These are extra terms, not a partition: a low-intensity conv row's TOs are still in ``tos`` and
``tos_conv``, its bytes still in ``bytes`` and ``bytes_conv``. Approximate by construction: a row
sums every call of one op in one layer and phase, so a layer that runs one op on several shapes
(e.g. the matmuls of an attention block) is classified by their summed flops and bytes; the bytes
are the counter's estimate (each tensor once). The thresholds are fixed constants (not fitted), so
the same Report always gives the same features; the law fits one coefficient per feature.
"""

from __future__ import annotations

#: The GEMM-like op classes split by intensity and work per call.
GEMM_CLASSES: tuple[str, ...] = ("matmul", "conv", "dwconv")
#: Ridge point (FLOP per byte): a GEMM-like row below it is memory-bound.
RIDGE = 32
#: FLOPs per call below which a GEMM-like kernel is latency-bound.
SMALL_KERNEL = 10**6
#: Bytes per call from which a row's tensors are fresh pages every step (32 MiB).
LARGE_ROW = 2**25
#: Bytes per call from which a GEMM-like row's operands stream from beyond the L2 cache (8 MiB).
BIG_ROW = 2**23

#: Fused recurrent-layer ops (a whole layer, every time step, in one call): rows in ``calls_rnn``.
FUSED_RNN: tuple[str, ...] = tuple(f"aten.{op}" for op in (
    "mkldnn_rnn_layer", "mkldnn_rnn_layer_backward", "_cudnn_rnn", "_cudnn_rnn_backward", "miopen_rnn",
    "miopen_rnn_backward"))

#: Kernel taps (kh·kw) of the depthwise convs whose backward has oneDNN's fast path (3×3).
FAST_DW_TAPS = 9

#: The kernel-efficiency feature names, in CSV column order.
EFFICIENCY_FEATURES: tuple[str, ...] = (*(f"bytes_{c}_lowai" for c in GEMM_CLASSES),
                                        *(f"tos_{c}_small" for c in GEMM_CLASSES), "bytes_large",
                                        "tos_dwconv_slow", *(f"bytes_{c}_big" for c in GEMM_CLASSES),
                                        *(f"tos_{c}_lowai_big" for c in GEMM_CLASSES), "calls_rnn")
#: Printable units: feature → (singular, plural).
EFFICIENCY_UNITS: dict[str, tuple[str, str]] = {
    **{f"bytes_{c}_lowai": ("B", f"low-intensity {c} bytes") for c in GEMM_CLASSES},
    **{f"tos_{c}_small": ("TO", f"small-kernel {c} TOs") for c in GEMM_CLASSES},
    "bytes_large": ("B", "large-row bytes"),
    "tos_dwconv_slow": ("TO", "slow-path depthwise backward TOs"),
    **{f"bytes_{c}_big": ("B", f"big-row {c} bytes") for c in GEMM_CLASSES},
    **{f"tos_{c}_lowai_big": ("TO", f"weight-streaming {c} TOs") for c in GEMM_CLASSES},
    "calls_rnn": ("call", "fused recurrent-layer calls"),
}


def dwconv_slow(cls: str, phase: str, taps: int | None, stride: int | None) -> bool:
    """Whether a row of class ``cls`` in ``phase`` counts in ``tos_dwconv_slow``: a backward
    ``dwconv`` row of a layer with ``taps`` (kh·kw) > :data:`FAST_DW_TAPS` or ``stride`` (the
    largest of the layer's strides) > 1; False when the layer's kernel is unknown (``taps`` None)."""
    if cls != "dwconv" or phase != "backward" or taps is None:
        return False
    return int(taps) > FAST_DW_TAPS or int(stride or 1) > 1


def efficiency_names(cls: str, flops: int, nbytes: int, calls: int) -> tuple[str | None, str | None, bool]:
    """``(bytes name, tos name, large)`` for a row of class ``cls``: the ``bytes_<c>_lowai`` name
    when the row is a memory-bound GEMM-like row (else None), the ``tos_<c>_small`` name when it is
    a small GEMM-like kernel (else None), and whether its bytes count in ``bytes_large``."""
    per_call = max(int(calls), 1)
    large = nbytes >= LARGE_ROW * per_call
    if cls not in GEMM_CLASSES or flops <= 0:
        return None, None, large
    low = flops < RIDGE * nbytes
    small = flops < SMALL_KERNEL * per_call
    return (f"bytes_{cls}_lowai" if low else None), (f"tos_{cls}_small" if small else None), large


def big_names(cls: str, flops: int, nbytes: int, calls: int) -> tuple[str | None, str | None]:
    """``(bytes name, tos name)`` of the big-row features of a row of class ``cls``: ``bytes_<c>_big``
    when a GEMM-like row with FLOPs moves ≥ :data:`BIG_ROW` bytes per call (else None), and
    ``tos_<c>_lowai_big`` when that row is also below :data:`RIDGE` FLOP/B (else None)."""
    if cls not in GEMM_CLASSES or flops <= 0 or nbytes < BIG_ROW * max(int(calls), 1):
        return None, None
    return f"bytes_{cls}_big", (f"tos_{cls}_lowai_big" if flops < RIDGE * nbytes else None)


def rnn_calls(op: str, calls: int) -> int:
    """The ``calls_rnn`` of a row of op ``op`` with ``calls`` calls: its calls when ``op`` is a fused
    recurrent-layer op of :data:`FUSED_RNN`, else 0."""
    return int(calls) if op in FUSED_RNN else 0


__all__ = ["GEMM_CLASSES", "FUSED_RNN", "rnn_calls", "RIDGE", "SMALL_KERNEL", "LARGE_ROW", "BIG_ROW", "FAST_DW_TAPS", "EFFICIENCY_FEATURES",
           "EFFICIENCY_UNITS", "efficiency_names", "big_names", "dwconv_slow"]
