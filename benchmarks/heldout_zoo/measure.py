"""Measure the zoo's real runs: joules (from a meter) and wall seconds, each model × repeats.

One run of an entry (:func:`measure_run`): the entry is built on the CPU (weights and inputs from
the repeat's seed), one warm-up step runs untimed (first-call costs: kernel selection, allocator,
optimizer state), then ``steps`` steps run inside one meter window with the garbage collector
paused — training: zero_grad, forward, loss, backward, optimizer.step; inference: forward under
``torch.no_grad()`` (:meth:`~heldout_zoo.models.Job.step`).

:func:`measure` runs every (entry, repeat) in interleaved order (repeat 0 of every model, then
repeat 1, …: a drift of the machine's load spreads over the models instead of biasing one) with
``torch.set_num_threads(threads)``, and appends each run's row to a CSV as soon as it completes
(:class:`torch_tos.energy.runfile.ResultFile`: locked, fsynced, a torn last line repaired), so a
rerun measures only what is missing. A file whose rows disagree with the zoo (another run length,
batch, dtype or mode for an id) is refused: its figures would mix two definitions.

Each run is measured in a process of its own (:mod:`torch_tos.energy.isolate`), forked from a
server made before any measuring, as a user's training process holds one model: the C
allocator's state (its mmap and trim thresholds, and so the page faults of each step) is the
model's own, not whatever the models measured before it left behind; ``isolate=False`` measures
in this process.

Before every run and after the last, the calibration's drift reference
(:data:`torch_tos.energy.calibrate.REFERENCE_STEPS` SGD steps of :class:`~torch_tos.energy.reference.Reference`)
is read with the same meter into ``<out>.reference.csv`` (:func:`reference_path`): the machine's
state while the zoo was measured, which ``report --at-measured-state`` rescales a law's predictions
to (:func:`measured_state`).
"""

from __future__ import annotations

import datetime as _dt
import functools
import gc
import os
import socket
from pathlib import Path

import pandas as pd
import torch

from torch_tos.energy import get_meter
from torch_tos.energy.isolate import FreshProcesses, fork_available
from torch_tos.energy.runfile import ResultFile

from .models import BY_ID, Entry, build

COLUMNS = ["id", "model", "family", "mode", "dtype", "batch", "optimizer", "steps", "repeat", "joules", "seconds",
           "meter", "threads", "host", "torch", "date", "load"]
#: The columns that define a run: a row must agree with the zoo entry of its id on each.
DEFINING = ("mode", "dtype", "batch", "steps")


def definition(entry: Entry) -> dict:
    return {"mode": entry.mode, "dtype": entry.dtype_name, "batch": str(entry.batch), "steps": str(entry.steps)}


def measure_run(entry: Entry, repeat: int, meter) -> dict:
    """One measured run of ``entry`` (module doc) as a row of :data:`COLUMNS`."""
    job = build(entry, "cpu", seed=repeat)
    job.run(1)  # warm-up, untimed
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        with meter.measure() as m:
            job.run(entry.steps)
    finally:
        if was_enabled:
            gc.enable()
    return {"id": entry.id, "model": entry.name, "family": entry.family, "optimizer": entry.optimizer or "",
            **definition(entry), "repeat": repeat, "joules": repr(float(m.joules)),
            "seconds": repr(float(m.seconds)), "meter": m.source, "threads": torch.get_num_threads(),
            "host": socket.gethostname(), "torch": torch.__version__,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "load": f"{os.getloadavg()[0]:.2f}"}


def time_one_step(entry: Entry, threads: int = 1) -> float:
    """CPU seconds of ONE step of ``entry`` after one warm-up step, on ``threads`` threads: the
    timing the zoo's run lengths were chosen from (:func:`steps_for`). CPU time, not wall time:
    on a shared machine the wall clock also counts the other processes' turns."""
    import time

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        job = build(entry, "cpu", seed=0)
        job.run(1)
        t0 = time.process_time()
        job.run(1)
        return time.process_time() - t0
    finally:
        torch.set_num_threads(before)


def steps_for(seconds_per_step: float, target: float = 2.0, lo: int = 10, hi: int = 60) -> int:
    """The run length whose run lasts about ``target`` seconds, within ``lo``–``hi`` steps."""
    return int(min(hi, max(lo, round(target / seconds_per_step))))


def check_rows(rows: list[dict], path) -> None:
    """A clear error when a row's id is not in the zoo or its definition differs from the zoo's."""
    for i, row in enumerate(rows, start=2):
        entry = BY_ID.get(row["id"])
        if entry is None:
            raise ValueError(f"{path}: line {i} holds id {row['id']!r}, which is not in the zoo")
        want = definition(entry)
        diff = [f"{k} {row[k]!r} (the zoo says {want[k]!r})" for k in DEFINING if row[k] != want[k]]
        if diff:
            raise ValueError(f"{path}: line {i} measured {row['id']} with " + ", ".join(diff)
                             + ": these runs follow another zoo definition; use another --out")


REFERENCE_COLUMNS = ["time", "joules", "steps", "meter", "threads"]


def reference_path(path) -> Path:
    """Where the reference readings of the measurements file ``path`` go: ``<stem>.reference.csv``."""
    p = Path(path)
    return p.with_name(p.stem + ".reference.csv")


def _read_reference(rf: ResultFile, reference, meter) -> None:
    import time

    joules = reference.measure(meter)
    rf.append({"time": repr(time.time()), "joules": repr(float(joules)), "steps": reference.steps,
               "meter": meter.source, "threads": torch.get_num_threads()})


def measured_state(path) -> tuple[float, int]:
    """The median reference reading (joules) of the measurements file ``path`` and the reference's
    steps; a clear error when it has none (measured before the readings were recorded)."""
    ref = reference_path(path)
    if not ref.is_file():
        raise FileNotFoundError(f"{ref} does not exist: these measurements have no reference readings; measure "
                                "again with this version of bench_heldout_zoo.py")
    rows = ResultFile(ref, REFERENCE_COLUMNS, what="reference readings").rows()
    values = [float(r["joules"]) for r in rows]
    if not values:
        raise ValueError(f"{ref}: no reference readings")
    steps = {int(r["steps"]) for r in rows}
    if len(steps) > 1:
        raise ValueError(f"{ref}: readings of references of {sorted(steps)} steps; measure into another --out")
    return float(pd.Series(values).median()), steps.pop()


def measure(path, entries, *, repeats: int = 3, meter="cputime", threads: int = 1, progress: bool = True,
            callback=None, reference: bool = True, isolate: bool | None = None) -> pd.DataFrame:
    """Measure every (entry, repeat) missing from the CSV ``path`` (module doc) and return all of
    its rows (:func:`read_measurements`). ``callback(row)`` is called after each run is written;
    ``reference``: read the drift reference around the runs (module doc); ``isolate``: each run in
    a process of its own (module doc; default: where ``os.fork`` exists)."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    from torch_tos.energy.calibrate import REFERENCE_STEPS
    from torch_tos.energy.reference import Reference

    rf = ResultFile(path, COLUMNS)
    readings = ResultFile(reference_path(path), REFERENCE_COLUMNS, what="reference readings") if reference else None
    reference_run = Reference(REFERENCE_STEPS)
    meter = get_meter(meter)
    rows = rf.rows()
    check_rows(rows, rf.path)
    done = {(r["id"], int(r["repeat"])) for r in rows}
    todo = [(e, r) for r in range(repeats) for e in entries if (e.id, r) not in done]
    if isolate is None:
        isolate = fork_available() and threads == 1
    server = None
    if isolate and todo:
        server = FreshProcesses(functools.partial(_fresh_run, meter=meter, threads=threads), list(entries),
                                prepare=_prepare)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    bar = _bar(total=len(todo), desc="zoo runs", disable=not progress)
    try:
        if todo and reference:
            reference_run.run()  # warm-up
        for entry, repeat in todo:
            bar.set_postfix_str(f"{entry.id} repeat {repeat}")
            with rf.locked():
                now = rf.rows()  # another process may have measured it meanwhile
                if any(r["id"] == entry.id and int(r["repeat"]) == repeat for r in now):
                    bar.update()
                    continue
                if reference:
                    _read_reference(readings, reference_run, meter)
                row = server.run(entry, repeat) if server else measure_run(entry, repeat, meter)
                rf.append(row)
            bar.update()
            if callback is not None:
                callback(row)
        if todo and reference:
            _read_reference(readings, reference_run, meter)
    finally:
        bar.close()
        torch.set_num_threads(before)
        if server is not None:
            server.close()
    return read_measurements(rf.path)


def _fresh_run(entry: Entry, repeat: int, *, meter, threads: int) -> dict:
    torch.set_num_threads(threads)
    return measure_run(entry, repeat, meter)


def _prepare() -> None:
    """The measuring server's one-time cost, on one thread: the first optimizer of a process
    imports about a second of modules (on a 4-element parameter: the allocator's thresholds do not
    move)."""
    torch.set_num_threads(1)
    torch.optim.SGD([torch.nn.Parameter(torch.zeros(4))], lr=0.1)


def read_measurements(path) -> pd.DataFrame:
    """The measurements CSV as a DataFrame (numbers as numbers), checked against the zoo."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"measurements file {str(path)!r} does not exist; make it with "
                                f"`bench_heldout_zoo.py measure --out {path}`")
    rows = ResultFile(path, COLUMNS, what="measurements file").rows()
    if not rows:
        raise ValueError(f"{path}: no measured runs; run `bench_heldout_zoo.py measure --out {path}` first")
    check_rows(rows, path)
    df = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("batch", "steps", "repeat", "joules", "seconds", "threads", "load"):
        df[col] = pd.to_numeric(df[col], errors="raise")
    bad = df[~(df["joules"] > 0) | ~(df["seconds"] > 0)]
    if len(bad):
        raise ValueError(f"{path}: run {bad['id'].iloc[0]} repeat {bad['repeat'].iloc[0]} has no positive "
                         "joules and seconds")
    return df


def _bar(**kwargs):
    from tqdm.auto import tqdm

    return tqdm(dynamic_ncols=True, **kwargs)


__all__ = ["COLUMNS", "REFERENCE_COLUMNS", "reference_path", "measured_state", "measure", "time_one_step", "steps_for", "measure_run", "read_measurements", "check_rows"]
