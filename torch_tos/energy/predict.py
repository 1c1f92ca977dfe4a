"""Predict the training energy of a model that was never measured, from a calibrated law.

:func:`predict_model` (also ``law.predict(model, inputs, ...)``):

1. counts ONE training step (forward, loss, backward, optimizer step) with
   :func:`torch_tos.profile` on the meta device (``device="meta"``: nothing is computed or
   allocated, so a 70B-parameter model predicts without its memory);
2. takes the step's counted features (:func:`~.features.step_features`, the model's conv layer map
   decide ``dwconv``) and applies the law: E = steps × (e_step + Σ b_k f_k) + e_run;
3. gives the prediction interval ``(low·Ê, high·Ê)`` from the calibration residuals (quantiles of
   E/Ê, :meth:`~torch_tos.energy.EnergyModel.interval`), the joules of each layer (the law's
   coefficients applied to each layer's own counts, × steps; the fixed joules in a ``(fixed)``
   row), and warnings when a feature lies outside the calibrated range (the law extrapolates) or
   the machine differs from the calibration's (:func:`~.law.check_fingerprint`).

Meta counts run the CPU kernels' decompositions; where the device would run other kernels (fused
RNN cells, fast paths) the counted calls differ from the real ones — count on ``device="cpu"``
then (slower, needs the memory).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import pandas as pd
import torch

from ..validation import check_count
from .features import as_counts, conv_layers, step_features


class ExtrapolationWarning(UserWarning):
    """A model's features lie outside the range the law was calibrated on."""


@dataclass
class Prediction:
    """The predicted energy of ``steps`` training steps of a model.

    ``joules`` (J), ``low``/``high`` (the ``coverage`` prediction interval, J), ``steps``,
    ``per_step`` (J of one step per term of the law: ``step``, each feature), ``fixed`` (J that do
    not depend on the model: e_step × steps + e_run), ``per_layer`` (DataFrame: layer, type,
    joules, share), ``features`` (the counted per-step features), ``warnings`` (extrapolation,
    other machine), ``report`` (the :class:`~torch_tos.report.Report` of one step)."""

    joules: float
    low: float
    high: float
    coverage: float
    steps: int
    per_step: dict
    fixed: float
    per_layer: pd.DataFrame
    features: dict
    warnings: list = field(default_factory=list)
    report: object = None
    law: str = ""

    def __str__(self) -> str:
        lines = [f"predicted energy of {self.steps} training steps: {self.joules:#.4g} J "
                 f"({self.coverage:.0%} interval {self.low:#.4g} – {self.high:#.4g} J)",
                 f"law: {self.law}", "per step: " + ", ".join(f"{k} {v:.3g} J" for k, v in self.per_step.items())]
        top = self.per_layer.head(12)
        if len(top):
            w = max(len(str(x)) for x in top["layer"])
            lines.append("joules by layer (largest first):")
            lines += [f"  {str(r.layer).ljust(w)}  {r.type:<22} {r.joules:#10.4g} J  {r.share:6.1%}"
                      for r in top.itertuples()]
            if len(self.per_layer) > len(top):
                lines.append(f"  … {len(self.per_layer) - len(top)} more layers")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _check_steps(steps) -> int:
    return check_count(steps, "steps", what="training steps to predict")


def outside_range(law, features: dict) -> list[str]:
    """One message per law feature whose per-step value lies outside the calibrated range."""
    out = []
    for f in map(str, law.feature_names_in_):
        lo, hi = law.ranges_.get(f, (None, None))
        v = features.get(f, 0.0)
        if lo is not None and not (lo <= v <= hi):
            out.append(f"{f} per step {v:.4g} is outside the calibrated range {lo:.4g} – {hi:.4g}: the law "
                       "extrapolates (add calibration workloads like this model)")
    return out


def per_layer_joules(law, counts, steps: int = 1, *, groups=None, types=None) -> pd.DataFrame:
    """Joules of each layer over ``steps`` steps: the law's coefficients applied to each layer's
    own counts (:meth:`~torch_tos.energy.EnergyModel.joules_by_row` summed by layer), plus a
    ``(fixed)`` row with :meth:`~torch_tos.energy.EnergyModel.fixed_joules`; sorted largest first."""
    by_layer: dict[str, float] = {}
    for key, j in law.joules_by_row(counts, groups=groups).items():
        by_layer[key[0]] = by_layer.get(key[0], 0.0) + j * steps
    by_layer["(fixed)"] = law.fixed_joules(steps)
    types = types or {}
    df = pd.DataFrame({"layer": [k or "(model)" for k in by_layer],
                       "type": [types.get(k, "e_step·steps + e_run" if k == "(fixed)" else "") for k in by_layer],
                       "joules": list(by_layer.values())})
    total = df["joules"].sum()
    df["share"] = df["joules"] / total if total > 0 else 0.0
    return df.sort_values("joules", ascending=False, kind="stable").reset_index(drop=True)


def predict_counts(law, counts, steps: int = 1, *, groups=None, coverage: float = 0.9, types=None,
                   report=None) -> Prediction:
    """The :class:`Prediction` for ``steps`` steps whose ONE step has the counts ``counts``."""
    law._require_linear()
    steps = _check_steps(steps)
    counts = as_counts(counts)
    features = step_features(counts, groups=groups)
    per_step = law.step_joules(features)
    joules = steps * sum(per_step.values()) + law.e_run_
    lo, hi = law.interval(coverage)
    notes = outside_range(law, features)
    for n in notes:
        warnings.warn(n, ExtrapolationWarning, stacklevel=3)
    from .law import check_fingerprint

    notes += check_fingerprint(law, stacklevel=4)
    return Prediction(joules=joules, low=lo * joules, high=hi * joules, coverage=coverage, steps=steps,
                      per_step=per_step, fixed=law.fixed_joules(steps),
                      per_layer=per_layer_joules(law, counts, steps, groups=groups, types=types),
                      features=features, warnings=notes, report=report, law=law.law())


def counting_device(model: torch.nn.Module, device=None, inputs=()):
    """Where :func:`predict_model` counts: ``device`` when given; else ``"meta"`` — except for a
    model with recurrent layers (``nn.LSTM``/``nn.GRU``/``nn.RNN``) whose weights are on a real
    device: there they run fused kernels (``mkldnn_rnn_layer``, cuDNN) that meta decomposes per
    time step, and the law's ``calls_rnn`` was calibrated on the fused ones (the suite counts its
    ``lstm``/``gru`` families on the CPU), so the step is counted on the weights' device (unless
    ``inputs`` hold meta tensors: then on meta)."""
    from .._compat import tree_leaves

    if device is not None:
        return device
    if any(isinstance(t, torch.Tensor) and t.device.type == "meta" for t in tree_leaves(inputs)):
        return "meta"
    if any(isinstance(m, torch.nn.RNNBase) for m in model.modules()):
        real = next((p.device for p in model.parameters() if p.device.type != "meta"), None)
        if real is not None:
            return real
    return "meta"


def recurrent_on_meta_note(model: torch.nn.Module, device) -> list[str]:
    """The warning for a model with recurrent layers counted on meta (see :func:`counting_device`)."""
    if torch.device(device).type != "meta" or not any(isinstance(m, torch.nn.RNNBase) for m in model.modules()):
        return []
    return ["the model's recurrent layers were counted on meta, where they decompose per time step; the "
            "device runs fused kernels (calls_rnn) and the law was calibrated on those: build the model on "
            "the CPU (or its GPU) and predict with device=None or device='cpu' for a faithful count"]


def predict_model(law, model: torch.nn.Module, inputs, *, target=None, loss_fn=None, optimizer=None,
                  steps: int = 1, device=None, coverage: float = 0.9, table=None) -> Prediction:
    """Predict the energy of ``steps`` training steps of ``model`` on ``inputs`` (module doc).

    ``loss_fn``/``target`` as in :func:`torch_tos.profile` (default: the ``output.sum()``
    surrogate); ``optimizer``: the optimizer whose step is part of each training step (default:
    plain SGD, like the calibration runs; built on the model's parameters, which it never
    changes); ``device``: where to count — by default ``"meta"`` (no memory, nothing computed),
    or the weights' device for a model with recurrent layers (:func:`counting_device`)."""
    from ..api import profile

    law._require_linear()
    steps = _check_steps(steps)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if optimizer is None:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    device = counting_device(model, device, inputs)
    report = profile(model, inputs, mode="training", target=target, loss_fn=loss_fn, optimizer=optimizer,
                     device=device, table=table)
    types = {layer: report.layer_type(layer) for layer in {k[0] for k in as_counts(report).rows}}
    pred = predict_counts(law, report, steps, groups=conv_layers(model), coverage=coverage, types=types,
                          report=report)
    for note in recurrent_on_meta_note(model, device):
        warnings.warn(note, ExtrapolationWarning, stacklevel=2)
        pred.warnings.append(note)
    return pred


__all__ = ["Prediction", "predict_model", "counting_device", "recurrent_on_meta_note", "predict_counts", "per_layer_joules", "outside_range",
           "ExtrapolationWarning"]
