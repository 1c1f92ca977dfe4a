"""NVIDIA GPUs through NVML: total-energy counter deltas, or sampled power where a GPU has no counter."""

from __future__ import annotations

import os
import threading

from . import gpus
from .base import DeviceId, Meter, MeterUnavailable


def _import_pynvml():
    try:
        import pynvml  # noqa: PLC0415 - optional extra, imported lazily
    except ImportError:
        raise MeterUnavailable("NVML needs the optional package nvidia-ml-py: "
                               "pip install 'torch-tos[nvml]'") from None
    return pynvml


def _not_supported(nv, error) -> bool:
    return getattr(error, "value", None) == getattr(nv, "NVML_ERROR_NOT_SUPPORTED", 3) or \
        "NotSupported" in type(error).__name__


class NvmlMeter(Meter):
    """Energy of NVIDIA GPUs from NVML (``pip install 'torch-tos[nvml]'``).

    ``devices``: CUDA ordinals as this process sees them; ``None`` (default) = this process's own
    GPU — ``LOCAL_RANK``'s under a distributed launcher, else the current CUDA device once CUDA is
    initialised, else every visible GPU outside a distributed job (:func:`.gpus.default_devices`;
    a meter built before CUDA starts in such a process narrows its choice to the GPUs the process
    uses at the first window after CUDA starts); ``"all"`` = every visible GPU. Ordinals map to
    NVML devices through torch's UUIDs once CUDA is initialised, else through
    ``CUDA_VISIBLE_DEVICES`` (indices or ``GPU-`` UUIDs, see :mod:`.gpus`).

    Each GPU's energy is the delta of ``nvmlDeviceGetTotalEnergyConsumption`` (mJ, Volta and newer)
    across the window, with ``torch.cuda.synchronize`` of the metered GPUs at both edges (only when
    CUDA is already initialised, and only on GPUs where this process has a context: the meter never
    starts CUDA nor opens a context on another GPU). A GPU without that counter is measured by
    integrating ``nvmlDeviceGetPowerUsage`` sampled every ``poll_interval`` s (trapezoids):
    ``estimated=True``, source ``nvml-sampled``. Per-window figures are quantised by the counter's
    update period (tens of ms on current GPUs); consecutive windows telescope, so totals over many
    steps are exact. ``domains`` are labelled ``cuda:<ordinal>``; ``devices`` holds each GPU's
    :class:`DeviceId` (UUID, ``gpu:<NVML index>``).
    """

    name = "nvml"

    def __init__(self, devices=None, *, poll_interval: float = 0.02, strict: bool = True, clock=None):
        self.nv = nv = _import_pynvml()
        self.strict = strict
        self.poll_interval = float(poll_interval)
        if clock is not None:
            self.clock = clock
        try:
            nv.nvmlInit()
            visible = gpus.visible_handles(nv)
        except nv.NVMLError as e:
            raise MeterUnavailable(f"NVML not available on this machine: {e}") from None
        if not visible:
            raise MeterUnavailable("NVML not available on this machine: no GPU is visible "
                                   f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
        if devices is None:
            ordinals, self.chosen_by = gpus.default_devices(len(visible))
        elif devices == "all":
            ordinals, self.chosen_by = list(range(len(visible))), "every visible GPU (asked for)"
        else:
            ordinals = [devices] if isinstance(devices, int) else list(devices)
            self.chosen_by = "asked for"
        for d in ordinals:
            if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d < len(visible):
                raise ValueError(f"unknown CUDA device {d!r}; this process sees {len(visible)} GPU(s): "
                                 f"0..{len(visible) - 1} (or devices='all')")
        if not ordinals:
            raise ValueError("devices is empty; pass CUDA ordinals, 'all' or None (this process's GPU)")
        self._visible, self._open = visible, 0
        # one process, several GPUs, CUDA not started yet: every visible GPU for now, and this
        # process's own from the first window after CUDA starts (model.cuda() after the meter)
        self._settle_later = devices is None and len(visible) > 1 and not gpus.cuda_initialized() \
            and not gpus.distributed()
        self._choose(ordinals)
        self.order_note = gpus.order_warning(nv, visible)

    def _choose(self, ordinals) -> None:
        nv = self.nv
        self.ordinals = list(dict.fromkeys(ordinals))
        self.devices = list(zip(self.ordinals, gpus.nvml_handles(nv, self.ordinals, self._visible)))
        self.ids = {d: self._identify(d, h) for d, h in self.devices}
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

    def _settle(self) -> None:
        """Narrow a provisional choice of every visible GPU to this process's own once CUDA runs
        (between windows only)."""
        if self._settle_later and not self._open and gpus.cuda_initialized():
            self._settle_later = False
            ordinals, self.chosen_by = gpus.default_devices(len(self._visible))
            self._choose(ordinals)

    def _identify(self, ordinal: int, handle) -> DeviceId:
        nv = self.nv
        try:
            index = nv.nvmlDeviceGetIndex(handle)
        except (AttributeError, nv.NVMLError):
            index = None
        try:
            uid = gpus._text(nv.nvmlDeviceGetUUID(handle))
        except (AttributeError, nv.NVMLError):
            uid = None
        name = f"gpu:{index}" if index is not None else f"gpu (cuda:{ordinal})"
        if uid is None:  # NVML's index is stable on a host; the ordinal is not
            uid = f"nvml-index:{index}" if index is not None else f"pid:{os.getpid()}/cuda:{ordinal}"
        return DeviceId.here(uid, name)

    def describe(self) -> str:
        kind = "power sampling" if len(self.sampled) == len(self.devices) else \
            "energy counter" if not self.sampled else \
            f"energy counter; power sampling on GPU {', '.join(map(str, sorted(self.sampled)))}"
        gpus_text = ", ".join(f"{d} ({self.ids[d].name})" if self.ids[d].name != f"gpu:{d}" else str(d)
                              for d, _ in self.devices)
        return f"nvml ({kind}; GPU {gpus_text}: {self.chosen_by})"

    def synchronize(self) -> None:
        self._settle()
        gpus.synchronize(self.ordinals)

    def _read(self):
        nv = self.nv
        now = self.clock()
        out = {}
        for ordinal, handle in self.devices:
            if ordinal in self.sampled:
                out[ordinal] = nv.nvmlDeviceGetPowerUsage(handle) / 1000.0  # mW -> W
            else:
                out[ordinal] = nv.nvmlDeviceGetTotalEnergyConsumption(handle)  # mJ
        return now, out

    def _begin(self):
        self._open += 1
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
        self._open -= 1
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
        m.devices = {f"cuda:{d}": self.ids[d] for d, _ in self.devices}
        m.joules = sum(domains.values())
        if self.sampled:
            m.notes.append(f"GPU {', '.join(map(str, sorted(self.sampled)))}: no energy counter, integrated "
                           f"{len(samples)} power samples")
        if self.order_note:
            m.notes.append(self.order_note)

    def close(self) -> None:
        try:
            self.nv.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
