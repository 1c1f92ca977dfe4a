"""The NVML meter's choice of GPUs, its synchronisation, and the combined CPU+GPU meter, against the
fakes of pynvml and torch.cuda in fakes_gpu.py (the meters' real code runs)."""

import logging
import os
import sys

import pytest

from fakes_gpu import NVML_ERRORS, FakeGpu, FakeNvml, fake_clock, fake_cuda, fake_nvml  # noqa: F401 - fixtures
from torch_tos.energy import meters as M
from torch_tos.energy.meters import CombinedMeter, MeterUnavailable, NvmlMeter, RaplMeter, auto_meter, get_meter

LAUNCH_VARS = ("LOCAL_RANK", "RANK", "WORLD_SIZE", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")


@pytest.fixture(autouse=True)
def plain_process(monkeypatch, tmp_path_factory):
    """No launcher variables, no Zeus/CodeCarbon, unless a test sets them."""
    for k in LAUNCH_VARS:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setitem(sys.modules, "zeus", None)
    monkeypatch.setitem(sys.modules, "zeus.monitor", None)
    monkeypatch.setitem(sys.modules, "codecarbon", None)
    for k in [k for k in os.environ if k.startswith("CODECARBON_")]:
        monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))


def metered(meter):
    """NVML indices of the GPUs a meter reads."""
    return [meter.ids[d].name for d, _ in meter.devices]


# -- which GPU each rank meters ---------------------------------------------------------------------

@pytest.mark.parametrize("local_rank", [0, 1])
def test_local_rank_meters_its_own_gpu_without_starting_cuda(local_rank, monkeypatch, fake_nvml, fake_cuda,
                                                             fake_clock):
    nv = fake_nvml([FakeGpu(100.0), FakeGpu(150.0)])
    cuda = fake_cuda(2)  # torchrun on a 2-GPU node: no CUDA_VISIBLE_DEVICES, CUDA not yet started
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    meter = NvmlMeter(clock=fake_clock)
    assert metered(meter) == [f"gpu:{local_rank}"]
    assert f"LOCAL_RANK={local_rank}" in meter.describe()
    with meter.measure() as m:
        fake_clock.advance(2.0)
    assert m.domains == pytest.approx({f"cuda:{local_rank}": (100.0, 150.0)[local_rank] * 2.0})
    assert nv.queried() == {local_rank}  # the other GPU is never read
    assert cuda.initialised_by == [] and cuda.synchronized == [] and cuda.contexts == set()


@pytest.mark.parametrize("local_rank", [0, 1])
def test_local_rank_through_cuda_visible_devices(local_rank, monkeypatch, fake_nvml, fake_cuda, fake_clock):
    """Each rank sees the node's GPUs 2,3 (CUDA_VISIBLE_DEVICES): ordinal LOCAL_RANK is NVML's 2 or 3."""
    nv = fake_nvml([FakeGpu(10.0), FakeGpu(20.0), FakeGpu(30.0), FakeGpu(40.0)])
    fake_cuda(2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    meter = NvmlMeter(clock=fake_clock)
    assert metered(meter) == [f"gpu:{2 + local_rank}"]
    with meter.measure() as m:
        fake_clock.advance(1.0)
    assert m.joules == pytest.approx((30.0, 40.0)[local_rank])
    assert m.devices[f"cuda:{local_rank}"].uid == nv.gpus[2 + local_rank].uuid


@pytest.mark.parametrize("local_rank", [0, 1])
def test_one_gpu_per_rank_by_the_launcher(local_rank, monkeypatch, fake_nvml, fake_cuda, fake_clock):
    """SLURM --gpus-per-task=1: each rank sees only its GPU (CUDA_VISIBLE_DEVICES=<its index>), so
    LOCAL_RANK 1 is not an ordinal here; the only visible GPU is the rank's."""
    fake_nvml([FakeGpu(10.0), FakeGpu(20.0)])
    fake_cuda(1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", str(local_rank))
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    meter = NvmlMeter(clock=fake_clock)
    assert metered(meter) == [f"gpu:{local_rank}"]
    assert [d for d, _ in meter.devices] == [0]


def test_current_device_once_cuda_is_initialised(monkeypatch, fake_nvml, fake_cuda, fake_clock):
    """A rank launched without LOCAL_RANK (mp.spawn) that called torch.cuda.set_device(1)."""
    nv = fake_nvml([FakeGpu(10.0), FakeGpu(20.0)])
    cuda = fake_cuda(2, initialized=True, current=1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    meter = NvmlMeter(clock=fake_clock)
    assert metered(meter) == ["gpu:1"]
    with meter.measure() as m:
        fake_clock.advance(1.0)
    assert m.joules == pytest.approx(20.0)
    assert cuda.synchronized == [1, 1]  # both edges of the window, this device only
    assert cuda.contexts == {1} and cuda.initialised_by == []
    assert nv.queried() == {1}


def test_synchronises_only_where_this_process_has_a_context(monkeypatch, fake_nvml, fake_cuda):
    """LOCAL_RANK=1 while this process's CUDA work is on GPU 0: GPU 1 has no context, so nothing of
    this process is queued there and synchronising it would only create a context."""
    fake_nvml(2)
    cuda = fake_cuda(2, initialized=True, current=0)
    monkeypatch.setenv("LOCAL_RANK", "1")
    meter = NvmlMeter()
    assert metered(meter) == ["gpu:1"]
    with meter.measure():
        pass
    assert cuda.synchronized == [] and cuda.contexts == {0}


def test_not_distributed_meters_every_visible_gpu_until_cuda_starts(fake_nvml, fake_cuda, fake_clock):
    fake_nvml([FakeGpu(10.0), FakeGpu(20.0), FakeGpu(40.0)])
    cuda = fake_cuda(3)
    early = NvmlMeter(clock=fake_clock)  # built before the model went to the GPU
    assert metered(early) == ["gpu:0", "gpu:1", "gpu:2"]
    with early.measure() as m:
        fake_clock.advance(1.0)
    assert m.joules == pytest.approx(70.0)  # CUDA not started: every visible GPU
    cuda.set_device(1)  # the script moves its model to cuda:1
    window = early.start()
    fake_clock.advance(1.0)
    cuda.set_device(2)  # a choice is never changed inside a window
    m = window.stop()
    assert m.domains == pytest.approx({"cuda:1": 20.0}) and "current CUDA device" in early.describe()
    assert metered(early) == ["gpu:1"] and cuda.initialised_by == ["set_device"]  # the script's, not ours
    cuda.contexts, cuda.current = {0, 2}, 0  # a process that spread a model over GPUs 0 and 2
    cuda.synchronized.clear()
    meter = NvmlMeter()
    assert metered(meter) == ["gpu:0", "gpu:2"] and "used" in meter.describe()
    with meter.measure():
        pass
    assert sorted(cuda.synchronized) == [0, 0, 2, 2] and cuda.contexts == {0, 2}
    assert metered(NvmlMeter(devices="all")) == ["gpu:0", "gpu:1", "gpu:2"]
    assert metered(NvmlMeter(devices=1)) == ["gpu:1"]


def test_distributed_without_a_way_to_tell_the_rank_gpu_says_what_to_do(monkeypatch, fake_nvml, fake_cuda):
    fake_nvml(2)
    fake_cuda(2)
    monkeypatch.setenv("WORLD_SIZE", "2")  # a rank, but no LOCAL_RANK and CUDA not started
    with pytest.raises(MeterUnavailable, match=r"cannot tell this rank's GPU.*set_device.*devices=\[i\]"):
        NvmlMeter()
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setenv("LOCAL_RANK", "3")  # more ranks than GPUs
    with pytest.raises(MeterUnavailable, match="LOCAL_RANK=3 but this process sees 2 GPUs"):
        NvmlMeter()
    monkeypatch.setenv("LOCAL_RANK", "x")
    with pytest.raises(MeterUnavailable, match="LOCAL_RANK='x' is not an integer"):
        NvmlMeter()


def test_bad_devices_argument(fake_nvml, fake_cuda):
    fake_nvml(2)
    fake_cuda(2)
    for bad in ([2], [-1], ["0"], [True]):
        with pytest.raises(ValueError, match="unknown CUDA device"):
            NvmlMeter(devices=bad)
    with pytest.raises(ValueError, match="devices is empty"):
        NvmlMeter(devices=[])


# -- CUDA ordinals to NVML devices -----------------------------------------------------------------

def test_initialised_cuda_maps_ordinals_by_uuid(monkeypatch, fake_nvml, fake_cuda, fake_clock):
    """CUDA's default order puts the fastest GPU first: ordinal 0 is NVML's GPU 1 on this node.
    Once CUDA runs, torch's UUID of the ordinal names the right GPU whatever the order."""
    nv = fake_nvml([FakeGpu(70.0, name="Tesla T4"), FakeGpu(700.0, name="NVIDIA H100")])
    fake_cuda(2, initialized=True, current=0, uuids={0: nv.gpus[1].uuid[len("GPU-"):], 1: nv.gpus[0].uuid[4:]})
    meter = NvmlMeter(devices=[0], clock=fake_clock)
    assert metered(meter) == ["gpu:1"]
    with meter.measure() as m:
        fake_clock.advance(1.0)
    assert m.joules == pytest.approx(700.0) and not any("CUDA_DEVICE_ORDER" in n for n in m.notes)


def test_mixed_gpus_without_pci_bus_order_are_flagged_before_cuda_starts(monkeypatch, fake_nvml, fake_cuda):
    fake_nvml([FakeGpu(name="Tesla T4"), FakeGpu(name="NVIDIA H100")])
    fake_cuda(2)
    with NvmlMeter().measure() as m:
        pass
    assert any("CUDA_DEVICE_ORDER=PCI_BUS_ID" in n for n in m.notes)
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    with NvmlMeter().measure() as m:
        pass
    assert not any("CUDA_DEVICE_ORDER" in n for n in m.notes)


def test_power_sampling_only_on_the_gpu_without_counter(fake_nvml, fake_cuda, fake_clock):
    fake_nvml([FakeGpu(100.0), FakeGpu(60.0, energy_counter=False)])
    fake_cuda(2)
    meter = NvmlMeter(poll_interval=60, clock=fake_clock)
    assert meter.sampled == {1} and meter.estimated and meter.source == "nvml-sampled"
    assert "power sampling on GPU 1" in meter.describe()
    with meter.measure() as m:
        fake_clock.advance(0.5)
    assert m.domains == pytest.approx({"cuda:0": 50.0, "cuda:1": 30.0})
    assert m.estimated


def test_nvml_errors_other_than_not_supported_make_the_meter_unavailable(fake_nvml, fake_cuda):
    nv = fake_nvml(1)
    fake_cuda(1)

    def lost(handle):
        raise nv.NVMLError(15)

    nv.nvmlDeviceGetTotalEnergyConsumption = lost
    with pytest.raises(MeterUnavailable, match="cannot read GPU 0's energy: GpuIsLost"):
        NvmlMeter()


def test_the_fake_matches_the_real_pynvml():
    """Every NVML call the fake offers exists in nvidia-ml-py with the same error classes (checked
    where nvidia-ml-py is installed)."""
    real = pytest.importorskip("pynvml")
    if isinstance(real, FakeNvml):
        pytest.skip("pynvml is a fake here")
    fake = FakeNvml([], clock=lambda: 0.0)
    for name in dir(fake):
        if name.startswith("nvml"):
            assert callable(getattr(real, name, None)), name
    for value in NVML_ERRORS:
        assert type(real.NVMLError(value)).__name__ == type(fake.NVMLError(value)).__name__
        assert real.NVMLError(value).value == value == fake.NVMLError(value).value
    assert real.NVML_ERROR_NOT_SUPPORTED == fake.NVML_ERROR_NOT_SUPPORTED
    assert real.NVML_ERROR_LIBRARY_NOT_FOUND == fake.NVML_ERROR_LIBRARY_NOT_FOUND


# -- CPU and GPUs together ---------------------------------------------------------------------------

def rapl_tree(root, package_uj=1_000_000, dram_uj=500_000):
    """package-0 with a dram subzone, as on a server."""
    pkg = root / "intel-rapl:0"
    dram = pkg / "intel-rapl:0:0"
    for d, name, value in ((pkg, "package-0", package_uj), (dram, "dram", dram_uj)):
        d.mkdir(parents=True)
        (d / "name").write_text(name + "\n")
        (d / "energy_uj").write_text(f"{value}\n")
        (d / "max_energy_range_uj").write_text("262143328850\n")
    return pkg, dram


def test_auto_meter_on_a_gpu_node_combines_cpu_package_and_gpus(tmp_path, monkeypatch, fake_nvml, fake_cuda,
                                                                 fake_clock, caplog):
    fake_nvml([FakeGpu(300.0), FakeGpu(300.0)])
    cuda = fake_cuda(2, initialized=True, current=1)
    monkeypatch.setenv("LOCAL_RANK", "1")
    pkg, dram = rapl_tree(tmp_path)
    with caplog.at_level(logging.INFO, logger="torch_tos.energy"):
        meter = auto_meter(rapl_root=tmp_path)
    assert isinstance(meter, CombinedMeter)
    assert meter.describe() == ("nvml (energy counter; GPU 1: LOCAL_RANK=1) + rapl (package-0 + package-0/dram)")
    assert "energy meter: nvml (energy counter; GPU 1: LOCAL_RANK=1) + rapl (package-0" in caplog.text
    meter.meters[0].clock = fake_clock
    with meter.measure() as m:
        fake_clock.advance(0.25)
        (pkg / "energy_uj").write_text("41000000\n")   # +40 J
        (dram / "energy_uj").write_text("5500000\n")   # +5 J
    assert m.domains == pytest.approx({"cuda:1": 75.0, "package-0": 40.0, "package-0/dram": 5.0})
    assert m.joules == pytest.approx(120.0)
    assert m.source == "nvml+rapl" and not m.estimated and m.valid
    assert {k: d.uid for k, d in m.devices.items()} == {
        "cuda:1": "GPU-node-0001-fake", "package-0": "rapl:intel-rapl:0", "package-0/dram": "rapl:intel-rapl:0/dram"}
    assert cuda.synchronized == [1, 1]
    assert isinstance(get_meter("rapl+nvml", rapl_root=tmp_path), CombinedMeter)


def test_auto_meter_gpu_without_rapl_is_nvml_and_says_the_cpu_is_not_metered(tmp_path, fake_nvml, fake_cuda):
    fake_nvml(1)
    fake_cuda(1)
    meter = auto_meter(rapl_root=tmp_path / "none")
    assert isinstance(meter, NvmlMeter)
    assert "RAPL not available" in meter.why and "the CPU is not metered" in meter.why


def test_auto_meter_cpu_only_machine_is_unchanged(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    rapl_tree(tmp_path)
    meter = auto_meter(rapl_root=tmp_path)
    assert isinstance(meter, RaplMeter) and "nvidia-ml-py" in meter.why


def test_combined_meter_rules(fake_nvml, fake_cuda, fake_clock):
    fake_nvml(1)
    fake_cuda(1)
    with pytest.raises(ValueError, match="at least two"):
        CombinedMeter(M.CpuTimeMeter())
    with pytest.raises(TypeError, match="must be Meters"):
        CombinedMeter(M.CpuTimeMeter(), object())
    a, b = NvmlMeter(clock=fake_clock), NvmlMeter(clock=fake_clock)
    with CombinedMeter(a, b).measure() as m:  # one label in two parts: each prefixed with its part
        fake_clock.advance(1.0)
    assert m.domains == pytest.approx({"nvml#0:cuda:0": 100.0, "nvml#1:cuda:0": 100.0})
    assert m.joules == pytest.approx(200.0)


def test_combined_meter_ends_every_part_when_one_fails(fake_nvml, fake_cuda, fake_clock):
    fake_nvml([FakeGpu(50.0, energy_counter=False)])
    fake_cuda(1)
    nvml = NvmlMeter(poll_interval=0.001, clock=fake_clock)

    class Broken(M.CpuTimeMeter):
        def _end(self, state, m):
            raise OSError("counter vanished")

    window = CombinedMeter(Broken(), nvml).start()
    thread = window._state[1]["thread"]
    with pytest.raises(OSError, match="counter vanished"):
        window.stop()
    assert not thread.is_alive()  # the NVML part's sampling thread was stopped all the same
