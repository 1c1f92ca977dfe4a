"""What a model family is: its configurations, its models, its data and its training step.

A :class:`Config` names one model of a family by up to four knobs (``width``, ``depth``,
``activation``, ``input_size``; ``None`` = not applicable, empty in the runs CSV). A
:class:`Family` builds the model of a configuration, makes its (synthetic or bundled) data, and
says how a step trains (loss, optimizer, batch size) and where its counts must be taken:
``count_device = "meta"`` (nothing computed) unless meta runs other kernels than the run's own
device (fused recurrent layers: ``"run"``).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch
from torch import nn

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}


@dataclass(frozen=True)
class Config:
    """One model configuration of a family. ``None`` = not applicable (CSV: empty)."""

    family: str
    width: int | None
    depth: int | None
    activation: str | None
    input_size: int | None = None

    def key(self) -> tuple:
        return (self.family, _s(self.width), _s(self.depth), _s(self.activation), _s(self.input_size))

    @property
    def label(self) -> str:
        parts = [self.family]
        for tag, v in (("w=", self.width), ("d=", self.depth), ("", self.activation), ("in=", self.input_size)):
            if v is not None and v != "":
                parts.append(f"{tag}{v}")
        return " ".join(parts)


def _s(v) -> str:
    return "" if v is None else str(v)


def check_activation(name: str, accepted=ACTIVATIONS) -> str:
    if name not in accepted:
        raise ValueError(f"unknown activation {name!r}; accepted: {', '.join(accepted)}")
    return name


def check_ints(name, values, lo, hi) -> list[int]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"{name} must be integers from {lo} to {hi}, got {v!r}")
        out.append(v)
    if not out:
        raise ValueError(f"no {name} given")
    return sorted(set(out))


def positive_int(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return v


class Family(abc.ABC):
    """A model family: its configurations, models, data and training-step settings."""

    name = ""
    default_widths: tuple = ()
    default_depths: tuple = ()
    default_activations: tuple = ()
    default_epochs = 1
    default_lr = 0.01
    #: Where a step's features are counted: ``"meta"`` or ``"run"`` (the run's own device).
    count_device = "meta"
    dtype = "float32"
    optimizer_name = "sgd"
    paper = {}

    def __init__(self, batch_size: int = 64, **options):
        unknown = sorted(k for k, v in options.items() if v is not None)
        if unknown:
            raise ValueError(f"the {self.name} family has no option {', '.join(unknown)}")
        self.batch_size = positive_int("batch_size", batch_size)

    @abc.abstractmethod
    def configs(self, widths=None, depths=None, activations=None) -> list[Config]:
        """The configurations of a sweep over these knobs (defaults: the family's ranges)."""

    @abc.abstractmethod
    def build(self, config: Config) -> nn.Module:
        """A freshly initialised model of ``config`` (from the current torch seed)."""

    @abc.abstractmethod
    def data(self, config: Config | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(X, y)`` of one epoch, in the order it is trained, from a fixed seed."""

    def loss_fn(self) -> nn.Module:
        return nn.MSELoss()

    def optimizer(self, params, lr: float) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=lr)

    def input_size(self, config: Config):
        """The ``input_size`` column of the runs CSV (image side, sequence length, features)."""
        return config.input_size

    def describe(self) -> str:
        return self.name


__all__ = ["ACTIVATIONS", "Config", "Family", "check_activation", "check_ints", "positive_int"]
