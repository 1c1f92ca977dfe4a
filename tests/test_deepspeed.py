"""TOsCounter(engine) under DeepSpeed ZeRO stages 0–3: two gloo ranks on DeepSpeed's CPU
accelerator, float32, AdamW (``torch_adam``). Each rank's steps close at ``engine.step()``, the
optimizer's work is booked in ``optimizer`` over the rank's partition, DeepSpeed's gradient
reduction in ``backward``; forward and backward of the rank's micro-batch equal a single-process
count; ``total_all_ranks()`` is the sum of the ranks inside and after the ``with`` block; the
step cache agrees with ``cache=False``; the engine is left as it was."""

from __future__ import annotations

import os
import sys
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn

pytest.importorskip("deepspeed", reason="DeepSpeed is an optional extra: pip install 'torch-tos[deepspeed]'")
pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

sys.path.insert(0, os.path.dirname(__file__))
from test_distributed import dump, gloo_group, run_workers  # noqa: E402
from test_rules_seq_helpers import B  # noqa: E402

STAGES = (0, 1, 2, 3)
STEPS, BATCH = 2, 2
#: Linear(8→16) + ReLU + Linear(16→4): 128 + 16 + 64 + 4 = 212 parameters, 106 per rank
N_PARAMS = 212
ADAM_OPS = ("aten.lerp_", "aten.addcmul_", "aten.addcdiv_", "aten.sqrt")


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def _config(stage: int) -> dict:
    return {"train_micro_batch_size_per_gpu": BATCH, "steps_per_print": 10**9,
            "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True}},
            "zero_optimization": {"stage": stage}}


def _batches(rank: int):
    g = torch.Generator().manual_seed(rank)  # the ranks see different data
    return [(torch.randn(BATCH, 8, generator=g), torch.randn(BATCH, 4, generator=g)) for _ in range(STEPS)]


def _rows(report, phase: str) -> dict:
    """{(layer without DeepSpeed's ``module.`` prefix, op): BOs} of one phase, costed rows only."""
    out = {}
    for (layer, ph, _dtype, op), row in report.counts.rows.items():
        if ph == phase and any(row[:5]):
            key = (layer.removeprefix("module."), op)
            out[key] = out.get(key, B()) + B(*row[:5])
    return out


def _costed(report) -> dict:
    """Rows with BOs or FLOPs. A step the cache follows part-way books zero-cost bookkeeping
    (``detach``) of the forward it joined under the root's layer (``CounterScope.partial``)."""
    return {k: row for k, row in report.counts.rows.items() if any(row[:5]) or row[6]}


def _worker(rank: int, port: int, out_dir: str) -> None:
    sys.path.insert(0, os.path.dirname(__file__))
    import deepspeed

    from torch_tos import TOsCounter

    # DeepSpeed's optional shared-memory all-reduce for its CPU accelerator is C++ compiled at
    # initialize (minutes on two cores, per torch version); without it the gradients are reduced
    # through torch.distributed (gloo), the collectives these tests price
    # (``deepspeed.comm.torch`` names the torch package there: the submodule is reached by its name)
    sys.modules["deepspeed.comm.torch"].build_shm_op = lambda: None

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2")
    result = {}
    with gloo_group(rank, port), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # DeepSpeed calls deprecated c10d names
        # the same micro-batches, one process, torch's AdamW: the single-process reference
        plain = _mlp()
        opt = torch.optim.AdamW(plain.parameters(), lr=1e-3)
        with TOsCounter(plain, opt, cache=False) as ref:
            for x, y in _batches(rank):
                opt.zero_grad()
                nn.functional.mse_loss(plain(x), y).backward()
                opt.step()
        result["plain"] = ref.report(step=0)
        for stage in STAGES:
            for cache in (False, True):
                model = _mlp()
                engine, optimizer, _, _ = deepspeed.initialize(
                    model=model, model_parameters=model.parameters(), config=_config(stage))
                passed = optimizer if stage % 2 else None  # both spellings: the engine's own, None
                with TOsCounter(engine, passed, cache=cache) as counter:
                    for x, y in _batches(rank):
                        engine.backward(nn.functional.mse_loss(engine(x), y))
                        engine.step()
                    inside = counter.total_all_ranks()
                result[stage, cache] = {
                    "inside": inside, "after": counter.total_all_ranks(), "local": counter.total,
                    "steps": [(r.kind, r.cache) for r in counter.steps],
                    "reports": [counter.report(step=i) for i in range(STEPS)],
                    "left": sorted(n for n in ("step", "backward") if n in vars(engine))}
        # gradient accumulation over 2 micro-batches: engine.step() after each, one update per 2
        model = _mlp()
        engine, optimizer, _, _ = deepspeed.initialize(
            model=model, model_parameters=model.parameters(),
            config={**_config(2), "gradient_accumulation_steps": 2})
        with TOsCounter(engine) as counter:
            for x, y in _batches(rank) * 2:
                engine.backward(nn.functional.mse_loss(engine(x), y))
                engine.step()
        result["accumulation"] = [counter.report(step=i) for i in range(len(counter.steps))]
        try:
            TOsCounter(engine, torch.optim.SGD(model.parameters(), lr=0.1))
        except TypeError as e:
            result["refused"] = str(e)
    dump(out_dir, rank, result)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    return run_workers(_worker, tmp_path_factory.mktemp("deepspeed"))


@pytest.mark.parametrize("stage", STAGES)
def test_each_rank_counts_its_steps_and_its_partition(ranks, stage):
    optimizer = {0: "AdamW", 1: "AdamW in DeepSpeedZeroOptimizer", 2: "AdamW in DeepSpeedZeroOptimizer",
                 3: "AdamW in DeepSpeedZeroOptimizer_Stage3"}[stage]
    adam = {op: B() for op in ADAM_OPS}
    for r in ranks:
        res = r[stage, False]
        assert res["steps"] == [("training", "miss")] * STEPS  # each engine.step() closes a step
        assert res["left"] == []  # the engine's step/backward are its own again
        for rep in res["reports"]:
            assert not rep.unsupported and rep.metadata["optimizer"] == optimizer
            assert set(rep.phases) == {"forward", "loss", "backward", "optimizer"}
        step = res["reports"][1]
        opt = {op: b for (layer, op), b in _rows(step, "optimizer").items() if layer == "(optimizer)"}
        # AdamW per element: lerp_ [1 add, 1 sub, 1 mul], addcmul_ [1 add, 2 mul], addcdiv_
        # [1 add, 1 mul, 1 div], sqrt [1 root] — over the rank's 106-element partition (ZeRO),
        # or over all 212 parameters on every rank (stage 0: the optimizer is replicated)
        n = N_PARAMS if stage == 0 else N_PARAMS // 2
        assert opt["aten.lerp_"] == B(add=n, sub=n, mul=n)
        assert opt["aten.addcmul_"] == B(add=n, mul=2 * n)
        assert opt["aten.addcdiv_"] == B(add=n, mul=n, div=n)
        assert opt["aten.sqrt"] == B(root=n)
        for op in ADAM_OPS:
            adam[op] += opt[op]
    if stage:  # the ranks' partitions add up to the single-process update of every parameter
        plain = {op: b for (_l, op), b in _rows(ranks[0]["plain"], "optimizer").items()}
        assert adam == {op: plain[op] for op in ADAM_OPS}


@pytest.mark.parametrize("stage", STAGES)
def test_forward_and_backward_are_the_single_process_step_plus_the_gradient_reduction(ranks, stage):
    for r in ranks:
        plain, step = r["plain"], r[stage, False]["reports"][0]
        # forward of 2 samples, hand-derived: Linear(8→16) 2·16 outputs of 8 products + bias
        # [256, 0, 256, 0, 0], ReLU 32 compares, Linear(16→4) 2·4 outputs of 16 [128, 0, 128]
        assert step.by_phase()["forward"].bos == plain.by_phase()["forward"].bos == \
            B(add=384, sub=32, mul=384)
        assert _rows(step, "forward") == _rows(plain, "forward")
        assert _rows(step, "loss") == _rows(plain, "loss")  # mse_loss: the step's only loss work
        ours, ref = _rows(step, "backward"), _rows(plain, "backward")
        layers = {k: b for k, b in ours.items() if k[0] != "(loss)"}
        assert layers == {k: b for k, b in ref.items() if k[0] != "(loss)"}  # every layer's gradients
        extra = {op for (layer, op), b in ours.items() if layer == "(loss)" and ref.get((layer, op)) != b}
        # DeepSpeed's own backward work: the gradient reduction (an all-reduce, or stage 3's
        # reduce-scatter) and averaging over the 2 ranks (a division per gradient element)
        assert any(op.startswith("c10d.") for op in extra), extra
        assert extra <= {"c10d.allreduce_", "c10d._reduce_scatter_base_", "c10d.reduce_scatter_",
                         "aten.div_", "aten.div", "aten.mul", "aten.mul_"}, extra


@pytest.mark.parametrize("stage", STAGES)
def test_total_all_ranks_inside_and_after_and_the_cache(ranks, stage):
    local = [r[stage, False]["local"] for r in ranks]
    for r in ranks:
        for key in ("inside", "after"):
            total = r[stage, False][key]
            assert total.tos_exact == local[0].tos_exact + local[1].tos_exact
            assert total.bos == local[0].bos + local[1].bos and total.flops == local[0].flops + local[1].flops
            assert total.steps == 2 * STEPS
    if stage == 0:  # the update is replicated: the same ops on both ranks but the collectives'
        # reductions, which the ranks share (torch_tos.rules.distributed)
        ops = [{k: b for k, b in _rows(r[0, False]["reports"][1], "optimizer").items()
                if not k[1].startswith("c10d.")} for r in ranks]
        assert ops[0] == ops[1]
    for r in ranks:  # the step cache recounts what it cannot show to be the same, and agrees
        cached, counted = r[stage, True], r[stage, False]
        assert cached["local"].tos_exact == counted["local"].tos_exact
        assert [_costed(a) == _costed(b) for a, b in zip(cached["reports"], counted["reports"])] == \
            [True] * STEPS


def test_gradient_accumulation_is_one_step_per_update(ranks):
    for r in ranks:
        steps, plain = r["accumulation"], r["plain"]
        assert len(steps) == 2  # 4 micro-batches, gradient_accumulation_steps = 2
        for rep in steps:  # two forwards each, one optimizer update over the rank's partition
            assert rep.by_phase()["forward"].bos == plain.by_phase()["forward"].bos * 2
            opt = _rows(rep, "optimizer")
            assert opt["(optimizer)", "aten.addcdiv_"] == B(add=N_PARAMS // 2, mul=N_PARAMS // 2,
                                                            div=N_PARAMS // 2)


def test_another_optimizer_is_refused_with_one_line(ranks):
    message = ranks[0]["refused"]
    assert "\n" not in message and message.startswith(
        "optimizer for a DeepSpeed engine must be None or the optimizer deepspeed.initialize returned")
