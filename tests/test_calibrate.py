"""The calibration suite spans what real models do; calibrate() fits, saves and resumes."""

import json

import pytest

from torch_tos.energy import CpuTimeMeter
from torch_tos.energy.calibrate import SUITE, calibrate, runs_path, suite_workloads
from torch_tos.energy.evaluate import DEFAULT_FEATURES, DEFAULT_LAW, STEP_LAW_NAME
from torch_tos.energy.runner import count_features


@pytest.fixture(scope="module")
def suite_features():
    out = {}
    for w in suite_workloads():
        if w.config in out:  # both lengths of an entry count the same per step
            continue
        X, y = w.data()
        model = w.family.build(w.config)
        out[w.config] = (count_features(w, X, y)[0], sum(p.numel() for p in model.parameters()))
    return out


def test_the_suite_spans_calls_parameters_and_op_classes(suite_features):
    feats = [f for f, _ in suite_features.values()]
    params = [n for _, n in suite_features.values()]
    calls = [f["calls"] for f in feats]
    assert min(calls) < 30 and max(calls) > 300  # tens to hundreds of kernel calls per step
    assert min(params) < 1e4 and max(params) > 1e7  # thousands to tens of millions of parameters
    by_family = {}
    for config, (f, _) in suite_features.items():
        by_family.setdefault(config.family, []).append(f)
    assert set(by_family) >= {"ffn", "cnn", "mlp", "mlpdrop", "conv", "dwconv", "resnet", "mobile", "transformer", "embed", "lstm", "gru"}
    assert all(f["tos_dwconv"] > 0 for f in by_family["dwconv"])  # depthwise convs
    assert all(f["calls_norm"] > 0 for fam in ("conv", "dwconv", "transformer") for f in by_family[fam])
    assert all(f["calls_rng"] > 0 for fam in ("mlpdrop", "transformer") for f in by_family[fam])  # dropout
    assert all(f["calls_memory"] > 0 for f in by_family["embed"])  # embedding gather / dense gradient
    maps = {c.input_size for c in suite_features if c.family == "conv"}
    widths = {c.width for c in suite_features if c.family == "conv"}
    assert min(maps) <= 2 and max(maps) >= 64 and min(widths) <= 8 and max(widths) >= 512


def test_every_entry_runs_at_two_lengths():
    ws = suite_workloads()
    assert len(ws) == 2 * len(SUITE)
    assert all(a.config == b.config and a.epochs < b.epochs for a, b in zip(ws[::2], ws[1::2]))


def test_calibrate_fits_saves_and_resumes(tmp_path):
    law_file = tmp_path / "law.json"
    kw = dict(meter=CpuTimeMeter(), repeats=2, families=["ffn", "mlp"], scale=0.05, progress=False)
    cal = calibrate(law_file, **kw)
    assert cal.runs_path == runs_path(law_file) == tmp_path / "law.runs.csv"
    saved = json.loads(law_file.read_text())
    assert "fingerprint" in json.dumps(saved) or "machine" in json.dumps(saved)
    assert len(cal.runs) == 2 * len(suite_workloads(families=["ffn", "mlp"], scale=0.05))
    assert set(cal.errors["split"]) == {"loco", "lofo"}
    assert {"noise floor", "mean-only", "TOs+calls+bytes"} <= set(cal.errors["law"])
    # the default law (15 features + e_step + e_run = 17 coefficients) is judged only when a held-out
    # fold can fit it: at most half as many coefficients as runs
    assert (DEFAULT_LAW in set(cal.errors["law"])) == (len(DEFAULT_FEATURES) + 2 <= len(cal.runs) // 2)
    assert STEP_LAW_NAME in set(cal.errors["law"])
    seen = []
    again = calibrate(law_file, callback=seen.append, **kw)  # resumes: nothing left to measure
    assert seen == [] and len(again.runs) == len(cal.runs)


def test_a_measured_feature_is_refused_before_any_run(tmp_path):
    with pytest.raises(ValueError, match="measured column"):
        calibrate(tmp_path / "law.json", features=("tos", "joules"), meter=CpuTimeMeter(), progress=False)
    assert not (tmp_path / "law.runs.csv").exists()
