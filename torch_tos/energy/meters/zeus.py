"""Zeus (``pip install zeus``): a :class:`~zeus.monitor.ZeusMonitor` measurement window per window.

``ZeusMeter(monitor=None, **monitor_kwargs)`` uses the given ``ZeusMonitor`` or builds one
(``gpu_indices=``, ``cpu_indices=``, ``approx_instant_energy=`` … are passed on). Without
``gpu_indices`` it meters this process's own GPU, chosen as ``NvmlMeter()`` chooses
(:func:`.gpus.default_devices`: ``LOCAL_RANK``'s, else the current device, …) — Zeus alone would
meter, and synchronise, every visible GPU from every rank. Each window is
``monitor.begin_window(key)`` … ``monitor.end_window(key)`` with a key of its own (so windows can
nest or overlap); Zeus synchronises the metered GPUs at both edges when CUDA is already initialised
(never starting it). The joules are the sum over every domain Zeus reports: ``gpu_energy`` (per
GPU), ``cpu_energy`` and ``dram_energy`` (per CPU package, when Zeus reads RAPL); ``domains`` holds
each (``cuda:0``, ``cpu:0``, ``dram:0``), ``seconds`` is Zeus's own ``time``. Zeus reads hardware
counters (NVML, RAPL), so the figure is measured (``estimated=False``). ``devices`` identifies each
domain as the NVML and RAPL meters do (GPU UUIDs through NVML; ``cpu:i`` is powercap zone
``intel-rapl:i``), so ranks' readings of one device count once.
"""

from __future__ import annotations

import itertools
import os

from . import gpus
from .base import DeviceId, Meter, MeterUnavailable

_keys = itertools.count()


def _import_monitor():
    try:
        from zeus.monitor import ZeusMonitor  # noqa: PLC0415 - optional, imported lazily
    except ImportError:
        raise MeterUnavailable("the Zeus meter needs zeus: pip install zeus") from None
    return ZeusMonitor


def _own_gpus():
    """This process's GPU ordinals (``None``: let Zeus decide, when torch sees no GPU)."""
    import torch

    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return gpus.default_devices(visible)[0] if visible else None


def _gpu_id(ordinal: int) -> DeviceId:
    """GPU ``ordinal``'s identity through NVML (Zeus requires nvidia-ml-py); without NVML, one of
    this process only (never merged with another process's reading)."""
    try:
        from .nvml import _import_pynvml

        nv = _import_pynvml()
        nv.nvmlInit()
        handle = gpus.nvml_handles(nv, [ordinal], gpus.visible_handles(nv))[0]
        return DeviceId.here(gpus._text(nv.nvmlDeviceGetUUID(handle)), f"gpu:{nv.nvmlDeviceGetIndex(handle)}")
    except Exception:  # noqa: BLE001 - no NVML, no such GPU: an identity of this process
        return DeviceId.here(f"pid:{os.getpid()}/cuda:{ordinal}", f"cuda:{ordinal} (pid {os.getpid()})")


class ZeusMeter(Meter):
    """Energy from Zeus's ``ZeusMonitor`` windows (see the module doc)."""

    name = source = "zeus"
    estimated = False

    def __init__(self, monitor=None, **monitor_kwargs):
        if monitor is None:
            ZeusMonitor = _import_monitor()
            if "gpu_indices" not in monitor_kwargs:
                monitor_kwargs["gpu_indices"] = _own_gpus()
            try:
                monitor = ZeusMonitor(**monitor_kwargs)
            except Exception as e:  # noqa: BLE001 - Zeus raises its own errors when nothing is measurable
                raise MeterUnavailable(f"Zeus cannot measure on this machine: {type(e).__name__}: {e}") from None
            if not (getattr(monitor, "gpu_indices", None) or getattr(monitor, "cpu_indices", None)):
                raise MeterUnavailable("Zeus found neither a GPU nor a CPU energy counter to monitor")
        for method in ("begin_window", "end_window"):
            if not callable(getattr(monitor, method, None)):
                raise TypeError(f"monitor must be a zeus.monitor.ZeusMonitor (no {method}())")
        self.monitor = monitor
        self.ids = {f"cuda:{i}": _gpu_id(i) for i in (getattr(monitor, "gpu_indices", None) or [])}
        for i in getattr(monitor, "cpu_indices", None) or []:
            self.ids[f"cpu:{i}"] = DeviceId.here(f"rapl:intel-rapl:{i}", f"package-{i}")
            self.ids[f"dram:{i}"] = DeviceId.here(f"rapl:intel-rapl:{i}/dram", f"package-{i}/dram")

    def describe(self) -> str:
        gpus = getattr(self.monitor, "gpu_indices", None)
        cpus = getattr(self.monitor, "cpu_indices", None)
        parts = [f"GPU {', '.join(map(str, gpus))}" if gpus else "", f"CPU {', '.join(map(str, cpus))}" if cpus else ""]
        return "zeus (" + ("; ".join(p for p in parts if p) or "ZeusMonitor") + ")"

    def _begin(self):
        key = f"torch_tos-{next(_keys)}"
        self.monitor.begin_window(key, sync_execution=gpus.cuda_initialized())
        return key

    def _end(self, key, m) -> None:
        result = self.monitor.end_window(key, sync_execution=gpus.cuda_initialized())
        domains = {}
        for prefix, values in (("cuda", getattr(result, "gpu_energy", None)),
                               ("cpu", getattr(result, "cpu_energy", None)),
                               ("dram", getattr(result, "dram_energy", None))):
            for index, joules in (values or {}).items():
                domains[f"{prefix}:{index}"] = float(joules)
        m.domains = domains
        m.devices = {label: self.ids.get(label) or DeviceId.here(f"pid:{os.getpid()}/{label}", label)
                     for label in domains}
        m.joules = sum(domains.values())
        seconds = getattr(result, "time", None)
        if seconds is not None:
            m.seconds = float(seconds)
