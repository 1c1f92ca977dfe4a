"""The model of ``torch-tos profile``: ``MODULE:CALLABLE`` (a class, a factory or a module
instance), imported like ``python -m`` would — the current directory first on ``sys.path``, so
``torch-tos profile mymodel:build`` works from the folder holding ``mymodel.py``."""

from __future__ import annotations

import importlib
import json
import os
import sys

from .errors import CLIError, describe_failure


def _cwd_on_path() -> None:
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)


def parse_kwargs(text: str | None, option: str = "--model-kwargs") -> dict:
    if not text:
        return {}
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as e:
        raise CLIError(f"{option} must be a JSON object, e.g. '{{\"num_classes\": 10}}': {e}") from None
    if not isinstance(kwargs, dict):
        raise CLIError(f"{option} must be a JSON object, e.g. '{{\"num_classes\": 10}}', "
                       f"got {type(kwargs).__name__}")
    return kwargs


def load_model(path: str, kwargs_text: str | None = None):
    """``package.module:callable`` → the ``nn.Module`` it builds (or is)."""
    import torch

    if ":" not in path:
        raise CLIError(f"model path {path!r} must be 'module:callable', e.g. torchvision.models:resnet18")
    mod_name, _, attr = path.partition(":")
    _cwd_on_path()
    try:
        module = importlib.import_module(mod_name)
    except Exception as e:  # noqa: BLE001 - any import failure is the user's path
        raise CLIError(f"cannot import module {mod_name!r} of model path {path!r}: "
                       f"{describe_failure(e)}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CLIError(f"module {mod_name!r} has no attribute {attr!r}; expected a model class or "
                           f"factory such as torchvision.models:resnet18")
        obj = getattr(obj, part)
    kwargs = parse_kwargs(kwargs_text)
    if isinstance(obj, torch.nn.Module):
        return obj
    if not callable(obj):
        raise CLIError(f"{path!r} is neither an nn.Module nor a callable that builds one")
    try:
        model = obj(**kwargs)
    except Exception as e:  # noqa: BLE001
        raise CLIError(f"building {path!r} failed: {describe_failure(e)}") from None
    if not isinstance(model, torch.nn.Module):
        raise CLIError(f"{path!r} returned {type(model).__name__}, not an nn.Module")
    return model
