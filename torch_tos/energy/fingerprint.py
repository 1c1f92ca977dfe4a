"""Machine fingerprints: which machine measured a profile or a run, and whether this one differs.

A fingerprint (:func:`fingerprint`) is a small dict of strings and integers: ``host``, ``cpu`` (the
CPU model), ``cores``/``logical_cores``, ``gpu`` (the GPU's name when the device is one, else null),
``device`` (``cpu``, ``cuda:0``), ``threads``, ``torch`` (version), ``date``. A cost model keeps
the fingerprint of the machine that measured its profile and those of the machines that measured
its runs (a runs file records ``host`` and ``machine`` — the CPU model or GPU name — per run);
:func:`compare_here` lists what differs on the machine predicting: another CPU, GPU, core count or
torch version (the profile's costs may not apply), another thread count than the calibration's.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import platform
import socket
from pathlib import Path

#: Fingerprint fields that must match for a profile's costs to apply here.
MATCH = ("cpu", "cores", "logical_cores", "gpu", "torch")


@functools.lru_cache(maxsize=None)
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else the platform's processor)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@functools.lru_cache(maxsize=None)
def physical_cores() -> int | None:
    """Physical cores (``psutil`` when installed, else ``/proc/cpuinfo``), None when unknown."""
    try:
        import psutil

        return psutil.cpu_count(logical=False)
    except Exception:  # noqa: BLE001 - psutil is optional
        pass
    try:
        ids, phys = set(), None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("physical id"):
                phys = line.split(":")[1].strip()
            elif line.startswith("core id"):
                ids.add((phys, line.split(":")[1].strip()))
        return len(ids) or None
    except OSError:
        return None


def machine_name(device="cpu") -> str:
    """The machine of a run on ``device`` (a device string or :class:`~.device.Device`): the CPU
    model for the CPU, the GPU's name for ``cuda[:i]`` (module doc)."""
    name = getattr(device, "name", None)
    kind = getattr(device, "type", None) or str(device).split(":")[0]
    if kind != "cuda":
        return cpu_model()
    if name:
        return str(name)
    import torch

    index = int(str(device).split(":")[1]) if ":" in str(device) else 0
    return str(torch.cuda.get_device_name(index))


def fingerprint(device=None, threads: int | None = None) -> dict:
    """This machine's fingerprint (module doc); ``device`` a :class:`~.device.Device` (the CPU by
    default)."""
    import torch

    gpu = device.name if device is not None and getattr(device, "type", "cpu") == "cuda" else None
    return {"host": socket.gethostname(), "cpu": cpu_model(), "cores": physical_cores(),
            "logical_cores": os.cpu_count(), "gpu": gpu, "device": str(device) if device is not None else "cpu",
            "threads": int(threads) if threads is not None else torch.get_num_threads(), "torch": torch.__version__,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def compare_here(measured: dict, threads: int | None = None) -> list[str]:
    """Notes on how this machine differs from the one that ``measured`` (a fingerprint): one per
    field of :data:`MATCH` that differs, and one when this process runs another number of torch
    threads than ``threads`` (the calibration's)."""
    import torch

    if not measured:
        return []
    here = fingerprint()
    if measured.get("gpu"):
        try:
            idx = int(str(measured.get("device", "cuda:0")).split(":")[1]) if ":" in str(measured.get("device")) else 0
            here["gpu"] = torch.cuda.get_device_name(idx) if torch.cuda.is_available() else None
        except Exception:  # noqa: BLE001 - a broken driver is "no GPU" here
            here["gpu"] = None
    diffs = [f"{k}: law {measured.get(k)!r}, here {here.get(k)!r}" for k in MATCH
             if measured.get(k) is not None and measured.get(k) != here.get(k)]
    notes = []
    if diffs:
        notes.append("this law was calibrated on another machine (" + "; ".join(diffs) + "): its costs may not "
                     "apply here; calibrate on this machine")
    if threads is not None and torch.get_num_threads() != int(threads):
        notes.append(f"this law was calibrated with {threads} torch thread(s); this process runs "
                     f"{torch.get_num_threads()} (torch.set_num_threads({threads}) to predict what it measured)")
    return notes


__all__ = ["fingerprint", "machine_name", "compare_here", "cpu_model", "physical_cores", "MATCH"]
