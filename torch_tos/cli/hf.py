"""Hugging Face models for ``torch-tos profile``, built from a config without network access:
``--hf-config config.json`` (a file or the folder holding it) or ``--hf-model-type llama``, with
``--hf-override num_hidden_layers=2,hidden_size=256`` (JSON values; repeatable) and
``--batch-size``/``--seq-len`` for the inputs the model's ``main_input_name`` asks for (token ids,
pixels or audio features; with labels in validation and training, whose loss is the model's own).
The weights are built on ``--device``, by default ``meta``: nothing is allocated, so a 70B config
counts in seconds. The building is :func:`torch_tos.integrations.transformers.build_from_config`
(every architecture it knows, transformers' meta-device mask checks adapted); where that module is
not part of the installed torch_tos, :func:`_causal_lm` builds causal language models only.
"""

from __future__ import annotations

from .errors import CLIError, describe_failure


def split_overrides(texts: list[str] | None) -> list[str]:
    """``["a=1,b=[2,3]", "c=x"]`` → ``["a=1", "b=[2,3]", "c=x"]`` (commas inside brackets or quotes
    belong to the value)."""
    items = []
    for text in texts or ():
        depth, quote, start = 0, None, 0
        for i, ch in enumerate(text):
            if quote:
                quote = None if ch == quote else quote
            elif ch in "\"'":
                quote = ch
            elif ch in "[{(":
                depth += 1
            elif ch in "]})":
                depth -= 1
            elif ch == "," and depth == 0:
                items.append(text[start:i])
                start = i + 1
        items.append(text[start:])
    items = [item.strip() for item in items if item.strip()]
    for item in items:
        key, sep, _ = item.partition("=")
        if not sep or not key.strip():
            raise CLIError(f"--hf-override {item!r} is not key=value, e.g. num_hidden_layers=2")
    return items


def _param_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def build_hf(source: str, override_texts, device, batch_size: int, seq_len: int, mode: str):
    """``(model, inputs, loss_fn)`` for a config file/folder or a model type ``source``."""
    import torch

    try:
        import transformers  # noqa: F401
    except ImportError:
        raise CLIError("--hf-config/--hf-model-type need Hugging Face transformers: "
                       "pip install 'torch-tos[transformers]'") from None
    try:
        from ..integrations.transformers import build_from_config, hf_loss
    except ImportError:
        build_from_config, hf_loss = _causal_lm, _output_loss
    if batch_size < 1 or seq_len < 1:
        raise CLIError(f"--batch-size and --seq-len must be positive, got {batch_size} and {seq_len}")
    overrides = split_overrides(override_texts)
    device = device if device is not None else torch.device("meta")

    def build(on):
        try:
            return build_from_config(source, overrides, on)
        except ValueError as e:  # the config's own checks: unknown model type, bad file, ...
            raise CLIError(str(e).strip().splitlines()[0]) from None
        except Exception as e:  # noqa: BLE001 - transformers refusing a config is the user's input
            raise CLIError(f"building the model of {source!r} failed: {describe_failure(e)}") from None

    if device.type != "meta":  # the weights must fit: measure them on meta first
        from .inputs import _size, available_bytes

        need, free = _param_bytes(build("meta")[0]), available_bytes(device)
        if free is not None and need > free:
            raise CLIError(f"the weights of {source!r} need {_size(need)} but only {_size(free)} is free "
                           f"on {device}; use --device meta (the default) to count without allocating")
    model, make_inputs = build(device)
    labels = mode != "inference"
    try:
        inputs = make_inputs(batch_size=batch_size, seq_len=seq_len, labels=labels)
    except ValueError as e:
        raise CLIError(str(e)) from None
    return model, inputs, (hf_loss if labels else None)


def _output_loss(output):
    """The loss a transformers model returns when given ``labels``."""
    return output.loss


def _causal_lm(source: str, overrides: list[str], device):
    """``(model, make_inputs)`` for a causal language model from a ``config.json`` (file or folder)
    or a model type, with ``key=value`` overrides (JSON values): ``AutoConfig.for_model`` and
    ``AutoModelForCausalLM.from_config`` on ``device``; token ids from a private generator, labels
    = the ids (the model shifts them)."""
    import json
    import os

    import torch
    from transformers import CONFIG_MAPPING, AutoConfig, AutoModelForCausalLM

    values = {}
    for item in overrides:
        key, _, value = item.partition("=")
        try:
            values[key.strip()] = json.loads(value)
        except ValueError:
            values[key.strip()] = value
    path = os.path.join(source, "config.json") if os.path.isdir(source) else source
    if os.path.isfile(path):
        with open(path) as f:
            data = json.load(f)
        model_type = data.pop("model_type", None)
    else:
        data, model_type = {}, source
    if model_type not in CONFIG_MAPPING:
        if os.path.isfile(path):
            raise ValueError(f"{path}: model_type {model_type!r} is not one transformers knows")
        raise ValueError(f"{source!r} is neither a config.json (file or folder) nor a transformers "
                         f"model type (e.g. gpt2, llama, mistral, qwen2)")
    config = AutoConfig.for_model(model_type, **{**data, **values})
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config)
    vocab = int(getattr(config, "vocab_size", 2) or 2)

    def make_inputs(batch_size: int = 1, seq_len: int = 128, labels: bool = True) -> dict:
        gen = torch.Generator().manual_seed(0)
        ids = torch.randint(0, vocab, (batch_size, seq_len), generator=gen).to(device)
        return {"input_ids": ids, "labels": ids} if labels else {"input_ids": ids}

    return model, make_inputs
