"""DeepSpeed ZeRO stages 0–3 under TOsCounter: each rank's counts and the total, beside the
single-process count of the same work, and the counting overhead — one run.

Two gloo ranks on DeepSpeed's CPU accelerator (``DS_ACCELERATOR=cpu`` is what it picks without a
GPU), float32, AdamW (``torch_adam``), an MLP 64 → 256 → 256 → 64 (82,496 parameters), micro-batch
8 per rank, ``--steps`` steps per stage. Per stage and rank: TOs per phase of the last step
(``cache=False``) and ``total_all_ranks()``; the single-process reference is the same model,
``torch.optim.AdamW`` and both ranks' micro-batches (16 samples) in one process. The wall time of
the counted steps is compared with the same steps uncounted, in the same process, alternating.

    python benchmarks/bench_deepspeed.py            # needs: pip install 'torch-tos[deepspeed]'
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
import warnings

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

WORLD, BATCH, STAGES = 2, 8, (0, 1, 2, 3)
PHASES = ("forward", "loss", "backward", "optimizer")


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 256), nn.GELU(), nn.Linear(256, 64))


def _batch(rank: int, step: int):
    g = torch.Generator().manual_seed(1000 * rank + step)
    return torch.randn(BATCH, 64, generator=g), torch.randn(BATCH, 64, generator=g)


def _config(stage: int) -> dict:
    return {"train_micro_batch_size_per_gpu": BATCH, "steps_per_print": 10**9,
            "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True}},
            "zero_optimization": {"stage": stage}}


def _tos_by_phase(report) -> dict:
    return {p: t.tos for p, t in report.by_phase().items()}


def _worker(rank: int, port: int, steps: int, out_dir: str) -> None:
    import deepspeed

    from torch_tos import TOsCounter

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    warnings.simplefilter("ignore", FutureWarning)
    out = {}
    for stage in STAGES:
        model = _mlp()
        engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=model.parameters(),
                                               config=_config(stage))

        def step(i):
            x, y = _batch(rank, i)
            engine.backward(nn.functional.mse_loss(engine(x), y))
            engine.step()

        plain = counted = 0.0
        with TOsCounter(engine, cache=False) as counter:
            for i in range(steps):
                t0 = time.perf_counter()
                step(i)
                counted += time.perf_counter() - t0
        for i in range(steps):
            dist.barrier()
            t0 = time.perf_counter()
            step(i)
            plain += time.perf_counter() - t0
        total = counter.total_all_ranks()
        out[stage] = {"phases": _tos_by_phase(counter.report(step=-1)), "local": counter.total.tos,
                      "all": total.tos, "all_phases": {p: t.tos for p, t in total.phases.items()},
                      "overhead": counted / plain, "unsupported": len(counter.report().unsupported)}
    dist.destroy_process_group()
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(out, f)


def _single_process(steps: int) -> dict:
    from torch_tos import TOsCounter

    model = _mlp()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with TOsCounter(model, opt, cache=False) as counter:
        for i in range(steps):
            x, y = (torch.cat(t) for t in zip(*(_batch(r, i) for r in range(WORLD))))
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
    return {"phases": _tos_by_phase(counter.report(step=-1)), "total": counter.total.tos}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args(argv)
    try:
        import deepspeed  # noqa: F401  (imported before the fork: the ranks inherit it)
    except ImportError:
        sys.exit("bench_deepspeed: DeepSpeed is not installed (pip install 'torch-tos[deepspeed]')")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        mp.start_processes(_worker, args=(port, args.steps, tmp), nprocs=WORLD, start_method="fork")
        ranks = [json.load(open(os.path.join(tmp, f"rank{r}.json"))) for r in range(WORLD)]
    ref = _single_process(args.steps)
    print(f"MLP 64-256-256-64 (82,496 parameters), AdamW, {WORLD} gloo ranks x micro-batch {BATCH}, "
          f"{args.steps} steps; torch {torch.__version__}, deepspeed {deepspeed.__version__}")
    print("TOs of one step (the last), per phase: " + ", ".join(PHASES))
    print(f"{'':22s}" + "".join(f"{p:>12s}" for p in PHASES) + f"{'step':>12s}")

    def row(name: str, ph: dict) -> None:
        print(f"{name:22s}" + "".join(f"{ph.get(p, 0):12.4g}" for p in PHASES) + f"{sum(ph.values()):12.4g}")

    row("single process (16)", ref["phases"])
    for stage in map(str, STAGES):
        for r, res in enumerate(ranks):
            row(f"ZeRO-{stage} rank {r}", res[stage]["phases"])
        both = {p: sum(res[stage]["phases"].get(p, 0) for res in ranks) for p in PHASES}
        row(f"ZeRO-{stage} both ranks", both)
    print(f"{'':22s}{'total_all_ranks':>16s}{'/ single':>10s}{'overhead':>10s}{'unsupported':>12s}")
    for stage in map(str, STAGES):
        res = ranks[0][stage]
        print(f"ZeRO-{stage} ({args.steps} steps)   {res['all']:16.6g}{res['all'] / ref['total']:10.4f}"
              f"{max(r[stage]['overhead'] for r in ranks):9.2f}x{res['unsupported']:12d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
