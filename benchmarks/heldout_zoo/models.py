"""The held-out zoo: 25 real models, fixed before any law was fitted and never used to choose anything.

Every entry of :data:`ZOO` is built from code or a config object (no weights, no network) with its
inputs, target and loss, optimizer, dtype, mode (training or inference), batch and run length
(``steps``). The list is the one fixed in the project plan (issue 16, item 6); the run lengths
were chosen once, so that one run lasts about 1–3 s single-threaded on the development machine,
from one timing of one step of each model (``python benchmarks/bench_heldout_zoo.py time-steps``:
CPU seconds of one step after a warm-up step, 1 thread; taken once, load average ≈ 4.8 on the
2-CPU machine; steps = 2 s / that, within 10–60) — never from a prediction — and are constants
here.

Conventions, the same for every entry:

- training: ``model.train()``; cross-entropy on random labels in ``[0, 10)`` for the vision
  models (the torchvision and timm models keep their default 1,000-class heads; the labels' values
  do not change any cost), next-token cross-entropy for the LSTM language model, the model's own
  loss from ``labels`` for the Hugging Face models; one ``optimizer.step()`` per step;
- inference: ``model.eval()``, forward only, under ``torch.no_grad()``;
- dtype: ``model.to(dtype)`` and floating inputs in that dtype (token ids stay ``int64``);
- optimizers: SGD lr 0.01 (momentum 0.9 where the plan says so), Adam and AdamW lr 1e-3,
  PyTorch's defaults otherwise.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

VISION_CLASSES = 10  # random labels are drawn from [0, 10): valid for every head in the zoo
VOCAB = 8000


@dataclass(frozen=True)
class Entry:
    """One zoo model: ``id`` (z01…z25), ``name`` (what it is), ``family``, ``source``
    (torchvision, timm, transformers, torch.nn), ``mode``, ``dtype``, ``batch``, ``optimizer``
    (a key of :data:`OPTIMIZERS`, ``None`` for inference), ``steps`` (run length), ``model``
    (builds the model on the current default device), ``data`` ((batch, generator) → (inputs,
    target) on the CPU; ``target`` None when the loss comes from the inputs' labels), ``loss``."""

    id: str
    name: str
    family: str
    source: str
    mode: str
    dtype: torch.dtype
    batch: int
    optimizer: str | None
    steps: int
    model: Callable[[], nn.Module]
    data: Callable[[int, torch.Generator], tuple]
    loss: Callable | None = None

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")


OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.01),
    "sgd-momentum": lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-3),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-3),
}


# -- models ----------------------------------------------------------------------------------
def torchvision_model(name: str, **kwargs) -> Callable[[], nn.Module]:
    def build():
        import torchvision

        return torchvision.models.get_model(name, weights=None, **kwargs)
    return build


def timm_model(name: str, **kwargs) -> Callable[[], nn.Module]:
    def build():
        import timm

        return timm.create_model(name, pretrained=False, **kwargs)
    return build


def hf_model(cls_name: str, config_name: str, **config) -> Callable[[], nn.Module]:
    """A transformers model ``cls_name`` built from ``config_name(**config)`` (random weights)."""
    def build():
        import transformers

        transformers.logging.set_verbosity_error()  # "loss_type=None" and similar notices
        cfg = getattr(transformers, config_name)(**config)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return getattr(transformers, cls_name)(cfg)
    return build


class LSTMLanguageModel(nn.Module):
    """Embedding(8000, 128) → 2-layer LSTM 128 → 256 → Linear(256, 8000): logits per token."""

    def __init__(self, vocab: int = VOCAB, embed: int = 128, hidden: int = 256, layers: int = 2):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens):
        return self.head(self.lstm(self.embed(tokens))[0])


def transformer_encoder() -> nn.Module:
    layer = nn.TransformerEncoderLayer(256, 4, 1024, batch_first=True)
    return nn.TransformerEncoder(layer, 4)


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))


# -- data and losses -------------------------------------------------------------------------
def images(size: int, labels: bool = True):
    def data(batch: int, g: torch.Generator):
        x = torch.randn(batch, 3, size, size, generator=g)
        return x, (torch.randint(0, VISION_CLASSES, (batch,), generator=g) if labels else None)
    return data


def vectors(*shape: int, classes: int | None = None):
    def data(batch: int, g: torch.Generator):
        x = torch.randn(batch, *shape, generator=g)
        return x, (torch.randint(0, classes, (batch,), generator=g) if classes else None)
    return data


def tokens(seq: int, *, labels: str | None = None, encoder_labels: int | None = None):
    """Keyword inputs of a transformers model: ``input_ids`` (batch × seq) and, by ``labels``,
    ``"same"`` (causal LM: labels = input ids), ``"class"`` (``encoder_labels`` classes) or
    ``"seq"`` (seq2seq: another random token sequence of the same length)."""
    def data(batch: int, g: torch.Generator):
        ids = torch.randint(0, VOCAB, (batch, seq), generator=g)
        inputs = {"input_ids": ids}
        if labels == "same":
            inputs["labels"] = ids
        elif labels == "class":
            inputs["labels"] = torch.randint(0, encoder_labels, (batch,), generator=g)
        elif labels == "seq":
            inputs["labels"] = torch.randint(0, VOCAB, (batch, seq), generator=g)
        return inputs, None
    return data


def next_tokens(seq: int):
    def data(batch: int, g: torch.Generator):
        t = torch.randint(0, VOCAB, (batch, seq + 1), generator=g)
        return t[:, :-1].contiguous(), t[:, 1:].contiguous()
    return data


def token_cross_entropy(logits, target):
    """Next-token cross-entropy of (batch, seq, vocab) logits."""
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))


def model_loss(output):
    """The loss a transformers model returns when given ``labels``."""
    return output.loss


CE = nn.CrossEntropyLoss()
F32, F64, BF16 = torch.float32, torch.float64, torch.bfloat16
TV, TIMM, HF, NN = "torchvision", "timm", "transformers", "torch.nn"

GPT2_Z16 = dict(n_embd=256, n_layer=4, n_head=4, vocab_size=VOCAB, use_cache=False)
GPT2_Z25 = dict(n_embd=128, n_layer=2, n_head=4, vocab_size=VOCAB, use_cache=False)

#: The zoo (issue 16, item 6): 16 training and 9 inference runs; 20 float32, 2 float64, 3 bfloat16.
ZOO: tuple[Entry, ...] = (
    Entry("z01", "resnet18 3×64²", "torchvision CNN", TV, "training", F32, 8, "sgd-momentum", 15,
          torchvision_model("resnet18"), images(64), CE),
    Entry("z02", "resnet50 3×32²", "torchvision CNN", TV, "training", F32, 4, "adam", 10,
          torchvision_model("resnet50"), images(32), CE),
    Entry("z03", "mobilenet_v2 3×64²", "torchvision CNN", TV, "training", F32, 8, "sgd", 21,
          torchvision_model("mobilenet_v2"), images(64), CE),
    Entry("z04", "mobilenet_v3_large 3×64²", "torchvision CNN", TV, "inference", F32, 16, None, 60,
          torchvision_model("mobilenet_v3_large"), images(64, labels=False)),
    Entry("z05", "efficientnet_b0 3×64²", "torchvision CNN", TV, "training", F32, 8, "adamw", 12,
          torchvision_model("efficientnet_b0"), images(64), CE),
    Entry("z06", "densenet121 3×32²", "torchvision CNN", TV, "inference", F32, 8, None, 38,
          torchvision_model("densenet121"), images(32, labels=False)),
    Entry("z07", "squeezenet1_1 3×64²", "torchvision CNN", TV, "training", F32, 16, "sgd", 39,
          torchvision_model("squeezenet1_1"), images(64), CE),
    Entry("z08", "shufflenet_v2_x1_0 3×64²", "torchvision CNN", TV, "training", F32, 16, "sgd-momentum", 29,
          torchvision_model("shufflenet_v2_x1_0"), images(64), CE),
    Entry("z09", "regnet_y_400mf 3×64²", "torchvision CNN", TV, "training", F32, 8, "sgd", 18,
          torchvision_model("regnet_y_400mf"), images(64), CE),
    Entry("z10", "convnext_tiny 3×32²", "torchvision ConvNeXt/VGG", TV, "inference", F32, 4, None, 60,
          torchvision_model("convnext_tiny"), images(32, labels=False)),
    Entry("z11", "vgg11_bn 3×32²", "torchvision ConvNeXt/VGG", TV, "inference", F32, 8, None, 19,
          torchvision_model("vgg11_bn"), images(32, labels=False)),
    Entry("z12", "vit_tiny_patch16 img 64", "timm", TIMM, "training", F32, 8, "adamw", 21,
          timm_model("vit_tiny_patch16_224", img_size=64), images(64), CE),
    Entry("z13", "mixer_s16 img 64", "timm", TIMM, "inference", F32, 8, None, 23,
          timm_model("mixer_s16_224", img_size=64), images(64, labels=False)),
    Entry("z14", "ghostnet_100 3×64²", "timm", TIMM, "training", F32, 8, "sgd", 20,
          timm_model("ghostnet_100"), images(64), CE),
    Entry("z15", "BERT h128 L2 seq 64", "HF encoder", HF, "training", F32, 8, "adamw", 49,
          hf_model("BertForSequenceClassification", "BertConfig", hidden_size=128, num_hidden_layers=2,
                   num_attention_heads=2, intermediate_size=512, vocab_size=VOCAB, num_labels=2),
          tokens(64, labels="class", encoder_labels=2), model_loss),
    Entry("z16", "GPT-2 d256 L4 seq 128", "HF decoder", HF, "inference", F32, 4, None, 27,
          hf_model("GPT2LMHeadModel", "GPT2Config", **GPT2_Z16), tokens(128)),
    Entry("z17", "T5 d128 L2+2 seq 32", "HF encoder", HF, "training", F32, 8, "adamw", 27,
          hf_model("T5ForConditionalGeneration", "T5Config", d_model=128, d_ff=512, d_kv=32, num_layers=2,
                   num_decoder_layers=2, num_heads=4, vocab_size=VOCAB, use_cache=False,
                   decoder_start_token_id=0, pad_token_id=0),
          tokens(32, labels="seq"), model_loss),
    Entry("z18", "Llama h256 L2 seq 64", "HF decoder", HF, "training", F32, 4, "adamw", 19,
          hf_model("LlamaForCausalLM", "LlamaConfig", hidden_size=256, intermediate_size=688,
                   num_hidden_layers=2, num_attention_heads=4, vocab_size=VOCAB, use_cache=False),
          tokens(64, labels="same"), model_loss),
    Entry("z19", "LSTM LM 8000×128, 2×256, seq 32", "recurrent", NN, "training", F32, 16, "adam", 14,
          LSTMLanguageModel, next_tokens(32), token_cross_entropy),
    Entry("z20", "TransformerEncoder d256 L4 seq 64", "nn.TransformerEncoder", NN, "inference", F32, 8, None, 48,
          transformer_encoder, vectors(64, 256)),
    Entry("z21", "MLP 784-1024-1024-10", "MLP", NN, "training", F64, 64, "sgd", 60,
          mlp, vectors(784, classes=10), CE),
    Entry("z22", "resnet18 3×32²", "torchvision CNN", TV, "inference", F64, 4, None, 55,
          torchvision_model("resnet18"), images(32, labels=False)),
    Entry("z23", "resnet18 3×32²", "torchvision CNN", TV, "training", BF16, 8, "sgd", 50,
          torchvision_model("resnet18"), images(32), CE),
    Entry("z24", "mobilenet_v3_small 3×64²", "torchvision CNN", TV, "inference", BF16, 16, None, 60,
          torchvision_model("mobilenet_v3_small"), images(64, labels=False)),
    Entry("z25", "GPT-2 d128 L2 seq 64", "HF decoder", HF, "training", BF16, 8, "adamw", 32,
          hf_model("GPT2LMHeadModel", "GPT2Config", **GPT2_Z25), tokens(64, labels="same"), model_loss),
)
BY_ID = {e.id: e for e in ZOO}


def select(ids=None) -> list[Entry]:
    """The entries named by ``ids`` (all when None), in zoo order; an unknown id is an error."""
    if ids is None:
        return list(ZOO)
    ids = list(ids)
    bad = [i for i in ids if i not in BY_ID]
    if bad:
        raise ValueError(f"unknown zoo id {bad[0]!r}; accepted: {ZOO[0].id}…{ZOO[-1].id}")
    return [e for e in ZOO if e.id in set(ids)]


# -- a built entry ---------------------------------------------------------------------------
@dataclass
class Job:
    """A built zoo entry: ``model`` (in its mode and dtype), ``inputs`` (a tensor or a dict of
    keyword inputs), ``target``, ``loss_fn``, ``optimizer`` (training only)."""

    entry: Entry
    model: nn.Module
    inputs: object
    target: object
    loss_fn: Callable | None
    optimizer: torch.optim.Optimizer | None

    def forward(self):
        if isinstance(self.inputs, dict):
            return self.model(**self.inputs)
        return self.model(self.inputs)

    def step(self) -> None:
        """One step as measured: zero_grad, forward, loss, backward, optimizer step (training),
        or one forward (inference; the caller holds ``torch.no_grad()``)."""
        if self.optimizer is None:
            self.forward()
            return
        self.optimizer.zero_grad(set_to_none=True)
        out = self.forward()
        loss = self.loss_fn(out, self.target) if self.target is not None else self.loss_fn(out)
        loss.backward()
        self.optimizer.step()

    def run(self, steps: int) -> None:
        """``steps`` steps (inference under ``torch.no_grad()``)."""
        with torch.set_grad_enabled(self.optimizer is not None):
            for _ in range(steps):
                self.step()


def _to(x, device, dtype):
    if isinstance(x, dict):
        return {k: _to(v, device, dtype) for k, v in x.items()}
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype if x.is_floating_point() else None)
    return x


def build(entry: Entry, device="cpu", seed: int = 0) -> Job:
    """``entry`` built on ``device`` (``"meta"``: nothing allocated) with weights from ``seed``
    and inputs from a generator seeded with ``seed``."""
    torch.manual_seed(seed)
    try:
        with torch.device(device):
            model = entry.model()
    except NotImplementedError:  # a constructor that reads tensor values (regnet's widths) on meta
        model = entry.model().to(device)
    if entry.dtype != torch.float32:
        model = model.to(entry.dtype)
    model.train(entry.mode == "training")
    inputs, target = entry.data(entry.batch, torch.Generator().manual_seed(seed))
    inputs, target = _to(inputs, device, entry.dtype), _to(target, device, entry.dtype)
    optimizer = OPTIMIZERS[entry.optimizer](model.parameters()) if entry.mode == "training" else None
    return Job(entry, model, inputs, target, entry.loss if entry.mode == "training" else None, optimizer)


__all__ = ["Entry", "ZOO", "BY_ID", "Job", "build", "select", "OPTIMIZERS", "LSTMLanguageModel"]
