"""TOsCounter.total_all_ranks(): two processes, gloo backend, DistributedDataParallel on CPU."""

import contextlib
import os
import pickle
import socket
import sys
import time
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

WORLD = 2


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Meter:
    def measure(self):
        class Window:
            joules, seconds, estimated = 1.5, 0.25, True

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

        return Window()


@contextlib.contextmanager
def gloo_group(rank: int, port: int, world: int = WORLD):
    """This process as ``rank`` of a gloo group of ``world`` on localhost (one thread, seed 0)."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        yield
    finally:
        dist.destroy_process_group()


def dump(out_dir: str, rank: int, result: dict) -> None:
    """A worker's result, read back by the test process."""
    with open(os.path.join(out_dir, f"rank{rank}.pkl"), "wb") as f:
        pickle.dump(result, f)


def _worker(rank: int, port: int, out_dir: str) -> None:
    sys.path.insert(0, os.path.dirname(__file__))
    from torch_tos import TOsCounter

    with gloo_group(rank, port):
        model = nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 1))
        ddp = nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        batch = 8 if rank == 0 else 4  # the ranks count different work
        g = torch.Generator().manual_seed(rank)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # communication ops (c10d) have no counting rule
            with TOsCounter(ddp, opt, meter=_Meter()) as counter:
                for _ in range(3):
                    x, y = torch.randn(batch, 4, generator=g), torch.rand(batch, 1, generator=g)
                    opt.zero_grad(set_to_none=True)
                    nn.functional.mse_loss(ddp(x), y).backward()
                    opt.step()
                local = counter.total
                everyone = counter.total_all_ranks()
        unsupported = sorted({u.op for u in counter.report().unsupported})
        dump(out_dir, rank, {"local": local, "all": everyone, "kinds": [r.kind for r in counter.steps],
                             "cache": [r.cache for r in counter.steps], "unsupported": unsupported})


def _run(fn, args, timeout: float = 120.0, nprocs: int = WORLD) -> None:
    """``torch.multiprocessing.spawn`` semantics, started by fork where the platform has it (the
    children inherit the imported modules instead of importing torch again: seconds, not tens of
    seconds), with a deadline so that a hung rank cannot hang the test run."""
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    context = mp.start_processes(fn, args=args, nprocs=nprocs, join=False, start_method=method)
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1.0):
        if time.monotonic() > deadline:
            for p in context.processes:
                if p.is_alive():
                    p.kill()
            pytest.fail(f"distributed workers did not finish within {timeout:.0f} s")


def run_workers(worker, tmp_path, world: int = WORLD) -> list[dict]:
    """Run ``worker(rank, port, out_dir)`` on ``world`` processes; their :func:`dump` results by rank."""
    _run(worker, (_free_port(), str(tmp_path)), nprocs=world)
    res = []
    for r in range(world):
        with open(tmp_path / f"rank{r}.pkl", "rb") as f:
            res.append(pickle.load(f))
    return res


def test_total_all_ranks_two_processes_gloo_ddp(tmp_path):
    res = run_workers(_worker, tmp_path)
    for r in res:
        assert r["kinds"] == ["training"] * 3
        # DDP's first forward, its bucket rebuild at the second, then its steady state: three
        # kinds of work, each counted (training/ddp.py)
        assert r["cache"] == ["miss", "miss", "miss"]
    l0, l1 = res[0]["local"], res[1]["local"]
    assert l0.tos_exact != l1.tos_exact  # different batch sizes: different work per rank
    for r in res:
        a = r["all"]
        assert a.bos == l0.bos + l1.bos
        assert a.tos_exact == l0.tos_exact + l1.tos_exact and a.tos == float(l0.tos_exact + l1.tos_exact)
        assert a.flops == l0.flops + l1.flops
        assert a.steps == 6
        # 1.5 J x 3 steps x 2 ranks (a meter that names no device: each rank's own); wall time: the longest
        # rank's 3 x 0.25 s, not the sum over ranks
        assert a.joules == pytest.approx(9.0) and a.seconds == pytest.approx(0.75)
        for phase in ("forward", "loss", "backward", "optimizer"):
            assert a.phases[phase].bos == l0.phases[phase].bos + l1.phases[phase].bos
    assert res[0]["all"] == res[1]["all"]
    assert res[0]["unsupported"] == []  # DDP's gradient all-reduce is priced (rules/distributed.py)
