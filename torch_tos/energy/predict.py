"""A prediction: the joules and seconds of a run of steps, with intervals, per layer and per term.

:class:`Prediction` is what :meth:`~.costmodel.CostModel.price` returns — and so what
``law.predict(model, ...)``, ``profile(..., law=law)`` and ``report.with_law(law)`` read, all
through that one function. ``joules``/``seconds`` are the predicted totals, ``joules_low`` …
``seconds_high`` their prediction intervals (``coverage``, from held-out calibration residuals),
``per_layer`` a DataFrame (layer, type, joules, seconds, share of joules; the per-step and per-run
costs no layer owns in a ``(fixed)`` row; largest first), ``by_row`` the joules and seconds of
each counts row ``(layer, phase, dtype, op)`` — so per-layer joules are the same sum as the total
— ``terms`` the split of the total by the step-level law's terms, ``warnings`` what the law
extrapolates or cannot vouch for, ``state`` the factor its joules were rescaled by to the
machine's current state (:meth:`Prediction.rescaled`; 1.0: the calibration's state). ``str(prediction)`` prints it for people
(:mod:`torch_tos.units`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pandas as pd

from ..units import duration, energy

FIXED_ROW = "(fixed)"


class ExtrapolationWarning(UserWarning):
    """A prediction lies outside what the law was calibrated on (steps, work per call, dtype)."""


@dataclass
class Prediction:
    """The predicted cost of ``steps`` steps of one model (module doc)."""

    joules: float
    joules_low: float
    joules_high: float
    seconds: float
    seconds_low: float
    seconds_high: float
    steps: int
    mode: str
    coverage: float
    per_layer: pd.DataFrame
    by_row: dict
    fixed_joules: float
    fixed_seconds: float
    terms: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    report: object = None
    law: str = ""
    state: float = 1.0

    @property
    def low(self) -> float:
        return self.joules_low

    @property
    def high(self) -> float:
        return self.joules_high

    def rescaled(self, factor: float) -> "Prediction":
        """This prediction with every joule (totals, intervals, rows, layers, terms) multiplied by
        ``factor`` — the machine's current cost of work over the calibration's
        (:meth:`~.costmodel.CostModel.machine_state`); seconds as predicted (the calibration
        corrects joules only)."""
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < float("inf"):
            raise ValueError(f"a machine-state factor must be a positive number, got {factor!r}")
        f = float(factor)
        layers = self.per_layer.copy()
        layers["joules"] = layers["joules"] * f
        terms = dict(self.terms)
        if "joules" in terms:
            terms["joules"] = {k: v * f for k, v in terms["joules"].items()}
        return replace(self, joules=self.joules * f, joules_low=self.joules_low * f, joules_high=self.joules_high * f,
                       per_layer=layers, by_row={k: (j * f, s) for k, (j, s) in self.by_row.items()},
                       fixed_joules=self.fixed_joules * f, terms=terms, state=self.state * f)

    def __str__(self) -> str:
        what = "training steps" if self.mode == "training" else "inference steps (forward passes)"
        lines = [f"predicted cost of {self.steps} {what}:",
                 f"  energy   {energy(self.joules)}  ({self.coverage:.0%} interval {energy(self.joules_low)} – "
                 f"{energy(self.joules_high)})",
                 f"  time     {duration(self.seconds)}  ({self.coverage:.0%} interval {duration(self.seconds_low)} – "
                 f"{duration(self.seconds_high)})"]
        if self.law:
            lines.append(f"law: {self.law}")
        if self.state != 1.0:
            lines.append(f"energy at the machine's current state: its reference workload costs ×{self.state:.3f} "
                         "of the calibration's")
        j = self.terms.get("joules", {})
        if j:
            lines.append("energy by term: " + ", ".join(f"{k} {energy(v)}" for k, v in j.items()))
        top = self.per_layer.head(12)
        if len(top):
            w = max(len(str(x)) for x in top["layer"])
            t = max(len(str(x)) for x in top["type"]) if len(top) else 0
            lines.append("by layer (largest first):")
            lines += [f"  {str(r.layer).ljust(w)}  {str(r.type).ljust(t)}  {energy(r.joules):>9}  "
                      f"{duration(r.seconds):>9}  {r.share:6.1%}" for r in top.itertuples()]
            if len(self.per_layer) > len(top):
                lines.append(f"  … {len(self.per_layer) - len(top)} more layers")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def per_layer_table(by_row: dict, fixed: tuple[float, float], types=None) -> pd.DataFrame:
    """Joules and seconds per layer from the rows' ``(joules, seconds)`` plus the ``(fixed)`` row,
    with each layer's share of the joules, largest first."""
    acc: dict[str, list[float]] = {}
    for key, (j, s) in by_row.items():
        a = acc.setdefault(key[0], [0.0, 0.0])
        a[0] += j
        a[1] += s
    acc[FIXED_ROW] = [float(fixed[0]), float(fixed[1])]
    types = types or {}
    df = pd.DataFrame({"layer": [k or "(model)" for k in acc],
                       "type": [types.get(k, "per step and per run" if k == FIXED_ROW else "") for k in acc],
                       "joules": [v[0] for v in acc.values()], "seconds": [v[1] for v in acc.values()]})
    total = df["joules"].sum()
    df["share"] = df["joules"] / total if total > 0 else 0.0
    return df.sort_values("joules", ascending=False, kind="stable").reset_index(drop=True)


__all__ = ["Prediction", "ExtrapolationWarning", "per_layer_table", "FIXED_ROW"]
