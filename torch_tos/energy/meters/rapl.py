"""Intel/AMD RAPL through Linux powercap (``/sys/class/powercap/*/energy_uj``), wraparound-safe."""

from __future__ import annotations

import errno
import math
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from .base import DeviceId, InvalidWindow, Measurement, Meter, MeterUnavailable, RaplPermissionError, Window


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
    :attr:`Measurement.domains`, whether it is added to the total, and its identity on the host
    (``rapl:intel-rapl:0``, ``rapl:intel-rapl:0/dram``: what :class:`DeviceId` carries)."""

    path: Path
    name: str
    label: str
    counted: bool
    uid: str = ""


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
        self.ids = {z.label: DeviceId.here(z.uid, z.label, z.counted) for z in self.zones}
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
        except OSError as e:  # EIO from a broken driver, EISDIR, ENOENT, ...: this meter cannot run
            raise MeterUnavailable(f"cannot read {path}: {e.strerror or e} "
                                   f"({errno.errorcode.get(e.errno, e.errno)})") from None

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
            top = f"intel-rapl{match.group('mmio') or ''}:{match.group('top')}"
            if match.group("sub") is None:
                parents[match.group("top")] = zone_name
                counted = zone_name.startswith("package") or zone_name == "dram"
                label, uid = zone_name, f"rapl:{top}"
            else:
                parent = parents.get(match.group("top"), f"zone-{match.group('top')}")
                counted = zone_name == "dram" and parent.startswith("package")
                label, uid = f"{parent}/{zone_name}", f"rapl:{top}/{zone_name}"
            zones.append(RaplZone(path, zone_name, label, counted, uid))
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
        m.devices = dict(self.ids)
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
