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
