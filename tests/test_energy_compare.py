"""compare() (the paper's Table V), splits, and the checks on runs tables / CSV files."""

import numpy as np
import pandas as pd
import pytest

from torch_tos.energy import COLUMNS, compare, compare_long, format_table_v, read_runs, split_runs, trim_runs
from torch_tos.energy.runs import config_keys

ACT_TOS = {"sigmoid": 1.0, "tanh": 1.1, "gelu": 1.35}  # TOs per width unit, by activation


def synthetic_runs(repeats=6, noise=2.0, seed=0) -> pd.DataFrame:
    """Energy follows TOs (activation-dependent); FLOPs are blind to the activation."""
    rng = np.random.default_rng(seed)
    rows = []
    for act, k in ACT_TOS.items():
        for width in range(4, 19, 2):
            tos = 1e13 * k * width ** 2
            flops = 1e6 * width ** 2
            for r in range(repeats):
                rows.append({"family": "ffn", "width": width, "depth": 3, "activation": act, "repeat": r,
                             "epochs": 10, "tos": tos, "flops": flops,
                             "joules": 1000 + 2e-12 * tos + rng.normal(0, noise), "seconds": 1.0,
                             "meter": "rapl", "estimated": False, "host": "h", "torch": "2"})
    return pd.DataFrame(rows, columns=COLUMNS)


def test_compare_table_v_layout_and_tos_beats_flops():
    runs = synthetic_runs()
    table = compare(runs)
    assert list(table.index) == [1, 2, 3]
    assert list(dict.fromkeys(table.columns.get_level_values(0))) == ["tos", "flops"]
    assert {"precision_min", "precision_max", "precision_avg", "adj_r2", "rmse", "avg_error",
            "max_error"} <= set(table.columns.get_level_values(1))
    tos, flops = table["tos"], table["flops"]
    assert (tos["precision_avg"] > flops["precision_avg"]).all()
    assert (tos["rmse"] < flops["rmse"]).all()
    assert (tos["adj_r2"] > 0.99).all()
    assert (tos["precision_min"] <= tos["precision_avg"]).all()
    assert (tos["precision_avg"] <= tos["precision_max"]).all()
    assert table.attrs["n_train"] + table.attrs["n_test"] == len(runs)
    assert table.attrs["laws"][(None, "tos", 1)].startswith("E = 1.0")
    text = format_table_v(table)
    assert text.splitlines()[0].split() == ["TOs", "FLOPs"]
    assert "precision (%)" in text and "avg/max error (J)" in text and "(avg " in text


def test_random_split_is_per_configuration_60_40():
    runs = synthetic_runs(repeats=5)
    train, test = split_runs(runs, "random", 0.6, seed=1)
    per_config = pd.Series(train).groupby(config_keys(runs).to_numpy()).sum()
    assert (per_config == 3).all()  # 60 % of each configuration's 5 runs
    again, _ = split_runs(runs, "random", 0.6, seed=1)
    assert (again == train).all()


def test_config_split_holds_out_whole_configurations():
    runs = synthetic_runs()
    train, test = split_runs(runs, "config", 0.6, seed=0, order_by="tos")
    keys = config_keys(runs)
    assert not set(keys[train]) & set(keys[test])
    # the extremes train, so held-out configurations are interpolated
    assert runs.loc[train, "tos"].min() == runs["tos"].min()
    assert runs.loc[train, "tos"].max() == runs["tos"].max()
    table = compare(runs, split="config", degrees=(1, 2))
    assert (table["tos"]["precision_avg"] > table["flops"]["precision_avg"]).all()


def test_compare_by_activation_and_trim_and_long_form():
    runs = synthetic_runs(repeats=7)
    table = compare(runs, by="activation", degrees=(1,), trim=1)
    assert list(table.index) == [("gelu", 1), ("sigmoid", 1), ("tanh", 1)]
    long = compare_long(runs, degrees=(1,))
    assert set(long.columns) >= {"feature", "degree", "precision_avg", "law", "n_train", "n_test"}
    assert len(long) == 2


def test_trim_drops_highest_and_lowest_of_each_configuration():
    runs = synthetic_runs(repeats=5)
    trimmed = trim_runs(runs, 1)
    assert len(trimmed) == len(runs) * 3 // 5
    for _, g in runs.groupby(["activation", "width"]):
        kept = trimmed[(trimmed.activation == g.activation.iloc[0]) & (trimmed.width == g.width.iloc[0])]
        assert kept.joules.max() < g.joules.max() and kept.joules.min() > g.joules.min()
    with pytest.raises(ValueError, match="has only 5 runs"):
        trim_runs(runs, 3)


def test_compare_bad_input():
    runs = synthetic_runs()
    with pytest.raises(ValueError, match="unknown split 'kfold'; accepted: random, config"):
        compare(runs, split="kfold")
    with pytest.raises(ValueError, match="missing column.*joules"):
        compare(runs.drop(columns="joules"))
    bad = runs.copy()
    bad.loc[3, "joules"] = -1.0
    with pytest.raises(ValueError, match="zero or negative energies on row.* 3"):
        compare(bad)
    bad.loc[3, "joules"] = np.nan
    with pytest.raises(ValueError, match="'joules' is empty or NaN on row"):
        compare(bad)
    few = runs[runs.width.isin([4, 6])]
    with pytest.raises(ValueError, match="degree-3 law needs runs at 4 or more distinct flops"):
        compare(few)
    tiny = runs.groupby(["activation", "width"]).head(1).head(4)
    with pytest.raises(ValueError, match="needs more than"):
        compare(tiny, degrees=(2,))
    with pytest.raises(ValueError, match="train_frac"):
        compare(runs, train_frac=1.5)
    with pytest.raises(ValueError, match="cannot group by 'colour'"):
        compare(runs, by="colour")


def write(path, text):
    path.write_text(text)
    return path


def test_read_runs_checks_files(tmp_path):
    good = synthetic_runs(repeats=2)
    p = tmp_path / "runs.csv"
    good.to_csv(p, index=False)
    runs = read_runs(p)
    assert len(runs) == len(good) and (runs["file"] == str(p)).all()
    assert runs["width"].dtype.kind in "if"

    text = p.read_text().splitlines()
    missing = write(tmp_path / "missing.csv", "family,tos\nffn,1\n")
    with pytest.raises(ValueError, match="no column.*joules.*a runs file of an older torch_tos"):
        read_runs(missing)
    cells = text[3].split(",")
    cells[COLUMNS.index("joules")] = "lots"
    bad = write(tmp_path / "bad.csv", "\n".join(text[:3] + [",".join(cells)] + text[4:]) + "\n")
    col = COLUMNS.index("joules") + 1  # 1-based, as a spreadsheet shows it
    with pytest.raises(ValueError, match=rf"bad.csv line 4, column {col} \(joules\): 'lots' is not a number; joules "
                                         r"holds a finite positive number of joules"):
        read_runs(bad)
    cells[COLUMNS.index("joules")] = ""
    empty = write(tmp_path / "empty_e.csv", "\n".join(text[:3] + [",".join(cells)] + text[4:]) + "\n")
    with pytest.raises(ValueError, match=rf"empty_e.csv line 4, column {col} \(joules\) is empty; every run needs its joules"):
        read_runs(empty)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_runs(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="the file is empty"):
        read_runs(write(tmp_path / "zero.csv", ""))
