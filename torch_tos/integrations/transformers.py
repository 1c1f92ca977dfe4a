"""Hugging Face ``transformers``: models from configs (meta or real) and a ``Trainer`` callback.

::

    from torch_tos.integrations.transformers import TOsTrainerCallback, build_from_config, hf_loss

    model, make_inputs = build_from_config("llama", {"num_hidden_layers": 2}, "meta")
    report = torch_tos.profile(model, make_inputs(batch_size=1, seq_len=128), mode="training",
                               loss_fn=hf_loss, device="meta")

    tos = TOsTrainerCallback()                   # dtype=, meter=, cache= as for TOsCounter
    Trainer(model=model, args=args, train_dataset=data, callbacks=[tos]).train()
    print(tos.counter.total, tos.counter.report())

Counting on meta works out of the box: :mod:`torch_tos.integrations.hf_meta` answers
transformers' data-dependent mask checks while an Engine is open (see there for exactly what).

:class:`TOsTrainerCallback` wraps the model in a :class:`torch_tos.TOsCounter` from
``on_train_begin`` to ``on_train_end`` (or :meth:`TOsTrainerCallback.close`): every optimizer step
closes a training step (gradient accumulation included); evaluation forwards are ``validation``
steps. At every Trainer log event it adds, for the steps closed since the previous one,
``tos/step`` (TOs of the last training step), ``tos/total`` (running total, evaluation included),
``flops/step`` and, with a meter, ``energy/joules`` (sum over those steps) and
``energy/joules_per_tos`` to the logged scalars — the names the Lightning callback uses — and to
``trainer.state.log_history``. It moves itself ahead of the reporting callbacks (TensorBoard,
W&B, …) so that they log these scalars in the same call. ``transformers`` is imported when this
module is imported (an optional extra: ``pip install 'torch-tos[transformers]'``).
"""

from __future__ import annotations

import json
import os
import sys

try:
    import transformers
    from transformers import TrainerCallback
except ImportError as e:  # pragma: no cover - depends on what is installed
    raise ImportError("torch_tos.integrations.transformers needs Hugging Face transformers: "
                      "pip install 'torch-tos[transformers]'") from e

import torch

from ..training import TOsCounter
from . import hf_meta  # noqa: F401  (registers transformers' meta adaptation with the engine)
from ._compat_hf import auto_builds, model_builder

__all__ = ["TOsTrainerCallback", "build_from_config", "hf_loss", "load_config"]

#: model types whose Auto class is not the first that accepts them, and missing ids they need
_HEADS = ("AutoModelForCausalLM", "AutoModelForSeq2SeqLM", "AutoModelForSpeechSeq2Seq",
          "AutoModelForMaskedLM", "AutoModelForImageClassification", "AutoModelForCTC", "AutoModel")
_DEFAULT_IDS = {"decoder_start_token_id": 0}  # T5 shifts labels right with it


def hf_loss(output):
    """The loss a transformers model returns when given ``labels`` (``output.loss``)."""
    loss = getattr(output, "loss", None)
    if loss is None and isinstance(output, dict):
        loss = output.get("loss")
    if loss is None:
        raise ValueError("the model returned no loss: pass labels in the inputs "
                         "(make_inputs(..., labels=True))")
    return loss


def _parse(value):
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def load_config(path_or_model_type, overrides=None):
    """A ``PretrainedConfig`` from a ``config.json`` (file or folder) or a model type (``"llama"``),
    with ``overrides`` (a dict, or ``"key=value"`` strings with JSON values) applied. No network."""
    from transformers import AutoConfig, CONFIG_MAPPING

    if isinstance(overrides, (list, tuple)):
        pairs = {}
        for item in overrides:
            key, sep, value = str(item).partition("=")
            if not sep or not key:
                raise ValueError(f"config override {item!r} is not key=value")
            pairs[key.strip()] = value
        overrides = pairs
    overrides = {k: _parse(v) for k, v in (overrides or {}).items()}
    source = os.fspath(path_or_model_type)
    if os.path.isdir(source):
        source = os.path.join(source, "config.json")
    if os.path.isfile(source):
        with open(source) as f:
            data = json.load(f)
        model_type = data.pop("model_type", None)
        if model_type not in CONFIG_MAPPING:
            raise ValueError(f"{source}: model_type {model_type!r} is not one transformers "
                             f"{transformers.__version__} knows")
        return AutoConfig.for_model(model_type, **{**data, **overrides})
    if source in CONFIG_MAPPING:
        return AutoConfig.for_model(source, **overrides)
    raise ValueError(f"{path_or_model_type!r} is neither a config.json (file or folder) nor a "
                     "transformers model type (e.g. gpt2, llama, mistral, qwen2, bert, t5, vit, whisper)")


def _model_class(config):
    for arch in getattr(config, "architectures", None) or ():
        cls = getattr(transformers, arch, None)
        if cls is not None:
            return model_builder(cls)
    for head in _HEADS:
        auto = getattr(transformers, head)
        if auto_builds(auto, config):
            return auto.from_config
    raise ValueError(f"no transformers model class for {type(config).__name__}")


def build_from_config(path_or_model_type, overrides=None, device="meta", *, dtype=None):
    """Build a transformers model from a config, and a builder of example inputs for it.

    ``path_or_model_type``: a ``config.json`` (file or folder) or a model type; ``overrides``: config
    attributes to change (``{"num_hidden_layers": 2}`` or ``["num_hidden_layers=2"]``); ``device``:
    where the weights live — ``"meta"`` (default) allocates nothing, so a 70B config builds in
    seconds. The model class is the config's ``architectures[0]`` if set, else the first of causal
    LM, seq2seq, speech seq2seq, masked LM, image classification, CTC, base model that accepts it.

    Returns ``(model, make_inputs)``; ``make_inputs(batch_size=1, seq_len=128, labels=True,
    device=device)`` gives the keyword inputs of one batch (token ids, pixels, audio features or samples,
    as the model's ``main_input_name`` asks; with ``labels`` the model returns its loss: use
    ``loss_fn=hf_loss``). Values come from a private generator: the global RNG is not used.
    """
    config = load_config(path_or_model_type, overrides)
    for key, value in _DEFAULT_IDS.items():
        if getattr(config, key, None) is None and hasattr(type(config), "model_type"):
            try:
                setattr(config, key, value)
            except (AttributeError, TypeError):
                pass
    build = _model_class(config)
    device = torch.device(device)
    kwargs = {"torch_dtype": dtype} if dtype is not None else {}
    with torch.device(device):
        try:
            model = build(config, **kwargs)
        except TypeError:
            model = build(config)
    model.train()
    return model, _input_builder(model, config, device)


def _input_builder(model, config, device):
    name = getattr(model, "main_input_name", "input_ids")
    vocab = int(getattr(config, "vocab_size", 0) or 2)
    seq2seq = bool(getattr(config, "is_encoder_decoder", False))
    head = type(model).__name__

    def make_inputs(batch_size: int = 1, seq_len: int = 128, labels: bool = True, device=device) -> dict:
        if batch_size < 1 or seq_len < 1:
            raise ValueError(f"batch_size and seq_len must be >= 1, got {batch_size}, {seq_len}")
        gen = torch.Generator().manual_seed(0)

        def ints(high, *shape):
            return torch.randint(0, max(int(high), 1), shape, generator=gen).to(device)

        def floats(*shape):
            return torch.randn(shape, generator=gen).to(device)

        if name == "pixel_values":
            size = getattr(config, "image_size", 224)
            size = size if isinstance(size, (tuple, list)) else (size, size)
            inputs = {name: floats(batch_size, getattr(config, "num_channels", 3), *size)}
        elif name == "input_features":  # Whisper-style log-mel frames: 2 x the encoder positions
            frames = 2 * getattr(config, "max_source_positions", 1500)
            inputs = {name: floats(batch_size, getattr(config, "num_mel_bins", 80), frames)}
        elif name == "input_values":  # raw audio samples
            inputs = {name: floats(batch_size, seq_len)}
        else:
            inputs = {name: ints(vocab, batch_size, seq_len)}
        if labels:
            if "ImageClassification" in head or "SequenceClassification" in head:
                inputs["labels"] = ints(getattr(config, "num_labels", 2), batch_size)
            elif name in ("input_ids",) and not seq2seq:
                inputs["labels"] = inputs[name]
            else:
                inputs["labels"] = ints(vocab, batch_size, seq_len)
        elif seq2seq:
            inputs["decoder_input_ids"] = ints(vocab, batch_size, seq_len)
        return inputs

    return make_inputs


class TOsTrainerCallback(TrainerCallback):
    """Count and log the TOs of every step of a Hugging Face ``Trainer`` run (see the module doc).

    ``dtype``, ``meter``, ``cache``, ``table``: as for :class:`torch_tos.TOsCounter`. ``log``: add
    the scalars to the Trainer's logs (default True). :attr:`counter` holds the steps, totals and
    :meth:`~torch_tos.TOsCounter.report`; under ``torch.distributed``, :attr:`total_all_ranks`.
    """

    def __init__(self, *, dtype=None, meter=None, cache: bool = True, table=None, log: bool = True):
        self._options = dict(dtype=dtype, meter=meter, cache=cache, table=table)
        self.log = log
        self.counter: TOsCounter | None = None
        self.total_all_ranks = None
        self._active = False
        self._logged = 0
        self._running_tos = 0.0

    # -- lifetime --------------------------------------------------------------------------------
    def on_init_end(self, args, state, control, **kwargs):
        self._go_first()

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._go_first()
        if self._active:
            self.close()
        if model is None:
            raise ValueError("TOsTrainerCallback: the Trainer passed no model to on_train_begin")
        if self.counter is None or self.counter.model is not model:
            self.counter = TOsCounter(model, None, **self._options)
            self._logged, self._running_tos = 0, 0.0
        self.counter.__enter__()
        self._active = True

    def on_train_end(self, args, state, control, **kwargs):
        import torch.distributed as dist

        if self._active and dist.is_available() and dist.is_initialized():
            self.total_all_ranks = self.counter.total_all_ranks()
        self.close()
        if self.log and self.counter is not None and self._logged < len(self.counter.steps):
            metrics = self.metrics(self._new())
            if metrics:
                state.log_history.append({**metrics, "step": state.global_step})

    def close(self) -> None:
        """Detach the counter from the model (what ``on_train_end`` does; call it after a run that
        raised, since the Trainer has no exception event)."""
        if self._active:
            self._active = False
            self.counter.__exit__(None, None, None)

    def _go_first(self) -> None:
        """Move this callback ahead of the reporting callbacks of the handler calling it."""
        try:
            handler = sys._getframe(2).f_locals.get("self")
            callbacks = getattr(handler, "callbacks", None)
            if isinstance(callbacks, list) and self in callbacks and callbacks[0] is not self:
                callbacks.remove(self)
                callbacks.insert(0, self)
        except (ValueError, AttributeError):  # pragma: no cover - a handler of another shape
            pass

    # -- logging ---------------------------------------------------------------------------------
    def _new(self) -> list:
        new = self.counter.steps[self._logged:]
        self._logged = len(self.counter.steps)
        return new

    def metrics(self, records) -> dict:
        """The scalars for ``records`` (the step records closed since the last log)."""
        out: dict = {}
        joules = tos = 0.0
        measured = False
        for rec in records:
            self._running_tos += rec.tos
            if rec.kind == "training":
                out["tos/step"] = rec.tos
                out["flops/step"] = float(rec.flops)
                if rec.joules is not None:
                    joules += rec.joules
                    tos += rec.tos
                    measured = True
            else:
                out[f"tos/{rec.kind}_step"] = rec.tos
                out[f"flops/{rec.kind}_step"] = float(rec.flops)
                if rec.joules is not None:
                    out[f"energy/{rec.kind}_joules"] = out.get(f"energy/{rec.kind}_joules", 0.0) + rec.joules
        if records:
            out["tos/total"] = self._running_tos
        if measured:
            out["energy/joules"] = joules
            if tos:
                out["energy/joules_per_tos"] = joules / tos
        return out

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.counter is None or logs is None:
            return
        metrics = self.metrics(self._new())
        if not self.log or not metrics:
            return
        logs.update(metrics)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(metrics)
