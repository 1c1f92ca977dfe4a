"""Calibration across hosts: ``calibrate --shard i/n`` splits the suite by entry, each shard keeps
its own machine's profile and files, ``calibrate --merge`` checks and merges them into one law that
records every measuring machine; runs of several machines are never pooled (``fit --machine``)."""

import json
import shutil

import pandas as pd
import pytest

from torch_tos.cli import main
from torch_tos.energy import CpuTimeMeter, load_law
from torch_tos.energy.calibrate import SUITE, fit_cost_model, suite_workloads, workload_key
from torch_tos.energy.runs import check_one_machine
from torch_tos.energy.shards import find_shards, merge_shards, parse_shard, shard_paths

from energy_fakes import synthetic_profile, write_bench
from test_energy_cli import full_layout, one_line_error, run
from test_energy_compare import synthetic_runs

#: a narrow suite that still identifies both modes' laws (3+ models per mode, two lengths each)
NARROW = ["--meter", "cputime", "--dtypes", "float32", "--families", "mlp,ffn,conv", "--scale", "0.1",
          "--repeats", "2", "--no-progress"]


def keys(workloads):
    return sorted(workload_key(w, len(w.data()[0])) for w in workloads)


def test_shards_partition_the_suite_by_entry():
    whole = suite_workloads()
    shares = [suite_workloads(shard=(i, 3)) for i in (1, 2, 3)]
    assert keys(whole) == keys([w for s in shares for w in s])  # every run once, in one shard
    for s in shares:  # both lengths of an entry in the same shard: its per-step and per-run costs on one host
        models = {workload_key(w, 0)[:7] + workload_key(w, 0)[9:] for w in s}
        others = {workload_key(w, 0)[:7] + workload_key(w, 0)[9:] for t in shares if t is not s for w in t}
        assert not models & others
    entries = [len({workload_key(w, 0)[:7] + workload_key(w, 0)[9:] for w in s}) for s in shares]
    assert sorted(entries) == sorted(len(SUITE[i::3]) for i in range(3))  # every 3rd entry


def test_shard_auto_reads_slurm_arrays_and_torchrun():
    assert parse_shard("2/4") == (2, 4)
    assert parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0",
                                "SLURM_ARRAY_TASK_COUNT": "4"}) == (1, 4)
    assert parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "1",
                                "SLURM_ARRAY_TASK_COUNT": "4"}) == (4, 4)
    assert parse_shard("auto", {"RANK": "2", "WORLD_SIZE": "3"}) == (3, 3)
    with pytest.raises(ValueError, match="neither a SLURM array .* nor torchrun"):
        parse_shard("auto", {})
    with pytest.raises(ValueError, match="SLURM_ARRAY_TASK_MIN or SLURM_ARRAY_TASK_COUNT is missing"):
        parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "3"})
    with pytest.raises(ValueError, match="shard 5/4 is out of range"):
        parse_shard("5/4")


def test_calibrate_shard_and_merge_bad_input_is_one_line(tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "law.json")
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    one_line_error(capsys, "calibrate", "--out", out, "--shard", "0/2", *NARROW, match="--shard: shard 0/2 is out of range")
    one_line_error(capsys, "calibrate", "--out", out, "--shard", "auto", *NARROW, match="neither a SLURM array")
    one_line_error(capsys, "calibrate", "--out", out, "--shard", "1/2", "--merge", match="--merge and --shard exclude")
    one_line_error(capsys, "calibrate", "--out", out, "--shard", "1/2", "--runs", str(tmp_path / "r.csv"),
                   match="leave --runs out")
    one_line_error(capsys, "calibrate", "--out", out, "--merge", match="no shards of")
    one_line_error(capsys, "calibrate", "--out", out, "--shard", "9/9", "--families", "ffn", "--meter", "cputime",
                   "--no-progress", match="shard 9/9 holds no suite entry")
    assert not any(tmp_path.iterdir())  # refused before any work


@pytest.mark.slow
def test_sharded_calibration_merges_into_one_law_of_one_machine(tmp_path, capsys):
    out = tmp_path / "law.json"
    for i in (1, 2):  # each host's microbenchmarks "done": each shard measures its share of the suite
        write_bench(shard_paths(out, i, 2)["bench"])
    rc, text, _ = run(capsys, "calibrate", "--out", str(out), "--shard", "1/2", *NARROW)
    assert rc == 0 and "shard 1/2 finished" in text and f"--merge --out {out}" in text
    one_line_error(capsys, "calibrate", "--out", str(out), "--merge", match="shard(s) 2/2 of")
    rc, text, _ = run(capsys, "calibrate", "--out", str(out), "--shard", "2/2", *NARROW)
    assert rc == 0 and not out.exists()  # a shard fits nothing
    size = shard_paths(out, 2, 2)["runs"].stat().st_size
    assert run(capsys, "calibrate", "--out", str(out), "--shard", "2/2", *NARROW)[0] == 0
    assert shard_paths(out, 2, 2)["runs"].stat().st_size == size  # resumed: nothing measured twice
    one_line_error(capsys, "calibrate", "--out", str(out), "--shard", "2/2", *NARROW[:-3], "--repeats", "3",
                   "--no-progress", match="was begun with other options (repeats 2")

    rc, text, _ = run(capsys, "calibrate", "--out", str(out), "--merge")
    assert rc == 0, text
    assert "merged 2 shards" in text and "(2 shards, merged)" in text and "Table V" in text
    assert "law.shard-*-of-2.bench.jsonl" in text and "law.shard-*-of-2.runs.csv" in text
    law = load_law(out)
    fps = law.fingerprints
    assert [fp["shard"] for fp in fps["profiles"]] == ["1/2", "2/2"] and fps["profile"]["cpu"]
    assert law.meta["shards"] == 2 and "(2 shards, merged)" in str(law)
    cal_runs = pd.concat([pd.read_csv(shard_paths(out, i, 2)["runs"]) for i in (1, 2)])
    assert fps["runs"][0]["machine"] == cal_runs["machine"].iloc[0] == fps["profile"]["cpu"]
    assert law.laws[("training", "joules")].n_train_ == (cal_runs["mode"] == "training").sum()
    # the machine's noise over both shards' runs (their raw run-to-run CV)
    from torch_tos.energy.reference import calibration_noise, noise_notes

    assert law.meta["noise_cv"] == pytest.approx(calibration_noise(cal_runs)["noise_cv"])  # (labels repeat)
    assert all(n in text for n in noise_notes(law.meta))

    # a shard's runs cut short: the merge names it and how to finish it
    bad = tmp_path / "cut"
    bad.mkdir()
    for f in tmp_path.glob("law.shard-*"):
        shutil.copy(f, bad / f.name)
    runs2 = bad / "law.shard-2-of-2.runs.csv"
    lines = runs2.read_text().splitlines(keepends=True)
    runs2.write_text("".join(lines[:-2]))
    with pytest.raises(ValueError, match=r"shard 2/2 has not finished its runs \(\d+ of \d+.*rerun torch-tos "
                       r"calibrate --shard 2/2"):
        merge_shards(bad / "law.json")
    runs2.write_text("".join(lines))
    # a shard measured on another machine: refused, never pooled
    bench2 = bad / "law.shard-2-of-2.bench.jsonl"
    items = [json.loads(x) for x in bench2.read_text().splitlines()]
    for item in items:
        if "fingerprint" in item:
            item["fingerprint"].update(cpu="Another CPU", host="node7")
    bench2.write_text("".join(json.dumps(x) + "\n" for x in items))
    with pytest.raises(ValueError, match=r"measured on 2 machines — 1/2 .*; 2/2 \(node7\) on Another CPU.*calibrate "
                       "each machine with its own --out"):
        merge_shards(bad / "law.json")
    # the bench file of another machine is not resumed here either
    from torch_tos.energy.shards import calibrate_shard

    with pytest.raises(ValueError, match="begun on another machine \\(node7: cpu 'Another CPU' there"):
        calibrate_shard(bad / "law.json", "2/2", meter=CpuTimeMeter(), dtypes=["float32"], families=["mlp", "ffn", "conv"],
                        scale=0.1, progress=False)


def test_find_shards_refuses_mixed_counts_and_options(tmp_path):
    out = tmp_path / "law.json"
    setup = {"device": "cpu", "dtypes": ["float32"], "threads": 1, "repeats": 2, "families": None, "scale": 1.0,
             "seed": 0, "reference": False, "meter": "cputime", "thin": 1, "workloads": None}
    for i in (1, 2):
        shard_paths(out, i, 2)["setup"].write_text(json.dumps({**setup, "shard": [i, 2]}))
    assert set(find_shards(out)) == {1, 2}
    shard_paths(out, 2, 2)["setup"].write_text(json.dumps({**setup, "shard": [2, 2], "threads": 4}))
    with pytest.raises(ValueError, match="shards 1/2 and 2/2 .* other options \\(threads: 1 and 4\\)"):
        find_shards(out)
    shard_paths(out, 1, 3)["setup"].write_text(json.dumps({**setup, "shard": [1, 3]}))
    with pytest.raises(ValueError, match="shards of 2 shard counts"):
        find_shards(out)


def test_runs_of_two_machines_are_refused_or_picked():
    runs = pd.DataFrame({"machine": ["A", "A", "B"], "file": ["a.csv", "a.csv", "b.csv"], "joules": [1.0, 2, 3]})
    with pytest.raises(ValueError, match=r"measured on 2 machines: 'A' \(2 runs in a.csv\); 'B' \(1 runs in b.csv\).*"
                       r"pick one with --machine 'A'"):
        check_one_machine(runs, how="--machine ")
    assert check_one_machine(runs, "B")["joules"].tolist() == [3.0]
    with pytest.raises(ValueError, match="no runs of machine 'C'"):
        check_one_machine(runs, "C")
    from test_steplaw import priced

    two = priced().assign(host="a", machine="cpu A")
    two.loc[two["family"] == "fam3", ["host", "machine"]] = ["b", "cpu B"]
    with pytest.raises(ValueError, match="measured on 2 machines"):
        fit_cost_model(synthetic_profile(), two)
    hosts = priced().assign(host="a", machine="cpu A", torch="2", threads=1)
    hosts.loc[hosts["family"] == "fam3", "host"] = "b"  # two hosts of one machine (shards): one law
    law = fit_cost_model(synthetic_profile(), hosts, profile_fingerprint={"host": "a", "cpu": "cpu A"})
    assert [fp["host"] for fp in law.fingerprints["runs"]] == ["a", "b"]
    assert law.fingerprints["profile"] == {"host": "a", "cpu": "cpu A"}
    with pytest.raises(ValueError, match="runs were measured on 'cpu A' but the machine profile on 'EPYC' \\(n2\\)"):
        fit_cost_model(synthetic_profile(), hosts, profile_fingerprint={"host": "n2", "cpu": "EPYC"})


def test_fit_refuses_runs_of_two_machines_and_fits_one_with_machine(tmp_path, capsys):
    runs = full_layout(synthetic_runs(repeats=3))
    a, b = runs.assign(machine="Xeon A"), runs.assign(machine="EPYC B", host="h2")
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_csv(tmp_path / "b.csv", index=False)
    files = [str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]
    one_line_error(capsys, "fit", *files, "--evaluate", "none",
                   match="the runs were measured on 2 machines: 'EPYC B' (")
    one_line_error(capsys, "fit", *files, "--machine", "Z80", match="no runs of machine 'Z80'")
    rc, text, _ = run(capsys, "fit", *files, "--machine", "Xeon A", "--evaluate", "none", "--degrees", "1")
    assert rc == 0 and f"{len(runs)} runs from 2 file(s); machine: Xeon A" in text


def test_law_file_fingerprints_are_validated_whole(tmp_path):
    from energy_fakes import synthetic_law

    law = synthetic_law()
    law.fingerprints["profiles"] = [{"host": "n1", "cpu": "c", "shard": "1/2"}, {"host": "n2", "cpu": "c",
                                                                                "shard": "2/2"}]
    path = tmp_path / "law.json"
    law.save(path)
    back = load_law(path)
    assert back.fingerprints["profiles"][1]["host"] == "n2" and "n1 (c, torch ?), n2 (c, torch ?)" in str(back)
    data = json.loads(path.read_text())
    data["fingerprints"]["profiles"][1]["gpu"] = 1.5
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"fingerprints.profiles\[1\].gpu: must be a string, an integer or null"):
        load_law(path)
    data["fingerprints"]["profiles"] = {"host": "n1"}
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="fingerprints.profiles: must be a list"):
        load_law(path)


def test_a_runs_machine_is_the_processor_of_its_device():
    from torch_tos.energy.device import Device
    from torch_tos.energy.fingerprint import cpu_model, machine_name

    assert machine_name("cpu") == cpu_model()
    assert machine_name(Device("cuda", 0, "NVIDIA H100 80GB HBM3")) == "NVIDIA H100 80GB HBM3"


def test_work_outside_the_calibrated_range_warns_at_predict_time():
    """Steps beyond the longest run and unmeasured dtypes: tests/test_costmodel.py; here the kernel
    cost and the ops per step of a step far outside what the calibration's runs spanned."""
    import warnings

    import torch

    from energy_fakes import synthetic_law
    from torch_tos.energy import ExtrapolationWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pred = synthetic_law().predict(torch.nn.Linear(4096, 4096), torch.empty(4096, 4096, device="meta"),
                                       mode="inference")
    said = [str(w.message) for w in caught if issubclass(w.category, ExtrapolationWarning)]
    assert any(s.startswith("kernel cost per step (") and "outside the calibrated 1e-06 – 10" in s for s in said)
    assert any(s.startswith("forward ops per step (2) is outside the calibrated 10 – 1e+05") for s in said)
    assert any("more work than the largest measured one" in s for s in said)
    assert set(said) <= set(pred.warnings)
