"""The CLI contract of sweep, calibrate and demo: every user error is one line, exit 2, before
any work (issue 12, item 5)."""

import pytest

from torch_tos.cli import main


def one_line_error(capsys, *argv, match):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("torch-tos: error:"), err
    assert "Traceback" not in err and match in lines[0], lines[0]
    return out


QUICK = ["--meter", "cputime", "--no-progress"]


def test_sweep_outputs_are_checked_before_any_work(tmp_path, capsys, monkeypatch):
    out = one_line_error(capsys, "sweep", "ffn", "--out", str(tmp_path), *QUICK, match="is a folder")
    assert "meter:" not in out  # refused before the meter, the counting or a run
    one_line_error(capsys, "sweep", "ffn", "--out", "/dev/full", *QUICK, match="not a regular file")
    one_line_error(capsys, "sweep", "ffn", "--out", str(tmp_path / "no" / "r.csv"), *QUICK, match="does not exist")
    from torch_tos.energy import runfile

    monkeypatch.setattr(runfile.os, "access", lambda *a, **k: False)
    one_line_error(capsys, "sweep", "ffn", "--out", str(tmp_path / "r.csv"), *QUICK, match="not writable")


def test_demo_and_calibrate_outputs_are_checked_before_any_work(tmp_path, capsys):
    existing = tmp_path / "file.txt"
    existing.write_text("keep me")
    one_line_error(capsys, "demo", "--out", str(existing), *QUICK, match="is an existing file")
    assert existing.read_text() == "keep me"
    one_line_error(capsys, "calibrate", "--out", str(tmp_path), *QUICK, match="is a folder")
    one_line_error(capsys, "calibrate", "--out", "/dev/full", *QUICK, match="not a regular file")
    one_line_error(capsys, "calibrate", "--out", str(tmp_path / "law.json"), "--runs", "/dev/full", *QUICK,
                   match="not a regular file")
    assert not (tmp_path / "law.runs.csv").exists()


@pytest.mark.parametrize("argv,match", [
    (["--dtypes", "float32,float8"], "unknown dtype 'float8'"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--threads", "0"], "--threads must be a positive integer"),
    (["--repeats", "0"], "--repeats must be a positive integer"),
    (["--scale", "0"], "--scale must be a positive number"),
    (["--families", "ffn,resnet50"], "unknown suite family 'resnet50'"),
])
def test_calibrate_bad_options(tmp_path, capsys, argv, match):
    one_line_error(capsys, "calibrate", "--out", str(tmp_path / "law.json"), *argv, *QUICK, match=match)
    assert not (tmp_path / "law.runs.csv").exists() and not (tmp_path / "law.bench.jsonl").exists()


def test_demo_bad_options(tmp_path, capsys):
    one_line_error(capsys, "demo", "--out", str(tmp_path / "d"), "--repeats", "0", *QUICK,
                   match="--repeats must be a positive integer")
    one_line_error(capsys, "demo", "--out", str(tmp_path / "d"), "--steps", "-3", *QUICK,
                   match="--steps must be a positive integer")


def test_sweep_reports_each_repair_as_a_warning_line(tmp_path, capsys):
    out = tmp_path / "runs.csv"
    argv = ["sweep", "ffn", "--out", str(out), "--widths", "4", "--activations", "tanh", "--repeats", "2",
            "--epochs", "1", *QUICK]
    assert main(argv) == 0
    lines = out.read_bytes().split(b"\n")
    out.write_bytes(b"\n".join([lines[0], b"\x00" * 30, lines[1]]) + b"\n" + lines[2][:20])
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err.splitlines()
    assert "torch-tos: warning: " + str(out) + ": removed line 2: it holds NUL bytes (a crash or a full disk)" in err
    assert any(e.startswith("torch-tos: warning: ") and "incomplete last line" in e for e in err)


def test_fit_refuses_a_file_given_twice_and_duplicate_runs(tmp_path, capsys):
    out = tmp_path / "runs.csv"
    assert main(["sweep", "ffn", "--out", str(out), "--widths", "4", "--activations", "tanh", "--repeats", "2",
                 "--epochs", "1", *QUICK]) == 0
    one_line_error(capsys, "fit", str(out), str(out), match="same file")
    lines = out.read_text().splitlines()
    (tmp_path / "dup.csv").write_text("\n".join([lines[0], lines[1]]) + "\n")
    one_line_error(capsys, "fit", str(out), str(tmp_path / "dup.csv"), match="duplicate run(s)")
