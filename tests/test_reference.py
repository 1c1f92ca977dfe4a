"""Drift correction by a reference workload, on a synthetic drifting meter."""

import math

import numpy as np
import pandas as pd
import pytest

from torch_tos.energy import CpuTimeMeter, sweep
from torch_tos.energy.meters import Meter
from torch_tos.energy.reference import Reference, cv_by_config, format_cv, measure_run


class DriftingMeter(Meter):
    """Joules = work units done inside the window × a machine factor that drifts slowly with
    the window index n: 1 + 0.5·sin(n / 7) (±50 %, period ~44 windows)."""

    name = source = "fake"
    estimated = True

    def __init__(self):
        self.work, self.windows = 0.0, 0

    def factor(self, n):
        return 1 + 0.5 * math.sin(n / 7)

    def _begin(self):
        self.windows += 1
        return self.work, self.windows

    def _end(self, state, m):
        work0, n = state
        m.joules = (self.work - work0) * self.factor(n)


def test_measure_run_corrects_a_drifting_series():
    meter = DriftingMeter()

    def do(units):
        def f():
            meter.work += units
        return f

    ref = Reference(workload=do(10.0))
    nominal = ref.nominal(meter)  # median of 5 readings after a warm-up
    rows = []
    for repeat in range(12):
        for units, name in ((100.0, "small"), (400.0, "large")):
            m = measure_run(meter, do(units), ref, nominal)
            rows.append({"family": name, "repeat": repeat, "joules": m.joules, "joules_raw": m.joules_raw,
                         "ref_nominal": m.ref_nominal, "ref_before": m.ref_before, "ref_after": m.ref_after})
            # the recorded relation, exactly
            assert m.joules == pytest.approx(m.joules_raw * nominal / ((m.ref_before + m.ref_after) / 2))
    table = cv_by_config(pd.DataFrame(rows))
    # raw: the ±50 % drift shows as a large CV; corrected: what is left is the drift between the
    # reference windows and the run (one window apart on a 44-window period): < 3 %
    assert (table["cv_raw"] > 20).all()
    assert (table["cv_corrected"] < 3).all()
    corrected = pd.DataFrame(rows).groupby("family")["joules"].mean()
    assert corrected["large"] / corrected["small"] == pytest.approx(4.0, rel=0.02)  # work ratio restored
    assert "reference-corrected mean" in format_cv(table)


def test_without_reference_raw_and_joules_are_the_same():
    meter = DriftingMeter()

    def f():
        meter.work += 3.0

    m = measure_run(meter, f)
    assert m.joules == m.joules_raw == pytest.approx(3.0 * meter.factor(1))
    assert math.isnan(m.ref_nominal)
    table = cv_by_config(pd.DataFrame([{"family": "x", "joules": 1.0}, {"family": "x", "joules": 1.2}]))
    assert np.isnan(table["cv_corrected"]).all() and table["cv_raw"].iloc[0] == pytest.approx(
        100 * np.std([1.0, 1.2], ddof=1) / 1.1)


def test_a_reference_that_reads_nothing_is_refused():
    meter = DriftingMeter()
    with pytest.raises(ValueError, match="cannot correct drift"):
        Reference(workload=lambda: None).nominal(meter)


def test_sweep_records_raw_and_corrected_values_with_one_nominal_per_file(tmp_path):
    out = tmp_path / "runs.csv"
    kw = dict(widths=[4], activations=["tanh"], epochs=1, progress=False, reference=Reference(steps=5))
    df = sweep("ffn", out, meter=CpuTimeMeter(), repeats=2, **kw)
    ref = (df["ref_before"] + df["ref_after"]) / 2
    assert np.allclose(df["joules"], df["joules_raw"] * df["ref_nominal"] / ref, rtol=1e-9)
    assert df["ref_nominal"].nunique() == 1 and (df["ref_before"] > 0).all()
    df = sweep("ffn", out, meter=CpuTimeMeter(), repeats=3, **kw)  # a resume keeps the file's nominal
    assert len(df) == 3 and df["ref_nominal"].nunique() == 1


def _runs(raw, before, after):
    """A runs table of two configurations (a, b), runs in this order: a, b, a, b, …"""
    n = len(raw)
    return pd.DataFrame({"family": ["mlp"] * n, "width": [8 if i % 2 == 0 else 16 for i in range(n)],
                         "depth": 1, "batch_size": 4, "epochs": 1, "steps": 10, "threads": 1, "mode": "training",
                         "dtype": "float32", "device": "cpu", "repeat": [i // 2 for i in range(n)],
                         "joules": raw, "joules_raw": raw, "ref_before": before, "ref_after": after})


def test_calibration_noise_is_the_median_raw_cv_and_the_runs_state_over_the_nominal():
    from torch_tos.energy.reference import calibration_noise

    # a: 1.0 and 1.2 (mean 1.1, sd 0.1414: CV 12.86 %); b: 2.0 and 2.0 (CV 0): median 6.43 %
    runs = _runs([1.0, 2.0, 1.2, 2.0], before=[0.2, 0.3, 0.4, 0.5], after=[0.3, 0.4, 0.5, 0.6])
    out = calibration_noise(runs, nominal=0.2)
    assert out["noise_cv"] == pytest.approx(0.02 ** 0.5 / 1.1 / 2, rel=1e-9)
    # readings 0.2 … 0.6, eight of them: median (0.4 + 0.4) / 2 = 0.4 → twice the nominal
    assert out["runs_state"] == pytest.approx(2.0)
    assert calibration_noise(runs)["runs_state"] is None  # no nominal: no drift reference
    assert calibration_noise(runs.iloc[:2])["noise_cv"] is None  # one run per configuration: no CV


def test_noise_notes_name_a_noisy_machine_and_a_state_that_moved_but_not_a_quiet_one():
    from torch_tos.energy.reference import NOISY_CV, STATE_SHIFT, noise_notes

    assert noise_notes({"noise_cv": NOISY_CV / 2, "runs_state": 1.0}) == []
    assert noise_notes({}) == []  # a law file from before these figures were recorded
    assert noise_notes({"noise_cv": None, "runs_state": None}) == []
    (noisy,) = noise_notes({"noise_cv": 0.111, "runs_state": 1.0})
    assert "noisy machine" in noisy and "11.1 %" in noisy
    for state in (STATE_SHIFT * 1.2, 1 / (STATE_SHIFT * 1.2)):
        (moved,) = noise_notes({"noise_cv": 0.01, "runs_state": state})
        assert f"×{state:.2f}" in moved and "seconds" in moved
    assert noise_notes({"runs_state": STATE_SHIFT * 0.99}) == []
