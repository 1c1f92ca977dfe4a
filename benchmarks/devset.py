"""The cost model's DEVELOPMENT set: real models used while building the cost model.

These models are the development set of issue 16 — looked at while designing the cost model and
its microbenchmark sweep, so their errors are *not* an honest estimate of its accuracy. The honest
estimate is the held-out zoo (``benchmarks/bench_heldout_zoo.py``), whose architectures are none of
these: no ResNet-18/50, MobileNet v2/v3, EfficientNet-B0, DenseNet, SqueezeNet, ShuffleNet,
RegNetY, ConvNeXt, VGG, ViT, MLP-Mixer, GhostNet, BERT, GPT-2, T5, Llama, LSTM language model,
nn.TransformerEncoder or plain MLP classifier of the zoo's sizes appears here.

Each :class:`Entry` builds a model from code or a config (no weights), its inputs, loss and
optimizer, and says its mode, dtype and the steps of one measured run (fixed from one timing of
one step on a 2-core machine so a run takes about 1–3 s, never from a prediction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class Entry:
    """One development model: ``build()`` → ``(model, inputs, target, loss_fn)``; ``optimizer``:
    ``None`` (inference) or ``"sgd"``, ``"sgd_momentum"``, ``"adam"``, ``"adamw"``."""

    id: str
    family: str
    what: str
    build: Callable
    mode: str
    steps: int
    optimizer: str | None = None
    dtype: str = "float32"


OPTIMIZERS = {"sgd": lambda p: torch.optim.SGD(p, lr=0.01), "sgd_momentum": lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9),
              "adam": lambda p: torch.optim.Adam(p, lr=1e-3), "adamw": lambda p: torch.optim.AdamW(p, lr=1e-3)}


def _vision(factory, batch, side, classes=10, dtype=torch.float32):
    def build():
        model = factory().to(dtype)
        x = torch.randn(batch, 3, side, side, dtype=dtype)
        return model, x, torch.randint(0, classes, (batch,)), nn.CrossEntropyLoss()
    return build


def _tv(name, **kw):
    import torchvision

    return lambda: getattr(torchvision.models, name)(num_classes=10, **kw)


def _timm(name, **kw):
    def make():
        import timm

        return timm.create_model(name, num_classes=10, **kw)
    return make


def _hf(config_cls, model_cls, batch, seq, vocab=8000, classify=False, **cfg):
    def build():
        import transformers

        config = getattr(transformers, config_cls)(vocab_size=vocab, **cfg)
        model = getattr(transformers, model_cls)(config)
        ids = torch.randint(0, vocab, (batch, seq))
        labels = torch.randint(0, 2, (batch,)) if classify else ids.clone()
        return model, {"input_ids": ids, "labels": labels}, None, (lambda out: out.loss)
    return build


class GRUTagger(nn.Module):
    def __init__(self, vocab=5000, dim=64, hidden=128, tags=20):
        super().__init__()
        self.embed, self.gru = nn.Embedding(vocab, dim), nn.GRU(dim, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, tags)

    def forward(self, ids):
        return self.head(self.gru(self.embed(ids))[0]).flatten(0, 1)


class LSTMTagger(GRUTagger):
    def __init__(self, vocab=5000, dim=64, hidden=96, tags=20):
        super().__init__(vocab, dim, hidden, tags)
        self.gru = nn.LSTM(dim, hidden, num_layers=2, batch_first=True, bidirectional=True)


def _tagger(cls, batch, seq, vocab=5000, tags=20):
    def build():
        model = cls()
        return model, torch.randint(0, vocab, (batch, seq)), torch.randint(0, tags, (batch * seq,)), nn.CrossEntropyLoss()
    return build


def _small_cnn(dtype):
    def make():
        return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(),
                             nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.Conv2d(64, 128, 3, 2, 1),
                             nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))
    return _vision(make, 8, 32, dtype=dtype)


def _mlp(sizes, batch, dtype):
    def build():
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.GELU()]
        model = nn.Sequential(*layers[:-1]).to(dtype)
        return model, torch.randn(batch, sizes[0], dtype=dtype), torch.randint(0, sizes[-1], (batch,)), nn.CrossEntropyLoss()
    return build


class Decoder(nn.Module):
    """nn.TransformerDecoder over token embeddings with a memory of 16 positions."""

    def __init__(self, vocab=2000, d=128, layers=2, heads=4):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(d, heads, 4 * d, batch_first=True), layers)
        self.head = nn.Linear(d, vocab)
        self.memory = nn.Parameter(torch.randn(1, 16, d))

    def forward(self, ids):
        x = self.embed(ids)
        return self.head(self.dec(x, self.memory.expand(ids.shape[0], -1, -1))).flatten(0, 1)


def _decoder(batch, seq, vocab=2000):
    def build():
        return Decoder(vocab), torch.randint(0, vocab, (batch, seq)), torch.randint(0, vocab, (batch * seq,)), \
            nn.CrossEntropyLoss()
    return build


class Conv1dNet(nn.Module):
    """A 1-D convolutional audio classifier."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(1, 32, 9, 4, 4), nn.BatchNorm1d(32), nn.ReLU(), nn.Conv1d(32, 64, 5, 2, 2),
                                  nn.BatchNorm1d(64), nn.ReLU(), nn.Conv1d(64, 128, 5, 2, 2), nn.ReLU(),
                                  nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(128, 10))

    def forward(self, x):
        return self.body(x)


def _conv1d(batch, length):
    def build():
        return Conv1dNet(), torch.randn(batch, 1, length), torch.randint(0, 10, (batch,)), nn.CrossEntropyLoss()
    return build


DEV: tuple[Entry, ...] = (
    Entry("d01", "tv-nas", "torchvision mnasnet0_5, 8×3×64²", _vision(_tv("mnasnet0_5"), 8, 64), "training", 20, "sgd_momentum"),
    Entry("d02", "tv-inception", "torchvision googlenet, 8×3×64²", _vision(_tv("googlenet", aux_logits=False, init_weights=True), 8, 64),
          "inference", 40),
    Entry("d03", "tv-regnet", "torchvision regnet_x_400mf, 8×3×64²", _vision(_tv("regnet_x_400mf"), 8, 64), "training", 10, "adam"),
    Entry("d04", "tv-resnext", "torchvision resnext50_32x4d, 4×3×32²", _vision(_tv("resnext50_32x4d"), 4, 32), "training", 8, "sgd"),
    Entry("d05", "tv-alexnet", "torchvision alexnet, 8×3×64²", _vision(_tv("alexnet"), 8, 64), "training", 8, "sgd_momentum"),
    Entry("d06", "tv-resnext", "torchvision wide_resnet50_2, 2×3×32²", _vision(_tv("wide_resnet50_2"), 2, 32), "inference", 10),
    Entry("d07", "timm-lcnet", "timm lcnet_050, 16×3×64²", _vision(_timm("lcnet_050"), 16, 64), "training", 20, "adamw"),
    Entry("d08", "timm-nas", "timm semnasnet_050, 8×3×64²", _vision(_timm("semnasnet_050"), 8, 64), "inference", 60),
    Entry("d09", "hf-opt", "HF OPT (hidden 128, 2 layers, 4 heads, ffn 512, vocab 8000), 8×64 tokens",
          _hf("OPTConfig", "OPTForCausalLM", 8, 64, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
              ffn_dim=512, word_embed_proj_dim=128, max_position_embeddings=128), "training", 10, "adamw"),
    Entry("d10", "hf-gptneo", "HF GPT-Neo (hidden 128, 2 layers global+local, 4 heads, vocab 8000), 4×128 tokens",
          _hf("GPTNeoConfig", "GPTNeoForCausalLM", 4, 128, hidden_size=128, num_layers=2, num_heads=4,
              attention_types=[[["global", "local"], 1]], max_position_embeddings=256, window_size=64), "inference", 20),
    Entry("d11", "hf-roberta", "HF RoBERTa classifier (hidden 128, 2 layers, 2 heads, intermediate 512, vocab 8000), 8×64",
          _hf("RobertaConfig", "RobertaForSequenceClassification", 8, 64, classify=True, hidden_size=128,
              num_hidden_layers=2, num_attention_heads=2, intermediate_size=512, max_position_embeddings=130),
          "training", 30, "adamw"),
    Entry("d12", "rnn", "GRU tagger (embedding 5000×64, bidirectional GRU 128), 16×32 tokens", _tagger(GRUTagger, 16, 32),
          "training", 40, "adam"),
    Entry("d13", "cnn", "small CNN in float64, 8×3×32²", _small_cnn(torch.float64), "training", 30, "sgd", "float64"),
    Entry("d14", "mlp", "MLP 1024→2048→2048→10 in bfloat16, batch 32", _mlp((1024, 2048, 2048, 10), 32, torch.bfloat16),
          "training", 60, "sgd", "bfloat16"),
    Entry("d15", "nn-decoder", "nn.TransformerDecoder (d 128, 2 layers, 4 heads), 8×32 tokens", _decoder(8, 32),
          "training", 30, "adam"),
    Entry("d16", "mlp", "MLP 512→1024→1024→10 in float64, batch 64", _mlp((512, 1024, 1024, 10), 64, torch.float64),
          "inference", 60, None, "float64"),
    Entry("d17", "tv-regnet", "torchvision regnet_x_400mf in bfloat16, 8×3×64²",
          _vision(_tv("regnet_x_400mf"), 8, 64, dtype=torch.bfloat16), "inference", 40, None, "bfloat16"),
    Entry("d18", "rnn", "LSTM tagger (2-layer bidirectional LSTM 96), 16×32 tokens", _tagger(LSTMTagger, 16, 32),
          "inference", 60),
    Entry("d19", "conv1d", "Conv1d audio net, 16×1×8000", _conv1d(16, 8000), "training", 20, "adam"),
    Entry("d20", "timm-nas", "timm tinynet_e, 16×3×64²", _vision(_timm("tinynet_e"), 16, 64), "training", 10, "sgd_momentum"),
)


def make(entry: Entry, seed: int = 0):
    """``(model, inputs, target, loss_fn, optimizer)`` of ``entry``, freshly built from ``seed``
    (inference models in eval mode; the optimizer None in inference)."""
    torch.manual_seed(seed)
    model, inputs, target, loss_fn = entry.build()
    if entry.mode == "inference":
        model.eval()
    opt = OPTIMIZERS[entry.optimizer](model.parameters()) if entry.optimizer else None
    return model, inputs, target, loss_fn, opt


def run_steps(entry: Entry, model, inputs, target, loss_fn, opt, steps: int) -> None:
    """``steps`` training steps (zero_grad, forward, loss, backward, step) or forward passes under
    ``torch.no_grad()``."""
    kwargs = inputs if isinstance(inputs, dict) else None
    for _ in range(steps):
        if entry.mode == "inference":
            with torch.no_grad():
                model(**kwargs) if kwargs is not None else model(inputs)
            continue
        opt.zero_grad(set_to_none=True)
        out = model(**kwargs) if kwargs is not None else model(inputs)
        loss = loss_fn(out, target) if target is not None else loss_fn(out)
        loss.backward()
        opt.step()


__all__ = ["Entry", "DEV", "make", "run_steps", "OPTIMIZERS"]
