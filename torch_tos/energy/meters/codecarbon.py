"""CodeCarbon (``pip install codecarbon``): the energy its tracker books for each window.

``CodeCarbonMeter(tracker=None, *, offline=None, country_iso_code=None, **tracker_kwargs)`` uses the
given tracker or builds one: an ``OfflineEmissionsTracker`` when ``offline`` (or a
``country_iso_code`` is given), else an ``EmissionsTracker`` — with ``save_to_file=False`` and
``log_level="error"`` unless set. The tracker is started once; each window is a CodeCarbon task
(``tracker.start_task(name)`` … ``tracker.stop_task(name)``, whose ``EmissionsData`` holds the
window's own ``energy_consumed``); trackers without tasks (CodeCarbon < 2.5) run one
``start()`` … ``stop()`` per window and read ``final_emissions_data``. CodeCarbon reports kWh:
``joules = energy_consumed × 3.6e6``; ``domains`` holds its ``cpu``, ``gpu`` and ``ram`` parts.

CodeCarbon meters the whole machine (every CPU package, its RAM, the GPUs of its ``gpu_ids``,
default all): ``devices`` identifies each part per host (``codecarbon:cpu``, ``codecarbon:ram``,
``codecarbon:gpu`` with the tracker's ``gpu_ids`` when set), so ranks of one node that each run a
tracker count the node once; with ``tracking_mode="process"`` each part is the process's own share
and adds up over processes.

CodeCarbon measures where it can (RAPL, NVML) and otherwise *estimates* (CPU power from its TDP
table × load, RAM from its size): the meter says ``estimated=True``, since which one was used is
CodeCarbon's choice and not reported per window. :func:`~torch_tos.energy.meters.auto_meter` picks it
only when CodeCarbon is configured (a ``.codecarbon.config`` in the working or home directory, or
a ``CODECARBON_*`` environment variable).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from .base import DeviceId, Meter, MeterUnavailable

KWH = 3.6e6  # joules per kWh
_tasks = itertools.count()


def configured() -> bool:
    """Whether the user configured CodeCarbon (config file or ``CODECARBON_*`` variables)."""
    if any(k.startswith("CODECARBON_") for k in os.environ):
        return True
    return any((d / ".codecarbon.config").is_file() for d in (Path.cwd(), Path.home()))


def _import_codecarbon():
    try:
        import codecarbon  # noqa: PLC0415 - optional, imported lazily
    except ImportError:
        raise MeterUnavailable("the CodeCarbon meter needs codecarbon: pip install codecarbon") from None
    return codecarbon


class CodeCarbonMeter(Meter):
    """Energy booked by a CodeCarbon tracker for each window (see the module doc)."""

    name = source = "codecarbon"
    estimated = True

    def __init__(self, tracker=None, *, offline: bool | None = None, country_iso_code: str | None = None,
                 **tracker_kwargs):
        if tracker is None:
            cc = _import_codecarbon()
            tracker_kwargs.setdefault("save_to_file", False)
            tracker_kwargs.setdefault("log_level", "error")
            if offline or (offline is None and country_iso_code):
                cls = cc.OfflineEmissionsTracker
                if country_iso_code:
                    tracker_kwargs["country_iso_code"] = country_iso_code
            else:
                cls = cc.EmissionsTracker
            try:
                tracker = cls(**tracker_kwargs)
            except Exception as e:  # noqa: BLE001 - CodeCarbon's own configuration errors
                raise MeterUnavailable(f"CodeCarbon cannot track on this machine: {type(e).__name__}: {e}") from None
        if not (callable(getattr(tracker, "start", None)) and callable(getattr(tracker, "stop", None))):
            raise TypeError("tracker must be a codecarbon EmissionsTracker / OfflineEmissionsTracker")
        self.tracker = tracker
        self.tasks = callable(getattr(tracker, "start_task", None)) and callable(getattr(tracker, "stop_task", None))
        self._started = False

    def describe(self) -> str:
        return f"codecarbon ({type(self.tracker).__name__}; measured or estimated as CodeCarbon decides)"

    def _begin(self):
        if not self.tasks:
            self.tracker.start()
            return "run"  # a window state (None means "stopped" to Window)
        if not self._started:
            self.tracker.start()
            self._started = True
        name = f"torch_tos-{next(_tasks)}"
        self.tracker.start_task(name)
        return name

    def _end(self, name, m) -> None:
        if self.tasks:
            data = self.tracker.stop_task(name)
        else:
            self.tracker.stop()
            data = getattr(self.tracker, "final_emissions_data", None)
        if data is None:
            m.valid = False
            m.notes.append("CodeCarbon returned no emissions data for this window")
            return
        m.joules = float(data.energy_consumed) * KWH
        m.domains = {part: float(getattr(data, f"{part}_energy")) * KWH
                     for part in ("cpu", "gpu", "ram") if getattr(data, f"{part}_energy", None) is not None}
        m.devices = {part: self._device(part) for part in m.domains}
        m.notes.append("CodeCarbon energy_consumed (kWh x 3.6e6)")

    def _device(self, part: str) -> DeviceId:
        """The identity of one part (module doc): host-wide, or this process's own under
        ``tracking_mode="process"`` (CodeCarbon's settings live in its ``_<name>`` attributes)."""
        gpu_ids = getattr(self.tracker, "_gpu_ids", None)
        if part == "gpu" and isinstance(gpu_ids, (list, tuple)) and gpu_ids:
            part = f"gpu[{','.join(map(str, gpu_ids))}]"
        if getattr(self.tracker, "_tracking_mode", "machine") == "process":
            return DeviceId.here(f"pid:{os.getpid()}/codecarbon:{part}", f"codecarbon {part} (pid {os.getpid()})")
        return DeviceId.here(f"codecarbon:{part}", f"codecarbon {part}")

    def close(self) -> None:
        """Stop the tracker started by the first window."""
        if self._started:
            self._started = False
            self.tracker.stop()
