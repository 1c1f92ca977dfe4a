"""The microbenchmark workloads: small programs whose aten calls are timed one by one.

Each :class:`Workload` builds, for one size, dtype and device, a function that runs a small piece of
a real step — a linear layer with its activation forward and backward, a conv + batch norm + ReLU
block, attention, a recurrent layer, an embedding, an optimizer update, … — so the calls the
microbenchmark captures (:mod:`.microbench`) have the shapes, layouts and argument patterns real
models produce. The sizes of a workload sweep the work per call from latency-bound (a handful of
elements) to compute- or bandwidth-bound (up to ~10⁹ FLOPs or tens of MB per call), and together
the workloads cover every op class of :mod:`.opclasses` (a test checks it).

The sizes are the design of the sweep, fixed in advance: common layer shapes of vision models
(convolutions of 3 to 512 channels on 2² to 64² maps at batch 8, depthwise 3×3/5×5/7×7 at strides
1 and 2, grouped convolutions), of language models (GEMMs of 32 to 8192 columns, attention of 16
to 512 tokens), recurrent layers, and tensors of 1 to 4 M elements for the memory-bound classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

#: Largest FLOPs of one call a GEMM-like workload is built for (bigger calls extrapolate at the
#: measured peak rate).
MAX_FLOPS = 2.2e9


@dataclass(frozen=True)
class Workload:
    """A microbenchmark program: ``make(size, dtype, device)`` returns a function running it once
    (forward, and backward where ``backward``); ``sizes`` its sweep."""

    name: str
    sizes: tuple
    make: Callable
    floating_only: bool = False

    def label(self, size) -> str:
        return f"{self.name}{tuple(size) if isinstance(size, (list, tuple)) else (size,)}"


def _randn(shape, dtype, device, grad=False):
    t = torch.randn(shape, dtype=torch.float32, device=device).to(dtype)
    return t.requires_grad_(grad)


def _backward(out):
    grad = torch.ones_like(out) if out.dim() else None
    out.backward(grad)


def _fresh(*things):
    """Drop the gradients of these tensors and modules' parameters, as ``zero_grad(set_to_none=True)``
    does, so every run writes fresh gradients (no accumulation calls)."""
    for t in things:
        for p in (t.parameters() if isinstance(t, nn.Module) else (t,)):
            p.grad = None


def _linear(size, dtype, device):
    m, k, n = size
    layer = nn.Linear(k, n).to(device=device, dtype=dtype)
    x = _randn((m, k), dtype, device, grad=True)

    def run():
        _fresh(layer, x)
        _backward(F.relu(layer(x)))
    return run


def _attention(size, dtype, device, fused: bool, causal: bool = False):
    bh, t, d = size
    q, k, v = (_randn((1, bh, t, d), dtype, device, grad=True) for _ in range(3))

    def run():
        _fresh(q, k, v)
        if fused:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        else:
            s = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d))
            out = torch.softmax(s, dim=-1) @ v
        _backward(out)
    return run


def _conv(size, dtype, device):
    n, c_in, c_out, h, k, stride, groups = size
    conv = nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False).to(device=device, dtype=dtype)
    x = _randn((n, c_in, h, h), dtype, device, grad=c_in > 3)  # a stem's input needs no gradient

    def run():
        _fresh(conv, x)
        _backward(conv(x))
    return run


def _batch_norm(size, dtype, device, inference=False):
    n, c, h = size
    block = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU()).to(device=device, dtype=dtype)
    x = _randn((n, c, h, h), dtype, device, grad=not inference)
    block.train(not inference)

    def run():
        if inference:
            with torch.no_grad():
                block(x)
            return
        _fresh(block, x)
        _backward(block(x))
    return run


def _layer_norm(size, dtype, device):
    m, d = size
    norm = nn.LayerNorm(d).to(device=device, dtype=dtype)
    x = _randn((m, d), dtype, device, grad=True)

    def run():
        _fresh(norm, x)
        _backward(norm(x))
    return run


def _group_norm(size, dtype, device):
    c, h = size
    norm = nn.GroupNorm(min(32, c // 2), c).to(device=device, dtype=dtype)
    x = _randn((8, c, h, h), dtype, device, grad=True)

    def run():
        _fresh(norm, x)
        _backward(norm(x))
    return run


def _pool(size, dtype, device):
    kind, c, h = size
    pool = {"max3s2": nn.MaxPool2d(3, 2, 1), "max2": nn.MaxPool2d(2), "avg2": nn.AvgPool2d(2),
            "adaptive": nn.AdaptiveAvgPool2d(1)}[kind]
    x = _randn((8, c, h, h), dtype, device, grad=True)

    def run():
        _fresh(x)
        _backward(pool(x))
    return run


def _upsample(size, dtype, device):
    mode, c, h = size
    x = _randn((8, c, h, h), dtype, device, grad=True)

    def run():
        _fresh(x)
        _backward(F.interpolate(x, scale_factor=2, mode=mode))
    return run


#: unary activations: name → (function, whether its backward is a separate kernel)
_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
                "hardswish": F.hardswish, "hardsigmoid": F.hardsigmoid, "leaky_relu": F.leaky_relu,
                "elu": F.elu, "softplus": F.softplus, "mish": F.mish, "relu6": F.relu6}


def _activation(size, dtype, device):
    name, n = size
    x = _randn((n,), dtype, device, grad=True)
    fn = _ACTIVATIONS[name]

    def run():
        _fresh(x)
        _backward(fn(x) * 1.0)  # the multiply keeps an in-place-capable activation out of place
    return run


def _arith(size, dtype, device):
    """Binary and scalar arithmetic, comparisons, masking, transcendental functions (forward and
    backward of a chain that uses them)."""
    n = size
    a, b = _randn((n,), dtype, device, grad=True), _randn((n,), dtype, device, grad=True)

    def run():
        _fresh(a, b)
        y = (a * b + a - b) / (b.abs() + 1.0)
        y = torch.where(a > 0, y, y * 0.5).clamp(-3, 3)
        y = y + torch.exp(-a.abs()) + torch.log1p(b.abs()) + (a * a + 1.0).sqrt() + (b * b + 1).rsqrt()
        y = y + a.pow(2) + torch.erf(b)
        _backward(y.masked_fill(a < -2, 0.0))
    return run


def _reductions(size, dtype, device):
    rows, cols = size
    x = _randn((rows, cols), dtype, device, grad=True)

    def run():
        _fresh(x)
        y = torch.softmax(x, -1).sum() + torch.log_softmax(x, -1).mean() + x.amax(-1).sum() + x.sum(0).mean()
        y = y + x.var(-1).sum() + torch.cumsum(x, -1).mean() + x.norm()
        _backward(y)
    return run


def _losses(size, dtype, device):
    rows, classes = size
    logits = _randn((rows, classes), dtype, device, grad=True)
    target = torch.randint(0, classes, (rows,), device=device)
    pred, goal = _randn((rows, classes), dtype, device, grad=True), _randn((rows, classes), dtype, device)

    def run():
        _fresh(logits, pred)
        _backward(F.cross_entropy(logits, target) + F.mse_loss(pred, goal)
                  + F.binary_cross_entropy_with_logits(pred, torch.sigmoid(goal)))
    return run


def _memory(size, dtype, device):
    """Copies, casts, concatenation, padding, fills, transposes made contiguous, indexing."""
    rows, cols = size
    x = _randn((rows, cols), dtype, device, grad=True)
    other = torch.float32 if dtype != torch.float32 else torch.float16

    def run():
        _fresh(x)
        y = torch.cat([x, x * 2.0], 1)[:, :cols] + x.t().contiguous().t()
        y = y + F.pad(x, (1, 1))[:, 1:-1] + x.to(other).to(dtype) + torch.zeros_like(x) + torch.ones_like(x)
        y = torch.stack([y, x]).sum(0) + x.flip(0) + x.repeat(1, 2)[:, :cols] + x.clone()
        idx = torch.arange(0, rows, 2, device=device)
        y = y.index_select(0, idx) + x[idx] + x.gather(1, torch.zeros_like(idx)[:, None].expand(-1, cols))
        _backward(y)
    return run


def _embedding(size, dtype, device):
    vocab, dim, tokens = size
    table = nn.Embedding(vocab, dim).to(device=device, dtype=dtype)
    ids = torch.randint(0, vocab, (tokens,), device=device)

    def run():
        _fresh(table)
        _backward(table(ids))
    return run


def _scatter(size, dtype, device):
    rows, cols = size
    x = _randn((rows, cols), dtype, device)
    idx = torch.randint(0, rows, (rows,), device=device)
    src = _randn((rows, cols), dtype, device)

    def run():
        y = x.clone()
        y.index_put_((idx,), src, accumulate=True)
        y.index_add_(0, idx, src)
        y.scatter_add_(0, idx[:, None].expand(-1, cols), src)
    return run


def _random(size, dtype, device):
    n = size
    x = _randn((n,), dtype, device, grad=True)

    def run():
        _fresh(x)
        _backward(F.dropout(x, 0.1, training=True) + torch.rand_like(x) + torch.randn_like(x))
    return run


def _rnn(size, dtype, device):
    cell, batch, steps, features, hidden = size
    inference = cell.endswith("_inference")
    layer = (nn.LSTM if cell.startswith("lstm") else nn.GRU)(features, hidden, batch_first=True).to(device=device,
                                                                                                  dtype=dtype)
    x = _randn((batch, steps, features), dtype, device, grad=not inference)
    layer.train(not inference)

    def run():
        if inference:
            with torch.no_grad():
                layer(x)
            return
        _fresh(layer, x)
        _backward(layer(x)[0])
    return run


def _optimizer(size, dtype, device):
    kind, tensors, n = size
    params = [_randn((n,), dtype, device, grad=True) for _ in range(tensors)]
    for p in params:
        p.grad = torch.randn_like(p)
    foreach = kind.endswith("foreach")
    opt = (torch.optim.Adam(params, lr=1e-3, foreach=foreach) if kind.startswith("adam")
           else torch.optim.SGD(params, lr=1e-3, momentum=0.9, foreach=foreach))

    def run():
        with torch.no_grad():
            opt.step()
    return run


def _fft(size, dtype, device):
    rows, n = size
    x = _randn((rows, n), dtype, device, grad=True)

    def run():
        _fresh(x)
        _backward(torch.fft.irfft(torch.fft.rfft(x), n=n))
    return run


def _gemm_sizes():
    """Linear layers: rows 1 to 512, square and skewed weights from 32² to 2048², and weights
    larger than a last-level cache (4096 × 4096 at 8 rows: 64 MB) for weight streaming."""
    out = []
    for m in (1, 8, 32, 128, 512):
        for k, n in ((32, 32), (128, 128), (512, 512), (1024, 1024), (2048, 2048), (128, 2048), (2048, 128),
                     (256, 8192)):
            if 2 * m * k * n <= MAX_FLOPS:
                out.append((m, k, n))
    return tuple(out) + ((8, 4096, 4096),)


def _conv_sizes():
    """(batch, in channels, out channels, side, kernel, stride, groups): dense 1×1 and 3×3
    convolutions on 1² to 64² maps at batch 8 and 16, a 3×3 whose weights (38 MB) exceed a
    last-level cache, strided 3×3 and 1×1, stems on 3 channels, depthwise 3×3/5×5/7×7 at strides 1
    and 2, grouped 3×3 of 2 to 16 channels per group."""
    dense = []
    for n in (8, 16):
        dense += [(n, c, c, h, 1, 1, 1) for h, c in ((1, 128), (1, 1024), (2, 64), (2, 512), (4, 32), (4, 256),
                                                     (8, 128), (16, 64), (32, 16))]
        dense += [(n, c, c, h, 3, 1, 1) for h, c in ((1, 256), (2, 64), (2, 512), (4, 256), (8, 128), (16, 64),
                                                     (32, 32), (64, 16))]
    dense += [(8, 32, 128, 8, 1, 1, 1), (8, 256, 64, 8, 1, 1, 1), (8, 64, 256, 16, 1, 1, 1), (8, 1024, 1024, 2, 3, 1, 1)]
    dense += [(8, c, 2 * c, h, k, 2, 1) for k in (3, 1) for h, c in ((4, 256), (8, 128), (16, 64), (32, 32))]
    stems = [(8, 3, 32, 64, 3, 2, 1), (8, 3, 64, 64, 7, 2, 1), (8, 3, 64, 32, 3, 1, 1), (16, 3, 16, 32, 3, 2, 1)]
    depthwise = [(8, c, c, h, k, s, c) for k in (3, 5, 7) for s in (1, 2)
                 for h, c in ((2, 512), (4, 256), (8, 128), (16, 64), (32, 32))]
    depthwise += [(16, c, c, h, 3, 1, c) for h, c in ((4, 256), (16, 64))]
    grouped = [(8, c, c, h, 3, s, c // w) for s in (1, 2) for h, c, w in ((16, 64, 8), (8, 128, 16), (4, 256, 8),
                                                                      (16, 32, 2), (8, 64, 4))]
    return tuple(dense + stems), tuple(depthwise), tuple(grouped)


_DENSE, _DEPTHWISE, _GROUPED = _conv_sizes()
#: Batch norms (batch, channels, side), the same in training and in inference: the two kernels
#: cost differently per channel (inference loops over batch × channels with the spatial plane
#: inside), so both are measured from 16 to 1,024 channels and from 1² to 64² planes.
_BATCH_NORM = tuple((8, c, h) for h in (1, 2, 4, 8, 16, 32) for c in (32, 256)) \
    + ((16, 512, 2), (16, 64, 8), (4, 1024, 2), (8, 16, 64))
#: Tensor sizes (elements) of the memory-bound sweeps: latency-bound to beyond the caches.
_NUMEL = (1, 1024, 32768, 1048576, 4194304)

WORKLOADS: tuple[Workload, ...] = (
    Workload("linear", _gemm_sizes(), _linear),
    Workload("attention", ((2, 16, 32), (8, 64, 32), (8, 128, 64), (16, 256, 64), (4, 512, 64)),
             lambda s, d, dev: _attention(s, d, dev, fused=False)),
    Workload("sdpa", ((2, 16, 32), (8, 64, 32), (8, 128, 64), (16, 256, 64), (4, 512, 64)),
             lambda s, d, dev: _attention(s, d, dev, fused=True)),
    Workload("sdpa_causal", ((8, 64, 32), (8, 256, 64)), lambda s, d, dev: _attention(s, d, dev, True, True)),
    Workload("conv", _DENSE + _GROUPED, _conv),
    Workload("dwconv", _DEPTHWISE, _conv),
    Workload("batch_norm", _BATCH_NORM, _batch_norm),
    Workload("batch_norm_eval", _BATCH_NORM, lambda s, d, dev: _batch_norm(s, d, dev, inference=True)),
    Workload("layer_norm", ((8, 64), (64, 256), (512, 256), (4096, 1024), (2048, 64), (16, 2048)), _layer_norm),
    Workload("group_norm", ((32, 8), (64, 32), (256, 16)), _group_norm),
    Workload("pool", tuple((k, c, h) for k in ("max3s2", "max2", "avg2", "adaptive")
                           for c, h in ((16, 8), (64, 32), (1024, 4))), _pool),
    Workload("upsample", tuple((m, c, h) for m in ("nearest", "bilinear") for c, h in ((16, 8), (64, 32))), _upsample),
    Workload("activation", tuple((a, n) for a in _ACTIVATIONS for n in _NUMEL[:-1]), _activation),
    Workload("arith", _NUMEL, _arith),
    Workload("reductions", ((1, 8), (16, 64), (64, 1024), (256, 8192)), _reductions),
    Workload("losses", ((4, 10), (64, 100), (512, 1000), (256, 8000)), _losses),
    Workload("memory", ((2, 4), (16, 64), (128, 512), (1024, 4096)), _memory),
    Workload("embedding", ((512, 32, 16), (8000, 128, 512), (30000, 256, 2048), (100000, 256, 1024)), _embedding),
    Workload("scatter", ((8, 4), (128, 64), (1024, 256), (4096, 1024)), _scatter),
    Workload("random", _NUMEL[1:], _random),
    Workload("rnn", tuple((c, b, t, f, h) for c in ("lstm", "gru", "lstm_inference") for b, t, f, h in (
        (4, 8, 32, 32), (16, 16, 64, 128), (8, 32, 256, 512))), _rnn),
    Workload("optimizer", tuple((k, t, n) for k in ("sgd", "adam", "sgd_foreach", "adam_foreach")
                                for t, n in ((4, 64), (16, 4096), (8, 262144), (2, 4194304))), _optimizer),
    Workload("fft", ((4, 64), (64, 1024), (256, 8192)), _fft, floating_only=True),
)


def get_workloads(names=None) -> tuple[Workload, ...]:
    """The workloads called ``names`` (all by default); an unknown name is an error."""
    if names is None:
        return WORKLOADS
    known = {w.name: w for w in WORKLOADS}
    bad = [n for n in names if n not in known]
    if bad:
        raise ValueError(f"unknown microbenchmark workload {bad[0]!r}; accepted: {', '.join(known)}")
    return tuple(known[n] for n in names)


__all__ = ["Workload", "WORKLOADS", "MAX_FLOPS", "get_workloads"]
