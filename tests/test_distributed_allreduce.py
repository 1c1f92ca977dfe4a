"""DDP's gradient all-reduce priced as the adds it performs: 2 gloo processes on CPU."""

import os
import sys

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn

from torch_tos.bos import BOs
from torch_tos.rules.distributed import own_chunk, reduction_bos

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

WORLD = 2
N_PARAMS = 4 * 8 + 8 + 8 * 1 + 1  # Linear(4, 8) + Linear(8, 1): 49 gradient elements, one bucket


def _worker(rank: int, port: int, out_dir: str) -> None:
    sys.path.insert(0, os.path.dirname(__file__))
    from test_distributed import dump, gloo_group
    from torch_tos import TOsCounter

    with gloo_group(rank, port, WORLD):
        ddp = nn.parallel.DistributedDataParallel(nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 1)))
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        # profile() of the DDP-wrapped model: the local step, no collective (profile() never
        # communicates, so one rank may profile alone); the user's DDP keeps working after it
        from torch_tos import profile

        x = torch.randn(4, 4)
        wrapped = profile(ddp, x, mode="training", optimizer=opt).counts.rows
        plain = profile(ddp.module, x, mode="training", optimizer=opt).counts.rows
        # the same priced rows, layers named under DDP's "module." (DDP adds zero-cost
        # record_function bookkeeping rows of its own)
        priced = lambda rows, pre: {(pre + k[0] if k[0][:1] != "(" else k[0], *k[1:]): v  # noqa: E731
                                     for k, v in rows.items() if any(v[:5]) or v[6]}
        same_local_step = priced(wrapped, "") == priced(plain, "module.") != {}
        with TOsCounter(ddp, opt, cache=False) as counter:
            for _ in range(2):
                opt.zero_grad(set_to_none=True)
                nn.functional.mse_loss(ddp(torch.randn(4, 4)), torch.rand(4, 1)).backward()
                opt.step()
            everyone = counter.total_all_ranks()
        rows = counter.report().counts.rows
        allreduce = {k: v for k, v in rows.items() if k[3] == "c10d.allreduce_"}
        dump(out_dir, rank, {"rows": allreduce, "unsupported": sorted({u.op for u in counter.report().unsupported}),
                             "all_backward": everyone.phases["backward"].bos, "same_local_step": same_local_step,
                             "local_backward": counter.total.phases["backward"].bos})


def test_ring_shares_sum_to_world_minus_one_adds_per_element():
    # 49 elements over 2 ranks: chunks of 25 and 24; 3 ranks: 17, 16, 16
    assert [own_chunk(49, 2, r) for r in range(2)] == [25, 24]
    assert sum(reduction_bos(49, 3, r, 0).add for r in range(3)) == 2 * 49
    assert reduction_bos(10, 4, 0, 1) == BOs(add=3 * 3, div=3)   # AVG: chunk of 3, +1 div each
    assert reduction_bos(10, 4, 3, 4) == BOs(sub=3 * 2)          # MAX: chunk of 2, comparators
    assert reduction_bos(10, 1, 0, 0) == BOs()                   # one rank: nothing to reduce


def test_ddp_allreduce_booked_in_backward_as_adds(tmp_path):
    from test_distributed import run_workers

    res = run_workers(_worker, tmp_path, WORLD)
    for rank, r in enumerate(res):
        assert r["same_local_step"]
        assert "c10d.allreduce_" not in r["unsupported"]
        assert {k[1] for k in r["rows"]} == {"backward"}
        row = [sum(v[i] for v in r["rows"].values()) for i in range(6)]
        # per step one bucket of 49 elements, SUM: rank 0 reduces 25 of them, rank 1 24, W-1 = 1 add
        # each; two steps
        assert row[:5] == [2 * own_chunk(N_PARAMS, WORLD, rank), 0, 0, 0, 0]
        assert row[5] == 2  # one all-reduce call per step
    # over the group: (W - 1) adds per gradient element per step, 2 steps
    total = sum(sum(v[0] for v in r["rows"].values()) for r in res)
    assert total == 2 * (WORLD - 1) * N_PARAMS
    assert res[0]["all_backward"] == res[0]["local_backward"] + res[1]["local_backward"]
