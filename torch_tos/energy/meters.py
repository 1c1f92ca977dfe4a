"""Energy meters with one interface: RAPL (Linux powercap), NVML (NVIDIA GPUs), CPU-time estimate.

Every meter is used the same way::

    with meter.measure() as m:
        train()
    m.joules, m.seconds, m.source, m.estimated, m.domains

(or ``w = meter.start(); ...; m = w.stop()``). ``joules`` is the window's energy, ``seconds`` its
wall-clock duration, ``source`` names what produced the figure (``"rapl"``, ``"nvml"``,
``"nvml-sampled"``, ``"cputime"``), ``estimated`` is ``True`` when the figure is not read from an
energy counter, and ``domains`` holds the joules of each domain read (RAPL zone, GPU).

- :class:`RaplMeter` reads the ``energy_uj`` counters of Linux powercap (Intel RAPL; AMD Zen via
  the same driver). Total = Σ package zones + Σ their ``dram`` subzones; ``core``/``uncore`` are
  parts of the package and ``psys`` is the whole platform, so they are reported in ``domains`` but
  not added. Counters wrap at ``max_energy_range_uj``; a background thread reads every zone often
  enough that no zone can wrap twice between two reads, so long windows stay exact.
- :class:`NvmlMeter` takes deltas of ``nvmlDeviceGetTotalEnergyConsumption`` (mJ, Volta and
  newer) per visible GPU, synchronising CUDA at both edges of the window; older GPUs fall back to
  integrating sampled ``nvmlDeviceGetPowerUsage`` (``estimated=True``, source ``nvml-sampled``).
- :class:`CpuTimeMeter` multiplies the process's CPU seconds by a per-core power. It is an
  estimate proportional to CPU time: it tracks time, not energy.

:func:`auto_meter` picks RAPL, then NVML, then the CPU-time estimate, and logs which and why.
"""

from __future__ import annotations

import abc

import logging
import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger("torch_tos.energy")

METERS = ("auto", "rapl", "nvml", "cputime")

#: Default power per busy core for :class:`CpuTimeMeter`, in watts. Current x86 desktop and server
#: parts draw roughly 5-15 W per busy core (package TDP / cores, e.g. 65 W / 8 = 8 W, 270 W / 24 =
#: 11 W); 10 W is a round middle. The figure only scales the estimate: E = CPU seconds x 10 W.
DEFAULT_WATTS_PER_CORE = 10.0


class MeterUnavailable(RuntimeError):
    """This meter cannot run on this machine (no counter, no library, no access)."""


class RaplPermissionError(MeterUnavailable, PermissionError):
    """A RAPL counter exists but this user may not read it."""


class InvalidWindow(RuntimeError):
    """A measurement window whose energy cannot be trusted (e.g. an uncorrectable wraparound)."""


@dataclass
class Measurement:
    """The result of one measurement window. Filled in when the window closes."""

    source: str
    estimated: bool
    joules: float = math.nan
    seconds: float = math.nan
    domains: dict = field(default_factory=dict)
    valid: bool = True
    notes: list = field(default_factory=list)

    @property
    def watts(self) -> float:
        return self.joules / self.seconds if self.seconds and self.seconds > 0 else math.nan


class Window:
    """One measurement window: a context manager yielding its :class:`Measurement`."""

    def __init__(self, meter: "Meter"):
        self.meter = meter
        self.measurement = Measurement(source=meter.source, estimated=meter.estimated)
        self._state = None
        self._t0 = None

    def start(self) -> "Window":
        if self._t0 is not None:
            raise RuntimeError("this measurement window was already started")
        self._state = self.meter._begin()
        self._t0 = time.perf_counter()
        return self

    def stop(self) -> Measurement:
        if self._t0 is None:
            raise RuntimeError("stop() before start()")
        if self._state is None:
            return self.measurement  # already stopped
        seconds = time.perf_counter() - self._t0
        state, self._state = self._state, None
        m = self.measurement
        m.seconds = seconds
        self.meter._end(state, m)
        if not m.valid and self.meter.strict:
            raise InvalidWindow("; ".join(m.notes) or "invalid measurement window")
        return m

    def __enter__(self) -> Measurement:
        self.start()
        return self.measurement

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            try:
                self.stop()
            except Exception:  # noqa: BLE001 - the body's exception is the one to report
                pass
            return False
        self.stop()
        return False


class Meter(abc.ABC):
    """Base class. Subclasses set ``name``/``source``/``estimated`` and implement ``_begin``/``_end``."""

    name = "meter"
    source = "meter"
    estimated = False
    strict = True
    #: Why this meter was chosen (set by :func:`auto_meter`).
    why: str = ""

    def measure(self) -> Window:
        """A window to use as ``with meter.measure() as m:``."""
        return Window(self)

    def start(self) -> Window:
        """Start a window now; call ``.stop()`` on it to get the :class:`Measurement`."""
        return Window(self).start()

    def describe(self) -> str:
        return self.name

    @abc.abstractmethod
    def _begin(self):  # pragma: no cover - abstract
        """Implemented by each subclass."""

    @abc.abstractmethod
    def _end(self, state, m: Measurement) -> None:  # pragma: no cover - abstract
        """Implemented by each subclass."""


# --------------------------------------------------------------------------------------------
# CPU-time estimate
# --------------------------------------------------------------------------------------------
class CpuTimeMeter(Meter):
    """Energy estimate = CPU seconds of this process (all its threads, user + system) x
    ``watts_per_core`` (default :data:`DEFAULT_WATTS_PER_CORE` = 10 W).

    Always ``estimated=True``. Child processes are not included. The figure is proportional to
    CPU time, so it tracks time, not energy: use it to exercise the pipeline or where no energy
    counter exists, never as a measured energy.
    """

    name = source = "cputime"
    estimated = True

    def __init__(self, watts_per_core: float = DEFAULT_WATTS_PER_CORE):
        watts_per_core = float(watts_per_core)
        if not math.isfinite(watts_per_core) or watts_per_core <= 0:
            raise ValueError(f"watts_per_core must be a positive number of watts, got {watts_per_core!r}")
        self.watts_per_core = watts_per_core

    def describe(self) -> str:
        return f"cputime (estimate: process CPU seconds x {self.watts_per_core:g} W per core)"

    def _begin(self):
        return time.process_time()

    def _end(self, state, m):
        cpu = time.process_time() - state
        m.joules = cpu * self.watts_per_core
        m.domains = {"cpu": m.joules}
        m.notes.append(f"estimate: {cpu:.4f} CPU s x {self.watts_per_core:g} W/core")


# --------------------------------------------------------------------------------------------
# RAPL through Linux powercap
# --------------------------------------------------------------------------------------------
def _read_text(path: Path) -> str:
    with open(path) as f:
        return f.read()


_ZONE_RE = re.compile(r"^intel-rapl(?P<mmio>-mmio)?:(?P<top>\d+)(?::(?P<sub>\d+))?$")
_PERMISSION_HINT = (
    "grant read access with `sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj "
    "/sys/class/powercap/intel-rapl:*:*/energy_uj` (until reboot), or permanently with a udev rule "
    "such as `ACTION==\"add\", SUBSYSTEM==\"powercap\", RUN+=\"/bin/chmod a+r /sys%p/energy_uj\"` "
    "in /etc/udev/rules.d/99-rapl.rules; or run as root, or use --meter cputime")


@dataclass
class RaplZone:
    """One powercap zone: its folder, the ``name`` it reports, the domain label used in
    :attr:`Measurement.domains`, and whether it is added to the total."""

    path: Path
    name: str
    label: str
    counted: bool


class RaplMeter(Meter):
    """Energy from the Linux powercap RAPL counters under ``root`` (µJ integers).

    Zones: every top-level ``package-N`` / ``package-N-die-D`` zone and its ``dram`` subzone are
    added to the total; ``core``, ``uncore`` (inside the package) and ``psys`` (the platform) are
    reported in ``domains`` only. ``intel-rapl-mmio`` zones duplicate the MSR ones and are used
    only when no MSR zone exists.

    Wraparound: a counter that goes down between two reads wrapped once at
    ``max_energy_range_uj``; the delta is ``max - before + after``. A background thread reads every
    zone each ``poll_interval`` seconds (default: 1 s, shorter when a zone's range could wrap in
    under 4 s at ``max_watts``), so windows spanning several wraps are exact. A zone whose
    ``max_energy_range_uj`` cannot be read makes the window invalid (:class:`InvalidWindow`; with
    ``strict=False`` the measurement comes back with ``valid=False`` and ``joules=nan``): its
    wraps cannot be corrected and are never clamped.

    ``reader`` (path → text) replaces ``open(path).read()``; tests use it to simulate access errors.
    """

    name = source = "rapl"
    estimated = False

    def __init__(self, root: str | os.PathLike = "/sys/class/powercap", *, poll_interval: float | None = None,
                 max_watts: float = 1000.0, strict: bool = True, reader=None):
        self.root = Path(root)
        self.reader = reader or _read_text
        self.max_watts = float(max_watts)
        self.strict = strict
        self.zones = self._discover()
        for z in self.zones:  # fail now, with the fix, if the counters are not readable
            try:
                self._read_energy(z)
            except InvalidWindow as e:
                raise MeterUnavailable(f"RAPL counter unusable: {e}") from None
        self._poll_interval = poll_interval

    # -- discovery -----------------------------------------------------------------------
    def _read(self, path: Path) -> str:
        try:
            return self.reader(path)
        except PermissionError:
            raise RaplPermissionError(f"cannot read {path}: permission denied (RAPL counters are "
                                      f"root-only since Linux 5.10); {_PERMISSION_HINT}") from None

    def _discover(self) -> list[RaplZone]:
        if not self.root.is_dir():
            raise MeterUnavailable(f"RAPL not available on this machine: {self.root} does not exist "
                                   f"(no Linux powercap interface)")
        dirs = {}
        for entry in list(self.root.iterdir()) + [c for d in self.root.iterdir() if d.is_dir()
                                                 for c in d.iterdir()]:
            match = _ZONE_RE.match(entry.name)
            if match and entry.is_dir() and (entry / "energy_uj").exists():
                dirs.setdefault(entry.name, (entry, match))
        msr = {k: v for k, v in dirs.items() if not v[1].group("mmio")}
        chosen = msr or dirs
        zones, parents = [], {}
        for dirname in sorted(chosen, key=lambda n: tuple(int(x) for x in re.findall(r"\d+", n))):
            path, match = chosen[dirname]
            zone_name = self._read(path / "name").strip()
            if match.group("sub") is None:
                parents[match.group("top")] = zone_name
                counted = zone_name.startswith("package") or zone_name == "dram"
                label = zone_name
            else:
                parent = parents.get(match.group("top"), f"zone-{match.group('top')}")
                counted = zone_name == "dram" and parent.startswith("package")
                label = f"{parent}/{zone_name}"
            zones.append(RaplZone(path, zone_name, label, counted))
        if not any(z.counted and z.name.startswith("package") for z in zones):
            found = ", ".join(z.label for z in zones) or "no intel-rapl zones"
            raise MeterUnavailable(f"RAPL not available on this machine: no package zone under "
                                   f"{self.root} (found: {found})")
        return zones

    def describe(self) -> str:
        counted = [z.label for z in self.zones if z.counted]
        return f"rapl ({' + '.join(counted)})"

    # -- reading -------------------------------------------------------------------------
    def _read_energy(self, zone: RaplZone) -> int:
        path = zone.path / "energy_uj"
        text = self._read(path)
        try:
            return int(text.strip())
        except ValueError:
            raise InvalidWindow(f"{path} holds {text.strip()!r}, not an integer of µJ") from None

    def _read_range(self, zone: RaplZone) -> tuple[int | None, str | None]:
        path = zone.path / "max_energy_range_uj"
        try:
            value = int(self.reader(path).strip())
            if value <= 0:
                raise ValueError(f"non-positive range {value}")
            return value, None
        except (OSError, ValueError) as e:
            return None, f"cannot read {path} ({type(e).__name__}: {e})"

    def poll_interval(self, ranges: dict) -> float:
        if self._poll_interval is not None:
            return float(self._poll_interval)
        known = [r for r in ranges.values() if r]
        fastest_wrap = min(known) / (self.max_watts * 1e6) if known else 4.0
        return max(0.001, min(1.0, fastest_wrap / 4))

    def _begin(self):
        ranges, problems = {}, {}
        for z in self.zones:
            ranges[z.label], problem = self._read_range(z)
            if problem:
                problems[z.label] = problem
        state = _RaplWindow(self, ranges, problems)
        state.start(self.poll_interval(ranges))
        return state

    def _end(self, state: "_RaplWindow", m: Measurement) -> None:
        totals = state.stop()
        m.domains = {label: uj / 1e6 if uj is not None and label not in state.problems else math.nan
                     for label, uj in totals.items()}
        bad = [z.label for z in self.zones if z.counted and z.label in state.problems]
        if bad:
            m.valid = False
            m.joules = math.nan
            m.notes.extend(state.problems[label] for label in bad)
            m.notes.append(f"window invalid: wraparounds of {', '.join(bad)} cannot be detected and "
                           "corrected without max_energy_range_uj (never clamped)")
            return
        m.joules = sum(totals[z.label] for z in self.zones if z.counted) / 1e6
        if state.wraps:
            m.notes.append(f"corrected {state.wraps} counter wraparound(s)")

    def poll(self, window: Window) -> None:
        """Read every zone of a running window now (what the background thread does)."""
        if window._state is not None:
            window._state.sample()


class _RaplWindow:
    """Per-window accumulator: last reading and µJ total per zone, advanced by each sample."""

    def __init__(self, meter: RaplMeter, ranges: dict, problems: list):
        self.meter = meter
        self.ranges = ranges
        self.problems = dict(problems)
        self.lock = threading.Lock()
        self.last = {z.label: meter._read_energy(z) for z in meter.zones}
        self.total: dict = {z.label: 0 for z in meter.zones}
        self.wraps = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = None
        self._error = None

    def sample(self) -> None:
        readings = {z.label: self.meter._read_energy(z) for z in self.meter.zones}
        with self.lock:
            for label, now in readings.items():
                before = self.last[label]
                self.last[label] = now
                if self.total[label] is None:
                    continue
                if now >= before:
                    self.total[label] += now - before
                elif self.ranges.get(label):
                    self.total[label] += self.ranges[label] - before + now
                    self.wraps += 1
                else:
                    self.total[label] = None  # a wrap we cannot correct
            self.samples += 1

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.sample()
            except Exception as e:  # noqa: BLE001 - reported at stop()
                self._error = e
                return

    def start(self, interval: float) -> None:
        self._thread = threading.Thread(target=self._run, args=(interval,), name="torch_tos-rapl",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> dict:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
        self.sample()
        return dict(self.total)


# --------------------------------------------------------------------------------------------
# NVML
# --------------------------------------------------------------------------------------------
def _import_pynvml():
    try:
        import pynvml  # noqa: PLC0415 - optional extra, imported lazily
    except ImportError:
        raise MeterUnavailable("NVML needs the optional package nvidia-ml-py: "
                               "pip install 'torch-tos[nvml]'") from None
    return pynvml


def _cuda_sync() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i in range(torch.cuda.device_count()):
            torch.cuda.synchronize(i)


def _not_supported(nv, error) -> bool:
    return getattr(error, "value", None) == getattr(nv, "NVML_ERROR_NOT_SUPPORTED", 3) or \
        "NotSupported" in type(error).__name__


class NvmlMeter(Meter):
    """Energy of NVIDIA GPUs from NVML (``pip install 'torch-tos[nvml]'``).

    ``devices``: CUDA device ordinals as this process sees them (``None`` = every visible GPU).
    ``CUDA_VISIBLE_DEVICES`` is honoured: indices there are NVML (PCI bus) indices, which match
    CUDA's when ``CUDA_DEVICE_ORDER=PCI_BUS_ID``; ``GPU-…`` UUIDs (or prefixes) are matched by UUID.
    Each GPU's energy is the delta of ``nvmlDeviceGetTotalEnergyConsumption`` (mJ) across the
    window, with ``torch.cuda.synchronize()`` at both edges so queued kernels are inside it. GPUs
    without that counter (before Volta) are measured by integrating ``nvmlDeviceGetPowerUsage``
    sampled every ``poll_interval`` s (trapezoids): ``estimated=True``, source ``nvml-sampled``.
    """

    name = "nvml"

    def __init__(self, devices=None, *, poll_interval: float = 0.02, strict: bool = True):
        self.nv = nv = _import_pynvml()
        self.strict = strict
        self.poll_interval = float(poll_interval)
        try:
            nv.nvmlInit()
            count = nv.nvmlDeviceGetCount()
        except nv.NVMLError as e:
            raise MeterUnavailable(f"NVML not available on this machine: {e}") from None
        visible = self._visible(count)
        if devices is None:
            devices = list(range(len(visible)))
        elif isinstance(devices, int):
            devices = [devices]
        self.devices = []
        for d in devices:
            if not isinstance(d, int) or not 0 <= d < len(visible):
                raise ValueError(f"unknown CUDA device {d!r}; this process sees {len(visible)} GPU(s): "
                                 f"0..{len(visible) - 1}")
            self.devices.append((d, visible[d]))
        if not self.devices:
            raise MeterUnavailable("NVML not available on this machine: no GPU is visible "
                                   f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
        self.sampled = set()
        for ordinal, handle in self.devices:
            try:
                nv.nvmlDeviceGetTotalEnergyConsumption(handle)
            except nv.NVMLError as e:
                if not _not_supported(nv, e):
                    raise MeterUnavailable(f"NVML cannot read GPU {ordinal}'s energy: {e}") from None
                try:
                    nv.nvmlDeviceGetPowerUsage(handle)
                except nv.NVMLError as e2:
                    raise MeterUnavailable(f"NVML has neither an energy counter nor power readings "
                                           f"for GPU {ordinal}: {e2}") from None
                self.sampled.add(ordinal)
        self.estimated = bool(self.sampled)
        self.source = "nvml-sampled" if self.sampled else "nvml"

    def _visible(self, count: int) -> list:
        nv = self.nv
        env = os.environ.get("CUDA_VISIBLE_DEVICES")
        if env is None:
            return [nv.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        handles = []
        for entry in (e.strip() for e in env.split(",")):
            if not entry:
                break
            if re.fullmatch(r"-?\d+", entry):
                index = int(entry)
                if not 0 <= index < count:
                    break  # CUDA stops at the first invalid entry
                handles.append(nv.nvmlDeviceGetHandleByIndex(index))
            elif entry.startswith("GPU-"):
                for i in range(count):
                    h = nv.nvmlDeviceGetHandleByIndex(i)
                    uuid = nv.nvmlDeviceGetUUID(h)
                    uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
                    if uuid.startswith(entry):
                        handles.append(h)
                        break
                else:
                    break
            else:
                raise MeterUnavailable(f"CUDA_VISIBLE_DEVICES entry {entry!r} is not supported by the "
                                       f"NVML meter (accepted: GPU indices or GPU-<uuid>; MIG slices "
                                       f"have no energy counter of their own)")
        return handles

    def describe(self) -> str:
        kind = "power sampling" if self.sampled else "energy counter"
        return f"nvml ({kind}; GPU {', '.join(str(d) for d, _ in self.devices)})"

    def _read(self):
        nv = self.nv
        now = time.perf_counter()
        out = {}
        for ordinal, handle in self.devices:
            if ordinal in self.sampled:
                out[ordinal] = nv.nvmlDeviceGetPowerUsage(handle) / 1000.0  # mW -> W
            else:
                out[ordinal] = nv.nvmlDeviceGetTotalEnergyConsumption(handle)  # mJ
        return now, out

    def _begin(self):
        _cuda_sync()
        state = {"first": self._read(), "samples": [], "stop": threading.Event(), "thread": None}
        state["samples"].append(state["first"])
        if self.sampled:
            def run():
                while not state["stop"].wait(self.poll_interval):
                    state["samples"].append(self._read())
            state["thread"] = threading.Thread(target=run, name="torch_tos-nvml", daemon=True)
            state["thread"].start()
        return state

    def _end(self, state, m):
        _cuda_sync()
        state["stop"].set()
        if state["thread"] is not None:
            state["thread"].join()
        last = self._read()
        samples = state["samples"] + [last]
        domains = {}
        for ordinal, _ in self.devices:
            if ordinal in self.sampled:
                joules = 0.0
                for (t0, a), (t1, b) in zip(samples, samples[1:]):
                    joules += (t1 - t0) * (a[ordinal] + b[ordinal]) / 2
                domains[f"cuda:{ordinal}"] = joules
            else:
                domains[f"cuda:{ordinal}"] = (last[1][ordinal] - state["first"][1][ordinal]) / 1000.0
        m.domains = domains
        m.joules = sum(domains.values())
        if self.sampled:
            m.notes.append(f"GPU {', '.join(map(str, sorted(self.sampled)))}: no energy counter "
                           f"(pre-Volta), integrated {len(samples)} power samples")

    def close(self) -> None:
        try:
            self.nv.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


# --------------------------------------------------------------------------------------------
# choosing a meter
# --------------------------------------------------------------------------------------------
def auto_meter(*, rapl_root: str | os.PathLike = "/sys/class/powercap",
               watts_per_core: float = DEFAULT_WATTS_PER_CORE) -> Meter:
    """The best meter available here: RAPL, then NVML, then the CPU-time estimate.

    Logs (logger ``torch_tos.energy``) which one was picked and why the better ones were not; the
    reason is also in the returned meter's ``why``.
    """
    reasons = []
    for cls, kwargs in ((RaplMeter, {"root": rapl_root}), (NvmlMeter, {})):
        try:
            meter = cls(**kwargs)
        except MeterUnavailable as e:
            reasons.append(f"{cls.name}: {e}")
            continue
        meter.why = f"{meter.describe()} is available" + (f" ({'; '.join(reasons)})" if reasons else "")
        logger.info("energy meter: %s", meter.why)
        return meter
    meter = CpuTimeMeter(watts_per_core)
    meter.why = ("no energy counter on this machine (" + "; ".join(reasons) + "); falling back to the "
                 f"CPU-time estimate: CPU seconds x {meter.watts_per_core:g} W per core, which tracks "
                 "time, not energy")
    logger.warning("energy meter: %s", meter.why)
    return meter


def get_meter(meter="auto", **kwargs) -> Meter:
    """A meter from its name (``auto``, ``rapl``, ``nvml``, ``cputime``) or a :class:`Meter` as is."""
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
    else:
        m = CpuTimeMeter(kwargs.get("watts_per_core", DEFAULT_WATTS_PER_CORE))
    m.why = f"{m.describe()} (asked for)"
    if m.estimated:
        m.why += ": an estimate" + (" that tracks time, not energy" if m.name == "cputime" else "")
    return m
