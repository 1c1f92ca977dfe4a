"""Predictions for the zoo: a law file's, and two baselines fitted on that law's own calibration runs.

- :func:`law_prediction` — the one adapter between the benchmark and a law object. A law whose
  ``predict`` takes ``mode=`` (the device-calibrated cost model:
  ``law.predict(model, inputs, mode=, steps=, target=, loss_fn=, optimizer=)`` returning
  ``.joules/.joules_low/.joules_high/.seconds/.seconds_low/.seconds_high``) predicts both modes; a
  law without it (the per-step law: ``law.predict(model, inputs, target=, loss_fn=, optimizer=,
  steps=)`` returning ``.joules/.low/.high``) predicts training only, and inference and seconds are
  n/a. What the law accepts and returns is read from the law and its result (a ``mode``
  parameter; the result's attribute names), never from a version number.
- :class:`Baseline` — the paper's law of run totals ``E = a + b·x`` (``EnergyModel(x, degree=1)``,
  x = TOs or FLOPs of the run = per-step count × steps) fitted on the calibration runs CSV that
  ``calibrate`` writes next to the law (``law.json`` → ``law.runs.csv``), once on joules and once
  on wall seconds; its 90 % interval comes from the quantiles of E/Ê over the calibration runs,
  each predicted by a law fitted without its family (leave-one-family-out, with 3 or more
  families; in-sample otherwise), as the calibrated law's own interval.
- :func:`count_step` — the TOs and FLOPs of ONE step of a zoo job (``torch_tos.profile`` in the
  entry's mode; on meta, or on the CPU for models with recurrent layers, whose fused kernels the
  calibration also counts on the CPU).
"""

from __future__ import annotations

import inspect
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.base import clone

import torch_tos
from torch_tos.energy import EnergyModel, load_law

from .models import Job

FIELDS = ("joules", "joules_low", "joules_high", "seconds", "seconds_low", "seconds_high")
#: The per-step law's result names for the same fields (seconds: none).
LEGACY_FIELDS = {"joules": "joules", "joules_low": "low", "joules_high": "high"}
COVERAGE = 0.9
NA = dict.fromkeys(FIELDS, math.nan)


def takes_mode(law) -> bool:
    """Whether ``law.predict`` declares a ``mode`` parameter (the cost model's interface)."""
    try:
        params = inspect.signature(law.predict).parameters
    except (TypeError, ValueError):
        return False
    return "mode" in params


def _fields(pred) -> dict:
    """The :data:`FIELDS` of a prediction object, by attribute (NaN where it has none)."""
    out = {}
    for f in FIELDS:
        name = f if hasattr(pred, f) else LEGACY_FIELDS.get(f)
        v = getattr(pred, name, None) if name else None
        out[f] = float(v) if v is not None else math.nan
    return out


def law_prediction(law, job: Job, state: float = 1.0) -> tuple[dict, list[str]]:
    """``law``'s prediction of ``job``'s run (``job.entry.steps`` steps in its mode): the
    :data:`FIELDS` (NaN: not predicted) and the warnings the law issued (module doc); ``state``:
    rescale its joules by this machine-state factor (``Prediction.rescaled``)."""
    e = job.entry
    kwargs = dict(target=job.target, loss_fn=job.loss_fn, optimizer=job.optimizer, steps=e.steps)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if takes_mode(law):
            pred = law.predict(job.model, job.inputs, mode=e.mode, **kwargs)
        elif e.mode == "training":
            pred = law.predict(job.model, job.inputs, **kwargs)
        else:
            return dict(NA), []
    if state != 1.0:
        pred = pred.rescaled(state)
    notes = list(dict.fromkeys(f"{w.category.__name__}: {short(str(w.message))}" for w in caught))
    return _fields(pred), notes


def short(message: str, limit: int = 160) -> str:
    """A warning's message without its advice, at most ``limit`` characters."""
    text = message.split(": the law extrapolates")[0]
    return text if len(text) <= limit else text[:limit - 1] + "…"


def count_device(model: torch.nn.Module) -> str:
    return "cpu" if any(isinstance(m, torch.nn.RNNBase) for m in model.modules()) else "meta"


def count_step(job: Job) -> dict:
    """TOs and FLOPs of one step of ``job`` (module doc)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = torch_tos.profile(job.model, job.inputs, mode=job.entry.mode, target=job.target, loss_fn=job.loss_fn,
                              optimizer=job.optimizer, device=count_device(job.model))
    return {"tos": float(r.tos), "flops": float(r.flops)}


def runs_file(law_path) -> Path:
    """The calibration runs CSV ``calibrate`` writes next to a law: ``law.json`` → ``law.runs.csv``."""
    p = Path(law_path)
    return p.with_name(p.stem + ".runs.csv")


def read_calibration_runs(path) -> pd.DataFrame:
    """The calibration runs a baseline is fitted on: ``family``, ``steps``, per-step ``tos`` and
    ``flops``, ``joules`` and ``seconds`` of each run (other columns kept)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"calibration runs {str(path)!r} do not exist: the baselines are fitted on the "
                                "runs CSV that `torch-tos calibrate --out law.json` writes as law.runs.csv "
                                "(or pass --runs)")
    df = pd.read_csv(path)
    need = ["family", "steps", "tos", "flops", "joules", "seconds"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; a calibration runs CSV has {', '.join(need)}")
    for c in need[1:]:
        df[c] = pd.to_numeric(df[c], errors="raise")
    df = df[(df["joules"] > 0) & (df["seconds"] > 0)].reset_index(drop=True)
    if len(df) < 4:
        raise ValueError(f"{path}: {len(df)} usable runs; a baseline needs at least 4")
    return df


class Baseline:
    """The paper's ``E = a + b·x`` of run totals (x = ``feature`` × steps) fitted on calibration
    ``runs``, for joules and for seconds, with leave-one-family-out interval ratios."""

    def __init__(self, feature: str, runs: pd.DataFrame, coverage: float = COVERAGE):
        self.feature, self.coverage = feature, coverage
        self.name = {"tos": "TOs law", "flops": "FLOPs law"}.get(feature, f"{feature} law")
        self.laws, self.intervals = {}, {}
        for target in ("joules", "seconds"):
            est = EnergyModel(feature, degree=1)
            self.laws[target] = clone(est).fit(runs, y=runs[target])
            ratios = heldout_ratios(est, runs, runs[target].to_numpy(float))
            a = (1 - coverage) / 2
            self.intervals[target] = (float(np.quantile(ratios, a)), float(np.quantile(ratios, 1 - a)))

    def predict(self, per_step: float, steps: int) -> dict:
        """The :data:`FIELDS` for a run of ``steps`` steps with ``per_step`` of the feature."""
        out = {}
        for target in ("joules", "seconds"):
            p = float(self.laws[target].predict(np.array([per_step * steps]))[0])
            lo, hi = self.intervals[target]
            out[target], out[f"{target}_low"], out[f"{target}_high"] = p, lo * p, hi * p
        return out

    def __str__(self) -> str:
        return f"{self.name}: {self.laws['joules']}"


def heldout_ratios(estimator, runs: pd.DataFrame, y: np.ndarray) -> np.ndarray:
    """E/Ê of every run, Ê from ``estimator`` fitted without the run's family (3+ families), else
    in-sample; non-positive predictions dropped."""
    fams = runs["family"].astype(str).to_numpy()
    pred = np.empty(len(y))
    if len(set(fams)) >= 3:
        for f in set(fams):
            test = fams == f
            pred[test] = clone(estimator).fit(runs[~test], y=y[~test]).predict(runs[test])
    else:
        pred = clone(estimator).fit(runs, y=y).predict(runs)
    ok = pred > 0
    return y[ok] / pred[ok]


def predict_zoo(entries, laws: dict, baselines=(), *, progress: bool = True, states=None) -> pd.DataFrame:
    """One row per entry: for each ``name → law`` of ``laws`` the :data:`FIELDS` as
    ``{name}:{field}`` and its warnings as ``{name}:warnings``; the per-step ``tos`` and ``flops``
    (:func:`count_step`); for each :class:`Baseline` the same fields under its name. Each entry is
    built once, on the CPU, as the user would hold it (seed 0). ``states``: ``name → factor`` to
    rescale a law's joules by (:func:`law_prediction`)."""
    from .measure import _bar
    from .models import build

    rows = []
    bar = _bar(total=len(entries), desc="zoo predictions", disable=not progress)
    try:
        for e in entries:
            bar.set_postfix_str(e.id)
            job = build(e, "cpu", seed=0)
            row = {"id": e.id}
            for name, law in laws.items():
                fields, notes = law_prediction(law, job, (states or {}).get(name, 1.0))
                row.update({f"{name}:{k}": v for k, v in fields.items()})
                row[f"{name}:warnings"] = " | ".join(notes)
            if baselines:
                row.update(count_step(job))
                for b in baselines:
                    row.update({f"{b.name}:{k}": v for k, v in b.predict(row[b.feature], e.steps).items()})
            rows.append(row)
            bar.update()
    finally:
        bar.close()
    return pd.DataFrame(rows)


__all__ = ["FIELDS", "law_prediction", "takes_mode", "count_step", "count_device", "Baseline", "heldout_ratios",
           "read_calibration_runs", "runs_file", "predict_zoo", "load_law"]
