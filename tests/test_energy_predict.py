"""Predicting an unmeasured model from a law: planted law on counts, per-layer joules, meta
counting, extrapolation warnings, and the predict / fit commands' bad input."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from torch_tos.cli.main import main
from torch_tos.counts import Counts
from torch_tos.energy import EnergyModel
from torch_tos.energy.predict import ExtrapolationWarning, predict_counts

F32 = torch.float32
pytestmark = pytest.mark.filterwarnings("ignore::torch_tos.energy.predict.ExtrapolationWarning")


def planted_law(e_step=1e-3, b=2e-12, c=1e-4, d=1e-9, e_run=0.5, lo=(0, 0, 0), hi=(1e15, 1e4, 1e10)):
    """A per-step law with exactly these coefficients (fitted to noiseless runs of it)."""
    rng = np.random.default_rng(0)
    n = 40
    df = pd.DataFrame({"family": "p", "width": np.arange(n), "steps": rng.choice([10, 100], n).astype(float),
                       "tos": rng.uniform(lo[0], hi[0], n), "calls": rng.uniform(lo[1], hi[1], n),
                       "bytes": rng.uniform(lo[2], hi[2], n), "meter": "cputime"})
    df["joules"] = df.steps * (e_step + b * df.tos + c * df.calls + d * df.bytes) + e_run
    law = EnergyModel(features=("tos", "calls", "bytes")).fit(df)
    np.testing.assert_allclose(law.coef_, [b, c, d], rtol=1e-6)
    return law


def test_planted_law_on_hand_counts():
    law = planted_law()
    counts = Counts()
    counts.add(("fc", "forward", F32, "aten.mm"), (6, 0, 8, 0, 0), flops=16, bytes=100)
    counts.add(("fc", "forward", F32, "aten.t"), calls=2)  # a view: no kernel, no bytes
    counts.add(("(optimizer)", "optimizer", F32, "aten.add_"), (3, 0, 3, 0, 0), bytes=36)
    # TOs: fc 6·236 + 8·12736.25 = 103306; optimizer 3·236 + 3·12736.25 = 38916.75
    # kernels: mm + add_ = 2 calls; bytes 136
    p = predict_counts(law, counts, steps=1000)
    var_fc = 2e-12 * 103306 + 1e-4 + 1e-9 * 100
    var_opt = 2e-12 * 38916.75 + 1e-4 + 1e-9 * 36
    expected = 1000 * (1e-3 + var_fc + var_opt) + 0.5
    assert p.joules == pytest.approx(expected, rel=1e-6)
    assert p.fixed == pytest.approx(1000 * 1e-3 + 0.5, rel=1e-6)
    layers = p.per_layer.set_index("layer")["joules"]
    assert layers["fc"] == pytest.approx(1000 * var_fc, rel=1e-6)
    assert layers["(optimizer)"] == pytest.approx(1000 * var_opt, rel=1e-6)
    assert layers.sum() == pytest.approx(p.joules, rel=1e-12)
    by_row = law.joules_by_row(counts)
    assert by_row[("fc", "forward", F32, "aten.t")] == 0.0
    assert sum(by_row.values()) + law.fixed_joules(1) == pytest.approx(predict_counts(law, counts, 1).joules)
    assert p.low <= p.joules <= p.high
    assert "predicted energy of 1000 training steps" in str(p)


def test_predict_model_on_meta_matches_its_counts():
    law = planted_law()
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    before = [p.detach().clone() for p in model.parameters()]
    p = law.predict(model, torch.randn(4, 8), steps=50)
    f = p.features
    assert p.report.metadata["device"] == "meta"
    expected = 50 * (law.e_step_ + law.coef_ @ [f["tos"], f["calls"], f["bytes"]]) + law.e_run_
    assert p.joules == pytest.approx(expected, rel=1e-9)
    assert f["tos"] == pytest.approx(p.report.tos) and f["calls"] > 0 and f["bytes"] > 0
    assert p.per_layer["joules"].sum() == pytest.approx(p.joules, rel=1e-9)
    assert {"0", "2", "(optimizer)", "(fixed)"} <= set(p.per_layer["layer"])
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # never touched


def test_predicts_a_model_too_big_for_memory():
    law = planted_law()
    with torch.device("meta"):
        big = nn.Sequential(*[nn.Linear(16384, 16384) for _ in range(8)])  # 2.1 G parameters
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)
        p = law.predict(big, torch.empty(2, 16384, device="meta"), steps=10)
    assert p.joules > 0 and p.features["tos"] > 1e13


def test_extrapolation_warning():
    law = planted_law(hi=(1e6, 5, 1e3))
    with pytest.warns(ExtrapolationWarning, match="calls per step .* outside the calibrated range"):
        p = law.predict(nn.Linear(64, 64), torch.randn(8, 64))
    assert any("outside the calibrated range" in w for w in p.warnings)


def test_predict_needs_the_per_step_law():
    law = EnergyModel("tos").fit([1e12, 2e12, 3e12], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="paper's polynomial law"):
        law.predict(nn.Linear(2, 2), torch.randn(1, 2))
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        planted_law().predict(nn.Linear(2, 2), torch.randn(1, 2), steps=0)


# -- the commands --------------------------------------------------------------------------
def one_line_error(capsys, *argv, match):
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("torch-tos: error:")
    assert match in err, err


def test_predict_command(tmp_path, capsys):
    law = planted_law()
    law.save(tmp_path / "law.json")
    rc = main(["predict", "torch.nn:Linear", "--model-kwargs", '{"in_features": 4, "out_features": 2}',
               "--input-shape", "3,4", "--steps", "100", "--law", str(tmp_path / "law.json")])
    out = capsys.readouterr().out
    assert rc == 0 and "predicted energy of 100 training steps" in out and "interval" in out
    assert main(["predict", "torch.nn:Linear", "--model-kwargs", '{"in_features": 4, "out_features": 2}',
                 "--input-shape", "3,4", "--law", str(tmp_path / "law.json"), "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("layer,type,joules,share")


def test_predict_command_bad_input(tmp_path, capsys):
    planted_law().save(tmp_path / "law.json")
    law = str(tmp_path / "law.json")
    one_line_error(capsys, "predict", "torchvision.models:resnet18", "--input-shape", "2,3,32,32", "--law",
                   str(tmp_path / "none.json"), match="does not exist")
    (tmp_path / "bad.json").write_text("[1, 2]")
    one_line_error(capsys, "predict", "torchvision.models:resnet18", "--input-shape", "2,3,32,32", "--law",
                   str(tmp_path / "bad.json"), match="not a torch_tos law file")
    one_line_error(capsys, "predict", "torchvision.models:resnet18", "--input-shape", "2,x", "--law", law,
                   match="malformed --input-shape")
    one_line_error(capsys, "predict", "torchvision.models:resnet18", "--input-shape", "2,3,32,32", "--law", law,
                   "--steps", "0", match="--steps must be a positive")
    one_line_error(capsys, "predict", "torchvision.models:resnet18", "--input-shape", "2,3,32,32", "--law", law,
                   "--optimizer", "lbfgs", match="unknown --optimizer 'lbfgs'")
    one_line_error(capsys, "predict", "nope.module:thing", "--input-shape", "2,3", "--law", law,
                   match="cannot import module 'nope.module'")
    one_line_error(capsys, "predict", "torch.nn:Linear", "--model-kwargs", '{"in_features": 4, "out_features": 2}',
                   "--input-shape", "3,5", "--law", law, match="the model failed on inputs of shape")
    one_line_error(capsys, "predict", "torch.nn:Linear", "--input-shape", "3,5", match="--law")


def test_fit_command_rejects_measured_feature(tmp_path, capsys):
    one_line_error(capsys, "fit", str(tmp_path / "runs.csv"), "--features", "tos,seconds",
                   match="'seconds' is a measured column")
    one_line_error(capsys, "fit", str(tmp_path / "runs.csv"), "--law", "tos,joules",
                   match="'joules' is a measured column")
    one_line_error(capsys, "fit", str(tmp_path / "runs.csv"), "--evaluate", "kfold",
                   match="unknown --evaluate split 'kfold'")
