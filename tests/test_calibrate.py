"""The calibration suite spans what real steps do; calibrate() measures, fits, saves, resumes and
refuses runs that cannot identify the law or pool two machines."""

import pandas as pd
import pytest

from torch_tos.energy import CpuTimeMeter, load_law
from torch_tos.energy.calibrate import SUITE, calibrate, fit_cost_model, paths, suite_workloads

from energy_fakes import synthetic_profile, write_bench


def test_the_suite_spans_modes_dtypes_optimizers_and_families():
    modes = {e[7] for e in SUITE}
    assert modes == {"training", "inference"}
    for mode in modes:
        assert len({e[0] for e in SUITE if e[7] == mode}) >= 8  # families per mode
    assert {e[8] for e in SUITE} >= {None, "float64", "bfloat16"}
    assert {e[9] for e in SUITE if e[7] == "training"} >= {None, "sgd_momentum", "adam", "adamw"}
    work = suite_workloads()
    two = [w for w in work if w.epochs > 1]
    assert len(two) > len(SUITE) // 2  # most entries run at two lengths: per-step vs per-run costs
    assert {w.dtype for w in suite_workloads(dtypes={"float32"})} == {"float32"}


@pytest.mark.slow
def test_calibrate_fits_saves_and_resumes(tmp_path):
    out = tmp_path / "law.json"
    runs, bench = paths(out)
    write_bench(bench)  # the microbenchmarks "done": the calibration measures its suite
    kw = dict(meter=CpuTimeMeter(), dtypes=["float32"], repeats=2, families=["mlp", "conv", "transformer", "ffn"],
              scale=0.2, progress=False)
    cal = calibrate(out, **kw)
    assert set(cal.law.modes) == {"training", "inference"} and out.exists() and runs.exists()
    law = load_law(out)
    assert str(law) == str(cal.law)
    fp = law.fingerprints
    assert fp["profile"]["cpu"] and fp["runs"][0]["machine"] == fp["profile"]["cpu"]
    assert {"loco", "lofo"} <= set(cal.errors["split"]) and "cost model" in set(cal.errors["law"])
    # the machine's noise is recorded from the runs (CV of their raw repeats, reference over nominal)
    from torch_tos.energy.reference import calibration_noise, noise_notes

    expected = calibration_noise(pd.read_csv(runs), law.meta["reference_joules"])
    assert law.meta["noise_cv"] == pytest.approx(expected["noise_cv"]) and law.meta["noise_cv"] > 0
    assert law.meta["runs_state"] == pytest.approx(expected["runs_state"])
    assert cal.notes == noise_notes(law.meta)
    size = runs.stat().st_size
    again = calibrate(out, **kw)  # resumes: nothing measured twice
    assert runs.stat().st_size == size and len(again.runs) == len(cal.runs)


def test_runs_of_one_length_or_of_two_machines_are_refused():
    from test_steplaw import priced

    prof = synthetic_profile()
    runs = priced()
    with pytest.raises(ValueError, match="add runs of another length"):
        fit_cost_model(prof, runs[runs["steps"] == 20].reset_index(drop=True))
    pooled = runs.assign(host="a", machine="cpu")
    pooled.loc[pooled.index[0], "host"] = "b"
    with pytest.raises(ValueError, match="measured on 2 machines.*fit the runs of each machine separately"):
        fit_cost_model(prof, pooled)
    law = fit_cost_model(prof, runs.assign(host="a", machine="cpu", torch="2", threads=1))
    assert law.fingerprints["runs"] == [{"host": "a", "machine": "cpu", "torch": "2", "threads": 1}]


def test_output_paths_are_checked_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        calibrate(tmp_path / "no" / "law.json", meter=CpuTimeMeter(), progress=False)
    assert not any(tmp_path.iterdir())
    with pytest.raises(ValueError, match="unknown dtype"):
        calibrate(tmp_path / "law.json", dtypes=["float8"], meter=CpuTimeMeter(), progress=False)
