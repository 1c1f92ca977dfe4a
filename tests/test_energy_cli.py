"""The energy commands of torch-tos (sweep, fit, demo) and the figure."""

import sys

import pytest
import torch

from torch_tos.cli import main
from torch_tos.energy import COLUMNS, plot_fits, read_runs

from test_energy_compare import synthetic_runs

QUICK = ["--epochs", "1", "--meter", "cputime", "--no-progress"]


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(capsys, *argv, match):
    rc, out, err = run(capsys, *argv)
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("torch-tos: error:"), err
    assert "Traceback" not in err
    assert match in lines[0], lines[0]


def test_sweep_writes_a_runs_file_fit_reads(tmp_path, capsys):
    out = tmp_path / "runs.csv"
    rc, text, _ = run(capsys, "sweep", "ffn", "--out", str(out), "--widths", "4-9", "--activations",
                      "sigmoid,gelu", "--repeats", "3", *QUICK)
    assert rc == 0
    assert "meter: cputime" in text and "tracks time, not energy" in text
    assert len(read_runs(out)) == 6 * 2 * 3
    assert "run-to-run CV per configuration (12 configurations)" in text  # fit: tests/test_energy_fit*.py


@pytest.mark.slow
def test_demo_tiny(tmp_path, capsys):
    from energy_fakes import write_bench

    write_bench(tmp_path / "law.bench.jsonl")  # microbenchmarks done: the demo measures its suite and targets
    threads = torch.get_num_threads()
    rc, text, err = run(capsys, "demo", "--out", str(tmp_path), "--families", "mlp,transformer", "--scale",
                        "0.2", "--dtypes", "float32", "--repeats", "2", "--steps", "2", "--meter", "cputime",
                        "--no-progress")
    assert rc == 0, (text, err)
    assert "meter: cputime" in text and "tracks time, not energy" in text
    assert "loco (" in text and "lofo (" in text and "noise floor" in text and "mean-only" in text
    for name, mode in (("mnasnet0_5", "training"), ("googlenet", "inference")):
        assert name in text
        target = read_runs(tmp_path / f"{name}.runs.csv", features=())
        assert len(target) == 3 and (target["steps"] == 2).all() and (target["mode"] == mode).all()
        assert (target["ref_nominal"] == 0.8).all()  # measured in the calibration's units: its nominal reference
    assert text.count("drift-corrected to the calibration's reference: raw") == 2
    assert text.count("predicted:") == 2 and text.count("  measured:") == 2 and "predicted / measured" in text
    assert "CPU-time meter: joules are estimates" in text and (tmp_path / "law.json").exists()
    assert "torch thread(s)" not in text  # predicted at the threads it measures with
    assert torch.get_num_threads() == threads  # and the process's own setting restored


def full_layout(runs):
    """A hand-made runs table completed with the settings every runs file records."""
    runs = runs.copy()
    for col, v in (("input_size", ""), ("batch_size", 64), ("optimizer", "sgd"), ("epochs", 10), ("steps", 220),
                   ("dtype", "float32"), ("threads", 1), ("host", "h"), ("repeat", None)):
        if col not in runs.columns:
            runs[col] = v
    if runs["repeat"].isna().all():
        runs["repeat"] = runs.groupby(["family", "width", "depth", "activation"], dropna=False).cumcount()
    return runs


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    out = str(tmp_path / "r.csv")
    one_line_error(capsys, "sweep", "rnn", "--out", out, *QUICK, match="unknown family 'rnn'; accepted: ffn, cnn, mlp")
    one_line_error(capsys, "sweep", "ffn", "--out", out, "--activations", "swish", *QUICK,
                   match="unknown activation 'swish'")
    one_line_error(capsys, "sweep", "ffn", "--out", out, "--meter", "joulemeter", match="unknown --meter")
    one_line_error(capsys, "sweep", "ffn", "--out", out, "--widths", "four", *QUICK, match="malformed --widths")
    one_line_error(capsys, "sweep", "ffn", "--out", out, "--shard", "0/2", *QUICK, match="shard 0/2 is out of range")
    one_line_error(capsys, "sweep", "ffn", "--out", out, "--meter", "rapl", *QUICK[:2],
                   match="RAPL not available on this machine")

    missing = tmp_path / "missing.csv"
    missing.write_text("family,width,tos\nffn,4,1e9\n")
    one_line_error(capsys, "fit", str(missing), match="a runs file of an older torch_tos")
    runs = full_layout(synthetic_runs(repeats=3))
    bad = runs.copy()
    bad["joules"] = bad["joules"].astype(object)
    bad.loc[2, "joules"] = "n/a"
    bad.to_csv(tmp_path / "text.csv", index=False)
    col = list(runs.columns).index("joules") + 1  # 1-based, as a spreadsheet shows it
    one_line_error(capsys, "fit", str(tmp_path / "text.csv"), match=f"text.csv line 4, column {col} (joules): 'n/a' is not a number")
    neg = runs.copy()
    neg.loc[0, "joules"] = -5.0
    neg.to_csv(tmp_path / "neg.csv", index=False)
    one_line_error(capsys, "fit", str(tmp_path / "neg.csv"), match=f"neg.csv line 2, column {col} (joules): '-5.0' is negative")
    few = runs[runs.width.isin([4, 6])]
    few.to_csv(tmp_path / "few.csv", index=False)
    one_line_error(capsys, "fit", str(tmp_path / "few.csv"), match="degree-3 law needs runs at 4 or more")
    runs.to_csv(tmp_path / "ok.csv", index=False)
    one_line_error(capsys, "fit", str(tmp_path / "ok.csv"), "--split", "kfold", match="unknown --split 'kfold'")
    one_line_error(capsys, "fit", str(tmp_path / "nope.csv"), match="does not exist")
    mixed = runs.copy()
    mixed.loc[0, "meter"] = "cputime"
    mixed.to_csv(tmp_path / "mixed.csv", index=False)
    one_line_error(capsys, "fit", str(tmp_path / "mixed.csv"), match="mix meters")


def test_plot_fits_axes_and_missing_matplotlib(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    fig = plot_fits(full_layout(synthetic_runs()), path=tmp_path / "f.png")
    assert len(fig.axes) == 4
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[0].startswith("TOs-based") and titles[1].startswith("FLOPs-based")
    assert (tmp_path / "f.png").stat().st_size > 10_000
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install 'torch-tos\[plot\]'"):
        plot_fits(synthetic_runs())


def test_columns_are_the_issue_layout():
    assert COLUMNS[:13] == ["family", "width", "depth", "activation", "input_size", "batch_size", "optimizer",
                            "epochs", "steps", "dtype", "threads", "mode", "device"]
    for col in ("repeat", "joules", "joules_raw", "seconds", "ref_before", "ref_after", "ref_nominal", "meter",
                "estimated", "host", "machine", "torch", "count_device", "tos", "flops", "calls", "bytes",
                "tos_float32"):
        assert col in COLUMNS
