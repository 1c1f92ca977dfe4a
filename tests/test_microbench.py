"""Microbenchmarks with fakes: meter windows, CUDA synchronisation at window edges (a fake
torch.cuda), devices and dtypes, snapshots of arguments, the resumable results file."""

import json

import pytest
import torch

from torch_tos.energy.benchfile import BenchFile, measure_profile
from torch_tos.energy.benchsuite import Workload
from torch_tos.energy.device import check_dtypes, resolve_device
from torch_tos.energy.meters.base import Meter
from torch_tos.energy.microbench import _snapshot, allocation_costs, capture, classify, dispatch_floor, time_call


class FakeMeter(Meter):
    """Every window: 1 J over 0.5 s, whatever ran (counts its windows)."""

    name = source = "fake"
    estimated = True

    def __init__(self):
        self.windows = 0

    def _begin(self):
        return 0  # (None would read as "already stopped")

    def _end(self, state, m):
        self.windows += 1
        m.joules, m.seconds = 1.0, 0.5


class FakeCuda:
    def __init__(self, count=2):
        self.count, self.syncs = count, []

    def is_available(self):
        return self.count > 0

    def device_count(self):
        return self.count

    def current_device(self):
        return 0

    def get_device_name(self, i):
        return f"Fake GPU {i}"

    def synchronize(self, i=None):
        self.syncs.append(i)


def test_time_call_divides_each_window_by_its_repeats():
    meter = FakeMeter()
    calls = []
    t = time_call(lambda: calls.append(1), (), {}, meter, resolve_device("cpu"), windows=3, target=1e-4)
    assert meter.windows == 3
    assert t.joules == pytest.approx(1.0 / t.repeats) and t.seconds == pytest.approx(0.5 / t.repeats)
    assert len(calls) == 2 + 3 * t.repeats  # a warm-up call, a probe, then the windows


def test_cuda_windows_are_synchronised_at_both_edges():
    cuda = FakeCuda()
    dev = resolve_device("cuda:1", cuda=cuda)
    assert (dev.type, dev.index, dev.name, str(dev)) == ("cuda", 1, "Fake GPU 1", "cuda:1")
    t = time_call(lambda: None, (), {}, FakeMeter(), dev, windows=3, target=1e-4)
    assert cuda.syncs == [1] * (2 + 2 * 3)  # after the warm-up and the probe, before and inside each window end
    assert dev.default_dtypes == ("float32", "float16", "bfloat16", "tf32")
    assert t.repeats >= 1


@pytest.mark.parametrize("device,message", [
    ("tpu", "unknown device"), ("xpu", "not supported"), ("cuda:5", r"2 CUDA device\(s\)"), ("cpu:1", "accepted: cpu, cuda"),
    ("banana", "unknown device")])
def test_devices_not_here_are_refused(device, message):
    with pytest.raises(ValueError, match=message):
        resolve_device(device, cuda=FakeCuda())


def test_no_cuda_and_dtypes():
    with pytest.raises(ValueError, match="no CUDA device is available"):
        resolve_device("cuda", cuda=FakeCuda(count=0))
    cpu = resolve_device("cpu")
    assert check_dtypes(None, cpu) == ("float32", "float64", "bfloat16")
    assert check_dtypes("float32, float16", cpu) == ("float32", "float16")
    with pytest.raises(ValueError, match="unknown dtype 'tf32' for cpu"):
        check_dtypes("tf32", cpu)


def test_snapshots_keep_geometry_and_classify_matches_the_engine():
    base = torch.arange(24.0).reshape(4, 6)
    view = base[1:, ::2]
    snap = _snapshot(view)
    assert (snap.size(), snap.stride(), snap.storage_offset()) == (view.size(), view.stride(), view.storage_offset())
    assert torch.equal(snap, view) and snap.untyped_storage().data_ptr() != base.untyped_storage().data_ptr()
    a, b = torch.randn(2, 3), torch.randn(3, 4)
    (func, args, kwargs), = capture(lambda: torch.mm(a, b))
    assert classify(func, args, kwargs) == ("aten.mm", torch.float32, (48, 72, 32, None))


def _tiny(size, dtype, device):
    x = torch.randn(size, dtype=dtype, device=device, requires_grad=True)

    def run():
        x.grad = None
        (torch.exp(x) * 2.0).sum().backward()
    return run


def test_measure_profile_resumes_and_refuses_another_setup(tmp_path):
    work = [Workload("tiny", (16, 64), _tiny)]
    path = tmp_path / "law.bench.jsonl"
    meter, cpu = FakeMeter(), resolve_device("cpu")
    prof = measure_profile(cpu, ["float32"], meter, path, workloads=work, progress=False, windows=1)
    assert {p["class"] for p in prof.points} >= {"transcendental", "elementwise", "reduction"}
    assert prof.dtypes == ("float32",) and prof.floor["joules"] > 0
    windows = meter.windows
    again = measure_profile(cpu, ["float32"], meter, path, workloads=work, progress=False, windows=1)
    assert meter.windows == windows and len(again.points) == len(prof.points)  # nothing measured twice
    with open(path, "a") as f:
        f.write('{"dtype": "float32", "work')  # a crash mid-line
    BenchFile(path, json.loads(path.read_text().splitlines()[0])["setup"])
    assert path.read_text().endswith("}\n")  # the torn line is gone, atomically
    with pytest.raises(ValueError, match="another setup"):
        measure_profile(cpu, ["float32"], meter, path, threads=2, workloads=work, progress=False)


def test_allocation_costs_and_floor_are_non_negative():
    meter, cpu = FakeMeter(), resolve_device("cpu")
    floor = dispatch_floor(meter, cpu, windows=1)
    rows = allocation_costs(meter, cpu, floor, sizes=(1024, 4096), windows=1)
    assert [r[0] for r in rows] == [1024.0, 4096.0] and all(r[1] >= 0 and r[2] >= 0 for r in rows)
