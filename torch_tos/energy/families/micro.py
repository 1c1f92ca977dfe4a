"""Micro-workload families of the calibration suite: what real models do, one knob at a time.

Each trains with SGD on synthetic data from a fixed seed (``n_batches`` batches of
``batch_size``), so the run's cost is the model's, not the data pipeline's:

- ``mlp``: ``depth`` × [Linear(width, width), activation]; input ``input_size`` features (default
  width), Linear(width, 1) head, MSE. Width 2048 × 4 layers ≈ 17 M parameters: optimizer traffic.
- ``mlpdrop``: the same with Dropout(0.1) after each activation (random-number generation).
- ``conv``: stem Conv2d(3, width, 3, pad 1), ``depth`` × [Conv2d(width, width, 3, pad 1),
  BatchNorm2d, activation] on ``input_size``² maps, global average pool, Linear(width, 10), cross
  entropy: wide convs on tiny maps and narrow convs on large maps.
- ``dwconv``: stem as ``conv`` + BatchNorm, ``depth`` × MobileNet blocks [depthwise Conv2d(width,
  width, 3, pad 1, groups=width), BatchNorm2d, act, pointwise Conv2d(width, width, 1), BatchNorm2d, act].
- ``resnet``: stem + ``depth`` stages of one ResNet basic block each, channels doubling and maps
  halving per stage from ``width`` (strided convs, residual adds, projections, max pooling).
- ``mobile``: stem + ``depth`` MobileNetV3 blocks (1×1 expansion, 3×3 and 5×5 depthwise with stride 2
  every other block, squeeze-and-excitation, ReLU/hardswish, 1×1 projection): many small kernels, tiny maps.
- ``transformer``: Embedding(512, width), ``depth`` × TransformerEncoderLayer(width, heads
  width/32, feed-forward 4·width, dropout 0.1, ``activation``), Linear(width, 512); next-token
  cross entropy over sequences of ``input_size`` tokens: attention, layer norm, dropout, embeddings.
- ``embed``: Embedding(input_size, width) (``input_size`` = vocabulary) over 32 tokens, mean,
  Linear(width, 1), MSE: the dense embedding gradient and its optimizer step dominate.
- ``lstm`` / ``gru``: ``depth`` layers of hidden size ``width`` over ``input_size`` time steps of 32
  features, Linear(width, 1) on the last step, MSE. Counted on the run's device
  (``count_device = "run"``): on CPU ``nn.LSTM`` runs fused oneDNN layers, on meta ~100 ops per step.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import ACTIVATIONS, Config, Family, check_activation, check_ints, positive_int

VOCAB = 512
EMBED_TOKENS = 32
RNN_FEATURES = 32


class TokenCrossEntropy(nn.Module):
    """Cross entropy over every position of ``(batch, seq, classes)`` logits."""

    def forward(self, logits, target):
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))


class _Last(nn.Module):
    """The last time step of a recurrent layer's output, through a linear head."""

    def __init__(self, rnn: nn.Module, width: int):
        super().__init__()
        self.rnn, self.head = rnn, nn.Linear(width, 1)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


class _MeanEmbed(nn.Module):
    def __init__(self, vocab: int, width: int):
        super().__init__()
        self.embed, self.head = nn.Embedding(vocab, width), nn.Linear(width, 1)

    def forward(self, x):
        return self.head(self.embed(x).mean(dim=1))


class Micro(Family):
    """Base of the micro families: sweeps over width × depth × activation at one ``input_size``."""

    default_widths = (64,)
    default_depths = (2,)
    default_activations = ("relu",)
    default_input = 16
    input_range = (1, 4096)

    def __init__(self, batch_size: int = 32, input_size: int | None = None, n_batches: int = 4, **options):
        super().__init__(batch_size, **options)
        lo, hi = self.input_range
        self.input = check_ints("input_size", [self.default_input if input_size is None else input_size], lo, hi)[0]
        self.n_batches = positive_int("n_batches", n_batches)

    def configs(self, widths=None, depths=None, activations=None):
        widths = check_ints("widths", widths or self.default_widths, 1, 8192)
        depths = check_ints("depths", depths or self.default_depths, 1, 64)
        acts = [check_activation(a) for a in dict.fromkeys(activations or self.default_activations)]
        return [Config(self.name, w, d, a, self.input) for a in acts for d in depths for w in widths]

    def _n(self) -> int:
        return self.batch_size * self.n_batches

    def describe(self):
        return f"{self.name}: synthetic data, SGD, batch {self.batch_size}"


class MLP(Micro):
    name = "mlp"
    dropout = 0.0

    def build(self, config):
        act, layers, n_in = ACTIVATIONS[config.activation], [], config.input_size or config.width
        for _ in range(config.depth):
            layers += [nn.Linear(n_in, config.width), act()]
            if self.dropout:
                layers.append(nn.Dropout(self.dropout))
            n_in = config.width
        return nn.Sequential(*layers, nn.Linear(n_in, 1))

    def data(self, config=None):
        g = torch.Generator().manual_seed(0)
        n_in = (config.input_size or config.width) if config is not None else self.input
        return torch.randn(self._n(), n_in, generator=g), torch.randn(self._n(), 1, generator=g)


class MLPDropout(MLP):
    name = "mlpdrop"
    dropout = 0.1


class ConvNet(Micro):
    name = "conv"
    depthwise = False

    def build(self, config):
        act, w = ACTIVATIONS[config.activation], config.width
        layers = [nn.Conv2d(3, w, 3, padding=1)]
        if self.depthwise:
            layers += [nn.BatchNorm2d(w), act()]
        for _ in range(config.depth):
            if self.depthwise:
                layers += [nn.Conv2d(w, w, 3, padding=1, groups=w), nn.BatchNorm2d(w), act(),
                           nn.Conv2d(w, w, 1), nn.BatchNorm2d(w), act()]
            else:
                layers += [nn.Conv2d(w, w, 3, padding=1), nn.BatchNorm2d(w), act()]
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w, 10))

    def data(self, config=None):
        side = config.input_size if config is not None else self.input
        g = torch.Generator().manual_seed(0)
        return (torch.randn(self._n(), 3, side, side, generator=g),
                torch.randint(0, 10, (self._n(),), generator=g))

    def loss_fn(self):
        return nn.CrossEntropyLoss()


class DWConvNet(ConvNet):
    name = "dwconv"
    depthwise = True


class _Basic(nn.Module):
    """A ResNet basic block: two 3×3 convs with batch norm, a residual add (1×1 stride-2
    projection when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int, act):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), act(),
                                  nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
        self.skip = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                     if stride != 1 or c_in != c_out else nn.Identity())
        self.act = act()

    def forward(self, x):
        return self.act(self.body(x) + self.skip(x))


class ResNet(ConvNet):
    """``resnet``: stem Conv2d(3, width, 3) + BatchNorm + act + MaxPool(2), then ``depth`` stages
    of one basic block each, the first at ``width`` channels and each next one stride 2 with twice
    the channels (strided convs, residual adds, 1×1 projections, wide convs on tiny late maps)."""

    name = "resnet"

    def build(self, config):
        act, w = ACTIVATIONS[config.activation], config.width
        layers = [nn.Conv2d(3, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), act(), nn.MaxPool2d(2)]
        c = w
        for stage in range(config.depth):
            out = w * 2 ** stage
            layers.append(_Basic(c, out, 1 if stage == 0 else 2, act))
            c = out
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10))


class _InvertedResidual(nn.Module):
    """A MobileNetV3 block: 1×1 expansion (×4), k×k depthwise conv (stride ``stride``),
    squeeze-and-excitation when ``se``, 1×1 projection; batch norm and ``act`` (hardswish or ReLU);
    residual add when shapes match."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int, se: bool = True, act=nn.Hardswish):
        super().__init__()
        mid = 4 * c_in
        self.expand = nn.Sequential(nn.Conv2d(c_in, mid, 1, bias=False), nn.BatchNorm2d(mid), act())
        self.dw = nn.Sequential(nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False), nn.BatchNorm2d(mid),
                                act())
        self.se = (nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(mid, max(8, mid // 4), 1), nn.ReLU(),
                                 nn.Conv2d(max(8, mid // 4), mid, 1), nn.Hardsigmoid()) if se else None)
        self.project = nn.Sequential(nn.Conv2d(mid, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        h = self.dw(self.expand(x))
        h = self.project(h * self.se(h) if self.se is not None else h)
        return h + x if self.residual else h


class Mobile(ConvNet):
    """``mobile``: stem Conv2d(3, width, 3, stride 2) + BatchNorm + hardswish, then ``depth``
    MobileNetV3 blocks, every other one stride 2 with 1.5× the channels, depthwise kernels in the
    pattern 3×3 s2, 3×3 s1, 5×5 s2, 5×5 s1 (repeated), as MobileNetV3-small: 3×3 blocks with ReLU,
    5×5 ones with hardswish, squeeze-and-excitation in all but the stride-1 3×3 blocks — many small
    kernels on maps shrinking to 1×1."""

    name = "mobile"

    def configs(self, widths=None, depths=None, activations=None):
        if activations:
            raise ValueError("the mobile family has no activation option (hardswish, as MobileNetV3)")
        widths = check_ints("widths", widths or self.default_widths, 8, 8192)
        depths = check_ints("depths", depths or self.default_depths, 1, 32)
        return [Config(self.name, w, d, None, self.input) for d in depths for w in widths]

    def build(self, config):
        w = config.width
        layers, c = [nn.Conv2d(3, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.Hardswish()], w
        for i in range(config.depth):
            stride, k = (2 if i % 2 == 0 else 1), (3 if i % 4 < 2 else 5)
            out = int(c * 1.5) if stride == 2 else c
            se = k == 5 or stride == 2  # MobileNetV3-small: SE everywhere but its stride-1 3×3 blocks
            layers.append(_InvertedResidual(c, out, k, stride, se, nn.Hardswish if k == 5 else nn.ReLU))
            c = out
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10))


class Transformer(Micro):
    name = "transformer"
    default_activations = ("gelu",)
    input_range = (1, 4096)

    def configs(self, widths=None, depths=None, activations=None):
        configs = super().configs(widths, depths, activations)
        for c in configs:
            if c.width % 32 and c.width > 32:
                raise ValueError(f"transformer width {c.width} must be a multiple of 32 (heads of 32)")
            check_activation(c.activation, {"relu": 1, "gelu": 1})
        return configs

    def build(self, config):
        w = config.width
        layer = lambda: nn.TransformerEncoderLayer(w, max(1, w // 32), 4 * w, 0.1, config.activation,  # noqa: E731
                                                   batch_first=True)
        return nn.Sequential(nn.Embedding(VOCAB, w), *[layer() for _ in range(config.depth)],
                             nn.Linear(w, VOCAB))

    def data(self, config=None):
        seq = config.input_size if config is not None else self.input
        g = torch.Generator().manual_seed(0)
        tokens = torch.randint(0, VOCAB, (self._n(), seq + 1), generator=g)
        return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    def loss_fn(self):
        return TokenCrossEntropy()


class Embed(Micro):
    name = "embed"
    default_input = 10000
    input_range = (2, 10_000_000)

    def configs(self, widths=None, depths=None, activations=None):
        widths = check_ints("widths", widths or self.default_widths, 1, 8192)
        return [Config(self.name, w, None, None, self.input) for w in widths]

    def build(self, config):
        return _MeanEmbed(config.input_size, config.width)

    def data(self, config=None):
        vocab = config.input_size if config is not None else self.input
        g = torch.Generator().manual_seed(0)
        return (torch.randint(0, vocab, (self._n(), EMBED_TOKENS), generator=g),
                torch.randn(self._n(), 1, generator=g))


class Recurrent(Micro):
    """``lstm`` and ``gru``: counted on the run's device (see the module doc)."""

    count_device = "run"
    cell = nn.LSTM

    def configs(self, widths=None, depths=None, activations=None):
        if activations:
            raise ValueError(f"the {self.name} family has no activation (its cell fixes them)")
        widths = check_ints("widths", widths or self.default_widths, 1, 8192)
        depths = check_ints("depths", depths or self.default_depths, 1, 16)
        return [Config(self.name, w, d, None, self.input) for d in depths for w in widths]

    def build(self, config):
        return _Last(self.cell(RNN_FEATURES, config.width, config.depth, batch_first=True), config.width)

    def data(self, config=None):
        seq = config.input_size if config is not None else self.input
        g = torch.Generator().manual_seed(0)
        return torch.randn(self._n(), seq, RNN_FEATURES, generator=g), torch.randn(self._n(), 1, generator=g)


class LSTM(Recurrent):
    name = "lstm"


class GRU(Recurrent):
    name = "gru"
    cell = nn.GRU


class Classifier(Micro):
    """Any image classifier ``build()`` (e.g. ``torchvision.models.resnet18(num_classes=10)``)
    trained on ``input_size``² synthetic RGB images with cross entropy over 10 classes: a model outside the suite,
    measured like a suite entry (the demo's prediction target). Its one configuration has no
    width, depth or activation; the family name is ``name``."""

    def __init__(self, name: str, build, batch_size: int = 16, input_size: int = 32, n_batches: int = 4):
        self.name = name
        super().__init__(batch_size, input_size, n_batches)
        self._build = build

    def configs(self, widths=None, depths=None, activations=None):
        return [Config(self.name, None, None, None, self.input)]

    def build(self, config):
        return self._build()

    data = ConvNet.data
    loss_fn = ConvNet.loss_fn


MICRO_FAMILIES = {cls.name: cls for cls in (MLP, MLPDropout, ConvNet, DWConvNet, ResNet, Mobile, Transformer, Embed, LSTM, GRU)}

__all__ = ["MICRO_FAMILIES", "TokenCrossEntropy", "Classifier", *[cls.__name__ for cls in MICRO_FAMILIES.values()]]
