"""Fakes of NVIDIA's NVML Python bindings (``pynvml``, from nvidia-ml-py) and of ``torch.cuda``, as
pytest fixtures, so that the meters' real code runs on machines without a GPU.

Use them from a test module with ``from fakes_gpu import fake_clock, fake_cuda, fake_nvml  # noqa: F401``.

* ``fake_clock`` — a :class:`FakeClock`: seconds that move only when a test calls ``advance(s)``.
  Give it to a meter (``NvmlMeter(clock=clock)``) so that windows last exactly what the test says.
* ``fake_nvml(gpus, ...)`` — installs a :class:`FakeNvml` module as ``pynvml``. Each :class:`FakeGpu`
  has an NVML index (its position), a UUID, a model name, a power draw in watts that the test may
  change, and either an energy counter (mJ, advancing by watts x elapsed fake seconds, from an
  arbitrary offset) or none (``energy_counter=False``: ``nvmlDeviceGetTotalEnergyConsumption`` raises
  ``NVMLError_NotSupported``, as on GPUs before Volta). Errors are built like the real module's:
  ``NVMLError(value)`` returns the subclass of that value (``NVMLError_NotSupported`` for 3, …) with
  ``.value`` set. ``calls`` records every call with its NVML index.
* ``fake_cuda(count, initialized=False, current=0)`` — installs a :class:`FakeCuda` over
  ``torch.cuda`` (``is_available``, ``is_initialized``, ``device_count``, ``current_device``,
  ``set_device``, ``synchronize``, ``get_device_properties``) and torch's primary-context check.
  Like the real ones, ``current_device``, ``set_device``, ``synchronize`` and
  ``get_device_properties`` initialise CUDA when it is not (recorded in ``initialised_by``), and
  ``set_device``/``synchronize`` create a context on their device (``contexts``; a fake built with
  ``initialized=True`` has one on ``current``, the device it has used);
  ``synchronized`` lists the devices synchronised. ``is_initialized`` and ``device_count`` start
  nothing (the real ``device_count`` asks NVML). ``uuids`` maps CUDA ordinals to the UUIDs torch reports
  (``get_device_properties(i).uuid``, without NVML's ``GPU-`` prefix); ordinals not in it get UUIDs
  NVML does not know.
"""

from __future__ import annotations

import sys
import types

import pytest
import torch

#: NVML return codes used by the fake (the values of nvidia-ml-py's NVML_ERROR_* constants).
NVML_ERRORS = {1: "Uninitialized", 2: "InvalidArgument", 3: "NotSupported", 4: "NoPermission",
               6: "NotFound", 9: "DriverNotLoaded", 12: "LibraryNotFound", 15: "GpuIsLost", 999: "Unknown"}


class FakeClock:
    """Seconds that move only when told to."""

    def __init__(self, start: float = 1000.0):
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += float(seconds)


class FakeGpu:
    """One GPU: ``watts`` drawn now, an energy counter (or none), a UUID and a model name."""

    def __init__(self, watts: float = 100.0, *, energy_counter: bool = True, uuid: str | None = None,
                 name: str = "NVIDIA H100 80GB HBM3", offset_mj: int = 123_456_789):
        self.watts, self.energy_counter, self.uuid, self.name = float(watts), energy_counter, uuid, name
        self.offset_mj = offset_mj
        self.mj = 0.0  # energy since the fake's start, advanced on every read
        self.last = None


def _error_classes():
    class NVMLError(Exception):
        _valClassMapping: dict = {}

        def __new__(cls, value):
            if cls is NVMLError:
                cls = NVMLError._valClassMapping.get(value, cls)
            obj = Exception.__new__(cls)
            obj.value = value
            return obj

        def __init__(self, value):
            super().__init__(value)

        def __str__(self):
            return NVML_ERRORS.get(self.value, f"NVML Error with code {self.value}")

    classes = {}
    for value, name in NVML_ERRORS.items():
        sub = type(f"NVMLError_{name}", (NVMLError,), {})
        NVMLError._valClassMapping[value] = sub
        classes[f"NVMLError_{name}"] = sub
    return NVMLError, classes


class FakeNvml(types.ModuleType):
    """A stand-in for ``pynvml`` over a list of :class:`FakeGpu` (NVML index = position)."""

    def __init__(self, gpus, clock: FakeClock, *, init_error: int | None = None, host: str = "node"):
        super().__init__("pynvml")
        self.gpus, self.clock, self.init_error, self.calls = list(gpus), clock, init_error, []
        for i, g in enumerate(self.gpus):
            g.uuid = g.uuid or f"GPU-{host}-{i:04d}-fake"
        self.NVMLError, classes = _error_classes()
        for name, cls in classes.items():
            setattr(self, name, cls)
        self.NVML_ERROR_NOT_SUPPORTED = 3
        self.NVML_ERROR_LIBRARY_NOT_FOUND = 12

    # -- handles --------------------------------------------------------------------------
    def _gpu(self, handle) -> FakeGpu:
        if not (isinstance(handle, tuple) and handle[0] == "fake-nvml-handle"):
            raise self.NVMLError(2)
        return self.gpus[handle[1]]

    def nvmlInit(self):
        self.calls.append(("nvmlInit", None))
        if self.init_error is not None:
            raise self.NVMLError(self.init_error)

    def nvmlShutdown(self):
        self.calls.append(("nvmlShutdown", None))

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        if not 0 <= index < len(self.gpus):
            raise self.NVMLError(2)
        return ("fake-nvml-handle", index)

    def nvmlDeviceGetHandleByUUID(self, uuid):
        uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
        for i, g in enumerate(self.gpus):
            if g.uuid == uuid:
                return ("fake-nvml-handle", i)
        raise self.NVMLError(6)

    def nvmlDeviceGetIndex(self, handle):
        self._gpu(handle)
        return handle[1]

    def nvmlDeviceGetUUID(self, handle):
        return self._gpu(handle).uuid

    def nvmlDeviceGetName(self, handle):
        return self._gpu(handle).name

    # -- readings ---------------------------------------------------------------------------
    def _advance(self, g: FakeGpu) -> None:
        now = self.clock()
        if g.last is not None:
            g.mj += g.watts * (now - g.last) * 1000.0
        g.last = now

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        g = self._gpu(handle)
        self.calls.append(("nvmlDeviceGetTotalEnergyConsumption", handle[1]))
        if not g.energy_counter:
            raise self.NVMLError(3)
        self._advance(g)
        return int(g.offset_mj + round(g.mj))

    def nvmlDeviceGetPowerUsage(self, handle):
        g = self._gpu(handle)
        self.calls.append(("nvmlDeviceGetPowerUsage", handle[1]))
        self._advance(g)
        return int(round(g.watts * 1000))  # mW

    def set_watts(self, index: int, watts: float) -> None:
        """Change GPU ``index``'s draw from now on (energy so far is booked at the old draw)."""
        self._advance(self.gpus[index])
        self.gpus[index].watts = float(watts)

    def queried(self) -> set:
        """NVML indices whose energy or power was read."""
        return {i for name, i in self.calls if name.startswith("nvmlDeviceGet") and i is not None}


class FakeCuda:
    """``torch.cuda``'s surface that the meters touch (module doc)."""

    def __init__(self, count: int, *, initialized: bool = False, current: int = 0, uuids=None):
        self.count, self.initialized, self.current = count, initialized, current
        self.uuids = dict(uuids or {})
        self.synchronized: list[int] = []
        self.contexts: set[int] = {current} if initialized else set()
        self.initialised_by: list[str] = []

    def _init(self, why: str) -> None:
        if not self.initialized:
            self.initialized = True
            self.initialised_by.append(why)

    def _index(self, device) -> int:
        if device is None:
            return self.current
        if isinstance(device, torch.device):
            return device.index if device.index is not None else self.current
        if isinstance(device, str):
            return torch.device(device).index or 0
        return int(device)

    def is_available(self) -> bool:
        return self.count > 0

    def is_initialized(self) -> bool:
        return self.initialized

    def device_count(self) -> int:
        return self.count

    def current_device(self) -> int:
        self._init("current_device")
        return self.current

    def set_device(self, device) -> None:
        self._init("set_device")
        self.current = self._index(device)
        self.contexts.add(self.current)

    def synchronize(self, device=None) -> None:
        self._init("synchronize")
        i = self._index(device)
        if not 0 <= i < self.count:
            raise RuntimeError(f"invalid device ordinal {i}")
        self.contexts.add(i)
        self.synchronized.append(i)

    def get_device_properties(self, device=None):
        self._init("get_device_properties")
        i = self._index(device)
        return types.SimpleNamespace(name="fake", uuid=self.uuids.get(i, f"fake-uuid-{i}"))

    def has_primary_context(self, index: int) -> bool:
        return index in self.contexts

    def install(self, monkeypatch) -> "FakeCuda":
        for name in ("is_available", "is_initialized", "device_count", "current_device", "set_device",
                     "synchronize", "get_device_properties"):
            monkeypatch.setattr(torch.cuda, name, getattr(self, name))
        monkeypatch.setattr(torch._C, "_cuda_hasPrimaryContext", self.has_primary_context, raising=False)
        return self


@pytest.fixture
def fake_clock():
    return FakeClock()


@pytest.fixture
def fake_nvml(monkeypatch, fake_clock):
    """``fake_nvml(gpus=[FakeGpu(...), ...] | n, init_error=None, host="node")`` → the installed
    :class:`FakeNvml` (``n``: that many 100 W GPUs with energy counters)."""

    def install(gpus=2, *, init_error=None, host="node"):
        if isinstance(gpus, int):
            gpus = [FakeGpu(100.0 + 50 * i) for i in range(gpus)]
        nv = FakeNvml(gpus, fake_clock, init_error=init_error, host=host)
        monkeypatch.setitem(sys.modules, "pynvml", nv)
        return nv

    return install


@pytest.fixture
def fake_cuda(monkeypatch):
    """``fake_cuda(count, initialized=False, current=0, uuids=None)`` → the installed :class:`FakeCuda`."""

    def install(count=2, **kwargs):
        return FakeCuda(count, **kwargs).install(monkeypatch)

    return install
