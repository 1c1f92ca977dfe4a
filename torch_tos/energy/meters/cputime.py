"""CPU-time estimate: process CPU seconds x watts per core (an estimate that tracks time)."""

from __future__ import annotations

import math
import os
import time

from .base import DEFAULT_WATTS_PER_CORE, DeviceId, Meter


class CpuTimeMeter(Meter):
    """Energy estimate = CPU seconds of this process (all its threads, user + system) x
    ``watts_per_core`` (default :data:`DEFAULT_WATTS_PER_CORE` = 10 W).

    Always ``estimated=True``. Child processes are not included. The figure is proportional to
    CPU time, so it tracks time, not energy: use it to exercise the pipeline or where no energy
    counter exists, never as a measured energy. Its one domain, ``cpu``, is this process's own
    (``DeviceId`` ``pid:<n>``): the figures of several processes add up.
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
        pid = os.getpid()
        m.devices = {"cpu": DeviceId.here(f"pid:{pid}", f"cputime (pid {pid})")}
        m.notes.append(f"estimate: {cpu:.4f} CPU s x {self.watts_per_core:g} W/core")
