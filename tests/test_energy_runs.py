"""The runs table: complete records, configuration keys over every setting, strict reading
(older layouts, duplicates, the same file twice)."""

import csv

import pandas as pd
import pytest
import torch

from torch_tos import profile
from torch_tos.energy import CpuTimeMeter, read_runs, sweep
from torch_tos.energy.features import FEATURE_NAMES, as_counts, step_features
from torch_tos.energy.families import get_family
from torch_tos.energy.runs import (COLUMNS, CONFIG_COLUMNS, check_no_duplicates, config_keys,
                                   find_duplicates)

TINY = dict(widths=[4], activations=["gelu"], epochs=1, repeats=2, progress=False)


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_row_holds_every_setting_and_the_features_of_one_step(tmp_path):
    out = tmp_path / "runs.csv"
    sweep("ffn", out, meter=CpuTimeMeter(), **TINY)
    r = rows(out)[0]
    assert list(r) == COLUMNS
    for col in ("family", "width", "depth", "activation", "batch_size", "optimizer", "epochs", "steps",
                "dtype", "threads", "meter", "host", "repeat", "count_device"):
        assert r[col] != "", col
    # Banknote: 1372 rows, batch 64 → 21 steps of 64 and one of 1372 − 21·64 = 28 per epoch
    assert (r["batch_size"], r["epochs"], r["steps"], r["dtype"], r["threads"]) == ("64", "1", "22", "float32", "1")
    assert r["count_device"] == "meta" and r["optimizer"] == "sgd"
    fam = get_family("ffn")
    config = fam.configs([4], None, ["gelu"])[0]
    X, y = fam.data()
    model = fam.build(config)

    def feats(n):
        rep = profile(model, X[:n], mode="training", loss_fn=torch.nn.MSELoss(), target=y[:n],
                      optimizer=torch.optim.SGD(model.parameters(), lr=0.01), device="meta")
        return step_features(rep)

    f64, f28 = feats(64), feats(28)
    for name in FEATURE_NAMES:  # the mean over the run's 22 steps
        assert float(r[name]) == pytest.approx((21 * f64[name] + f28[name]) / 22, rel=1e-12), name
    assert float(r["calls"]) > 0 and float(r["bytes"]) > 0 and float(r["tos_float32"]) == pytest.approx(
        float(r["tos"]))
    assert r["joules"] == r["joules_raw"] and r["ref_nominal"] == ""  # no reference asked


def test_recurrent_layers_are_counted_on_the_run_device(tmp_path):
    out = tmp_path / "runs.csv"
    sweep("lstm", out, meter=CpuTimeMeter(), widths=[8], depths=[1], input_size=4, epochs=1, repeats=1,
          progress=False)
    r = rows(out)[0]
    assert r["count_device"] == "cpu"
    fam = get_family("lstm", input_size=4)
    config = fam.configs([8], [1])[0]
    X, y = fam.data(config)
    model = fam.build(config)
    rep = profile(model, X[:32], mode="training", loss_fn=torch.nn.MSELoss(), target=y[:32],
                  optimizer=torch.optim.SGD(model.parameters(), lr=0.01), device="cpu")
    ops = {k[3] for k in as_counts(rep).rows}
    assert "aten.mkldnn_rnn_layer" in ops  # the fused oneDNN layer, not meta's per-time-step ops
    assert float(r["calls"]) == step_features(rep)["calls"]


def test_two_files_differing_only_in_epochs_stay_separate_configurations(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    sweep("ffn", a, meter=CpuTimeMeter(), **TINY)
    sweep("ffn", b, meter=CpuTimeMeter(), **{**TINY, "epochs": 2})
    runs = read_runs([a, b])
    assert len(runs) == 4
    keys = config_keys(runs)
    assert keys.nunique() == 2  # same family/width/depth/activation, different epochs and steps
    assert sorted(runs.groupby(keys)["epochs"].first()) == [1, 2]
    assert sorted(runs.groupby(keys)["steps"].first()) == [22, 44]


def test_batch_size_is_part_of_the_configuration(tmp_path):
    a = tmp_path / "a.csv"
    sweep("ffn", a, meter=CpuTimeMeter(), **TINY)
    sweep("ffn", a, meter=CpuTimeMeter(), batch_size=128, **TINY)  # one file, two batch sizes
    runs = read_runs(a)
    assert len(runs) == 4 and config_keys(runs).nunique() == 2
    assert sorted(set(runs["batch_size"])) == [64, 128]


def test_older_runs_files_are_a_clear_error(tmp_path):
    old = tmp_path / "old.csv"
    old.write_text("family,width,depth,activation,repeat,epochs,tos,flops,joules,seconds,meter,estimated,host,torch\n"
                   "ffn,4,3,gelu,0,10,1e9,1e6,3.0,0.3,cputime,True,h,2.0\n")
    with pytest.raises(ValueError, match="older torch_tos.*measure it again") as e:
        read_runs(old)
    assert "batch_size" in str(e.value) and len(str(e.value).splitlines()) == 1


def test_the_same_file_twice_or_a_copy_is_refused(tmp_path):
    a = tmp_path / "a.csv"
    sweep("ffn", a, meter=CpuTimeMeter(), **TINY)
    with pytest.raises(ValueError, match="same file"):
        read_runs([a, a])
    copy = tmp_path / "copy.csv"
    copy.write_bytes(a.read_bytes())
    with pytest.raises(ValueError, match="same file"):
        read_runs([a, copy])


def test_duplicate_runs_are_refused_and_found(tmp_path):
    a = tmp_path / "a.csv"
    sweep("ffn", a, meter=CpuTimeMeter(), **TINY)
    lines = a.read_text().splitlines()
    dup = tmp_path / "dup.csv"
    dup.write_text("\n".join([lines[0], lines[2]]) + "\n")  # repeat 1 measured again elsewhere
    with pytest.raises(ValueError, match=r"1 duplicate run\(s\): ffn w=4 d=3 gelu .*repeat 1") as e:
        read_runs([a, dup])
    assert "a.csv line 3" in str(e.value) and "dup.csv line 2" in str(e.value)
    df = pd.concat([pd.read_csv(a), pd.read_csv(dup)], ignore_index=True)
    assert list(find_duplicates(df).index) == [1, 2]
    with pytest.raises(ValueError, match="duplicate"):
        check_no_duplicates(df)
    other_host = df.copy()
    other_host.loc[2, "host"] = "another-machine"  # the same run on another host is another run
    assert find_duplicates(other_host).empty


def test_configuration_columns_are_the_settings_of_the_issue():
    assert CONFIG_COLUMNS == ["family", "width", "depth", "activation", "input_size", "batch_size", "optimizer",
                              "epochs", "steps", "dtype", "threads", "mode", "device"]


def test_files_without_mode_or_device_read_as_training_on_the_cpu(tmp_path):
    out = tmp_path / "runs.csv"
    sweep("ffn", out, meter=CpuTimeMeter(), **TINY)
    import pandas as pd

    from torch_tos.energy.runs import read_runs

    raw = pd.read_csv(out, dtype=str, keep_default_na=False).drop(columns=["mode", "device"])
    raw.to_csv(tmp_path / "old.csv", index=False)
    runs = read_runs(tmp_path / "old.csv")
    assert set(runs["mode"]) == {"training"} and set(runs["device"]) == {"cpu"}
