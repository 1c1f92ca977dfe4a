"""Issue 18 item 4: one CLI contract. Options only as written in full, every exception one line
with exit 2 (the traceback with ``--debug``), output paths checked before any work, the same
option meaning the same values in every command, ``predict`` without a law saying how to make one."""

from __future__ import annotations

import argparse

import pytest

import torch_tos.cli.predict as predict_cmd
import torch_tos.cli.profile as profile_cmd
from torch_tos.cli.inputs import INPUT_DTYPES
from torch_tos.cli.main import build_parser, main

LINEAR = ["torch.nn:Linear", "--model-kwargs", '{"in_features": 4, "out_features": 2}', "--input-shape", "3,4"]


def one_error_line(capsys, argv) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("torch-tos: error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    return captured.err


@pytest.fixture
def law(tmp_path) -> str:
    from energy_fakes import synthetic_law

    synthetic_law().save(tmp_path / "law.json")
    return str(tmp_path / "law.json")


def _parsers(parser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_no_parser_accepts_abbreviations():
    parsers = list(_parsers(build_parser()))
    assert len(parsers) > 5 and all(p.allow_abbrev is False for p in parsers)


@pytest.mark.parametrize("argv, message", [
    (["predict", *LINEAR, "--optim", "sgd"], "unrecognized arguments: --optim sgd (torch-tos predict --help "
                                             "lists the options)"),
    (["predict", *LINEAR, "--mod", "x"], "unrecognized arguments: --mod x"),
    (["profile", *LINEAR, "--inp", "1,4"], "unrecognized arguments: --inp 1,4"),
    (["fit", "runs.csv", "--sav", "law.json"], "unrecognized arguments: --sav law.json"),
])
def test_a_prefix_is_not_an_option(capsys, argv, message):
    err = one_error_line(capsys, argv)
    assert message in err and "model-kwargs" not in err and "ambiguous" not in err


def test_predict_without_a_law_says_how_to_make_one(capsys):
    err = one_error_line(capsys, ["predict", *LINEAR, "--steps", "100"])
    assert "--law LAW.json is required" in err
    assert "torch-tos calibrate --out law.json" in err and "torch-tos fit runs.csv --profile law.json" in err


@pytest.mark.parametrize("kind", ["folder", "missing"])
def test_a_law_that_is_not_a_file_is_named_as_it_is(tmp_path, capsys, kind):
    path = tmp_path / "laws"
    if kind == "folder":
        path.mkdir()
    err = one_error_line(capsys, ["predict", *LINEAR, "--law", str(path)])
    assert (f"is a folder, not a file" if kind == "folder" else "does not exist") in err
    assert "torch-tos calibrate --out law.json" in err


def test_input_dtype_means_the_same_in_profile_and_predict(law, capsys):
    for cmd in (["profile", *LINEAR], ["predict", *LINEAR, "--law", law]):
        err = one_error_line(capsys, [*cmd, "--input-dtype", "long"])
        assert f"unknown --input-dtype 'long'; accepted: {', '.join(INPUT_DTYPES)}" in err
    embed = ["torch.nn:Embedding", "--model-kwargs", '{"num_embeddings": 10, "embedding_dim": 3}',
             "--input-shape", "2,5", "--input-dtype", "int64"]
    assert main(["profile", *embed]) == 0
    assert main(["predict", *embed, "--law", law]) == 0
    assert main(["predict", *LINEAR, "--input-dtype", "float64", "--law", law, "--format", "csv"]) == 0


def test_shared_options_accept_the_same_values():
    assert predict_cmd.OPTIMIZERS == profile_cmd.OPTIMIZERS
    parser = build_parser()
    commands = {p.prog.split()[-1]: p for p in _parsers(parser) if p is not parser}
    loss = {name: next(a for a in commands[name]._actions if "--loss" in a.option_strings)
            for name in ("profile", "predict")}
    assert set(loss["profile"].choices) == set(predict_cmd.LOSSES)


@pytest.mark.parametrize("exc", [IndexError("list index out of range"), AttributeError("'str' object has no "
                                 "attribute 'get'"), RecursionError("maximum recursion depth exceeded"),
                                 KeyError("coef"), RuntimeError("boom"), MemoryError()])
def test_an_unexpected_exception_is_one_line_with_exit_2(monkeypatch, capsys, exc):
    def fail(args):
        raise exc

    monkeypatch.setattr(predict_cmd, "_cmd_predict", fail)
    err = one_error_line(capsys, ["predict", *LINEAR, "--law", "x.json"])
    assert type(exc).__name__ in err and "torch-tos --debug" in err


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_prints_the_traceback(monkeypatch, capsys, where):
    def fail(args):
        raise IndexError("list index out of range")

    monkeypatch.setattr(predict_cmd, "_cmd_predict", fail)
    argv = ["predict", *LINEAR, "--law", "x.json"]
    assert main(["--debug", *argv] if where == "before" else [*argv, "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.rstrip().splitlines()[-1].startswith("torch-tos: error:")


def test_ctrl_c_exits_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(predict_cmd, "_cmd_predict", interrupted)
    assert main(["predict", *LINEAR]) == 130
    assert capsys.readouterr().err == "torch-tos: interrupted\n"


@pytest.mark.parametrize("option, value, message", [
    ("--save", "{tmp}", "--save '{tmp}' is a folder; give a file name such as '{tmp}/law.json'"),
    ("--save", "{tmp}/missing/law.json", "folder '{tmp}/missing' does not exist"),
    ("--plot", "{tmp}/fit.xyz", "unknown image format 'xyz'"),
    ("--plot", "{tmp}", "is a folder; give a file name such as '{tmp}/figure.png'"),
])
def test_fit_checks_its_outputs_before_reading_any_run(tmp_path, monkeypatch, capsys, option, value, message):
    import torch_tos.energy.runs

    def never(*a, **k):
        raise AssertionError("runs read before the outputs were checked")

    monkeypatch.setattr(torch_tos.energy.runs, "read_runs", never)
    err = one_error_line(capsys, ["fit", str(tmp_path / "runs.csv"), option, value.format(tmp=tmp_path)])
    assert message.format(tmp=tmp_path) in err


@pytest.mark.parametrize("kind", ["folder", "missing"])
def test_fit_checks_its_cost_model_before_reading_any_run(tmp_path, monkeypatch, capsys, kind):
    import torch_tos.energy.runs

    def never(*a, **k):
        raise AssertionError("runs read before --profile was checked")

    monkeypatch.setattr(torch_tos.energy.runs, "read_runs", never)
    path = tmp_path / "law.json"
    if kind == "folder":
        path.mkdir()
    err = one_error_line(capsys, ["fit", str(tmp_path / "runs.csv"), "--profile", str(path)])
    assert (f"is a folder, not a file" if kind == "folder" else "does not exist") in err
    assert "torch-tos calibrate --out law.json" in err
