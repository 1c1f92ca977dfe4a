"""Energy meters with one interface: RAPL (Linux powercap), NVML (NVIDIA GPUs), CPU-time estimate.

Every meter is used the same way::

    with meter.measure() as m:
        train()
    m.joules, m.seconds, m.source, m.estimated, m.domains

(or ``w = meter.start(); ...; m = w.stop()``). ``joules`` is the window's energy, ``seconds`` its
wall-clock duration, ``source`` names what produced the figure (``"rapl"``, ``"nvml"``,
``"nvml-sampled"``, ``"cputime"``), ``estimated`` is ``True`` when the figure is not read from an
energy counter, ``domains`` holds the joules of each domain read (RAPL zone, GPU) and ``devices``
what each domain metered (:class:`DeviceId`: machine, host, GPU UUID or RAPL zone), so that sums
over the ranks of a job count each device once (``TOsCounter.total_all_ranks``).

- :class:`RaplMeter` reads the ``energy_uj`` counters of Linux powercap (Intel RAPL; AMD Zen via
  the same driver). Total = Σ package zones + Σ their ``dram`` subzones; ``core``/``uncore`` are
  parts of the package and ``psys`` is the whole platform, so they are reported in ``domains`` but
  not added. Counters wrap at ``max_energy_range_uj``; a background thread reads every zone often
  enough that no zone can wrap twice between two reads, so long windows stay exact.
- :class:`NvmlMeter` takes deltas of ``nvmlDeviceGetTotalEnergyConsumption`` (mJ, Volta and
  newer) of this process's own GPU (``LOCAL_RANK``'s, else the current CUDA device, else every
  visible GPU outside a distributed job), synchronising it at both edges of the window when CUDA is
  initialised (never starting CUDA, never opening a context on another GPU); GPUs without the
  counter fall back to integrating sampled ``nvmlDeviceGetPowerUsage`` (``estimated=True``, source
  ``nvml-sampled``).
- :class:`CombinedMeter` runs several meters of distinct hardware as one window (the CPU package
  and the GPUs of a GPU node: ``get_meter("rapl+nvml")``), each domain reported.
- :class:`CpuTimeMeter` multiplies the process's CPU seconds by a per-core power. It is an
  estimate proportional to CPU time: it tracks time, not energy.

- :class:`ZeusMeter` (:mod:`.zeus`) wraps a Zeus ``ZeusMonitor``'s measurement windows, and
  :class:`CodeCarbonMeter` (:mod:`.codecarbon`) a CodeCarbon tracker's tasks (kWh → J): the energy
  tools users already run, behind the same ``measure()``. Both are optional.

:func:`auto_meter` picks Zeus (when installed and able to measure), RAPL and NVML together (a GPU
node), NVML or RAPL alone, CodeCarbon (when installed and configured), then the CPU-time estimate,
and logs which and why. One meter per module: :mod:`.base` (the interface, device identities),
:mod:`.cputime`, :mod:`.rapl`, :mod:`.nvml` (with :mod:`.gpus`: which GPUs, waiting for them),
:mod:`.combined`, :mod:`.zeus`, :mod:`.codecarbon`.
"""

from __future__ import annotations

import os

from .base import (DEFAULT_WATTS_PER_CORE, DeviceId, InvalidWindow, Measurement, Meter, MeterUnavailable,
                   RaplPermissionError, Window, logger)
from .codecarbon import CodeCarbonMeter, configured as codecarbon_configured
from .combined import CombinedMeter
from .cputime import CpuTimeMeter
from .nvml import NvmlMeter, _import_pynvml, _not_supported  # noqa: F401 - kept importable
from .rapl import RaplMeter, RaplZone, _read_text  # noqa: F401 - kept importable
from .zeus import ZeusMeter

METERS = ("auto", "rapl", "nvml", "rapl+nvml", "cputime", "zeus", "codecarbon")

__all__ = ["METERS", "DEFAULT_WATTS_PER_CORE", "Meter", "Measurement", "Window", "DeviceId", "MeterUnavailable",
           "RaplPermissionError", "InvalidWindow", "CpuTimeMeter", "RaplMeter", "RaplZone", "NvmlMeter",
           "CombinedMeter", "ZeusMeter", "CodeCarbonMeter", "auto_meter", "get_meter"]


def _try(cls, reasons: list, **kwargs):
    try:
        return cls(**kwargs)
    except MeterUnavailable as e:
        reasons.append(f"{cls.name}: {e}")
        return None


def _chosen(meter: Meter, reasons: list) -> Meter:
    meter.why = f"{meter.describe()} is available" + (f" ({'; '.join(reasons)})" if reasons else "")
    logger.info("energy meter: %s", meter.why)
    return meter


def auto_meter(*, rapl_root: str | os.PathLike = "/sys/class/powercap",
               watts_per_core: float = DEFAULT_WATTS_PER_CORE) -> Meter:
    """The best meter available here: Zeus; RAPL and NVML together (a GPU node: the CPU package,
    its DRAM and this process's GPU, each domain reported); NVML or RAPL alone; CodeCarbon
    (configured); the CPU-time estimate.

    Logs (logger ``torch_tos.energy``) which one was picked and why the better ones were not; the
    reason is also in the returned meter's ``why``.
    """
    reasons = []
    codecarbon_ok = codecarbon_configured()
    if not codecarbon_ok:
        reasons.append("codecarbon: not configured (no .codecarbon.config, no CODECARBON_* variable)")
    zeus = _try(ZeusMeter, reasons)
    if zeus is not None:
        return _chosen(zeus, reasons)
    rapl = _try(RaplMeter, reasons, root=rapl_root)
    nvml = _try(NvmlMeter, reasons)
    if rapl is not None and nvml is not None:
        return _chosen(CombinedMeter(nvml, rapl), reasons)
    if nvml is not None:
        reasons.append("the CPU is not metered")
        return _chosen(nvml, reasons)
    if rapl is not None:
        return _chosen(rapl, reasons)
    if codecarbon_ok:
        codecarbon = _try(CodeCarbonMeter, reasons)
        if codecarbon is not None:
            return _chosen(codecarbon, reasons)
    meter = CpuTimeMeter(watts_per_core)
    meter.why = ("no energy counter on this machine (" + "; ".join(reasons) + "); falling back to the "
                 f"CPU-time estimate: CPU seconds x {meter.watts_per_core:g} W per core, which tracks "
                 "time, not energy")
    logger.warning("energy meter: %s", meter.why)
    return meter


def get_meter(meter="auto", **kwargs) -> Meter:
    """A meter from its name (``auto``, ``rapl``, ``nvml``, ``rapl+nvml``, ``cputime``, ``zeus``,
    ``codecarbon``) or a :class:`Meter` as is."""
    if isinstance(meter, Meter):
        return meter
    if not isinstance(meter, str) or meter not in METERS:
        raise ValueError(f"unknown meter {meter!r}; accepted: {', '.join(METERS)}")
    if meter == "auto":
        return auto_meter(**{k: v for k, v in kwargs.items() if k in ("rapl_root", "watts_per_core")})
    if meter == "rapl":
        m = RaplMeter(kwargs.get("rapl_root", "/sys/class/powercap"))
    elif meter == "nvml":
        m = NvmlMeter()
    elif meter == "rapl+nvml":
        m = CombinedMeter(NvmlMeter(), RaplMeter(kwargs.get("rapl_root", "/sys/class/powercap")))
    elif meter == "zeus":
        m = ZeusMeter()
    elif meter == "codecarbon":
        m = CodeCarbonMeter()
    else:
        m = CpuTimeMeter(kwargs.get("watts_per_core", DEFAULT_WATTS_PER_CORE))
    m.why = f"{m.describe()} (asked for)"
    if m.estimated:
        m.why += ": an estimate" + (" that tracks time, not energy" if m.name == "cputime" else "")
    return m
