"""Meters against fake sysfs trees and a fake pynvml module (the real parsing code runs)."""

import logging
import math
import os
import sys
import time
import types
from pathlib import Path

import pytest

from fakes_gpu import FakeGpu, fake_clock, fake_cuda, fake_nvml  # noqa: F401 - fixtures
from torch_tos.energy import meters as M
from torch_tos.energy.meters import (CpuTimeMeter, InvalidWindow, MeterUnavailable, NvmlMeter, RaplMeter,
                                     RaplPermissionError, auto_meter, get_meter)

MAX = 1_000_000  # max_energy_range_uj of the fake zones


def zone(root: Path, dirname: str, name: str, energy: int, max_range=MAX, parent: Path | None = None):
    d = (parent or root) / dirname
    d.mkdir(parents=True)
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text(f"{energy}\n")
    if max_range is not None:
        (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    return d


def set_energy(d: Path, value: int):
    """Atomic, like a sysfs read: the accumulator thread never sees a half-written file."""
    tmp = d / "energy_uj.tmp"
    tmp.write_text(f"{value}\n")
    os.replace(tmp, d / "energy_uj")


@pytest.fixture
def intel(tmp_path):
    """package-0 with core and dram subzones (nested), plus psys, like an Intel laptop."""
    pkg = zone(tmp_path, "intel-rapl:0", "package-0", 100_000)
    core = zone(tmp_path, "intel-rapl:0:0", "core", 50_000, parent=pkg)
    dram = zone(tmp_path, "intel-rapl:0:1", "dram", 10_000, parent=pkg)
    psys = zone(tmp_path, "intel-rapl:1", "psys", 500_000)
    return tmp_path, {"pkg": pkg, "core": core, "dram": dram, "psys": psys}


def test_rapl_total_is_packages_plus_dram(intel):
    root, z = intel
    meter = RaplMeter(root, poll_interval=60)
    assert meter.describe() == "rapl (package-0 + package-0/dram)"
    with meter.measure() as m:
        set_energy(z["pkg"], 400_000)   # +300000 µJ
        set_energy(z["core"], 250_000)  # +200000, inside the package: not added
        set_energy(z["dram"], 60_000)   # +50000
        set_energy(z["psys"], 900_000)  # +400000, the platform: reported, not added
    assert m.joules == pytest.approx(0.35)
    assert m.domains == pytest.approx({"package-0": 0.3, "package-0/core": 0.2, "package-0/dram": 0.05,
                                       "psys": 0.4})
    assert m.source == "rapl" and m.estimated is False and m.valid
    assert m.seconds >= 0


def test_rapl_one_wrap(intel):
    root, z = intel
    meter = RaplMeter(root, poll_interval=60)
    set_energy(z["pkg"], 900_000)
    with meter.measure() as m:
        set_energy(z["pkg"], 200_000)  # wrapped once: (1e6 - 9e5) + 2e5 = 3e5 µJ
    assert m.domains["package-0"] == pytest.approx(0.3)
    assert m.joules == pytest.approx(0.3)
    assert any("wraparound" in n for n in m.notes)


def test_rapl_two_wraps_in_one_window_are_both_counted(intel):
    root, z = intel
    meter = RaplMeter(root, poll_interval=60)
    set_energy(z["pkg"], 900_000)
    window = meter.start()
    set_energy(z["pkg"], 500_000)  # wrap 1: +100000 + 500000
    meter.poll(window)             # what the accumulator thread does between wraps
    set_energy(z["pkg"], 200_000)  # wrap 2: +500000 + 200000
    meter.poll(window)
    set_energy(z["pkg"], 300_000)  # +100000
    m = window.stop()
    assert m.domains["package-0"] == pytest.approx((100_000 + 500_000 + 500_000 + 200_000 + 100_000) / 1e6)


def test_rapl_background_thread_catches_wraps(intel):
    root, z = intel
    meter = RaplMeter(root, poll_interval=0.002)
    set_energy(z["pkg"], 800_000)
    window = meter.start()
    state = window._state

    def wait_for_sample():
        seen = state.samples
        deadline = time.monotonic() + 5
        while state.samples <= seen + 1 and time.monotonic() < deadline:
            time.sleep(0.001)

    for value in (100_000, 900_000, 50_000, 600_000):  # two wraps, each seen by the thread
        set_energy(z["pkg"], value)
        wait_for_sample()
    m = window.stop()
    expected = (200_000 + 100_000) + 800_000 + (100_000 + 50_000) + 550_000
    assert m.domains["package-0"] == pytest.approx(expected / 1e6)
    assert state.wraps == 2


def test_rapl_default_poll_interval_is_short_enough_for_small_ranges(intel):
    meter = RaplMeter(intel[0])
    assert meter.poll_interval({"a": 262_143_328_850}) == 1.0
    # a 4 kJ range wraps in 4 s at 1000 W: read at least 4 times per wrap
    assert meter.poll_interval({"a": 4_000_000_000}) == pytest.approx(1.0)
    assert meter.poll_interval({"a": 400_000_000}) == pytest.approx(0.1)


def test_rapl_unreadable_range_invalidates_the_window(tmp_path):
    pkg = zone(tmp_path, "intel-rapl:0", "package-0", 900_000, max_range=None)
    (pkg / "max_energy_range_uj").write_text("garbage\n")
    meter = RaplMeter(tmp_path, poll_interval=60)
    with pytest.raises(InvalidWindow, match="max_energy_range_uj.*never clamped"):
        with meter.measure():
            set_energy(pkg, 100_000)  # a wrap that cannot be corrected
    lenient = RaplMeter(tmp_path, poll_interval=60, strict=False)
    with lenient.measure() as m:
        set_energy(pkg, 50_000)
    assert not m.valid and math.isnan(m.joules)
    assert m.joules != 0  # never clamped to zero


def test_rapl_range_permission_denied_invalidates_the_window(intel):
    root, z = intel
    target = z["pkg"] / "max_energy_range_uj"

    def reader(path):
        if Path(path) == target:
            raise PermissionError(13, "Permission denied")
        return Path(path).read_text()

    meter = RaplMeter(root, poll_interval=60, reader=reader, strict=False)
    with meter.measure() as m:
        pass
    assert not m.valid and str(target) in " ".join(m.notes)


def test_rapl_permission_denied_names_the_file_and_the_fix(intel):
    root, z = intel

    def reader(path):  # root ignores chmod 000, so deny through the injectable reader
        if Path(path).name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return Path(path).read_text()

    with pytest.raises(RaplPermissionError) as e:
        RaplMeter(root, reader=reader)
    text = str(e.value)
    assert str(z["pkg"] / "energy_uj") in text
    assert "chmod a+r" in text and "udev" in text
    assert isinstance(e.value, PermissionError) and isinstance(e.value, MeterUnavailable)


def test_rapl_permission_denied_through_open(intel, monkeypatch):
    root, z = intel
    real_open = open

    def fake_open(path, *args, **kwargs):
        if str(path).endswith("energy_uj"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", fake_open)
    with pytest.raises(RaplPermissionError, match="energy_uj: permission denied"):
        RaplMeter(root)


def test_rapl_not_available(tmp_path):
    with pytest.raises(MeterUnavailable, match="RAPL not available on this machine"):
        RaplMeter(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MeterUnavailable, match="RAPL not available on this machine"):
        RaplMeter(tmp_path / "empty")
    garbled = zone(tmp_path / "garbled", "intel-rapl:0", "package-0", 1)
    (garbled / "energy_uj").write_text("n/a\n")
    with pytest.raises(MeterUnavailable, match="not an integer"):
        RaplMeter(tmp_path / "garbled")
    zone(tmp_path / "psys-only", "intel-rapl:0", "psys", 1)
    with pytest.raises(MeterUnavailable, match="no package zone"):
        RaplMeter(tmp_path / "psys-only")


def test_rapl_amd_layout_without_dram(tmp_path):
    """AMD Zen: package zones (flat symlink-style layout) with core subzones, no dram."""
    p0 = zone(tmp_path, "intel-rapl:0", "package-0", 1_000)
    c0 = zone(tmp_path, "intel-rapl:0:0", "core", 500)
    p1 = zone(tmp_path, "intel-rapl:1", "package-1", 2_000)
    meter = RaplMeter(tmp_path, poll_interval=60)
    with meter.measure() as m:
        set_energy(p0, 11_000)
        set_energy(c0, 8_500)
        set_energy(p1, 5_000)
    assert m.joules == pytest.approx(0.013)
    assert set(m.domains) == {"package-0", "package-0/core", "package-1"}


def test_rapl_multi_die_and_mmio_duplicates(tmp_path):
    d0 = zone(tmp_path, "intel-rapl:0", "package-0-die-0", 0)
    d1 = zone(tmp_path, "intel-rapl:1", "package-0-die-1", 0)
    dram = zone(tmp_path, "intel-rapl:0:0", "dram", 0)
    mmio = zone(tmp_path, "intel-rapl-mmio:0", "package-0", 0)  # the same package via MMIO
    meter = RaplMeter(tmp_path, poll_interval=60)
    with meter.measure() as m:
        for d, v in ((d0, 1_000_000 - 1), (d1, 2_000), (dram, 3_000), (mmio, 999_999)):
            set_energy(d, v)
    assert m.joules == pytest.approx((999_999 + 2_000 + 3_000) / 1e6)
    assert "package-0-die-0/dram" in m.domains


# -- NVML (more in test_meters_gpu.py) --------------------------------------------------------
def test_nvml_energy_counter_deltas(monkeypatch, fake_nvml, fake_cuda, fake_clock):
    nv = fake_nvml([FakeGpu(100.0), FakeGpu(40.0)])
    cuda = fake_cuda(2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    meter = NvmlMeter(clock=fake_clock)  # not distributed, CUDA not initialised: every visible GPU
    with meter.measure() as m:
        fake_clock.advance(0.5)
    # 100 W x 0.5 s and 40 W x 0.5 s, read from the counters (mJ)
    assert m.domains == pytest.approx({"cuda:0": 50.0, "cuda:1": 20.0})
    assert m.joules == pytest.approx(70.0) and m.seconds == pytest.approx(0.5)
    assert m.source == "nvml" and not m.estimated
    assert cuda.synchronized == [] and cuda.initialised_by == []  # CUDA was never started
    assert m.devices["cuda:1"].uid == nv.gpus[1].uuid and m.devices["cuda:1"].name == "gpu:1"


def test_nvml_respects_cuda_visible_devices(monkeypatch, fake_nvml, fake_cuda, fake_clock):
    nv = fake_nvml([FakeGpu(10.0), FakeGpu(20.0), FakeGpu(30.0)])
    fake_cuda(2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"2,{nv.gpus[1].uuid[:13]}")  # an index and a UUID prefix
    meter = NvmlMeter(clock=fake_clock)
    assert [h for _, h in meter.devices] == [nv.nvmlDeviceGetHandleByIndex(2), nv.nvmlDeviceGetHandleByIndex(1)]
    with meter.measure() as m:
        fake_clock.advance(1.0)
    assert m.domains == pytest.approx({"cuda:0": 30.0, "cuda:1": 20.0})
    assert {k: d.name for k, d in m.devices.items()} == {"cuda:0": "gpu:2", "cuda:1": "gpu:1"}
    only = NvmlMeter(devices=[1])
    assert only.devices == [(1, nv.nvmlDeviceGetHandleByIndex(1))]
    with pytest.raises(ValueError, match="unknown CUDA device 5"):
        NvmlMeter(devices=[5])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(MeterUnavailable, match="no GPU is visible"):
        NvmlMeter()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-abc")
    with pytest.raises(MeterUnavailable, match="MIG slices"):
        NvmlMeter()


def test_nvml_power_sampling_without_counter_is_flagged(monkeypatch, fake_nvml, fake_cuda, fake_clock):
    nv = fake_nvml([FakeGpu(50.0, energy_counter=False)])  # a GPU before Volta
    fake_cuda(1)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    meter = NvmlMeter(poll_interval=0.001, clock=fake_clock)
    assert "power sampling" in meter.describe()
    window = meter.start()
    t0 = fake_clock()
    fake_clock.advance(1.0)
    nv.set_watts(0, 150.0)
    deadline = time.monotonic() + 10
    while not any(t == t0 + 1.0 for t, _ in window._state["samples"]) and time.monotonic() < deadline:
        time.sleep(0.001)  # until the sampling thread has read 150 W at t = 1 s
    fake_clock.advance(2.0)
    m = window.stop()
    assert m.estimated and m.source == "nvml-sampled"
    # trapezoids between the samples (0 s, 50 W), (1 s, 150 W), (3 s, 150 W): 100 J + 300 J
    assert m.joules == pytest.approx((50 + 150) / 2 * 1.0 + 150 * 2.0, rel=1e-9)
    assert m.seconds == pytest.approx(3.0)
    assert "power samples" in " ".join(m.notes)


def test_nvml_missing_library(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    with pytest.raises(MeterUnavailable, match="nvidia-ml-py"):
        NvmlMeter()


def test_nvml_without_driver_is_unavailable(fake_nvml):
    fake_nvml(1, init_error=12)  # what nvidia-ml-py raises where libnvidia-ml.so is missing
    with pytest.raises(MeterUnavailable, match="NVML not available on this machine: NVML Shared|LibraryNotFound"):
        NvmlMeter()


# -- CPU time and auto ------------------------------------------------------------------------
def test_cputime_meter_is_an_estimate_of_cpu_seconds():
    meter = CpuTimeMeter(watts_per_core=20)
    with meter.measure() as m:
        t = time.process_time()
        while time.process_time() - t < 0.05:
            pass
    assert m.estimated is True and m.source == "cputime"
    assert m.joules == pytest.approx(20 * 0.05, rel=0.5)
    assert m.domains == {"cpu": m.joules}
    with pytest.raises(ValueError, match="watts_per_core"):
        CpuTimeMeter(watts_per_core=-1)


@pytest.fixture(autouse=True)
def no_external_tools(monkeypatch, tmp_path_factory):
    """Zeus and CodeCarbon absent and unconfigured unless a test installs fakes of them."""
    monkeypatch.setitem(sys.modules, "zeus", None)
    monkeypatch.setitem(sys.modules, "zeus.monitor", None)
    monkeypatch.setitem(sys.modules, "codecarbon", None)
    for k in [k for k in os.environ if k.startswith("CODECARBON_")]:
        monkeypatch.delenv(k)
    for k in ("LOCAL_RANK", "WORLD_SIZE", "CUDA_DEVICE_ORDER"):  # a plain process unless a test says so
        monkeypatch.delenv(k, raising=False)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home)


def test_auto_meter_falls_back_to_cputime_and_says_why(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with caplog.at_level(logging.INFO, logger="torch_tos.energy"):
        meter = auto_meter(rapl_root=tmp_path / "none")
    assert isinstance(meter, CpuTimeMeter)
    assert "RAPL not available on this machine" in meter.why
    assert "tracks time, not energy" in meter.why
    assert any("falling back to the CPU-time estimate" in r.getMessage() for r in caplog.records)


def test_auto_meter_prefers_rapl(intel, caplog):
    with caplog.at_level(logging.INFO, logger="torch_tos.energy"):
        meter = auto_meter(rapl_root=intel[0])
    assert isinstance(meter, RaplMeter)
    assert "rapl" in caplog.text


def test_get_meter_names():
    assert isinstance(get_meter("cputime"), CpuTimeMeter)
    with pytest.raises(ValueError, match=r"unknown meter 'joulemeter'; accepted: auto, rapl, nvml, rapl\+nvml, "
                                         "cputime, zeus, codecarbon"):
        get_meter("joulemeter")
    m = CpuTimeMeter()
    assert get_meter(m) is m


def test_window_body_exception_propagates_and_start_stop_api():
    meter = CpuTimeMeter()
    with pytest.raises(KeyError):
        with meter.measure():
            raise KeyError("boom")
    w = meter.start()
    m = w.stop()
    assert m.seconds >= 0 and m.joules >= 0
    assert M.Measurement("x", False, joules=10, seconds=2).watts == 5


# -- auto_meter falls back when the counters cannot be read -------------------------------------

@pytest.mark.parametrize("failure", ["EIO", "EISDIR"])
def test_auto_meter_falls_back_when_energy_uj_cannot_be_read(failure, tmp_path, monkeypatch):
    import errno

    monkeypatch.setitem(sys.modules, "pynvml", None)
    pkg = zone(tmp_path, "intel-rapl:0", "package-0", 100)
    if failure == "EISDIR":  # a broken tree: energy_uj is a folder
        (pkg / "energy_uj").unlink()
        (pkg / "energy_uj").mkdir()
    else:  # the driver answers reads with EIO (seen on some AMD/virtualised hosts)
        real_open = open

        def fake_open(path, *args, **kwargs):
            if str(path).endswith("energy_uj"):
                raise OSError(errno.EIO, "Input/output error", str(path))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr("builtins.open", fake_open)
    with pytest.raises(MeterUnavailable, match=f"energy_uj: .*\\({failure}\\)"):
        RaplMeter(tmp_path)
    meter = auto_meter(rapl_root=tmp_path)
    assert isinstance(meter, CpuTimeMeter) and f"({failure})" in meter.why


# -- Zeus and CodeCarbon through fakes of their public APIs -------------------------------------

def fake_zeus(monkeypatch, *, gpu_indices=(0,), cpu_indices=(0,), fail=None):
    """zeus.monitor.ZeusMonitor: begin_window(key, sync_execution), end_window(key, sync_execution)
    returning a Measurement(time, gpu_energy, cpu_energy, dram_energy) in joules (zeus 0.16)."""
    calls = []

    class Measurement:
        def __init__(self, time, gpu_energy, cpu_energy=None, dram_energy=None):
            self.time, self.gpu_energy, self.cpu_energy, self.dram_energy = time, gpu_energy, cpu_energy, dram_energy

    class ZeusMonitor:
        def __init__(self, gpu_indices=None, cpu_indices=None, approx_instant_energy=False, log_file=None,
                     sync_execution_with="torch"):
            if fail:
                raise RuntimeError(fail)
            calls.append(("init", gpu_indices, cpu_indices))
            self.gpu_indices = list(gpu_indices_default if gpu_indices is None else gpu_indices)
            self.cpu_indices = list(cpu_indices_default if cpu_indices is None else cpu_indices)

        def begin_window(self, key, sync_execution=True, restart=False):
            calls.append(("begin", key, sync_execution))

        def end_window(self, key, sync_execution=True, cancel=False):
            calls.append(("end", key, sync_execution))
            return Measurement(1.5, {0: 30.0}, {0: 12.0}, {0: 3.0})

    gpu_indices_default, cpu_indices_default = gpu_indices, cpu_indices
    zeus = types.ModuleType("zeus")
    monitor = types.ModuleType("zeus.monitor")
    monitor.ZeusMonitor = ZeusMonitor
    zeus.monitor = monitor
    monkeypatch.setitem(sys.modules, "zeus", zeus)
    monkeypatch.setitem(sys.modules, "zeus.monitor", monitor)
    return calls


def test_zeus_meter_sums_gpu_cpu_and_dram_of_each_window(monkeypatch):
    calls = fake_zeus(monkeypatch)
    meter = M.ZeusMeter()
    with meter.measure() as m:
        pass
    # 30 J GPU 0 + 12 J CPU package 0 + 3 J its DRAM
    assert m.joules == 45.0 and m.seconds == 1.5 and m.source == "zeus" and not m.estimated
    assert m.domains == {"cuda:0": 30.0, "cpu:0": 12.0, "dram:0": 3.0}
    assert calls[0] == ("init", None, None)  # torch sees no GPU here: Zeus decides
    windows = calls[1:]
    # CUDA is not initialised: Zeus is not asked to synchronise (that would start CUDA)
    assert [c[0] for c in windows] == ["begin", "end"] and windows[0][1] == windows[1][1] and windows[0][2] is False
    with meter.measure(), meter.measure():  # nested windows get keys of their own
        pass
    assert len({c[1] for c in calls[1:]}) == 3
    assert m.devices["cpu:0"].uid == "rapl:intel-rapl:0" and m.devices["dram:0"].uid == "rapl:intel-rapl:0/dram"


def test_zeus_meters_this_rank_gpu_and_syncs_only_once_cuda_runs(monkeypatch, fake_nvml, fake_cuda):
    calls = fake_zeus(monkeypatch)
    nv = fake_nvml(4)
    cuda = fake_cuda(4, initialized=True, current=0)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("LOCAL_RANK", "2")
    meter = M.ZeusMeter()
    assert calls[0] == ("init", [2], None)  # not every GPU of the node: this rank's
    with meter.measure():
        pass
    assert calls[1][2] is True and calls[2][2] is True
    assert meter.ids["cuda:2"].uid == nv.gpus[2].uuid  # identified through NVML (torch's UUID unknown to it)
    assert cuda.initialised_by == []


def test_auto_meter_picks_zeus_when_installed_and_able(monkeypatch, intel):
    fake_zeus(monkeypatch)
    assert isinstance(auto_meter(rapl_root=intel[0]), M.ZeusMeter)
    assert isinstance(get_meter("zeus"), M.ZeusMeter)


def test_zeus_unusable_falls_back(monkeypatch, intel):
    fake_zeus(monkeypatch, fail="no GPU")
    meter = auto_meter(rapl_root=intel[0])
    assert isinstance(meter, RaplMeter) and "Zeus cannot measure on this machine: RuntimeError: no GPU" in meter.why
    fake_zeus(monkeypatch, gpu_indices=(), cpu_indices=())
    assert isinstance(auto_meter(rapl_root=intel[0]), RaplMeter)


def fake_codecarbon(monkeypatch, *, tasks=True):
    """codecarbon: EmissionsTracker / OfflineEmissionsTracker with start(), stop(), and (>= 2.5)
    start_task(name) / stop_task(name) returning EmissionsData(energy_consumed kWh, cpu_energy,
    gpu_energy, ram_energy); stop() fills final_emissions_data (codecarbon 3.3)."""
    log = []

    class EmissionsData:
        def __init__(self, kwh):
            self.energy_consumed, self.cpu_energy, self.gpu_energy, self.ram_energy = kwh, kwh * 0.5, kwh * 0.25, kwh * 0.25

    class EmissionsTracker:
        def __init__(self, **kwargs):
            self.kwargs = kwargs
            log.append(("init", type(self).__name__, kwargs))

        def start(self):
            log.append(("start",))

        def stop(self):
            log.append(("stop",))
            self.final_emissions_data = EmissionsData(2e-6)
            return 1e-7

    class OfflineEmissionsTracker(EmissionsTracker):
        pass

    if tasks:
        def start_task(self, task_name=None):
            log.append(("start_task", task_name))

        def stop_task(self, task_name=None):
            log.append(("stop_task", task_name))
            return EmissionsData(1e-6)

        EmissionsTracker.start_task, EmissionsTracker.stop_task = start_task, stop_task
    cc = types.ModuleType("codecarbon")
    cc.EmissionsTracker, cc.OfflineEmissionsTracker = EmissionsTracker, OfflineEmissionsTracker
    monkeypatch.setitem(sys.modules, "codecarbon", cc)
    return log


def test_codecarbon_meter_one_task_per_window_kwh_to_joules(monkeypatch):
    log = fake_codecarbon(monkeypatch)
    meter = M.CodeCarbonMeter(country_iso_code="FRA")
    assert log[0][1] == "OfflineEmissionsTracker" and log[0][2]["country_iso_code"] == "FRA"
    assert log[0][2]["save_to_file"] is False
    with meter.measure() as m:
        pass
    with meter.measure() as m2:
        pass
    # 1e-6 kWh x 3.6e6 J/kWh = 3.6 J per window, split 50/25/25 into cpu/gpu/ram
    assert m.joules == pytest.approx(3.6) and m2.joules == pytest.approx(3.6)
    assert m.domains == pytest.approx({"cpu": 1.8, "gpu": 0.9, "ram": 0.9})
    assert m.estimated and m.source == "codecarbon"
    assert [e[0] for e in log[1:]] == ["start", "start_task", "stop_task", "start_task", "stop_task"]
    meter.close()
    assert log[-1] == ("stop",)


def test_codecarbon_without_tasks_runs_start_stop_per_window(monkeypatch):
    log = fake_codecarbon(monkeypatch, tasks=False)
    meter = M.CodeCarbonMeter()
    with meter.measure() as m:
        pass
    assert log[0][1] == "EmissionsTracker" and [e[0] for e in log[1:]] == ["start", "stop"]
    assert m.joules == pytest.approx(7.2)  # final_emissions_data: 2e-6 kWh


def test_auto_meter_picks_codecarbon_only_when_configured(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    fake_codecarbon(monkeypatch)
    meter = auto_meter(rapl_root=tmp_path / "none")
    assert isinstance(meter, CpuTimeMeter) and "codecarbon: not configured" in meter.why
    (Path.cwd() / ".codecarbon.config").write_text("[codecarbon]\ncountry_iso_code=FRA\n")
    assert isinstance(auto_meter(rapl_root=tmp_path / "none"), M.CodeCarbonMeter)
    (Path.cwd() / ".codecarbon.config").unlink()
    monkeypatch.setenv("CODECARBON_LOG_LEVEL", "error")
    assert isinstance(auto_meter(rapl_root=tmp_path / "none"), M.CodeCarbonMeter)
