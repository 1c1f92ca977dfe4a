"""Measuring a machine profile into a resumable file.

:func:`measure_profile` runs the microbenchmarks (:mod:`.microbench`) for a device and dtypes and
returns the :class:`~.machine.MachineProfile`. Each result is appended to a JSON-lines file
(:class:`BenchFile`) as soon as it is measured — the setup (device, threads, meter), the dispatch
floor, the allocation curve, then one line per (dtype, workload, size) — flushed and synced, so a
killed calibration loses at most the line it was measuring and a rerun measures only what is
missing. Denormal numbers flush to zero while it measures (:mod:`.microbench`) and back to
PyTorch's default after. A file measured on another device, thread count or meter is refused (its costs would
not be this setup's), and so is one begun on another machine (another CPU model, core count, GPU or
torch version: :data:`~.fingerprint.MATCH`); the file records the fingerprint of the machine that
began it, which the profile carries (:attr:`~.machine.MachineProfile.fingerprint`); a torn last line (a crash mid-write) is dropped by rewriting the file
atomically without it. A progress bar shows the sweep.

With a drift ``reference`` (:class:`~.reference.Reference`), the reference is read when the file is
begun, every :data:`~.reference.TRACK_SECONDS` of sweeping and at the end (``{"ref": [time,
joules]}`` lines), every result line records when it was measured, and the profile's joules
(points, floor, allocation curve) are rescaled by the track at their time to its nominal, the
median reading (:class:`~.reference.DriftTrack`); seconds stay as measured. A file begun with the reference is
refused without it, and the other way round (its figures would be in other units).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from .benchsuite import get_workloads
from .device import Device
from .machine import MachineProfile
from .microbench import Timing, allocation_costs, dispatch_floor, measure_workload, plan


class BenchFile:
    """The JSON-lines results file of a microbenchmark sweep (module doc)."""

    def __init__(self, path, setup: dict):
        self.path = Path(path)
        self.setup = setup
        self.lines: list[dict] = []
        if self.path.exists():
            self._read()
        else:
            self._append({"setup": setup})

    def _read(self) -> None:
        from ..fileio import atomic_write_text

        text = self.path.read_text(encoding="utf-8")
        good, torn = [], False
        for i, line in enumerate(text.splitlines()):
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                if i == len(text.splitlines()) - 1:
                    torn = True
                    break
                raise ValueError(f"{self.path} line {i + 1}: not a microbenchmark result (broken JSON); use another "
                                 "file or delete it") from None
            if not isinstance(item, dict):
                raise ValueError(f"{self.path} line {i + 1}: not a microbenchmark result")
            good.append(item)
        if not good or "setup" not in good[0]:
            raise ValueError(f"{self.path}: not a torch_tos microbenchmark file (no setup line); use another file")
        if good[0]["setup"] != self.setup:
            theirs = good[0]["setup"]
            if {k: v for k, v in theirs.items() if k != "reference"} == {k: v for k, v in self.setup.items()
                                                                        if k != "reference"}:
                how = ("with the drift reference: calibrate with --reference" if "reference" in theirs else
                       "without the drift reference: calibrate with --no-reference")
                raise ValueError(f"{self.path} holds microbenchmarks measured {how} (its figures are in other "
                                 "units), or use another --out")
            theirs = ", ".join(f"{k} {v}" for k, v in theirs.items())
            raise ValueError(f"{self.path} holds microbenchmarks of another setup ({theirs}); use another --out or "
                             "delete it")
        if torn or (text and not text.endswith("\n")):
            atomic_write_text(self.path, "".join(json.dumps(x) + "\n" for x in good))
        self.lines = good

    def _append(self, item: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(item) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.lines.append(item)

    def get(self, kind: str):
        line = self.line(kind)
        return None if line is None else line[kind]

    def line(self, kind: str) -> dict | None:
        for item in self.lines:
            if kind in item:
                return item
        return None

    def add(self, kind: str, value, t=None) -> None:
        self._append({kind: value} if t is None else {kind: value, "t": list(t)})

    def done(self) -> set:
        return {(x["dtype"], x["workload"], json.dumps(x["size"])) for x in self.lines if "points" in x}

    def points(self) -> list[dict]:
        return [p for x in self.lines if "points" in x for p in x["points"]]

    def add_points(self, dtype: str, workload: str, size, points: list[dict], t=None) -> None:
        item = {"dtype": dtype, "workload": workload, "size": size, "points": points}
        self._append(item if t is None else dict(item, t=list(t)))

    def track(self):
        """The file's :class:`~.reference.DriftTrack`, or None when it was begun without the reference."""
        from .reference import DriftTrack

        if self.get("reference") is None:
            return None
        return DriftTrack([tuple(x["ref"]) for x in self.lines if "ref" in x])

    def corrected(self, track) -> tuple[list[dict], dict, list]:
        """The points, floor and allocation curve with their joules rescaled by ``track`` at the time
        each was measured (as measured when ``track`` is None)."""
        def fix(line):
            return 1.0 if track is None or "t" not in line else track.factor(*line["t"])

        points = []
        for x in self.lines:
            if "points" in x:
                f = fix(x)
                points += [dict(p, joules=p["joules"] * f) for p in x["points"]]
        floor_line, alloc_line = self.line("floor"), self.line("alloc")
        floor = dict(floor_line["floor"], joules=floor_line["floor"]["joules"] * fix(floor_line))
        f = fix(alloc_line)
        alloc = [[n, s, j * f] for n, s, j in alloc_line["alloc"]]
        return points, floor, alloc


def _seen_key(p: dict) -> tuple:
    attrs = tuple(p["attrs"]) if p.get("attrs") is not None else None
    return (p["op"], p["dtype"], attrs, float(p["flops"]), float(p["bytes_in"]), float(p["bytes_out"]))


def measure_profile(device: Device, dtypes, meter, path, *, threads: int = 1, workloads=None, progress: bool = True,
                    windows: int = 3, thin: int = 1, reference=None) -> MachineProfile:
    """Measure (or resume) the profile of ``device`` for ``dtypes`` into the file ``path`` (module
    doc) and return it. ``workloads``: names of :mod:`.benchsuite` workloads (all by default) or
    :class:`~.benchsuite.Workload` objects; ``thin``: a sparser sweep (:func:`.microbench.plan`);
    ``reference``: a :class:`~.reference.Reference` to correct drift with (module doc); the
    returned profile's ``reference`` is then the nominal reference joules (else None)."""
    from tqdm.auto import tqdm

    setup = {"device": str(device), "name": device.name, "threads": int(threads), "meter": meter.source}
    if reference is not None:
        setup["reference"] = reference.describe()
    bf = BenchFile(path, setup)
    chosen = tuple(workloads) if workloads and not isinstance(workloads[0], str) else get_workloads(workloads)
    todo = list(plan(dtypes, chosen, thin))
    done = bf.done()
    previous = torch.get_num_threads()
    torch.set_flush_denormal(True)
    bar = tqdm(total=len(todo) + 2, desc="microbenchmarks", unit="size", disable=not progress, dynamic_ncols=True)
    try:
        torch.set_num_threads(threads)
        track = _begin_track(bf, reference, meter)
        floor = bf.get("floor")
        if floor is None:
            t0 = time.time()
            t = dispatch_floor(meter, device, windows)
            floor = {"seconds": t.seconds, "joules": t.joules}
            bf.add("floor", floor, t=(t0, time.time()) if track else None)
        bar.update(1)
        alloc = bf.get("alloc")
        if alloc is None:
            t0 = time.time()
            alloc = allocation_costs(meter, device, Timing(floor["seconds"], floor["joules"], 1), windows=windows)
            bf.add("alloc", alloc, t=(t0, time.time()) if track else None)
        bar.update(1)
        fp = _machine(bf, device, threads)
        seen = {_seen_key(p) for p in bf.points()}
        for dt, w, size in todo:
            key = (dt, w.name, json.dumps(list(size) if isinstance(size, (list, tuple)) else [size]))
            if key not in done:
                bar.set_postfix_str(f"{dt} {w.label(size)}", refresh=False)
                _read_track(bf, track, reference, meter, due=True)
                t0 = time.time()
                points = measure_workload(w, size, dt, meter, device, windows=windows, seen=seen,
                                          seen_key=_seen_key)
                bf.add_points(dt, w.name, json.loads(key[2]), points, t=(t0, time.time()) if track else None)
            bar.update(1)
        _read_track(bf, track, reference, meter, due=False)
    finally:
        torch.set_num_threads(previous)
        torch.set_flush_denormal(False)  # PyTorch's default (it has no getter to restore another)
        bar.close()
    dev = {"type": device.type, "name": device.name, "index": device.index, "threads": int(threads),
           "meter": meter.source}
    points, floor, alloc = bf.corrected(track)
    profile = MachineProfile(points, floor, alloc, dev, dtypes, fingerprint=fp)
    profile.reference = None if track is None else track.nominal
    return profile


def _begin_track(bf: BenchFile, reference, meter):
    """The file's drift track: begun now (a warm-up run of the reference, then its first reading)
    when the file has none yet; None without a reference."""
    if reference is None:
        return None
    if bf.get("reference") is None:
        reference.run()
        bf.add("reference", {"workload": reference.describe()})
    track = bf.track()
    _read_track(bf, track, reference, meter, due=True)
    return track


def _read_track(bf: BenchFile, track, reference, meter, *, due: bool) -> None:
    """Read the reference onto ``track`` when :data:`~.reference.TRACK_SECONDS` have passed since its
    last reading (``due``), or whenever the last reading is older than the last result (the end)."""
    from .reference import TRACK_SECONDS

    if track is None:
        return
    last = track.samples[-1][0] if track.samples else -float("inf")
    ends = [x["t"][1] for x in bf.lines if "t" in x]
    if (due and time.time() - last < TRACK_SECONDS) or (not due and ends and last >= max(ends)):
        return
    now, joules = time.time(), reference.measure(meter)
    track.add(now, joules)
    bf.add("ref", [now, joules])


def _machine(bf: BenchFile, device: Device, threads: int) -> dict:
    """The fingerprint of the machine that began ``bf`` (recorded now when it has none); a file
    begun on another machine is refused."""
    from .fingerprint import MATCH, fingerprint

    here = fingerprint(device, threads)
    fp = bf.get("fingerprint")
    if fp is None:
        bf.add("fingerprint", here)
        return here
    diff = [f"{k} {fp.get(k)!r} there, {here.get(k)!r} here" for k in MATCH if fp.get(k) != here.get(k)]
    if diff:
        raise ValueError(f"{bf.path} holds microbenchmarks begun on another machine ({fp.get('host')}: "
                         f"{'; '.join(diff)}); a profile is one machine's: use another --out on this machine")
    return fp


__all__ = ["BenchFile", "measure_profile"]
