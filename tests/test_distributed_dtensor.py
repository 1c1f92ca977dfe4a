"""Each rank's counts are its real work under tensor parallelism (DTensor), FSDP2 and both:
gloo processes on the CPU, every count derived by hand and set against a single-process run.

Conventions used below (rules/distributed.py): a reduction over W ranks books (W − 1) operations
per element of the rank's ring chunk; all-gather / all-to-all / FSDP2's copies are zero BOs.
AdamW (single-tensor, the CPU default) per element: lerp_ [1, 1, 1], β2 mul_, addcmul_ [1, 0, 2],
sqrt, div by the bias correction, add_ eps, addcdiv_ [1, 0, 1, 1], weight-decay mul_ →
``ADAMW = [4, 1, 6, 2, 1]``; per parameter tensor one more add (its step count).
"""

from __future__ import annotations

import functools
import os
import sys
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

W = 2
ADAMW = (4, 1, 6, 2, 1)
STEP = (1, 0, 0, 0, 0)
COMM = ("c10d.", "_c10d_functional", "fsdp.", "_dtensor.")


# -- helpers run inside the workers ------------------------------------------------------------

def mlp(bias: bool) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64, bias=bias), nn.ReLU(), nn.Linear(64, 32, bias=bias))


class TinyTransformer(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(32, 16)
        self.layers = nn.ModuleList(nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
                                    for _ in range(2))
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 32)

    def forward(self, tokens):
        h = self.emb(tokens)
        for layer in self.layers:
            h = layer(h)
        return self.head(self.norm(h))


def count(model, opt, x, loss, steps: int = 1, cache: bool = False) -> dict:
    """One (or ``steps``) training step(s) under TOsCounter: rows ``(layer, phase, op)`` → the
    counts row, the rank's phases, the group's phases (total_all_ranks), unsupported ops."""
    from torch_tos import TOsCounter

    with TOsCounter(model, opt, cache=cache) as counter:
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss(model(x)).backward()
            opt.step()
        everyone = counter.total_all_ranks()
    rows: dict = {}
    for (layer, phase, _dtype, op), v in counter.report().counts.rows.items():
        row = rows.setdefault((layer, phase, op), [0] * 8)
        for i, x_ in enumerate(v):
            row[i] += x_
    return {"rows": rows, "phases": {p: tuple(t.bos) for p, t in counter.total.phases.items()},
            "all": {p: tuple(t.bos) for p, t in everyone.phases.items()},
            "unsupported": sorted({u.op for u in counter.report().unsupported})}


def refused(fn) -> str:
    try:
        fn()
    except ValueError as e:
        return str(e)
    return ""


def _tp_worker(rank: int, port: int, out_dir: str) -> None:
    sys.path.insert(0, os.path.dirname(__file__))
    from test_distributed import dump, gloo_group
    from torch.distributed._functional_collectives import all_to_all_single_autograd
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard
    from torch.distributed.tensor.parallel import (ColwiseParallel, RowwiseParallel, SequenceParallel,
                                                   parallelize_module)
    from torch_tos import Engine, profile

    with gloo_group(rank, port, W):
        mesh = init_device_mesh("cpu", (W,))
        res = {}
        x = torch.randn(16, 32)  # the same on both ranks (seed 0): tensor parallelism replicates it
        plain = mlp(bias=False)
        res["tp_single"] = count(plain, torch.optim.AdamW(plain.parameters()), x, lambda o: o.sum())
        model = parallelize_module(mlp(bias=False), mesh, {"0": ColwiseParallel(), "2": RowwiseParallel()})
        opt = torch.optim.AdamW(model.parameters())
        res["tp"] = count(model, opt, x, lambda o: o.sum())
        res["tp_cached"] = count(model, opt, x, lambda o: o.sum(), steps=3, cache=True)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no unsupported op, no shared-tensor warning
            meta = profile(model, x, mode="training", optimizer=opt, device="meta")
            res["tp_profile_meta"] = {(k[0], k[1], k[3]): list(v) for k, v in meta.counts.rows.items()}
            res["tp_profile_inference"] = tuple(profile(model, x, device="meta").bos)
        res["tp_profile_real"] = refused(lambda: profile(model, x))

        # sequence parallelism: LayerNorm on sequence shards, all-gather in, reduce-scatter out
        def sp_model():
            torch.manual_seed(0)
            return nn.Sequential(nn.LayerNorm(32), nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 32))

        xs = torch.randn(4, 8, 32)
        plain = sp_model()
        res["sp_single"] = count(plain, torch.optim.AdamW(plain.parameters()), xs, lambda o: o.sum())
        model = parallelize_module(sp_model(), mesh, {"0": SequenceParallel(),
                                                      "1": ColwiseParallel(input_layouts=Shard(1)),
                                                      "3": RowwiseParallel(output_layouts=Shard(1))})
        res["sp"] = count(model, torch.optim.AdamW(model.parameters()), xs.chunk(W, dim=1)[rank],
                          lambda o: o.sum())  # the local output (use_local_output)

        # expert parallelism: an uneven token dispatch (rank 0 sends 2 + 4 tokens, rank 1 3 + 3)
        sends = [[2, 4], [3, 3]]
        tokens = torch.randn(6, 4, requires_grad=True)
        with Engine() as engine:
            routed = all_to_all_single_autograd(tokens, [sends[0][rank], sends[1][rank]], sends[rank],
                                                dist.group.WORLD)
            routed.sum().backward()
        res["a2a"] = {(k[1], k[3]): list(v) for k, v in engine.counts.rows.items() if k[3].startswith(COMM)}
        res["a2a_unsupported"] = dict(engine.unsupported)
        res["a2a_received"] = routed.shape[0]
        dump(out_dir, rank, res)


def _fsdp_worker(rank: int, port: int, out_dir: str) -> None:
    sys.path.insert(0, os.path.dirname(__file__))
    from test_distributed import dump, gloo_group
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch_tos import profile

    with gloo_group(rank, port, W):
        mesh = init_device_mesh("cpu", (W,))
        res = {}
        x = torch.randn(8, 32, generator=torch.Generator().manual_seed(rank))  # each rank its batch
        plain = mlp(bias=True)
        res["mlp_single"] = count(plain, torch.optim.AdamW(plain.parameters()), x, lambda o: o.sum())
        model = mlp(bias=True)
        for m in (model[0], model[2], model):
            fully_shard(m, mesh=mesh)
        opt = torch.optim.AdamW(model.parameters())
        res["mlp"] = count(model, opt, x, lambda o: o.sum())
        res["mlp_cached"] = count(model, opt, x, lambda o: o.sum(), steps=2, cache=True)
        ddp = nn.parallel.DistributedDataParallel(mlp(bias=True))  # the same model, replicated
        res["ddp"] = count(ddp, torch.optim.AdamW(ddp.parameters()), x, lambda o: o.sum())
        res["refused"] = [refused(lambda: profile(model, x)),
                          refused(lambda: profile(model, x, mode="training", optimizer=opt, device="meta"))]

        tokens = torch.randint(0, 32, (2, 8), generator=torch.Generator().manual_seed(rank))

        def ce(out):
            return nn.functional.cross_entropy(out.reshape(-1, 32), tokens.reshape(-1))

        plain = TinyTransformer()
        res["tf_single"] = count(plain, torch.optim.AdamW(plain.parameters()), tokens, ce)
        model = TinyTransformer()
        for m in (*model.layers, model):
            fully_shard(m, mesh=mesh)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FSDP2: "returned a view tensor" (the root's output)
            res["tf"] = count(model, torch.optim.AdamW(model.parameters()), tokens, ce)
        res["tf_units"] = [sum(p.numel() for p in unit.parameters()) - sum(
            p.numel() for child in unit.layers for p in child.parameters()) if unit is model else
            sum(p.numel() for p in unit.parameters()) for unit in (*model.layers, model)]
        dump(out_dir, rank, res)


def _2d_worker(rank: int, port: int, out_dir: str) -> None:
    sys.path.insert(0, os.path.dirname(__file__))
    from test_distributed import dump, gloo_group
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    with gloo_group(rank, port, 2 * W):
        mesh = init_device_mesh("cpu", (2, W), mesh_dim_names=("dp", "tp"))
        dp = mesh["dp"].get_local_rank()
        x = torch.randn(8, 32, generator=torch.Generator().manual_seed(dp))  # per data-parallel group
        plain = mlp(bias=True)
        res = {"dp": dp, "single": count(plain, torch.optim.AdamW(plain.parameters()), x, lambda o: o.sum())}
        model = parallelize_module(mlp(bias=True), mesh["tp"], {"0": ColwiseParallel(), "2": RowwiseParallel()})
        for m in (model[0], model[2], model):
            fully_shard(m, mesh=mesh["dp"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FSDP2: "returned a view tensor"
            res["2d"] = count(model, torch.optim.AdamW(model.parameters()), x, lambda o: o.sum())
        dump(out_dir, rank, res)


# -- the test process ----------------------------------------------------------------------------

def _run(worker, tmp_path_factory, world=W):
    sys.path.insert(0, os.path.dirname(__file__))
    from test_distributed import run_workers

    return run_workers(worker, tmp_path_factory.mktemp(worker.__name__), world)


@pytest.fixture(scope="module")
def tp(tmp_path_factory):
    return _run(_tp_worker, tmp_path_factory)


@pytest.fixture(scope="module")
def fsdp(tmp_path_factory):
    return _run(_fsdp_worker, tmp_path_factory)


def bos(rows, key):
    return tuple(rows.get(key, [0] * 5)[:5])


def phase(rows, ph, comm=None):
    """BOs of ``ph`` summed over rows; ``comm`` True/False: only / no communication rows."""
    out = [0] * 5
    for (_layer, p, op), v in rows.items():
        if p == ph and (comm is None or op.startswith(COMM) == comm):
            out = [a + b for a, b in zip(out, v[:5])]
    return tuple(out)


def add(*vectors, times=None):
    out = [0] * 5
    for v, k in zip(vectors, times or [1] * len(vectors)):
        out = [a + k * b for a, b in zip(out, v)]
    return tuple(out)


def group_total(results, key, ph):
    return add(*(r[key]["phases"].get(ph, (0,) * 5) for r in results))


def test_tensor_parallel_each_rank_counts_its_shard(tp):
    B, IN, HID, OUT = 16, 32, 64, 32
    for rank, r in enumerate(tp):
        rows = r["tp"]["rows"]
        assert r["tp"]["unsupported"] == []
        # colwise: the [64, 32] weight is [32, 32] on each rank
        assert bos(rows, ("0", "forward", "aten.mm")) == (B * HID // W * (IN - 1), 0, B * HID // W * IN, 0, 0)
        assert bos(rows, ("0", "forward", "aten.mm"))[0] == 15_872  # not the global 31,744
        assert bos(rows, ("1", "forward", "aten.relu")) == (0, B * HID // W, 0, 0, 0)
        # rowwise: a partial [16, 32] product over the rank's 32 inputs, then the all-reduce
        assert bos(rows, ("2", "forward", "aten.mm")) == (B * OUT * (HID // W - 1), 0, B * OUT * HID // W, 0, 0)
        assert bos(rows, ("2", "forward", "_c10d_functional.all_reduce")) == (B * OUT // W, 0, 0, 0, 0)
        # backward: rowwise grad input and grad weight, colwise grad weight (the input needs none)
        assert bos(rows, ("2", "backward", "aten.mm"))[0] == B * (HID // W) * (OUT - 1) + (HID // W) * OUT * (B - 1)
        assert bos(rows, ("0", "backward", "aten.mm"))[0] == (HID // W) * IN * (B - 1)
        # AdamW on the rank's shards: two [32, 32] tensors
        n_local = 2 * 32 * 32
        assert r["tp"]["phases"]["optimizer"] == add(ADAMW, STEP, times=[n_local, 2])

    single = tp[0]["tp_single"]["phases"]
    assert single["forward"] == (B * HID * (IN - 1) + B * OUT * (HID - 1), B * HID, 2 * B * HID * IN, 0, 0)
    assert single["optimizer"] == add(ADAMW, STEP, times=[2 * HID * IN, 2])
    # the group: forward and backward compute equal the single process's once the all-reduce's
    # adds are counted; the loss runs on every rank; each rank counts its own parameters' steps
    assert group_total(tp, "tp", "forward") == single["forward"]
    assert add(*(phase(r["tp"]["rows"], "forward", comm=False) for r in tp)) == \
        add(single["forward"], (-B * OUT * (W - 1), 0, 0, 0, 0))
    assert group_total(tp, "tp", "backward") == single["backward"]
    assert group_total(tp, "tp", "loss") == add(single["loss"], times=[W])
    assert group_total(tp, "tp", "optimizer") == add(single["optimizer"], STEP, times=[1, (W - 1) * 2])
    for r in tp:
        assert r["tp"]["all"] == {p: group_total(tp, "tp", p) for p in single}


def test_tensor_parallel_cache_and_profile_on_meta_count_the_same_step(tp):
    for r in tp:
        step = r["tp"]["phases"]
        assert r["tp_cached"]["phases"] == {p: add(v, times=[3]) for p, v in step.items()}
        # profile() on meta: the rank's local step, the same priced rows as the real step
        priced = {k: v[:5] for k, v in r["tp"]["rows"].items() if any(v[:5])}
        assert {k: v[:5] for k, v in r["tp_profile_meta"].items() if any(v[:5])} == priced
        assert r["tp_profile_inference"] == step["forward"]
        assert "device='meta'" in r["tp_profile_real"] and "TOsCounter" in r["tp_profile_real"]
        assert "\n" not in r["tp_profile_real"]


def test_sequence_parallel_sums_to_the_single_process_plus_what_sharding_adds(tp):
    TOKENS, D, HID = 4 * 8, 32, 64
    single = tp[0]["sp_single"]["rows"]
    total: dict = {}
    for r in tp:
        assert r["sp"]["unsupported"] == []
        rows = r["sp"]["rows"]
        # the LayerNorm runs on the rank's half of the sequence
        assert bos(rows, ("0", "forward", "aten.native_layer_norm")) == \
            tuple(v // W for v in bos(single, ("0", "forward", "aten.native_layer_norm")))
        assert bos(rows, ("1", "forward", "_c10d_functional.all_gather_into_tensor")) == (0,) * 5
        assert rows[("1", "forward", "_c10d_functional.all_gather_into_tensor")][7] == (1 + W) * TOKENS // W * D * 4
        assert bos(rows, ("3", "forward", "_c10d_functional.reduce_scatter_tensor")) == \
            ((W - 1) * TOKENS // W * D, 0, 0, 0, 0)
        reduce = rows[("(optimizer)", "optimizer", "_c10d_functional.all_reduce")]
        assert reduce[0] == reduce[5] * 32 // W  # each a LayerNorm gradient (32) made whole
        for key, v in rows.items():
            total[key] = [a + b for a, b in zip(total.get(key, [0] * 5), v[:5])]
    diff = {k: tuple(a - b for a, b in zip(total.get(k, [0] * 5), single.get(k, [0] * 5)[:5]))
            for k in {*total, *single}}
    diff = {k: v for k, v in diff.items() if any(v) and k[1] != "optimizer"}
    outputs = TOKENS * D  # the rowwise layer's output elements
    assert diff == {
        # forward: reduce-scatter of the partial sums; each rank adds its half of the bias (a
        # replicated bias divided by W, one more add per output than the single process)
        ("3", "forward", "_c10d_functional.reduce_scatter_tensor"): ((W - 1) * outputs, 0, 0, 0, 0),
        ("3", "forward", "aten.div"): (0, 0, 0, W * D, 0),
        # backward: the colwise input gradient is a partial sum, reduce-scattered
        ("1", "backward", "aten.mm"): (-(W - 1) * TOKENS * D, 0, 0, 0, 0),
        ("1", "backward", "_c10d_functional.reduce_scatter_tensor"): ((W - 1) * TOKENS * D, 0, 0, 0, 0),
        # LayerNorm weight/bias gradients summed over the rank's tokens only (made whole later)
        ("0", "backward", "aten.native_layer_norm_backward"): (-(W - 1) * 2 * D, 0, 0, 0, 0),
        # the replicated rowwise bias gradient, on every rank
        ("3", "backward", "aten.sum"): ((W - 1) * (TOKENS - 1) * D, 0, 0, 0, 0),
        # the loss sums each rank's own outputs
        ("(loss)", "loss", "aten.sum"): (-(W - 1), 0, 0, 0, 0),
    }
    # optimizer: replicated LayerNorm (2 × 32) and rowwise bias (32) updated on every rank
    reduces = sum(r["sp"]["rows"][("(optimizer)", "optimizer", "_c10d_functional.all_reduce")][0] for r in tp)
    assert add(*(r["sp"]["phases"]["optimizer"] for r in tp)) == add(
        tp[0]["sp_single"]["phases"]["optimizer"], ADAMW, STEP, (reduces, 0, 0, 0, 0),
        times=[1, (W - 1) * 3 * D, (W - 1) * 6, 1])


def test_expert_parallel_all_to_all_priced_as_data_movement(tp):
    for rank, r in enumerate(tp):
        assert r["a2a_unsupported"] == {}
        received = r["a2a_received"]
        assert received == [2 + 3, 4 + 3][rank]
        rows = r["a2a"]
        assert all(v[:5] == [0] * 5 for v in rows.values())  # the all-to-all, its waits and wrappers
        a2a = {ph: v for (ph, op), v in rows.items() if op.endswith("all_to_all_single")}
        assert set(a2a) == {"forward", "backward"}  # the dispatch, and its gradient sent back
        for ph, v in a2a.items():
            assert v[:5] == [0] * 5 and v[5] == 1
            assert v[7] == (6 + received) * 4 * 4  # the rank's send and receive buffers, fp32


def test_fsdp2_mlp_each_rank_counts_its_batch_and_its_optimizer_shard(fsdp):
    P0, P2 = 64 * 32 + 64, 32 * 64 + 32  # the two fully_shard units' parameters
    for r in fsdp:
        rows, single = r["mlp"]["rows"], r["mlp_single"]["rows"]
        assert r["mlp"]["unsupported"] == []
        # forward and backward: the unsharded layers on the rank's batch, as one process computes
        for ph in ("forward", "loss", "backward"):
            assert phase(rows, ph, comm=False) == phase(single, ph)
        assert all(v[:5] == [0] * 5 for (_l, _p, op), v in rows.items()
                   if op.startswith(COMM) and "reduce_scatter" not in op)  # all-gathers, copies
        # gradients averaged by a reduce-scatter per unit: (W − 1) adds and a div per shard element
        scatter = {k[0]: bos(rows, k) for k in rows if "reduce_scatter" in k[2]}
        assert sorted(scatter.values()) == sorted([((W - 1) * P // W, 0, 0, P // W, 0) for P in (P0, P2)])
        assert scatter[("2")] == ((W - 1) * P2 // W, 0, 0, P2 // W, 0)  # booked under its module
        # AdamW on the rank's shards
        assert r["mlp"]["phases"]["optimizer"] == add(ADAMW, STEP, times=[(P0 + P2) // W, 4])
        assert r["mlp_cached"]["phases"] == {p: add(v, times=[2]) for p, v in r["mlp"]["phases"].items()}
        assert all("fully_shard" in m and "TOsCounter" in m and "\n" not in m for m in r["refused"])
    # the group: each rank's single-process compute, the reduce-scatters, one sharded optimizer
    one_opt = fsdp[0]["mlp_single"]["phases"]["optimizer"]
    assert one_opt == add(ADAMW, STEP, times=[P0 + P2, 4])
    expected = {ph: group_total(fsdp, "mlp_single", ph) for ph in ("forward", "loss", "backward")}
    expected["backward"] = add(expected["backward"], ((W - 1) * (P0 + P2), 0, 0, P0 + P2, 0))
    expected["optimizer"] = add(one_opt, STEP, times=[1, (W - 1) * 4])
    assert fsdp[0]["mlp"]["all"] == fsdp[1]["mlp"]["all"] == expected


def test_ddp_against_fsdp2_on_the_same_model_and_batches(fsdp):
    from torch_tos.rules.distributed import own_chunk

    P = 64 * 32 + 64 + 32 * 64 + 32  # one bucket
    for rank, r in enumerate(fsdp):
        rows, single = r["ddp"]["rows"], r["mlp_single"]["rows"]
        assert r["ddp"]["unsupported"] == []
        for ph in ("forward", "loss"):
            assert phase(rows, ph) == phase(single, ph)
        # backward: the bucket's all-reduce (the rank's ring chunk), and DDP's scaling of every
        # gradient by 1 / W as it is copied into the bucket (a mul per element)
        assert phase(rows, "backward", comm=True) == (own_chunk(P, W, rank) * (W - 1), 0, 0, 0, 0)
        assert phase(rows, "backward", comm=False) == add(phase(single, "backward"), (0, 0, P, 0, 0))
        assert r["ddp"]["phases"]["optimizer"] == r["mlp_single"]["phases"]["optimizer"]  # every parameter
    total = fsdp[0]["ddp"]["all"]
    assert total["backward"] == add(group_total(fsdp, "mlp_single", "backward"), ((W - 1) * P, 0, W * P, 0, 0))
    assert total["optimizer"] == add(fsdp[0]["mlp_single"]["phases"]["optimizer"], times=[W])


def test_fsdp2_transformer_adamw_counts_the_ranks_shard(fsdp):
    units = fsdp[0]["tf_units"]  # two encoder layers, then the root (embedding, norm, head)
    assert units == [2224, 2224, 32 * 16 + 2 * 16 + 16 * 32 + 32]
    n_params = 2 * 12 + 1 + 2 + 2  # parameter tensors: 12 per encoder layer, embedding, norm, head
    for r in fsdp:
        rows, single = r["tf"]["rows"], r["tf_single"]["rows"]
        assert r["tf"]["unsupported"] == []
        for ph in ("forward", "loss", "backward"):
            assert phase(rows, ph, comm=False) == phase(single, ph)
        scatter = sorted(bos(rows, k) for k in rows if "reduce_scatter" in k[2])
        assert scatter == sorted(((W - 1) * u // W, 0, 0, u // W, 0) for u in units)
        assert r["tf"]["phases"]["optimizer"] == add(ADAMW, STEP, times=[sum(units) // W, n_params])
        assert r["tf_single"]["phases"]["optimizer"] == add(ADAMW, STEP, times=[sum(units), n_params])
    total = fsdp[0]["tf"]["all"]
    assert total["optimizer"] == add(fsdp[0]["tf_single"]["phases"]["optimizer"], STEP,
                                     times=[1, (W - 1) * n_params])
    assert total["backward"] == add(group_total(fsdp, "tf_single", "backward"),
                                    ((W - 1) * sum(units), 0, 0, sum(units), 0))
    assert total["forward"] == group_total(fsdp, "tf_single", "forward")


@pytest.mark.slow
def test_fsdp2_with_tensor_parallelism_on_a_2x2_mesh(tmp_path_factory):
    res = _run(_2d_worker, tmp_path_factory, world=2 * W)
    B, IN, HID, OUT = 8, 32, 64, 32
    for r in res:
        rows = r["2d"]["rows"]
        assert r["2d"]["unsupported"] == []
        # tensor parallel within the data-parallel group: half the columns, half the inputs
        assert bos(rows, ("0", "forward", "aten.addmm")) == (B * HID // W * IN, 0, B * HID // W * IN, 0, 0)
        assert bos(rows, ("2", "forward", "aten.addmm")) == (B * OUT * HID // W, 0, B * OUT * HID // W, 0, 0)
        assert bos(rows, ("2", "forward", "aten.div")) == (0, 0, 0, OUT, 0)  # the replicated bias / W
        assert bos(rows, ("2", "forward", "_c10d_functional.all_reduce")) == (B * OUT // W, 0, 0, 0, 0)
        # FSDP2 over the data-parallel dimension shards the tensor-parallel shards again
        local = [HID // W * IN + HID // W, OUT * HID // W + OUT]  # per unit, within the TP group
        scatter = sorted(bos(rows, k) for k in rows if "reduce_scatter" in k[2])
        assert scatter == sorted(((2 - 1) * n // 2, 0, 0, n // 2, 0) for n in local)
        assert r["2d"]["phases"]["optimizer"] == add(ADAMW, STEP, times=[sum(local) // 2, 4])
    # the four ranks: each data-parallel group's single-process forward, with the all-reduce
    # adds and the rowwise bias divisions of its two tensor-parallel ranks
    singles = {r["dp"]: r["single"]["phases"] for r in res}
    expected = add(*(s["forward"] for s in singles.values()), (2 * B * OUT, 0, 0, 2 * W * OUT, 0))
    assert res[0]["2d"]["all"]["forward"] == expected
