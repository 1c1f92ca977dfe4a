"""One drift nominal for a whole calibration: the reference track of the microbenchmarks and the
windowed correction of the step-level runs, on fakes whose drift is planted."""

import json

import pandas as pd
import pytest
import torch

from torch_tos.energy import reference as reference_module
from torch_tos.energy.benchfile import measure_profile
from torch_tos.energy.benchsuite import Workload
from torch_tos.energy.device import resolve_device
from torch_tos.energy.meters.base import Meter
from torch_tos.energy.reference import DriftTrack, Reference, recorrect

from test_microbench import _tiny


def test_track_interpolates_smoothed_readings_and_averages_an_interval():
    track = DriftTrack([(0.0, 2.0), (10.0, 4.0), (20.0, 4.0)], nominal=2.0)
    # smoothed readings: median(2, 4) = 3 at t=0, median(2, 4, 4) = 4 at t=10, median(4, 4) = 4 at t=20
    assert track.at(0.0) == pytest.approx(3.0) and track.at(5.0) == pytest.approx(3.5)
    assert track.at(-5.0) == pytest.approx(3.0) and track.at(99.0) == pytest.approx(4.0)
    # from t=5 to t=15: ends 3.5 and 4, the reading at 10 inside: mean 3.833…; factor = 2 / that
    assert track.factor(5.0, 15.0) == pytest.approx(2.0 / ((3.5 + 4.0 + 4.0) / 3))
    assert track.factor(15.0, 5.0) == track.factor(5.0, 15.0)
    assert DriftTrack(nominal=2.0).factor(1.0, 2.0) == 1.0  # no readings: the nominal holds
    assert DriftTrack([(0.0, 2.0), (10.0, 4.0), (20.0, 4.0)]).nominal == 4.0  # by default, the median reading
    with pytest.raises(ValueError, match="no reading"):
        DriftTrack().nominal


def test_one_reading_caught_by_a_burst_does_not_move_the_track():
    steady = [(float(t), 1.0) for t in range(6)]
    burst = DriftTrack(steady[:3] + [(3.0, 3.0)] + steady[4:])
    assert burst.at(3.0) == pytest.approx(1.0) and burst.factor(0.0, 5.0) == pytest.approx(1.0)


@pytest.mark.parametrize("nominal, samples", [(0.0, ()), (float("nan"), ()), (True, ()), (1.0, [(0.0, -1.0)]),
                                              (1.0, [(float("inf"), 1.0)])])
def test_a_track_of_bad_readings_is_refused(nominal, samples):
    with pytest.raises(ValueError, match="drift track"):
        DriftTrack(samples, nominal=nominal)


def _runs(readings, raw=1.0):
    return pd.DataFrame([{"family": "x", "joules": raw, "joules_raw": raw, "ref_before": b, "ref_after": a}
                         for b, a in readings])


def test_runs_are_corrected_by_the_median_of_their_neighbours_readings():
    runs = _runs([(1.0, 1.0), (1.0, 1.2), (1.2, 1.2), (1.2, 1.2), (1.2, 1.2)])
    out = recorrect(runs, 2.0, window=1)
    # row 0 reads rows 0-1 (1, 1, 1, 1.2 → 1); row 1 rows 0-2 (median of 1,1,1,1.2,1.2,1.2 = 1.1); row 4 rows 3-4 (1.2)
    assert out["joules"].tolist() == pytest.approx([2.0, 2.0 / 1.1, 2.0 / 1.2, 2.0 / 1.2, 2.0 / 1.2])
    assert (out["ref_nominal"] == 2.0).all() and runs["joules"].tolist() == [1.0] * 5  # the input is not changed
    spike = _runs([(1.0, 1.0), (1.0, 1.0), (5.0, 1.0), (1.0, 1.0), (1.0, 1.0)])
    assert recorrect(spike, 1.0)["joules"].tolist() == pytest.approx([1.0] * 5)


def test_runs_measured_without_the_reference_cannot_be_recorrected(tmp_path):
    runs = _runs([(1.0, 1.0), (float("nan"), float("nan"))])
    with pytest.raises(ValueError, match=r"runs\.csv: 1 run\(s\) were measured without the drift reference"):
        recorrect(runs, 1.0, tmp_path / "runs.csv")


class SlowingMeter(Meter):
    """Every window reads ``factor`` joules per unit of work (one unit when no reference work was
    done inside it) over 0.5 s: ``factor`` is the machine's current cost of work, set by the test."""

    name = source = "fake"
    estimated = True

    def __init__(self):
        self.factor, self.work = 1.0, 0.0

    def _begin(self):
        return self.work

    def _end(self, state, m):
        units = self.work - state
        m.joules, m.seconds = (units or 1.0) * self.factor, 0.5


def _profile(path, meter, reference=None):
    work = [Workload("tiny", (16, 32, 64, 128, 256, 512), _tiny)]
    return measure_profile(resolve_device("cpu"), ["float32"], meter, path, workloads=work, progress=False,
                           windows=1, reference=reference)


def _ratios(profile):
    return [p["joules"] / p["seconds"] for p in profile.points]


def test_microbenchmarks_are_expressed_at_the_nominal_when_the_machine_slows(tmp_path, monkeypatch):
    monkeypatch.setattr(reference_module, "TRACK_SECONDS", 0.0)  # a reading before every workload size
    # every window reads 1 J × the machine's factor over 0.5 s, whatever its repeats: 2 J/s at factor 1
    steady = _profile(tmp_path / "steady.jsonl", SlowingMeter())
    assert _ratios(steady) == pytest.approx([2.0] * len(steady.points)) and steady.reference is None
    meter = SlowingMeter()
    flat = _profile(tmp_path / "flat.jsonl", meter, Reference(workload=lambda: setattr(meter, "work", meter.work + 10)))
    assert flat.reference == 10.0 and _ratios(flat) == pytest.approx([2.0] * len(flat.points))  # no drift: as measured

    meter = SlowingMeter()

    def reference_work():  # a warm-up, then readings: the 4th reading and everything after run 3× slower
        meter.work += 10.0
        if meter.work >= 50.0:
            meter.factor = 3.0

    slowed = _profile(tmp_path / "slowed.jsonl", meter, Reference(workload=reference_work))
    lines = [json.loads(x) for x in (tmp_path / "slowed.jsonl").read_text().splitlines()]
    readings = [x["ref"][1] for x in lines if "ref" in x]
    assert readings == [10.0] * 3 + [30.0] * 5  # begun, before each of the 6 sizes, at the end
    assert slowed.reference == 30.0  # the median reading
    # corrected to 30 J per reference: 2 J/s × 30 / 10 = 6 J/s before the slow-down and 6 × 30 / 30 after;
    # the one size measured at factor 1 but read between a 10 J and a 30 J reading is corrected halfway
    ratios = _ratios(slowed)
    exact = [r for r in ratios if r == pytest.approx(6.0)]
    assert len(exact) >= 2 * len(ratios) // 3 and all(2.0 < r < 6.0 for r in ratios if r != pytest.approx(6.0))
    assert slowed.floor["joules"] == pytest.approx(6.0 * slowed.floor["seconds"])
    for _, secs, joules in slowed.alloc:
        assert joules == pytest.approx(6.0 * secs)
    raw = [p for x in lines if "points" in x for p in x["points"]]
    assert [p["seconds"] for p in slowed.points] == [p["seconds"] for p in raw]  # seconds as measured
    with pytest.raises(ValueError, match="measured with the drift reference: calibrate with --reference"):
        _profile(tmp_path / "slowed.jsonl", meter)


@pytest.mark.slow
def test_a_drift_corrected_calibration_puts_its_runs_at_the_profiles_nominal(tmp_path):
    from energy_fakes import write_bench

    from torch_tos.energy import CpuTimeMeter, load_law
    from torch_tos.energy.calibrate import calibrate, paths
    from torch_tos.energy.runs import read_runs

    out = tmp_path / "law.json"
    runs, bench = paths(out)
    write_bench(bench, reference=0.5)  # microbenchmarks "done" at a nominal of 0.5 J
    cal = calibrate(out, meter=CpuTimeMeter(), dtypes=["float32"], repeats=2, families=["mlp", "ffn"], scale=0.2,
                    progress=False, reference=True)
    assert load_law(out).meta["reference_joules"] == 0.5
    measured = read_runs(runs)
    assert (measured["ref_nominal"] == 0.5).all() and (measured["ref_before"] > 0).all()
    expected = recorrect(measured, 0.5)["joules"].to_numpy()
    assert cal.runs["joules"].to_numpy() == pytest.approx(expected)
    with pytest.raises(ValueError, match="measured with the drift reference: calibrate with --reference"):
        calibrate(out, meter=CpuTimeMeter(), dtypes=["float32"], repeats=2, families=["mlp", "ffn"], scale=0.2,
                  progress=False, reference=False)  # the same files without the reference: refused


@pytest.mark.slow
def test_each_shard_of_a_drift_corrected_calibration_keeps_its_own_nominal(tmp_path):
    from energy_fakes import write_bench

    from torch_tos.energy import CpuTimeMeter, load_law
    from torch_tos.energy.shards import calibrate_shard, merge_shards, shard_paths

    out = tmp_path / "law.json"
    kw = dict(meter=CpuTimeMeter(), dtypes=["float32"], repeats=2, families=["mlp", "ffn", "conv"], scale=0.1,
              progress=False, reference=True)
    for i, nominal in ((1, 0.5), (2, 0.8)):  # two hosts of one machine model, each at its own state
        write_bench(shard_paths(out, i, 2)["bench"], reference=nominal)
        calibrate_shard(out, (i, 2), **kw)
    cal = merge_shards(out)
    for i, nominal in ((1, 0.5), (2, 0.8)):
        path = shard_paths(out, i, 2)["runs"]
        mine = cal.runs[cal.runs["file"] == str(path)]
        raw = pd.read_csv(path)
        assert len(mine) == len(raw) and (mine["ref_nominal"] == nominal).all()
        assert mine["joules"].to_numpy() == pytest.approx(recorrect(raw, nominal)["joules"].to_numpy())
    assert load_law(out).meta["shards"] == 2


class TwoJoules(Meter):
    """Every window reads 2 J over 0.5 s."""

    name = source = "fake"
    estimated = True

    def _begin(self):
        return 0

    def _end(self, state, m):
        m.joules, m.seconds = 2.0, 0.5


def test_a_prediction_at_the_machines_state_now_rescales_every_joule():
    from energy_fakes import synthetic_law
    from torch import nn

    law = synthetic_law()
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    with pytest.raises(ValueError, match="calibrated without the drift reference"):
        law.machine_state(TwoJoules())
    law.meta.update(reference_joules=0.5, reference_steps=3)
    assert law.machine_state(TwoJoules()) == 4.0  # the reference reads 2 J now, 0.5 J at calibration
    p = law.predict(model, torch.randn(4, 8), steps=20, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    q = p.rescaled(4.0)
    assert (q.joules, q.joules_low, q.joules_high) == pytest.approx((4 * p.joules, 4 * p.joules_low, 4 * p.joules_high))
    assert q.per_layer["joules"].sum() == pytest.approx(q.joules) and q.fixed_joules == pytest.approx(4 * p.fixed_joules)
    assert sum(j for j, _ in q.by_row.values()) + q.fixed_joules == pytest.approx(q.joules)
    assert sum(q.terms["joules"].values()) == pytest.approx(q.joules)
    assert (q.seconds, q.seconds_high) == (p.seconds, p.seconds_high) and p.state == 1.0 and q.state == 4.0
    assert "costs ×4.000 of the calibration's" in str(q) and "current state" not in str(p)
    for bad in (0.0, -1.0, float("inf"), True, "2"):
        with pytest.raises(ValueError, match="machine-state factor"):
            p.rescaled(bad)


def test_predict_now_on_the_command_line(tmp_path, capsys):
    from energy_fakes import synthetic_law

    from torch_tos.cli.main import main

    law = synthetic_law()
    law.save(tmp_path / "plain.json")
    linear = ["predict", "torch.nn:Linear", "--model-kwargs", '{"in_features": 4, "out_features": 2}', "--input-shape",
              "3,4", "--steps", "10", "--now"]
    assert main([*linear, "--law", str(tmp_path / "plain.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--now:" in err and "without the drift reference" in err
    law.meta.update(reference_joules=1e-3, reference_steps=2, meter="cputime", threads=1)
    law.save(tmp_path / "law.json")
    assert main([*linear, "--law", str(tmp_path / "law.json")]) == 0
    assert "energy at the machine's current state: its reference workload costs ×" in capsys.readouterr().out
