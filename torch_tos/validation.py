"""Checks of user input shared by every entry point: ``profile()``, ``TOsCounter``, ``graph()``
and the CLI. Each check raises one ``TypeError``/``ValueError`` whose message names what was wrong
and what is accepted; the CLI prints that message as its one line (exit code 2).
"""

from __future__ import annotations

import operator

import torch

from .tables import TransistorTable, parse_dtype

MODES = ("inference", "validation", "training")
DEVICES_ACCEPTED = "cpu, cuda, cuda:N, mps, meta"


def check_count(value, name: str, *, minimum: int = 1, what: str = "") -> int:
    """``value`` as an ``int`` when it is an integral number (``int``, ``numpy.int64``, anything
    with ``__index__``; not ``bool``, not a float) of at least ``minimum``; else a ``ValueError``
    naming ``name`` (and ``what`` it counts)."""
    try:
        n = operator.index(value) if not isinstance(value, bool) else None
    except TypeError:
        n = None
    if n is None or n < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {kind}{f' ({what})' if what else ''}, got {value!r}")
    return int(n)


def check_model(model) -> torch.nn.Module:
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def check_mode(mode) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; accepted: {', '.join(MODES)}")
    return mode


def check_dtype(dtype) -> torch.dtype | None:
    """``None`` (price each op in its own dtype) or a dtype / dtype name (see ``parse_dtype``)."""
    return parse_dtype(dtype) if dtype is not None else None


def check_device(device) -> torch.device | None:
    if device is None:
        return None
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; accepted: {DEVICES_ACCEPTED}") from None


def check_loss_fn(loss_fn):
    if loss_fn is None:
        return None
    if isinstance(loss_fn, type):
        raise TypeError(f"loss_fn must be a loss instance or function, got the class "
                        f"{loss_fn.__name__}; pass {loss_fn.__name__}() instead")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable (e.g. torch.nn.MSELoss()), got {type(loss_fn).__name__}")
    return loss_fn


def check_optimizer(optimizer) -> torch.optim.Optimizer | None:
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}")
    return optimizer


class ForeignParametersWarning(UserWarning):
    """An optimizer given to ``profile()`` also holds parameters that are not the model's."""


def check_optimizer_of(model: torch.nn.Module, optimizer, loss_fn=None) -> None:
    """The optimizer must update the model (or its loss module): an optimizer holding none of
    their parameters (built for another model) is a ``ValueError``; one that also holds other
    parameters gets a :class:`ForeignParametersWarning` (those get no gradient in the step, so
    their update is not counted)."""
    if optimizer is None:
        return
    owned = {id(p) for m in (model, loss_fn) if isinstance(m, torch.nn.Module) for p in m.parameters()}
    held = [p for g in optimizer.param_groups for p in g["params"] if isinstance(p, torch.Tensor)]
    foreign = [p for p in held if id(p) not in owned]
    if held and len(foreign) == len(held):
        raise ValueError(f"the optimizer ({type(optimizer).__name__}) holds none of the model's parameters — built "
                         f"for another model? Build it over this model's: "
                         f"torch.optim.{type(optimizer).__name__}(model.parameters(), ...)")
    if foreign:
        import warnings

        warnings.warn(f"the optimizer ({type(optimizer).__name__}) also holds {len(foreign)} parameter(s) that are "
                      "not the model's (or the loss's): they get no gradient in this step, so their update is "
                      "not counted", ForeignParametersWarning, stacklevel=4)


def check_table(table) -> TransistorTable | None:
    if table is not None and not isinstance(table, TransistorTable):
        raise TypeError(f"table must be a torch_tos.TransistorTable, got {type(table).__name__}")
    return table


def check_meter(meter):
    if meter is not None and not callable(getattr(meter, "measure", None)):
        raise TypeError("meter must have a measure() method returning a context manager "
                        "(e.g. torch_tos.energy.auto_meter())")
    return meter


def split_inputs(inputs) -> tuple[tuple, dict]:
    """(args, kwargs) from a tensor, a tuple/list of positional inputs, or a dict of keyword inputs."""
    if isinstance(inputs, dict):
        return (), dict(inputs)
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs), {}
    return (inputs,), {}


def check_profile_args(model, mode, dtype, device, loss_fn, optimizer, table):
    """All checks of :func:`torch_tos.profile` (and ``graph()``); returns ``(dtype, device)``."""
    check_model(model)
    check_mode(mode)
    dtype = check_dtype(dtype)
    device = check_device(device)
    check_loss_fn(loss_fn)
    check_optimizer(optimizer)
    check_optimizer_of(model, optimizer, loss_fn)
    check_table(table)
    return dtype, device
