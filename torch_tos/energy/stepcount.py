"""The counts a prediction prices: the first step of a run and every step after it.

A run of ``steps`` training steps with a fresh optimizer is not ``steps`` copies of its first step:
the first ``optimizer.step()`` creates the optimizer's state (SGD's momentum buffers are a copy of
the gradients, Adam's moments are zero-filled) and every later one updates it in place — on a
model of large layers, different kernels over hundreds of megabytes. :func:`count_steps` returns
both as :class:`StepCounts`:

- ``first``: the :class:`~torch_tos.report.Report` of one step as :func:`torch_tos.profile`
  counts it (the optimizer step from the optimizer's state as given: fresh, or the user's);
- ``steady``: the same step with its optimizer phase counted from the state that step leaves —
  the optimizer is shadowed on meta (:class:`~torch_tos.copying.Shadows`: the user's optimizer,
  its state and the parameters are never touched, no weights are copied), given zero gradients for
  the parameters that require them, stepped once uncounted and once counted.

A run of ``steps`` steps is ``first + (steps − 1) × steady`` (:meth:`StepCounts.run`). Inference
has no optimizer: both are the same forward pass.

Where the counts are taken (:func:`counting_device`): on ``meta`` (nothing computed, any size of
model) unless the model has layers whose kernels on a real device differ from what meta runs —
recurrent layers (fused ``mkldnn_rnn_layer``/cuDNN kernels), and in inference attention and
transformer-encoder layers in eval mode (PyTorch's fused fast path) — then on the device of the
model's weights when they are on one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from ..counts import Counts

#: Modules whose kernels on a real device differ from those meta runs, per mode.
_FAST_PATHS = {"training": (torch.nn.RNNBase,),
               "inference": (torch.nn.RNNBase, torch.nn.MultiheadAttention, torch.nn.TransformerEncoderLayer)}


@dataclass
class StepCounts:
    """The first step and a steady step of a run (module doc), and where they were counted."""

    first: object
    steady: object
    device: str

    def run(self, steps: int) -> Counts:
        """The counts of a run of ``steps`` steps: ``first + (steps − 1) × steady``."""
        out = self.first.counts.copy()
        if steps > 1:
            out.merge(self.steady.counts, steps - 1)
        return out


def counting_device(model: torch.nn.Module, mode: str = "training", device=None, inputs=()) -> str:
    """Where :func:`count_steps` counts (module doc): ``device`` when given; ``"meta"`` when the
    inputs are meta tensors or no layer needs its real kernels; else the device of the weights."""
    from .._compat import tree_leaves

    if device is not None:
        return str(device)
    if any(isinstance(t, torch.Tensor) and t.device.type == "meta" for t in tree_leaves(inputs)):
        return "meta"
    kinds = _FAST_PATHS["inference" if mode != "training" else "training"]
    if any(isinstance(m, kinds) for m in model.modules()):
        real = next((p.device for p in model.parameters() if p.device.type != "meta"), None)
        if real is not None:
            return str(real)
    return "meta"


def count_steps(model: torch.nn.Module, inputs, *, mode: str = "training", target=None, loss_fn=None,
                optimizer=None, device=None, table=None) -> StepCounts:
    """Count the first and a steady step of ``model`` on ``inputs`` (module doc). ``mode``:
    ``"training"`` (forward, loss, backward, and the optimizer step when ``optimizer`` is given) or
    ``"inference"`` (a forward pass under ``torch.no_grad()``)."""
    from ..api import profile

    if mode not in ("training", "inference"):
        raise ValueError(f"unknown mode {mode!r}; accepted: training, inference")
    where = counting_device(model, mode, device, inputs)
    first = profile(model, inputs, mode=mode, target=target if mode == "training" else None,
                    loss_fn=loss_fn if mode == "training" else None,
                    optimizer=optimizer if mode == "training" else None, device=where, table=table)
    if mode != "training" or optimizer is None:
        return StepCounts(first, first, where)
    later = steady_optimizer_counts(optimizer)
    counts = first.counts.where(phases=[p for p in first.counts.phases if p != "optimizer"])
    counts.merge(later)
    steady = copy.copy(first)
    steady.counts = counts
    steady._cache = {}
    return StepCounts(first, steady, where)


def steady_optimizer_counts(optimizer: torch.optim.Optimizer) -> Counts:
    """The counts of a steady ``optimizer.step()``: on a meta shadow of ``optimizer`` with zero
    gradients for the parameters that require them, stepped once uncounted (its state is created as
    a first step creates it), then once counted under the ``(optimizer)`` pseudo-layer."""
    from .._compat import default_foreach
    from ..copying import Shadows, copy_tensor
    from ..counter import Engine

    shadow = Shadows(lambda t, kind: copy_tensor(t, "meta", leaf_grad=False)).optimizer(optimizer)
    for group, real in zip(shadow.param_groups, optimizer.param_groups):
        if group.get("fused"):
            group["fused"], group["foreach"] = False, True
        elif "foreach" in group and group["foreach"] is None:
            params = [p for p in real["params"] if isinstance(p, torch.Tensor)]
            foreach = default_foreach(params, bool(group.get("differentiable", False)))
            if foreach is not None:
                group["foreach"] = foreach
    for (group, real) in zip(shadow.param_groups, optimizer.param_groups):
        for p, r in zip(group["params"], real["params"]):
            if isinstance(p, torch.Tensor):
                p.grad = torch.zeros_like(p) if r.requires_grad else None
    with torch.no_grad():
        shadow.step()
        engine = Engine()
        engine.phase = "optimizer"
        with engine:
            shadow.step()
    return engine.counts


__all__ = ["StepCounts", "count_steps", "counting_device", "steady_optimizer_counts"]
