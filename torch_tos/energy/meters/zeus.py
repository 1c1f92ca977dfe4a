"""Zeus (``pip install zeus``): a :class:`~zeus.monitor.ZeusMonitor` measurement window per window.

``ZeusMeter(monitor=None, **monitor_kwargs)`` uses the given ``ZeusMonitor`` or builds one
(``gpu_indices=``, ``cpu_indices=``, ``approx_instant_energy=`` … are passed on). Each window is
``monitor.begin_window(key)`` … ``monitor.end_window(key)`` with a key of its own (so windows can
nest or overlap), both with ``sync_execution=True`` (Zeus synchronises CUDA at the edges). The
joules are the sum over every domain Zeus reports: ``gpu_energy`` (per GPU), ``cpu_energy`` and
``dram_energy`` (per CPU package, when Zeus reads RAPL); ``domains`` holds each
(``cuda:0``, ``cpu:0``, ``dram:0``), ``seconds`` is Zeus's own ``time``. Zeus reads hardware
counters (NVML, RAPL), so the figure is measured (``estimated=False``).
"""

from __future__ import annotations

import itertools

from .base import Meter, MeterUnavailable

_keys = itertools.count()


def _import_monitor():
    try:
        from zeus.monitor import ZeusMonitor  # noqa: PLC0415 - optional, imported lazily
    except ImportError:
        raise MeterUnavailable("the Zeus meter needs zeus: pip install zeus") from None
    return ZeusMonitor


class ZeusMeter(Meter):
    """Energy from Zeus's ``ZeusMonitor`` windows (see the module doc)."""

    name = source = "zeus"
    estimated = False

    def __init__(self, monitor=None, **monitor_kwargs):
        if monitor is None:
            ZeusMonitor = _import_monitor()
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

    def describe(self) -> str:
        gpus = getattr(self.monitor, "gpu_indices", None)
        cpus = getattr(self.monitor, "cpu_indices", None)
        parts = [f"GPU {', '.join(map(str, gpus))}" if gpus else "", f"CPU {', '.join(map(str, cpus))}" if cpus else ""]
        return "zeus (" + ("; ".join(p for p in parts if p) or "ZeusMonitor") + ")"

    def _begin(self):
        key = f"torch_tos-{next(_keys)}"
        self.monitor.begin_window(key, sync_execution=True)
        return key

    def _end(self, key, m) -> None:
        result = self.monitor.end_window(key, sync_execution=True)
        domains = {}
        for prefix, values in (("cuda", getattr(result, "gpu_energy", None)),
                               ("cpu", getattr(result, "cpu_energy", None)),
                               ("dram", getattr(result, "dram_energy", None))):
            for index, joules in (values or {}).items():
                domains[f"{prefix}:{index}"] = float(joules)
        m.domains = domains
        m.joules = sum(domains.values())
        seconds = getattr(result, "time", None)
        if seconds is not None:
            m.seconds = float(seconds)
