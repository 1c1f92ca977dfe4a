"""The sweep runner: counts, the results file, resuming after a kill, sharding, bad input."""

import csv

import pytest
import torch

from torch_tos import profile
from torch_tos.energy import COLUMNS, CpuTimeMeter, read_runs, sweep
from torch_tos.energy.families import CNN, FFN, Config, cnn_kernel, get_family
from torch_tos.energy.sweep import Workload, batch_sizes, count_features, parse_ints, parse_shard

TINY = dict(widths=[4, 5], activations=["sigmoid", "gelu"], epochs=1, repeats=2, progress=False)


class Killed(Exception):
    pass


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run_ids(path):
    return [(r["width"], r["activation"], r["repeat"]) for r in rows(path)]


def test_sweep_writes_every_run_with_the_issue_columns(tmp_path):
    out = tmp_path / "runs.csv"
    df = sweep("ffn", out, meter=CpuTimeMeter(), **TINY)
    assert len(df) == 2 * 2 * 2
    with open(out) as f:
        assert f.readline().strip().split(",") == COLUMNS
    r = rows(out)[0]
    assert r["family"] == "ffn" and r["depth"] == "3" and r["epochs"] == "1"
    assert r["meter"] == "cputime" and r["estimated"] == "True" and r["torch"] == torch.__version__
    assert float(r["joules"]) > 0 and float(r["seconds"]) > 0
    assert df["joules"].dtype.kind == "f" and df["estimated"].all()
    runs = read_runs(out)
    # repeats of one configuration share its counts; gelu costs more TOs but the same FLOPs
    by = runs.groupby(["activation", "width"])[["tos", "flops"]].nunique()
    assert (by == 1).all().all()
    g, s = runs[runs.activation == "gelu"].iloc[0], runs[runs.activation == "sigmoid"].iloc[0]
    assert g.width == s.width and g.tos > s.tos and g.flops == s.flops


def test_killed_sweep_resumes_with_every_run_exactly_once(tmp_path):
    out = tmp_path / "runs.csv"
    seen = []

    def die_after_three(row):
        seen.append(row)
        if len(seen) == 3:
            raise Killed

    with pytest.raises(Killed):
        sweep("ffn", out, meter=CpuTimeMeter(), callback=die_after_three, **TINY)
    assert len(rows(out)) == 3  # every finished run was on disk already
    first = rows(out)
    sweep("ffn", out, meter=CpuTimeMeter(), **TINY)
    ids = run_ids(out)
    expected = {(w, a, r) for w in ("4", "5") for a in ("sigmoid", "gelu") for r in ("0", "1")}
    assert len(ids) == len(expected) and set(ids) == expected
    assert rows(out)[:3] == first  # finished runs untouched
    again = sweep("ffn", out, meter=CpuTimeMeter(), **TINY)  # nothing left to do
    assert len(rows(out)) == 8 and len(again) == 8
    # more repeats later: only the new ones run
    sweep("ffn", out, meter=CpuTimeMeter(), **{**TINY, "repeats": 3})
    assert len(rows(out)) == 12 and len(set(run_ids(out))) == 12
    trimmed = sweep("ffn", out, meter=CpuTimeMeter(), trim=1, **{**TINY, "repeats": 3})
    assert len(trimmed) == 4 and len(rows(out)) == 12  # the file keeps every run
    with pytest.raises(ValueError, match="more than 2 repeats"):
        sweep("ffn", out, meter=CpuTimeMeter(), trim=1, **TINY)


def test_resume_removes_a_line_cut_short_by_a_kill(tmp_path):
    out = tmp_path / "runs.csv"
    sweep("ffn", out, meter=CpuTimeMeter(), **{**TINY, "widths": [4], "activations": ["tanh"]})
    text = out.read_text()
    out.write_text(text[:-25])  # the last row half written
    sweep("ffn", out, meter=CpuTimeMeter(), **{**TINY, "widths": [4], "activations": ["tanh"]})
    assert sorted(run_ids(out)) == [("4", "tanh", "0"), ("4", "tanh", "1")]


def test_resume_refuses_another_meter_or_other_counts(tmp_path):
    out = tmp_path / "runs.csv"
    sweep("ffn", out, meter=CpuTimeMeter(), **{**TINY, "widths": [4], "activations": ["tanh"]})
    text = out.read_text().replace("cputime", "rapl")
    out.write_text(text)
    with pytest.raises(ValueError, match="measured with rapl but this run would measure with cputime"):
        sweep("ffn", out, meter=CpuTimeMeter(), **TINY)
    out.write_text(text.replace("rapl", "cputime").replace(",1,", ",1,", 1))
    lines = out.read_text().splitlines()
    cells = lines[1].split(",")
    cells[COLUMNS.index("tos")] = "123.0"
    cells[COLUMNS.index("repeat")] = "0"
    out.write_text("\n".join([lines[0], ",".join(cells)]) + "\n")
    with pytest.raises(ValueError, match="holds runs of ffn w=4 d=3 tanh with 123 TOs / .* FLOPs per step"):
        sweep("ffn", out, meter=CpuTimeMeter(), **{**TINY, "widths": [4], "activations": ["tanh"],
                                                   "repeats": 3})
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a results file of this layout"):
        sweep("ffn", tmp_path / "other.csv", meter=CpuTimeMeter(), **TINY)


def test_shards_partition_the_configurations(tmp_path):
    parts = []
    for i in (1, 2, 3):
        out = tmp_path / f"shard{i}.csv"
        sweep("ffn", out, meter=CpuTimeMeter(), shard=f"{i}/3", **{**TINY, "repeats": 1})
        parts.append({(w, a) for w, a, _ in run_ids(out)})
    assert sum(len(p) for p in parts) == 4 and set().union(*parts) == {
        (w, a) for w in ("4", "5") for a in ("sigmoid", "gelu")}


def test_counts_are_profile_of_one_step_times_steps():
    fam = FFN()
    X, y = fam.data()
    assert X.shape == (1372, 4) and batch_sizes(1372, 64) == {64: 21, 28: 1}
    config = Config("ffn", 6, 3, "tanh")
    model = fam.build(config)
    step = {n: profile(model, X[:n], mode="training", loss_fn=torch.nn.MSELoss(), target=y[:n],
                       optimizer=torch.optim.SGD(model.parameters(), lr=0.01), device="meta")
            for n in (64, 28)}
    feats, device = count_features(Workload(fam, config, 3, 0.01), X, y)
    assert device == "meta"
    # per-step mean over the run's 3 × 22 steps: 21 batches of 64 and one of 28 per epoch
    assert feats["tos"] * 66 == pytest.approx(3 * (21 * step[64].tos + step[28].tos))
    assert feats["flops"] * 66 == pytest.approx(3 * (21 * step[64].flops + step[28].flops))


def test_cnn_family_follows_table_iv():
    assert [cnn_kernel(i) for i in range(1, 11)] == [3, 3, 3, 3, 3, 3, 4, 5, 6, 7]
    fam = CNN(image_size=32, n_images=8)
    model = fam.build(Config("cnn", None, 10, "gelu"))
    convs = [m for m in model if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 10 and all(c.out_channels == 32 for c in convs)
    assert isinstance(model[-1], torch.nn.Linear)
    X, y = fam.data()
    assert model(X).shape == (8, 1)
    assert fam.configs() == [Config("cnn", None, d, "gelu", 32) for d in range(2, 11)]
    with pytest.raises(ValueError, match="image_size 16 is too small for 10 unpadded conv layers"):
        CNN(image_size=16).configs()


def test_tiny_cnn_sweep(tmp_path):
    out = tmp_path / "cnn.csv"
    df = sweep("cnn", out, depths=[2, 3], epochs=1, repeats=2, image_size=12, n_images=8, batch_size=4,
               meter=CpuTimeMeter(), progress=False)
    assert len(df) == 4
    r = rows(out)[0]
    assert r["width"] == "" and r["depth"] == "2" and r["activation"] == "gelu"


def test_bad_input():
    with pytest.raises(ValueError, match="unknown family 'rnn'; accepted: ffn, cnn"):
        get_family("rnn")
    with pytest.raises(ValueError, match="unknown activation 'swish'; accepted: sigmoid, tanh, gelu"):
        FFN().configs(activations=["swish"])
    with pytest.raises(ValueError, match="unknown meter 'watt'"):
        sweep("ffn", "x.csv", meter="watt", **TINY)
    with pytest.raises(ValueError, match="the cnn family has no width"):
        CNN().configs(widths=[4])
    with pytest.raises(ValueError, match="the ffn family has no option image_size"):
        get_family("ffn", image_size=32)
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        sweep("ffn", "x.csv", meter=CpuTimeMeter(), **{**TINY, "epochs": 0})
    with pytest.raises(ValueError, match="shard 4/3 is out of range"):
        parse_shard("4/3")
    with pytest.raises(ValueError, match="malformed shard"):
        parse_shard("half")
    assert parse_ints("4-18") == list(range(4, 19))
    assert parse_ints("4-12:4,3") == [3, 4, 8, 12]
    with pytest.raises(ValueError, match="malformed --widths 'four'"):
        parse_ints("four", "--widths")
