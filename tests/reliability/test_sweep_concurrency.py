"""Concurrent sweeps on one results file never run or write a run twice; a huge --repeats plan
is lazy (issue 12, items 4 and 8)."""

import csv
import os
import subprocess
import sys
import textwrap
import tracemalloc

import pytest

from torch_tos.energy import CpuTimeMeter, sweep
from torch_tos.energy.runner import plan

SCRIPT = textwrap.dedent("""
    import sys
    from torch_tos.energy import sweep
    sweep("ffn", sys.argv[1], widths=[4, 5], activations=["tanh"], epochs=1, repeats=3,
          meter="cputime", progress=False)
""")


@pytest.mark.parametrize("writers", [2, 3])
def test_concurrent_sweeps_on_one_file_measure_every_run_once(tmp_path, writers):
    out = tmp_path / "runs.csv"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, str(out)], env=env, stderr=subprocess.PIPE)
             for _ in range(writers)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]
    with open(out, newline="") as f:
        ids = [(r["width"], r["repeat"]) for r in csv.DictReader(f)]
    assert sorted(ids) == sorted((w, r) for w in ("4", "5") for r in ("0", "1", "2"))  # 6 runs, once each


class Killed(Exception):
    pass


def test_ten_million_repeats_start_at_once_without_memory(tmp_path):
    gen = plan(["a", "b"], 10_000_000)
    assert next(gen) == ("a", 0) and next(gen) == ("b", 0)  # a generator: nothing is built ahead

    def stop(row):
        raise Killed

    tracemalloc.start()
    try:
        with pytest.raises(Killed):
            sweep("ffn", tmp_path / "runs.csv", widths=[4], activations=["tanh"], epochs=1, repeats=10_000_000,
                  meter=CpuTimeMeter(), progress=False, callback=stop)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100e6  # a plan of 10⁷ entries built ahead took ≥ 1.2 GB (issue 12)
