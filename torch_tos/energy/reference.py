"""Drift-corrected measurement: a fixed reference workload measured right before and after a run.

On shared machines the energy (or CPU time) of the same work drifts by tens of percent over
minutes (other tenants, frequency scaling, heat). A fixed *reference workload* — always the same
:data:`REFERENCE_STEPS` SGD steps of one small MLP (64 → 256 → 64, batch 64, MSE), on the same
data, in the same thread setting as the run — is measured just before and just after each run.
Its energy tracks the machine's current cost of work, so the run is rescaled to the file's
*nominal* reference energy:

    joules = joules_raw × ref_nominal / ref_joules,   ref_joules = (ref_before + ref_after) / 2

``ref_nominal`` is fixed per results file: the median of :data:`NOMINAL_REPEATS` reference
measurements when the file is started (warm), then read back from the file on every resume, so
all corrected rows of one file are in the same units (joules at the machine's state when the
file was started). Both the corrected ``joules`` and the meter's ``joules_raw`` are recorded, with
``ref_before``/``ref_after``; :func:`cv_by_config` reports each configuration's coefficient of
variation with and without the correction. The correction removes drift that affects the run and
the reference alike (a common multiplicative factor); noise faster than a run is not removed.

A calibration shares one nominal between its microbenchmarks and its step-level runs
(:class:`DriftTrack`): the reference is read every :data:`TRACK_SECONDS` of microbenchmarking (the
nominal is the median of these readings) and before and after every run; each microbenchmark's
joules are rescaled by the track at its time, each run's by the readings of the runs measured
around it (:func:`recorrect`), all to the same nominal. Without it, a machine
that slows down between the two stages moves the step-level law's scale by as much as it slowed.
Both are medians over neighbouring readings, so one reading caught by a burst of another process
does not move the figures it corrects.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

REFERENCE_STEPS = 200
NOMINAL_REPEATS = 5
#: Seconds of microbenchmarking between two readings of the reference on a :class:`DriftTrack`.
TRACK_SECONDS = 3.0
#: :func:`recorrect` reads the reference of the runs up to this many rows before and after a run.
RUN_WINDOW = 2
#: A calibration whose runs repeat with a larger median coefficient of variation than this says its
#: machine was noisy (:func:`noise_notes`): an accuracy of 10 % median error (issue 16's floor)
#: cannot be checked against runs that differ from their own repeats by half of it.
NOISY_CV = 0.05
#: The runs' median reference reading over the nominal beyond this factor (either way) says the
#: machine's state moved between the microbenchmarks and the runs (:func:`noise_notes`).
STATE_SHIFT = 1.1


class Reference:
    """The fixed reference workload. ``workload``: a zero-argument callable to use instead of the
    built-in MLP steps (tests plant a synthetic one)."""

    def __init__(self, steps: int = REFERENCE_STEPS, *, workload=None):
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"reference steps must be a positive integer, got {steps!r}")
        self.steps = steps
        self._workload = workload
        self._state = None

    def describe(self) -> str:
        if self._workload is not None:
            return "custom reference workload"
        return f"{self.steps} SGD steps of an MLP 64→256→64, batch 64, MSE"

    def _build(self):
        g = torch.Generator().manual_seed(1234)
        w1, w2 = torch.randn(256, 64, generator=g) * 0.1, torch.randn(64, 256, generator=g) * 0.1
        model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 64))
        with torch.no_grad():
            model[0].weight.copy_(w1)
            model[2].weight.copy_(w2)
        x, y = torch.randn(64, 64, generator=g), torch.randn(64, 64, generator=g)
        return model, torch.optim.SGD(model.parameters(), lr=1e-3), x, y, [p.detach().clone()
                                                                           for p in model.parameters()]

    def run(self) -> None:
        """Run the reference workload once (the same work every time: weights are restored)."""
        if self._workload is not None:
            self._workload()
            return
        if self._state is None:
            self._state = self._build()
        model, opt, x, y, initial = self._state
        with torch.no_grad():
            for p, p0 in zip(model.parameters(), initial):
                p.copy_(p0)
        with torch.enable_grad():
            for _ in range(self.steps):
                opt.zero_grad(set_to_none=True)
                torch.nn.functional.mse_loss(model(x), y).backward()
                opt.step()

    def measure(self, meter) -> float:
        """Joules of one reference run with ``meter``."""
        with meter.measure() as m:
            self.run()
        return float(m.joules)

    def nominal(self, meter, repeats: int = NOMINAL_REPEATS) -> float:
        """The median of ``repeats`` reference measurements after one warm-up run."""
        self.run()
        values = [self.measure(meter) for _ in range(repeats)]
        value = statistics.median(values)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"the reference workload measured {value!r} J; a meter that reads no "
                             "energy for it cannot correct drift (run without --reference)")
        return value


class DriftTrack:
    """The reference's joules over wall-clock time while microbenchmarks run (module doc).

    ``samples``: (time, joules) readings, time from :func:`time.time` (a resumed calibration
    continues the track). ``nominal``: the reference joules corrected figures are expressed at —
    by default the median of the readings, so the profile stays in the units of the machine's
    typical state while it was measured and the correction only removes the drift around it (a
    reading taken back to back with warm caches would sit below every reading taken between other
    work). :meth:`factor` is the correction of work measured between two times."""

    def __init__(self, samples=(), nominal: float | None = None):
        self.samples = sorted((float(t), float(j)) for t, j in samples)
        for t, j in self.samples:
            if not (math.isfinite(t) and math.isfinite(j) and j > 0):
                raise ValueError(f"a drift track reading must be a finite time and positive joules, got {(t, j)!r}")
        if nominal is not None and (isinstance(nominal, bool) or not isinstance(nominal, (int, float))
                                    or not math.isfinite(nominal) or nominal <= 0):
            raise ValueError(f"the drift track's nominal reference joules must be a positive number, got {nominal!r}")
        self._nominal = None if nominal is None else float(nominal)

    @property
    def nominal(self) -> float:
        if self._nominal is not None:
            return self._nominal
        if not self.samples:
            raise ValueError("the drift track has no reading of the reference yet")
        return float(statistics.median(j for _, j in self.samples))

    def add(self, t: float, joules: float) -> None:
        self.samples.append((float(t), float(joules)))
        self.samples.sort()

    def at(self, t: float) -> float:
        """The reference joules at time ``t``: linear between the readings around it, each the
        median of itself and its two neighbours; the nearest outside them; the nominal when there
        is none."""
        if not self.samples:
            return self.nominal
        times = [s[0] for s in self.samples]
        values = [s[1] for s in self.samples]
        smooth = [statistics.median(values[max(0, k - 1):k + 2]) for k in range(len(values))]
        return float(np.interp(t, times, smooth))

    def factor(self, t0: float, t1: float | None = None) -> float:
        """``nominal / reference`` for work measured from ``t0`` to ``t1``: the mean of the track
        (:meth:`at`) at both ends and at every reading inside."""
        t1 = t0 if t1 is None else t1
        if t1 < t0:
            t0, t1 = t1, t0
        inside = [self.at(t) for t, _ in self.samples if t0 < t < t1]
        values = [self.at(t0), *inside, self.at(t1)]
        return self.nominal / (sum(values) / len(values))


@dataclass
class RunMeasurement:
    """One measured run: corrected and raw joules, wall seconds, the reference readings."""

    joules: float
    joules_raw: float
    seconds: float
    source: str
    estimated: bool
    ref_before: float = math.nan
    ref_after: float = math.nan
    ref_nominal: float = math.nan

    @property
    def ref_joules(self) -> float:
        return (self.ref_before + self.ref_after) / 2


def _reading(reference: Reference | None, meter, warm: bool) -> float:
    if reference is None:
        return math.nan
    if warm:
        reference.run()
    return reference.measure(meter)


def measure_run(meter, fn, reference: Reference | None = None, nominal: float | None = None, *,
                measured=None) -> RunMeasurement:
    """Measure ``fn()`` with ``meter``; with a ``reference`` (and its ``nominal`` joules), measure
    the reference right before and right after and correct the run (see the module doc).
    ``measured``: instead of ``fn``, a callable that measures the run elsewhere (in a fresh
    process, :mod:`.isolate`) and returns (joules, seconds, meter source, estimated); each
    reading is then preceded by one untimed reference run, because this process's caches went
    cold while the run's process worked."""
    before = _reading(reference, meter, warm=measured is not None)
    if measured is None:
        with meter.measure() as m:
            fn()
        raw, seconds, source, estimated = float(m.joules), float(m.seconds), m.source, bool(m.estimated)
    else:
        raw, seconds, source, estimated = measured()
    after = _reading(reference, meter, warm=measured is not None)
    result = RunMeasurement(float(raw), float(raw), float(seconds), source, bool(estimated))
    if reference is not None:
        if nominal is None or not nominal > 0:
            raise ValueError("a reference-corrected run needs the file's positive nominal reference joules")
        result.ref_before, result.ref_after, result.ref_nominal = before, after, float(nominal)
        ref = result.ref_joules
        result.joules = raw * nominal / ref if ref > 0 else math.nan
    return result


def _cv(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    if len(values) < 2 or values.mean() <= 0:
        return math.nan
    return float(values.std(ddof=1) / values.mean())


def cv_by_config(runs: pd.DataFrame) -> pd.DataFrame:
    """Per configuration: runs, CV of ``joules_raw`` (``cv_raw``) and of the corrected ``joules``
    (``cv_corrected``, NaN where the runs were not corrected), in %."""
    from .runs import config_keys, config_label

    runs = runs.reset_index(drop=True)  # groups by label: rows of several files may repeat labels
    keys = config_keys(runs)
    rows = []
    for _key, idx in runs.groupby(keys, sort=False).groups.items():
        group = runs.loc[idx]
        raw = pd.to_numeric(group.get("joules_raw", group["joules"]), errors="coerce").to_numpy(float)
        corrected = pd.to_numeric(group["joules"], errors="coerce").to_numpy(float)
        has_ref = "ref_nominal" in group and pd.to_numeric(group["ref_nominal"], errors="coerce").notna().all()
        rows.append({"config": config_label(group.iloc[0]), "runs": len(group), "cv_raw": 100 * _cv(raw),
                     "cv_corrected": 100 * _cv(corrected) if has_ref else math.nan})
    return pd.DataFrame(rows, columns=["config", "runs", "cv_raw", "cv_corrected"])


def format_cv(table: pd.DataFrame) -> str:
    """One line: mean and median per-configuration CV, raw and corrected."""
    if table.empty or table["cv_raw"].notna().sum() == 0:
        return "run-to-run CV: needs 2 or more runs per configuration"
    raw = table["cv_raw"].dropna()
    n = f"{len(raw)} configuration{'s' if len(raw) != 1 else ''}"
    text = f"run-to-run CV per configuration ({n}): raw mean {raw.mean():.1f} %, median {raw.median():.1f} %"
    corr = table["cv_corrected"].dropna()
    if len(corr):
        text += f"; reference-corrected mean {corr.mean():.1f} %, median {corr.median():.1f} %"
    return text


def recorrect(runs: pd.DataFrame, nominal: float, path=None, window: int = RUN_WINDOW) -> pd.DataFrame:
    """``runs`` (rows in the order they were measured) with every run's ``joules`` expressed at
    ``nominal``: ``joules_raw × nominal / ref``, ``ref`` the median of the reference readings
    (before and after) of the runs from ``window`` rows before to ``window`` rows after it. A run
    measured without the reference is an error naming the file ``path``."""
    out = runs.copy()
    column = lambda name: pd.to_numeric(out.get(name, pd.Series(np.nan, index=out.index)), errors="coerce")
    raw, before, after = column("joules_raw"), column("ref_before"), column("ref_after")
    bad = ~(raw.notna() & before.gt(0) & after.gt(0))
    if len(out) and bad.to_numpy().any():
        where = f"{path}: " if path is not None else ""
        raise ValueError(f"{where}{int(bad.sum())} run(s) were measured without the drift reference (no "
                         "joules_raw/ref_before/ref_after); a drift-corrected calibration needs every run "
                         "corrected: use another runs file, or calibrate with --no-reference")
    readings = np.column_stack([before.to_numpy(float), after.to_numpy(float)])
    n = len(out)
    ref = [float(np.median(readings[max(0, i - window):i + window + 1])) for i in range(n)]
    out["joules"] = raw.to_numpy(float) * nominal / np.asarray(ref, dtype=float)
    out["ref_nominal"] = float(nominal)
    return out


def calibration_noise(runs: pd.DataFrame, nominal: float | None = None) -> dict:
    """What a calibration's runs say about its machine's noise, for a law file's ``meta``:
    ``noise_cv``, the median over configurations of the raw run-to-run coefficient of variation
    (a fraction; None with fewer than 2 runs per configuration), and ``runs_state``, the runs'
    median reference reading over ``nominal`` (None without the reference)."""
    cv = cv_by_config(runs)["cv_raw"].dropna() if len(runs) else pd.Series(dtype=float)
    out = {"noise_cv": float(cv.median()) / 100 if len(cv) else None, "runs_state": None}
    readings = pd.concat([pd.to_numeric(runs.get(c, pd.Series(dtype=float)), errors="coerce")
                          for c in ("ref_before", "ref_after")]).dropna()
    readings = readings[readings > 0]
    if nominal is not None and nominal > 0 and len(readings):
        out["runs_state"] = float(readings.median()) / float(nominal)
    return out


def noise_notes(meta: dict) -> list[str]:
    """The notes a law's ``meta`` (:func:`calibration_noise`) calls for: a noisy machine
    (:data:`NOISY_CV`) and a machine whose state moved between the two stages of its calibration
    (:data:`STATE_SHIFT`)."""
    notes = []
    cv, state = meta.get("noise_cv"), meta.get("runs_state")
    if isinstance(cv, (int, float)) and cv > NOISY_CV:
        notes.append(f"calibrated on a noisy machine: repeats of one run differed by {100 * cv:.1f} % (median "
                     "run-to-run CV), so this law's predictions cannot be checked to better than that; calibrate "
                     "again when nothing else runs on the machine")
    if isinstance(state, (int, float)) and state > 0 and max(state, 1 / state) > STATE_SHIFT:
        notes.append(f"the machine's state moved during calibration: the drift reference cost ×{state:.2f} as much "
                     "during the runs as during the microbenchmarks; joules are predicted at the microbenchmarks' "
                     "state and seconds at the runs', so the two differ by about that factor")
    return notes


__all__ = ["Reference", "DriftTrack", "RunMeasurement", "measure_run", "recorrect", "cv_by_config", "format_cv",
           "calibration_noise", "noise_notes", "NOISY_CV", "STATE_SHIFT",
           "REFERENCE_STEPS", "TRACK_SECONDS"]
