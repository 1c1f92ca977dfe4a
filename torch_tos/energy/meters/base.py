"""The interface every meter shares: :class:`Meter`, its :class:`Window` and :class:`Measurement`,
and :class:`DeviceId`, the identity of what a domain metered (so that readings of one device taken by
several processes are counted once)."""

from __future__ import annotations

import abc
import functools
import logging
import math
import socket
import time
from dataclasses import dataclass, field

logger = logging.getLogger("torch_tos.energy")

#: Default power per busy core for :class:`~torch_tos.energy.meters.CpuTimeMeter`, in watts. Current
#: x86 desktop and server parts draw roughly 5-15 W per busy core (package TDP / cores, e.g.
#: 65 W / 8 = 8 W, 270 W / 24 = 11 W); 10 W is a round middle. E = CPU seconds x 10 W.
DEFAULT_WATTS_PER_CORE = 10.0


class MeterUnavailable(RuntimeError):
    """This meter cannot run on this machine (no counter, no library, no access)."""


class RaplPermissionError(MeterUnavailable, PermissionError):
    """A RAPL counter exists but this user may not read it."""


class InvalidWindow(RuntimeError):
    """A measurement window whose energy cannot be trusted (e.g. an uncorrectable wraparound)."""


@functools.lru_cache(maxsize=None)
def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip() or None
    except OSError:
        return None


def hostname() -> str:
    """This host's name, for people."""
    return socket.gethostname()


def machine() -> str:
    """Who owns the hardware counters this process reads: the kernel's boot id (one per boot of a
    machine, shared by every container on it, so two ranks in two containers of one node still
    meet on the same CPU package), else the host name."""
    return _boot_id() or hostname()


@dataclass(frozen=True)
class DeviceId:
    """What one domain of a :class:`Measurement` metered.

    ``(machine, uid)`` identifies the hardware: two processes that read the same counter produce
    equal ids, so a sum over processes can count each device once. ``machine`` is
    :func:`machine` (boot id, else host name); ``uid`` is the GPU's NVML UUID (``GPU-…``), the
    powercap zone (``rapl:intel-rapl:0``, ``rapl:intel-rapl:0/dram``), or ``pid:<n>`` for what only
    this process reads (its CPU time). ``host`` and ``name`` (unique on the host: ``gpu:3`` with
    NVML's index, ``package-0/dram``) label it for people. ``counted``: added to the measurement's
    joules (RAPL's ``core``/``uncore``/``psys`` are reported but lie inside, or around, counted
    zones).
    """

    machine: str
    host: str
    uid: str
    name: str
    counted: bool = True

    @classmethod
    def here(cls, uid: str, name: str, counted: bool = True) -> "DeviceId":
        return cls(machine(), hostname(), uid, name, counted)

    @property
    def label(self) -> str:
        """``host/name``: how totals over processes name the device."""
        return f"{self.host}/{self.name}"


@dataclass
class Measurement:
    """The result of one measurement window. Filled in when the window closes.

    ``domains`` maps each domain's label (as the meter names it in this process: ``cuda:0``,
    ``package-0/dram``) to its joules; ``devices`` maps the same labels to the :class:`DeviceId` of
    what was metered. ``joules`` is the sum of the counted domains.
    """

    source: str
    estimated: bool
    joules: float = math.nan
    seconds: float = math.nan
    domains: dict = field(default_factory=dict)
    valid: bool = True
    notes: list = field(default_factory=list)
    devices: dict = field(default_factory=dict)

    @property
    def watts(self) -> float:
        return self.joules / self.seconds if self.seconds and self.seconds > 0 else math.nan

    def readings(self) -> list:
        """``(DeviceId, joules)`` of every identified domain (what sums over processes read)."""
        return [(self.devices[label], joules) for label, joules in self.domains.items() if label in self.devices]


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
        self.meter.synchronize()
        self._state = self.meter._begin()
        self._t0 = self.meter.clock()
        return self

    def stop(self) -> Measurement:
        if self._t0 is None:
            raise RuntimeError("stop() before start()")
        if self._state is None:
            return self.measurement  # already stopped
        self.meter.synchronize()  # queued device work belongs to the window, and to its seconds
        seconds = self.meter.clock() - self._t0
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
    """Base class. Subclasses set ``name``/``source``/``estimated`` and implement ``_begin``/``_end``.

    A window is ``synchronize()``, ``_begin()``, the clock starts … ``synchronize()``, the clock
    stops, ``_end()``: a meter of an asynchronous device waits for its queued work at both edges
    (:class:`~torch_tos.energy.meters.NvmlMeter`), so a window's seconds and joules hold that work.
    """

    name = "meter"
    source = "meter"
    estimated = False
    strict = True
    #: Why this meter was chosen (set by :func:`auto_meter`).
    why: str = ""
    #: Seconds of the windows (monotonic); tests give meters a fake clock.
    clock = staticmethod(time.perf_counter)

    def synchronize(self) -> None:
        """Wait for the metered device's queued work (nothing to wait for on the CPU)."""

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
