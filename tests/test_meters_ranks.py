"""Energy over the ranks of a job: each (machine, device) counted once, wall time the longest rank's.

Hand derivations: a fake GPU drawing P watts for T fake seconds reads P·T joules. Three training
steps of 0.5 s each are T = 1.5 s per rank.
"""

import os
import sys

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn

from fakes_gpu import FakeClock, FakeCuda, FakeGpu, FakeNvml, fake_clock, fake_cuda, fake_nvml  # noqa: F401
from torch_tos import TOsCounter
from torch_tos.energy.meters import DeviceId, NvmlMeter
from torch_tos.training.distributed import combine_energy
from torch_tos.training.records import ProcessReading

STEPS, STEP_S = 3, 0.5


def gpu(machine, index, counted=True):
    return DeviceId(machine, f"host-{machine}", f"GPU-{machine}-{index}", f"gpu:{index}", counted)


def rank(devices, seconds=1.5):
    return {"joules": sum(devices.values()), "seconds": seconds, "devices": devices}


# -- combine_energy: fakes of what each rank gathered ------------------------------------------------

def test_two_ranks_each_metering_its_own_gpu_add_up():
    a, b = gpu("m1", 0), gpu("m1", 1)
    joules, seconds, domains = combine_energy([rank({a: 150.0}, 1.5), rank({b: 225.0}, 1.52)])
    assert joules == pytest.approx(375.0)  # 100 W and 150 W for 1.5 s
    assert seconds == pytest.approx(1.52)  # the longest rank, not 3.02 s
    assert domains == {"host-m1/gpu:0": 150.0, "host-m1/gpu:1": 225.0}


def test_two_ranks_both_metering_both_gpus_count_each_gpu_once():
    a, b = gpu("m1", 0), gpu("m1", 1)
    # rank 1's windows started a little later: its readings are a little smaller
    joules, seconds, domains = combine_energy([rank({a: 150.0, b: 225.0}), rank({a: 149.0, b: 224.0})])
    assert joules == pytest.approx(375.0)  # not 748 J: the node's energy once, the larger reading of each
    assert seconds == pytest.approx(1.5)
    assert domains == {"host-m1/gpu:0": 150.0, "host-m1/gpu:1": 225.0}


def test_same_gpu_index_on_two_nodes_counts_twice():
    joules, _, domains = combine_energy([rank({gpu("m1", 0): 150.0}), rank({gpu("m2", 0): 150.0})])
    assert joules == pytest.approx(300.0)
    assert domains == {"host-m1/gpu:0": 150.0, "host-m2/gpu:0": 150.0}
    # even where two machines report the same UUID, the machine keeps them apart
    same = DeviceId("m2", "host-m2", "GPU-m1-0", "gpu:0")
    assert combine_energy([rank({gpu("m1", 0): 150.0}), rank({same: 150.0})])[0] == pytest.approx(300.0)


def test_two_nodes_two_ranks_each_with_a_shared_cpu_package():
    """2 nodes x 2 ranks, each rank metering its GPU and its node's CPU package (RAPL)."""
    def pkg(machine, j):
        return DeviceId(machine, f"host-{machine}", "rapl:intel-rapl:0", "package-0"), j

    def core(machine, j):  # inside the package: reported, never added
        return DeviceId(machine, f"host-{machine}", "rapl:intel-rapl:0/core", "package-0/core", False), j

    ranks = []
    for machine in ("m1", "m2"):
        for local in (0, 1):
            ranks.append(rank(dict([(gpu(machine, local), 100.0 + local), pkg(machine, 60.0 - local),
                                    core(machine, 30.0)])))
    joules, _, domains = combine_energy(ranks)
    # per node: GPUs 100 + 101 J, the package once at its larger reading 60 J
    assert joules == pytest.approx(2 * (100.0 + 101.0 + 60.0))
    assert domains["host-m1/package-0"] == 60.0 and "host-m1/package-0/core" not in domains
    assert len(domains) == 6


def test_readings_without_identity_are_each_rank_own():
    p0, p1 = ProcessReading("h", 11), ProcessReading("h", 11)  # even with equal host and pid
    joules, seconds, domains = combine_energy([rank({p0: 4.5}, 0.75), rank({p1: 4.5}, 0.75)])
    assert joules == pytest.approx(9.0) and seconds == pytest.approx(0.75)
    assert domains == {"h/process 11": 9.0}


def test_a_rank_without_meter_means_no_energy():
    assert combine_energy([rank({gpu("m1", 0): 1.0}), None]) == (None, None, {})


# -- one process: the counter keeps joules per device -------------------------------------------------

def train(model, opt, meter_clock, steps=STEPS):
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        out = model(torch.randn(4, 3))
        meter_clock.advance(STEP_S)  # the step's device time, inside its window
        out.pow(2).mean().backward()
        opt.step()


def test_counter_total_reports_each_device(monkeypatch, fake_nvml, fake_cuda, fake_clock):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    fake_nvml([FakeGpu(100.0), FakeGpu(150.0)])
    fake_cuda(2)
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with TOsCounter(model, opt, meter=NvmlMeter(clock=fake_clock)) as counter:
        train(model, opt, fake_clock)
    total = counter.total
    host = DeviceId.here("x", "y").host
    assert total.joules == pytest.approx(250.0 * STEPS * STEP_S)
    assert total.seconds == pytest.approx(STEPS * STEP_S)
    assert total.domains == pytest.approx({f"{host}/gpu:0": 150.0, f"{host}/gpu:1": 225.0})
    assert counter.total_all_ranks() == total  # no process group: the local total


# -- two real processes (gloo), the real NVML meter on fakes of a node's GPUs -------------------------

SCENARIOS = ("own-gpu", "both-gpus", "two-nodes")


def _worker(rank_: int, port: int, out_dir: str) -> None:
    sys.path.insert(0, os.path.dirname(__file__))
    from test_distributed import dump, gloo_group

    import torch_tos.energy.meters.base as base

    patch = pytest.MonkeyPatch()
    results = {}
    with gloo_group(rank_, port):
        for scenario in SCENARIOS:
            clock = FakeClock()
            # two nodes: each rank its own machine, both with the same GPU indices (and UUIDs)
            node = f"node{rank_}" if scenario == "two-nodes" else "node0"
            patch.setattr(base, "machine", lambda node=node: f"boot-{node}")
            patch.setattr(base, "hostname", lambda node=node: node)
            patch.setitem(sys.modules, "pynvml", FakeNvml([FakeGpu(100.0), FakeGpu(150.0)], clock))
            cuda = FakeCuda(2).install(patch)
            patch.setenv("LOCAL_RANK", "0" if scenario == "two-nodes" else str(rank_))
            cuda.set_device(int(os.environ["LOCAL_RANK"]))  # the user's torch.cuda.set_device(local_rank)
            patch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
            meter = NvmlMeter(devices="all" if scenario == "both-gpus" else None, clock=clock)
            model = nn.Linear(3, 2)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            with TOsCounter(model, opt, meter=meter) as counter:
                train(model, opt, clock)
                everyone = counter.total_all_ranks()
            results[scenario] = {"local": counter.total, "all": everyone, "synchronized": list(cuda.synchronized),
                                 "contexts": sorted(cuda.contexts)}
            patch.undo()
    dump(out_dir, rank_, results)


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo")
def test_total_all_ranks_counts_each_gpu_once_two_processes(tmp_path):
    sys.path.insert(0, os.path.dirname(__file__))
    from test_distributed import run_workers

    res = run_workers(_worker, tmp_path)
    T = STEPS * STEP_S
    for r, out in enumerate(res):
        own = out["own-gpu"]
        # a 2-GPU node, each rank metering its own GPU: 100 W and 150 W for 1.5 s
        assert own["local"].joules == pytest.approx((100.0, 150.0)[r] * T)
        assert own["all"].joules == pytest.approx(250.0 * T)
        assert own["all"].seconds == pytest.approx(T)  # the longest rank, not 2 x 1.5 s
        assert own["all"].domains == pytest.approx({"node0/gpu:0": 100.0 * T, "node0/gpu:1": 150.0 * T})
        # the rank synchronised its own GPU at both edges of each step, and opened no other context
        assert own["synchronized"] == [r] * (2 * STEPS) and own["contexts"] == [r]
        both = out["both-gpus"]
        assert both["local"].joules == pytest.approx(250.0 * T)  # each rank read the whole node
        assert both["all"].joules == pytest.approx(250.0 * T)  # ... counted once, not 2 x 375 J
        assert both["all"].domains == pytest.approx({"node0/gpu:0": 100.0 * T, "node0/gpu:1": 150.0 * T})
        nodes = out["two-nodes"]
        assert nodes["all"].joules == pytest.approx(2 * 100.0 * T)  # GPU 0 of each node: two devices
        assert nodes["all"].domains == pytest.approx({"node0/gpu:0": 100.0 * T, "node1/gpu:0": 100.0 * T})
        assert nodes["all"].seconds == pytest.approx(T)
        assert nodes["all"].steps == 2 * STEPS
