"""Hugging Face models for ``torch-tos profile``, built from a config without network access:
``--hf-config config.json`` (a file or the folder holding it) or ``--hf-model-type llama``, with
``--hf-override num_hidden_layers=2,hidden_size=256`` (JSON values; repeatable) and
``--batch-size``/``--seq-len`` for the inputs the model's ``main_input_name`` asks for (token ids,
pixels or audio features; with labels in validation and training, whose loss is the model's own).
The weights are built on ``--device``, by default ``meta``: nothing is allocated, so a 70B config
counts in seconds. The building is :func:`torch_tos.integrations.transformers.build_from_config`
(every architecture it knows, transformers' meta-device mask checks adapted).
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


def add_hf_arguments(p) -> None:
    """The Hugging Face options shared by ``torch-tos profile`` and ``torch-tos predict``."""
    hf = p.add_argument_group("Hugging Face models (transformers, built from a config; no network)")
    hf.add_argument("--hf-config", metavar="PATH", help="a config.json, or the folder holding it")
    hf.add_argument("--hf-model-type", metavar="TYPE", help="a transformers model type with its default "
                    "config: gpt2, llama, mistral, qwen2, bert, t5, vit, whisper, ...")
    hf.add_argument("--hf-override", action="append", metavar="K=V,...",
                    help="config values to change, JSON values, e.g. num_hidden_layers=2,hidden_size=256 "
                    "(repeatable)")
    hf.add_argument("--batch-size", type=int, default=1, help="batch size of the Hugging Face inputs")
    hf.add_argument("--seq-len", type=int, default=128, help="sequence length of the Hugging Face inputs "
                    "(token ids; images and audio features take their size from the config)")


def hf_source(args) -> str | None:
    """The config file/folder or model type the options name (None without one), after checking
    that they do not contradict a MODULE:CALLABLE model or ``--input-shape``."""
    hf = args.hf_config or args.hf_model_type
    if args.hf_config and args.hf_model_type:
        raise CLIError("give --hf-config or --hf-model-type, not both")
    if hf and args.model:
        raise CLIError(f"give a model path ({args.model!r}) or a Hugging Face config, not both")
    if not hf:
        if args.hf_override:
            raise CLIError("--hf-override applies to --hf-config or --hf-model-type only")
        return None
    if args.input_shape:
        raise CLIError("--input-shape is for MODULE:CALLABLE models; a Hugging Face model's inputs "
                       "come from --batch-size and --seq-len")
    if args.hf_config:
        from pathlib import Path

        if not Path(args.hf_config).exists():
            raise CLIError(f"--hf-config {args.hf_config!r}: no such file or folder; give a "
                           f"config.json or the folder holding it")
    return hf


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
    from ..integrations.transformers import build_from_config, hf_loss

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
