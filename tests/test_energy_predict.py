"""Predicting an unmeasured model from a cost model: meta counting of a model too big for memory,
the model untouched, and the predict / fit commands (modes, seconds, bad input)."""

import warnings

import pytest
import torch
from torch import nn

from torch_tos.cli.main import main
from torch_tos.energy import EnergyModel, ExtrapolationWarning

from energy_fakes import synthetic_law

pytestmark = pytest.mark.filterwarnings("ignore::torch_tos.energy.ExtrapolationWarning")


def test_predict_on_meta_leaves_the_model_as_it_was():
    law = synthetic_law()
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    before = [p.detach().clone() for p in model.parameters()]
    p = law.predict(model, torch.randn(4, 8), steps=50, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    assert p.report.metadata["device"] == "meta"
    assert p.per_layer["joules"].sum() == pytest.approx(p.joules, rel=1e-9)
    assert {"0", "2", "(optimizer)", "(fixed)"} <= set(p.per_layer["layer"])
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # never touched
    assert p.seconds > 0 and p.seconds_low < p.seconds < p.seconds_high


def test_predicts_a_model_too_big_for_memory():
    law = synthetic_law()
    with torch.device("meta"):
        big = nn.Sequential(*[nn.Linear(16384, 16384) for _ in range(8)])  # 2.1 G parameters
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)
        p = law.predict(big, torch.empty(2, 16384, device="meta"), steps=10,
                        optimizer=torch.optim.AdamW(big.parameters()))
    assert p.joules > 0 and p.report.flops > 1e10


# -- the commands --------------------------------------------------------------------------
def one_line_error(capsys, *argv, match):
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("torch-tos: error:")
    assert match in err, err


LINEAR = ["predict", "torch.nn:Linear", "--model-kwargs", '{"in_features": 4, "out_features": 2}', "--input-shape",
          "3,4"]


def test_predict_command(tmp_path, capsys):
    synthetic_law().save(tmp_path / "law.json")
    law = str(tmp_path / "law.json")
    assert main([*LINEAR, "--steps", "100", "--law", law]) == 0
    out = capsys.readouterr().out
    assert "predicted cost of 100 training steps" in out and "interval" in out and "time" in out
    assert main([*LINEAR, "--steps", "20", "--mode", "inference", "--law", law]) == 0
    assert "20 inference steps" in capsys.readouterr().out
    assert main([*LINEAR, "--law", law, "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("layer,type,joules,seconds,share")


def test_predict_command_bad_input(tmp_path, capsys):
    synthetic_law(modes=("training",)).save(tmp_path / "law.json")
    law = str(tmp_path / "law.json")
    one_line_error(capsys, "predict", "torchvision.models:resnet18", "--input-shape", "2,3,32,32", "--law",
                   str(tmp_path / "none.json"), match="does not exist")
    (tmp_path / "bad.json").write_text("[1, 2]")
    one_line_error(capsys, "predict", "torchvision.models:resnet18", "--input-shape", "2,3,32,32", "--law",
                   str(tmp_path / "bad.json"), match="not a torch_tos law file")
    one_line_error(capsys, "predict", "torchvision.models:resnet18", "--input-shape", "2,x", "--law", law,
                   match="malformed --input-shape")
    one_line_error(capsys, *LINEAR, "--law", law, "--steps", "0", match="--steps must be a positive")
    one_line_error(capsys, *LINEAR, "--law", law, "--optimizer", "lbfgs", match="unknown --optimizer 'lbfgs'")
    one_line_error(capsys, *LINEAR, "--law", law, "--mode", "validation", match="unknown --mode 'validation'")
    one_line_error(capsys, *LINEAR, "--law", law, "--mode", "inference", match="no inference terms")
    one_line_error(capsys, "predict", "nope.module:thing", "--input-shape", "2,3", "--law", law,
                   match="cannot import module 'nope.module'")
    one_line_error(capsys, "predict", "torch.nn:Linear", "--model-kwargs", '{"in_features": 4, "out_features": 2}',
                   "--input-shape", "3,5", "--law", law, match="the model failed on inputs of shape")
    one_line_error(capsys, *LINEAR, match="torch-tos calibrate --out law.json")
    paper = EnergyModel("tos").fit([1.0, 2.0, 3.0], [1.0, 2.0, 3.1])
    paper.save(tmp_path / "paper.json")
    one_line_error(capsys, *LINEAR, "--law", str(tmp_path / "paper.json"), match="the paper's law")


def test_fit_command_bad_input(tmp_path, capsys):
    one_line_error(capsys, "fit", str(tmp_path / "runs.csv"), "--features", "tos,seconds",
                   match="'seconds' is a measured column")
    one_line_error(capsys, "fit", str(tmp_path / "runs.csv"), "--evaluate", "kfold",
                   match="unknown --evaluate split 'kfold'")
    one_line_error(capsys, "fit", str(tmp_path / "runs.csv"), "--save", str(tmp_path / "no" / "law.json"),
                   match="law.json")
