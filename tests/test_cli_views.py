"""`torch-tos profile` views: --depth, --all-rows, --plot, --format html, --out, and their
one-line errors (checked before anything is counted)."""

import json

import pytest

from torch_tos.cli import main



def _args(tmp_path):
    # a two-level model: Sequential(Sequential(Linear(4, 3), ReLU), Linear(3, 2)) from a local file
    (tmp_path / "tos_views_model.py").write_text(
        "import torch\n"
        "def build():\n"
        "    inner = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())\n"
        "    return torch.nn.Sequential(inner, torch.nn.Linear(3, 2))\n")
    return ["profile", "tos_views_model:build", "--input-shape", "1,4"]


@pytest.fixture
def model_args(tmp_path, monkeypatch):
    import sys

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield _args(tmp_path)
    sys.modules.pop("tos_views_model", None)


def test_depth_folds_submodules(model_args, capsys):
    assert main([*model_args]) == 0
    full = capsys.readouterr().out
    assert "0.0 " in full and "0.1 " in full
    assert main([*model_args, "--depth", "1", "--format", "csv"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()[1:]
    by_layer = {r.split(",")[0]: r.split(",") for r in rows}
    # layer "0" = Linear(4, 3) + ReLU: 12 mul, 3 × (3 + 1) = 12 add, 3 ReLU compares (sub)
    assert by_layer["0"][4:7] == ["12", "3", "12"]
    assert "0.0" not in by_layer and "0.1" not in by_layer
    # layer "1" = Linear(3, 2): 6 mul, 2 × (2 + 1) = 6 add
    assert by_layer["1"][4] == "6" and by_layer["1"][6] == "6"


def test_html_to_a_file_and_plot(model_args, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    html, png = tmp_path / "r.html", tmp_path / "r.png"
    assert main([*model_args, "--format", "html", "--out", str(html), "--plot", str(png), "--top", "2"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and str(html) in captured.err and str(png) in captured.err
    page = html.read_text()
    assert page.lstrip().lower().startswith("<!doctype html") and "data:image/png;base64," in page
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_to_out(model_args, tmp_path):
    out = tmp_path / "r.json"
    assert main([*model_args, "--format", "json", "--out", str(out)]) == 0
    # 12 + 6 mul; 12 + 6 add; 3 sub (ReLU)
    assert json.loads(out.read_text())["total"]["bos"] == {"add": 18, "sub": 3, "mul": 18, "div": 0, "root": 0}


@pytest.mark.parametrize("extra,message", [
    (["--out", "."], "--out '.' is a folder"),
    (["--out", "/no/such/folder/r.txt"], "folder '/no/such/folder' does not exist"),
    (["--out", "/dev/null"], "is not a regular file"),
    (["--plot", "r.nosuchformat"], "unknown image format 'nosuchformat'; accepted:"),
    (["--plot", "r.png", "--out", "r.png"], "--out and --plot are the same file"),
    (["--depth", "-1"], "--depth must be 0"),
    (["--top", "0"], "--top must be a positive number"),
    (["--format", "xml"], "invalid choice: 'xml'"),
])
def test_output_errors_before_counting(extra, message, model_args, capsys, monkeypatch):
    import torch_tos.api

    def never(*a, **k):  # the checks come before any counting
        raise AssertionError("counted before checking the outputs")

    monkeypatch.setattr(torch_tos.api, "profile", never)
    assert main([*model_args, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("fmt, out", [("table", "r.txt"), ("html", "r.html")])
def test_full_disk_is_one_line_and_the_previous_file_is_kept(model_args, capsys, monkeypatch, fmt, out):
    from disk_faults import fail_nth_write

    from pathlib import Path

    Path(out).write_text("the previous report\n")
    fail_nth_write(monkeypatch, 1)
    assert main([*model_args, "--format", fmt, "--out", out]) == 2
    err = capsys.readouterr().err
    assert err == (f"torch-tos: error: --out: cannot write {out!r} (the previous file, if any, is intact): "
                   "No space left on device\n")
    assert Path(out).read_text() == "the previous report\n"
    assert sorted(p.name for p in Path(".").iterdir() if p.name.startswith(f".{out}")) == []  # no temporary left


def test_all_rows_lists_the_folded_bookkeeping_rows(capsys):
    argv = ["profile", "torch.nn:BatchNorm1d", "--model-kwargs", '{"num_features": 3}', "--input-shape", "2,3"]
    assert main([*argv, "--full"]) == 0
    folded = capsys.readouterr().out
    assert "int64" not in folded and "--all-rows lists the folded rows" in folded
    assert main([*argv, "--full", "--all-rows"]) == 0
    assert "int64" in capsys.readouterr().out  # num_batches_tracked += 1
