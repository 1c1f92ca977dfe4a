"""Runs measured in processes of their own (torch_tos.energy.isolate): where they run, what
crosses the pipes, failures reported, and the point of it all: the worker's C allocator is the
server's, untouched by what the caller did after making the server."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from torch_tos.energy.isolate import FreshProcesses, fork_available
from torch_tos.energy.meters.base import Meter

pytestmark = pytest.mark.skipif(not fork_available(), reason="needs os.fork")

PREPARED = []


def _whoami(item, extra):
    return {"pid": os.getpid(), "item": item, "extra": extra, "prepared": list(PREPARED)}


def _prepare():
    PREPARED.append("server")


def _fail(item):
    if item == "exit":
        os._exit(3)
    if item == "unpicklable":
        return lambda: None
    raise KeyError(f"no such thing as {item}")


def test_each_run_is_a_new_process_forked_from_the_server():
    items = ["a", "b"]
    with FreshProcesses(_whoami, items, prepare=_prepare) as server:
        runs = [server.run(item, i) for i, item in enumerate(items * 2)]
    pids = {r["pid"] for r in runs}
    assert len(pids) == 4 and os.getpid() not in pids and server.pid not in pids
    assert [(r["item"], r["extra"]) for r in runs] == [("a", 0), ("b", 1), ("a", 2), ("b", 3)]
    assert all(r["prepared"] == ["server"] for r in runs) and PREPARED == []  # prepared there, once, not here


def test_failures_are_reported_with_their_type_and_the_server_goes_on():
    with FreshProcesses(_fail, ["exit", "boom", "unpicklable"]) as server:
        with pytest.raises(RuntimeError, match=r"ended without a result \(wait status 768\)"):
            server.run("exit")
        with pytest.raises(KeyError, match="no such thing as boom") as e:
            server.run("boom")
        assert "raised in a fresh measuring process" in e.value.__notes__[0] and "_fail" in e.value.__notes__[0]
        with pytest.raises((AttributeError, pickle.PicklingError, TypeError), match="pickle"):
            server.run("unpicklable")  # a result that cannot travel is an error, not a hang
        with pytest.raises(ValueError, match="was not given when the fresh-process server was created"):
            server.run("other")
        assert server.covers("boom") and not server.covers("other")
    server.close()  # closing twice is harmless
    with pytest.raises(RuntimeError, match="closed"):
        server.run("boom")


def test_a_failing_prepare_is_raised_by_the_constructor():
    with pytest.raises(KeyError, match="no such thing as prepared"):
        FreshProcesses(_whoami, ["a"], prepare=lambda: _fail("prepared"))


def test_a_killed_server_is_a_clear_error_and_a_killed_caller_takes_the_server_along(tmp_path):
    server = FreshProcesses(_whoami, ["a"])
    os.kill(server.pid, 9)
    with pytest.raises(RuntimeError, match="server has ended"):
        server.run("a", 0)
    with pytest.raises(RuntimeError, match="closed"):
        server.run("a", 0)
    if not sys.platform.startswith("linux"):
        return
    code = textwrap.dedent(f"""
        import os, time
        from torch_tos.energy.isolate import FreshProcesses
        server = FreshProcesses(lambda item: time.sleep(60), ["x"])
        open({str(tmp_path / "pid")!r}, "w").write(str(server.pid))
        server.run("x")
    """)
    proc = subprocess.Popen([sys.executable, "-c", code])
    pid_file = tmp_path / "pid"
    for _ in range(600):
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.05)
    server_pid = int(pid_file.read_text())
    proc.kill()
    proc.wait()
    for _ in range(200):  # the server dies with its caller (PR_SET_PDEATHSIG)
        if not _alive(server_pid):
            break
        time.sleep(0.05)
    assert not _alive(server_pid)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_worker_allocator_is_the_server_s_not_the_caller_s():
    """glibc: freeing a 24 MiB mapped buffer raises the caller's mmap threshold to 24 MiB, so an
    8 MiB buffer then comes from the heap; the worker, forked from a server made before that,
    still maps it (the threshold of a process that has freed nothing that large). Run in a fresh
    interpreter: this test process's allocator has long been warmed."""
    code = textwrap.dedent("""
        import ctypes, json
        from torch_tos.energy.isolate import FreshProcesses

        libc = ctypes.CDLL("libc.so.6")
        class Info(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                        "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
        libc.mallinfo2.restype = Info
        libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
        libc.free.argtypes = [ctypes.c_void_p]

        def maps_8_mib(_item=None):
            before = libc.mallinfo2().hblks
            p = libc.malloc(8 << 20)
            mapped = libc.mallinfo2().hblks - before
            libc.free(p)
            return mapped

        server = FreshProcesses(maps_8_mib, ["x"])
        libc.free(libc.malloc(24 << 20))  # the caller's threshold rises to 24 MiB
        print(json.dumps({"caller": maps_8_mib(), "worker": server.run("x")}))
        server.close()
    """)
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallinfo2  # noqa: B018 — glibc >= 2.33
    except (OSError, AttributeError):
        pytest.skip("needs glibc's mallinfo2")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == '{"caller": 0, "worker": 1}'


class PidMeter(Meter):
    """A meter whose joules are the id of the process that measured."""

    name = source = "pid"
    estimated = True

    def _begin(self):
        return 0

    def _end(self, state, m):
        m.joules = float(os.getpid())


def test_run_plan_measures_runs_in_fresh_processes_and_the_reference_here(tmp_path):
    from torch_tos.energy.calibrate import suite_workloads
    from torch_tos.energy.isolate import fresh_processes
    from torch_tos.energy.reference import Reference
    from torch_tos.energy.runner import run_plan

    suite = suite_workloads(threads=1, device="cpu", dtypes={"float32"}, families=["ffn"], scale=0.05)
    training = [w for w in suite if w.mode == "training"][:1]
    inference = [w for w in suite if w.mode == "inference"][:1]
    meter = PidMeter()

    class Counted(Reference):
        runs = 0

        def run(self):
            Counted.runs += 1
            super().run()

    with fresh_processes(training, meter) as server:  # made for the training workloads only
        run_plan(training + inference, tmp_path / "runs.csv", repeats=2, meter=meter, reference=Counted(2),
                 progress=False, fresh=server)
    # 6 for the nominal (a warm-up and 5 readings); an isolated run's 2 readings each after an untimed
    # run (this process's caches went cold meanwhile): 4 × 2; a run measured here: 2 × 2
    assert Counted.runs == 6 + 4 * 2 + 2 * 2
    runs = pd.read_csv(tmp_path / "runs.csv")
    isolated = runs[runs["mode"] == "training"]
    assert len(isolated) == 2 and isolated["joules_raw"].nunique() == 2
    assert os.getpid() not in set(isolated["joules_raw"])
    assert set(runs.loc[runs["mode"] == "inference", "joules_raw"]) == {os.getpid()}  # not covered: measured here
    assert set(runs["ref_before"]) == set(runs["ref_after"]) == {os.getpid()}  # read in this process


@pytest.mark.slow
def test_calibrate_records_whether_its_runs_were_isolated(tmp_path):
    from energy_fakes import write_bench

    from torch_tos.energy import CpuTimeMeter, load_law
    from torch_tos.energy.calibrate import calibrate, paths

    kw = dict(meter=CpuTimeMeter(), dtypes=["float32"], repeats=2, families=["mlp", "ffn"], scale=0.2, progress=False)
    for name, isolate in (("a.json", None), ("b.json", False)):
        write_bench(paths(tmp_path / name)[1])  # the microbenchmarks "done": the suite is measured
        calibrate(tmp_path / name, isolate=isolate, **kw)
    assert load_law(tmp_path / "a.json").meta["isolate"] is True  # the default on a CPU
    assert load_law(tmp_path / "b.json").meta["isolate"] is False


def test_where_runs_cannot_be_isolated():
    import torch

    from torch_tos.energy.calibrate import suite_workloads
    from torch_tos.energy.isolate import resolve_isolate

    one = suite_workloads(threads=1, device="cpu", dtypes={"float32"}, families=["ffn"], scale=0.05)
    two = suite_workloads(threads=2, device="cpu", dtypes={"float32"}, families=["ffn"], scale=0.05)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_isolate(None, one, cpu) is True and resolve_isolate(False, one, cpu) is False
    assert resolve_isolate(None, two, cpu) is False and resolve_isolate(None, one, cuda) is False
    with pytest.raises(ValueError, match="not 2 threads .*; use --no-isolate"):
        resolve_isolate(True, two, cpu)
    with pytest.raises(ValueError, match="not a cuda device; use --no-isolate"):
        resolve_isolate(True, one, cuda)
