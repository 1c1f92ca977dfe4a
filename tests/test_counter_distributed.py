"""TOsCounter under torch.distributed, 2 gloo ranks on the CPU: the step cache knows DDP's
communication hooks (issue 17, item 5) and ``log_to(csv)`` from several ranks (item 8)."""

import csv
import os
import sys
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn

from test_distributed import dump, gloo_group, run_workers

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def _serial_callbacks():
    """Make every asynchronous all-reduce complete before its future is returned. gloo runs a
    future's ``then`` callbacks on its own thread when the collective finishes after ``then`` is
    called, and no TorchDispatchMode is active there — so whether a communication hook's
    callbacks (PowerSGD's decompression) are seen by a counting engine depends on timing. With
    this, they run on the calling thread, every time, in every mode."""
    original = dist.all_reduce

    def all_reduce(tensor, op=dist.ReduceOp.SUM, group=None, async_op=False):
        work = original(tensor, op=op, group=group, async_op=async_op)
        if async_op:
            work.wait()
        return work

    dist.all_reduce = all_reduce


def _train(ddp, opt, g, steps, cache, before_step=None):
    from torch_tos import TOsCounter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with TOsCounter(ddp, opt, cache=cache) as counter:
            for i in range(steps):
                if before_step is not None:
                    before_step(i)
                x, y = torch.randn(8, 16, generator=g), torch.randn(8, 8, generator=g)
                opt.zero_grad()
                nn.functional.mse_loss(ddp(x), y).backward()
                opt.step()
    return [(r.cache, r.recount, {k: list(v) for k, v in counter.report(step=r.index).counts.rows.items()})
            for r in counter.steps]


def _comm_worker(rank: int, port: int, out_dir: str) -> None:
    sys.path.insert(0, os.path.dirname(__file__))
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook

    def user_hook(state, bucket):  # user code: its work may change any step
        return default_hooks.allreduce_hook(None, bucket)

    res = {}
    with gloo_group(rank, port):
        _serial_callbacks()
        for case in ("powersgd", "registered-later", "user-hook"):
            for cache in (True, False):
                torch.manual_seed(0)
                ddp = nn.parallel.DistributedDataParallel(
                    nn.Sequential(nn.Linear(16, 32), nn.Sigmoid(), nn.Linear(32, 8)))
                opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
                before = None
                if case == "powersgd":  # all-reduce for 3 steps, then compression
                    state = powerSGD_hook.PowerSGDState(process_group=None, matrix_approximation_rank=1,
                                                        start_powerSGD_iter=3, min_compression_rate=0.5)
                    ddp.register_comm_hook(state, powerSGD_hook.powerSGD_hook)
                elif case == "user-hook":
                    ddp.register_comm_hook(None, user_hook)
                else:
                    def before(i, ddp=ddp):
                        if i == 4:
                            ddp.register_comm_hook(None, default_hooks.fp16_compress_hook)
                g = torch.Generator().manual_seed(rank)
                res[case, cache] = _train(ddp, opt, g, 8, cache, before)
    dump(out_dir, rank, res)


def test_step_cache_knows_ddp_communication_hooks(tmp_path):
    for res in run_workers(_comm_worker, tmp_path):
        for case in ("powersgd", "registered-later", "user-hook"):
            cached, uncached = res[case, True], res[case, False]
            for i, (a, b) in enumerate(zip(cached, uncached)):
                assert a[2] == b[2], f"{case}, step {i} ({a[0]}, {a[1]}): cache=True differs from cache=False"
        psgd = res["powersgd", True]
        tos = [sum(row[0] for row in r[2].values()) for r in psgd]  # adds per step
        # steps 0-2: DDP's first forward, its bucket rebuild, then steady all-reduce; step 3
        # PowerSGD's first compressed step (it creates its buffers), step 4 the steady one;
        # from then on its work is the same and reused
        assert [r[0] for r in psgd] == ["miss", "miss", "miss", "partial", "partial", "hit", "hit", "hit"]
        assert "communication hook differs" in psgd[3][1] and "communication hook differs" in psgd[4][1]
        assert len({tos[2], tos[3], tos[4]}) == 3  # three different kinds of work
        later = res["registered-later", True]
        assert [r[0] for r in later[3:]] == ["hit", "miss", "hit", "hit", "hit"]  # registered at step 4
        user = res["user-hook", True]
        assert all(r[0] != "hit" for r in user)
        assert "user code" in user[-1][1]


def _csv_worker(rank: int, port: int, out_dir: str) -> None:
    sys.path.insert(0, os.path.dirname(__file__))
    from torch_tos import TOsCounter

    with gloo_group(rank, port):
        ddp = nn.parallel.DistributedDataParallel(nn.Sequential(nn.Linear(16, 8), nn.Sigmoid(), nn.Linear(8, 8)))
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        g = torch.Generator().manual_seed(rank)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with TOsCounter(ddp, opt) as counter:
                counter.log_to(os.path.join(out_dir, "steps.csv"))  # the same path on every rank
                for _ in range(5):
                    b = 4 + 2 * rank  # the ranks count different work
                    opt.zero_grad()
                    nn.functional.mse_loss(ddp(torch.randn(b, 16, generator=g)), torch.randn(b, 8, generator=g)).backward()
                    opt.step()
        dump(out_dir, rank, {"tos": [r.tos for r in counter.steps]})


def test_log_to_csv_writes_one_file_per_rank(tmp_path):
    import pandas as pd

    from torch_tos.training.records import STEP_COLUMNS

    res = run_workers(_csv_worker, tmp_path)
    assert not (tmp_path / "steps.csv").exists()
    for rank in (0, 1):
        path = tmp_path / f"steps.rank{rank}.csv"
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["rank", *STEP_COLUMNS]
        assert all(len(r) == len(rows[0]) for r in rows)  # whole rows only
        df = pd.read_csv(path)
        assert df["rank"].tolist() == [rank] * 5
        assert df["step"].tolist() == list(range(5))  # one row per step, no duplicates
        assert df["tos"].tolist() == pytest.approx(res[rank]["tos"])
    assert res[0]["tos"] != res[1]["tos"]
