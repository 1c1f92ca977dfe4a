"""The interface every meter shares: :class:`Meter`, its :class:`Window` and :class:`Measurement`."""

from __future__ import annotations

import abc
import logging
import math
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
