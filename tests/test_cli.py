"""The `torch-tos profile` command: output formats and one-line errors with exit code 2."""

import json
import subprocess
import sys

import pytest
import torch
import torchvision

import torch_tos
from torch_tos.cli import main
from torch_tos.units import exact


def test_profile_table(capsys):
    assert main(["profile", "torchvision.models:resnet18", "--input-shape", "2,3,32,32",
                 "--device", "meta", "--mode", "training"]) == 0
    out = capsys.readouterr().out  # folded at depth 2: the blocks, the totals per phase, SI totals
    assert "layer1.0 " in out and "layer1.0.conv1" not in out and "backward" in out and "TOs 2.86T" in out
    assert main(["profile", "torchvision.models:resnet18", "--input-shape", "2,3,32,32",
                 "--device", "meta", "--depth", "0", "--exact"]) == 0
    out = capsys.readouterr().out  # every layer, exact counts
    tos = torch_tos.profile(torchvision.models.resnet18(), torch.randn(2, 3, 32, 32), device="meta").tos_exact
    assert "layer1.0.conv1" in out and "--depth 0" not in out and f"TOs {exact(tos)}" in out


def test_profile_json_and_csv(capsys):
    assert main(["profile", "torch.nn:Linear", "--model-kwargs", '{"in_features": 4, "out_features": 18}',
                 "--input-shape", "1,4", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total"]["bos"] == {"add": 72, "sub": 0, "mul": 72, "div": 0, "root": 0}
    assert main(["profile", "torch.nn:Linear", "--model-kwargs", '{"in_features": 4, "out_features": 18}',
                 "--input-shape", "2,4", "--format", "csv", "--dtype", "float16"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "layer,type,phase,dtype,add,sub,mul,div,root,tos,flops"
    assert lines[1].split(",")[3] == "float16"


@pytest.mark.parametrize("argv,message", [
    (["profile", "nosuchpkg.models:net", "--input-shape", "1,3"], "cannot import module 'nosuchpkg.models'"),
    (["profile", "torchvision.models:resnet1800", "--input-shape", "1,3"], "has no attribute 'resnet1800'"),
    (["profile", "torchvision.models", "--input-shape", "1,3"], "must be 'module:callable'"),
    (["profile", "torchvision.models:resnet18", "--input-shape", "1,x3,,"], "malformed --input-shape"),
    (["profile", "torchvision.models:resnet18", "--input-shape", "1,-3"], "malformed --input-shape"),
    (["profile", "torchvision.models:resnet18", "--input-shape", "1,3,8,8", "--dtype", "float17"],
     "unknown dtype 'float17'; accepted: float16, bfloat16, float32, float64"),
    (["profile", "torchvision.models:resnet18", "--input-shape", "1,3,8,8", "--mode", "train"],
     "unknown --mode 'train'; accepted: inference, validation, training"),
    (["profile", "torchvision.models:resnet18", "--input-shape", "1,3,8,8", "--format", "xml"], "invalid choice"),
    (["profile", "torchvision.models:resnet18", "--input-shape", "1,3,32,32", "--mode", "training"],
     "batch norm in training mode needs a batch of at least 2"),
    (["profile", "torchvision.models:resnet18", "--input-shape", "2,5"], "the model failed on inputs of shape (2, 5)"),
])
def test_errors_one_line_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_console_script_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "torch_tos.cli", "profile", "torchvision.models:resnet18",
                           "--input-shape", "banana"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("torch-tos: error: malformed --input-shape 'banana'")
    assert "Traceback" not in proc.stderr


def test_integer_inputs_for_an_embedding_model(tmp_path, monkeypatch, capsys):
    # Embedding(100, 8) → Linear(8, 2) on int64 token ids of shape (1, 4): the lookup costs no BO;
    # the linear layer: 4 rows × 2 outputs × 8 mul = 64 mul, 4 × 2 × (7 adds + 1 bias) = 64 add
    (tmp_path / "tos_emb_model.py").write_text(
        "import torch\n"
        "def build():\n"
        "    return torch.nn.Sequential(torch.nn.Embedding(100, 8), torch.nn.Linear(8, 2))\n")
    monkeypatch.chdir(tmp_path)  # the model file is found in the current directory
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        assert main(["profile", "tos_emb_model:build", "--input-shape", "1,4", "--input-dtype", "int64",
                     "--format", "json"]) == 0
    finally:
        sys.modules.pop("tos_emb_model", None)
    data = json.loads(capsys.readouterr().out)
    assert data["total"]["bos"] == {"add": 64, "sub": 0, "mul": 64, "div": 0, "root": 0}


def test_integer_input_range():
    import torch

    from torch_tos.cli.inputs import default_high, make_inputs

    model = torch.nn.Sequential(torch.nn.Embedding(7, 2), torch.nn.EmbeddingBag(5, 2))
    assert default_high(model) == 5 and default_high(torch.nn.Linear(2, 2)) == 2
    x, = make_inputs([(1000,)], [torch.int64], torch.device("cpu"), model=model)
    assert x.dtype == torch.int64 and x.min() >= 0 and x.max() <= 4
    x, = make_inputs([(1000,)], [torch.int32], torch.device("cpu"), low=3, high=6)
    assert x.dtype == torch.int32 and set(x.tolist()) == {3, 4, 5}
    b, = make_inputs([(1000,)], [torch.bool], torch.device("meta"))
    assert b.dtype == torch.bool and b.device.type == "meta"
