"""NVIDIA GPUs through NVML: total-energy counter deltas, or sampled power before Volta."""

from __future__ import annotations

import os
import re
import threading
import time

from .base import Meter, MeterUnavailable


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
