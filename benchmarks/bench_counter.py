"""TOsCounter overhead: step time of an ordinary training loop with and without the counter.

Side by side in one process, on the same model and optimizer, in alternating rounds (the order of
the variants rotates every round), median over rounds. Variants, each over ``--steps`` steps
(default 50):

* ``plain``     — the loop alone;
* ``cached``    — inside ``TOsCounter(model, opt)`` (``cache=True``), entered right before the
  timed steps, so the first step (counted op by op) is part of the 50;
* ``steady``    — the same with the cache already warm (the counter counted one step before the
  timer started): the cost of the counter on every later step;
* ``uncached``  — ``TOsCounter(model, opt, cache=False)``: every step intercepted op by op.

Figures are ratios of step time to ``plain``. Cases: the paper's FFN on Banknote-shaped data
(4 → 18 → 18 → 18 → 1, sigmoid, MSE, SGD, batch 64; the bundled Banknote data through
``torch_tos.data.load_banknote()``) and torchvision ``resnet18`` (batch 32, 3×64×64, CPU).

    python benchmarks/bench_counter.py               # both cases
    python benchmarks/bench_counter.py --quick       # fewer rounds, smaller resnet batch: seconds
    python benchmarks/bench_counter.py --threads 2   # default: 1 thread, as the paper's runs
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn as nn

import torch_tos


def ffn(width: int = 18, depth: int = 3) -> nn.Module:
    layers, d = [], 4
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.Sigmoid()]
        d = width
    layers.append(nn.Linear(d, 1))
    return nn.Sequential(*layers)


def banknote_batches(batch: int = 64):
    try:
        from torch_tos.data import load_banknote

        X, y = load_banknote()
        X, y = torch.from_numpy(X), torch.from_numpy(y)
        source = "bundled Banknote"
    except ImportError:  # the bundled loader is not there yet: random data of the same shape
        g = torch.Generator().manual_seed(0)
        X, y = torch.randn(1372, 4, generator=g), torch.randint(0, 2, (1372, 1), generator=g).float()
        source = "random, Banknote-shaped"
    n = len(X) // batch * batch
    return [(X[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)], source


def cases(quick: bool):
    torch.manual_seed(0)
    batches, source = banknote_batches()
    model = ffn()
    yield (f"FFN 4-18-18-18-1 sigmoid, batch 64 ({source})", model,
           torch.optim.SGD(model.parameters(), lr=0.01), nn.MSELoss(), batches)
    import torchvision

    b = 8 if quick else 32
    model = torchvision.models.resnet18(num_classes=10)
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(b, 3, 64, 64, generator=g), torch.randint(0, 10, (b,), generator=g)) for _ in range(4)]
    yield (f"resnet18 batch {b}, 3x64x64", model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
           nn.CrossEntropyLoss(), data)


def run(model, opt, loss_fn, batches, steps: int):
    """(wall seconds, process CPU seconds) of ``steps`` steps of the plain loop."""
    n = len(batches)
    c0, t0 = time.process_time(), time.perf_counter()
    for i in range(steps):
        x, y = batches[i % n]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0, time.process_time() - c0


def variant(name, model, opt, loss_fn, batches, steps):
    if name == "plain":
        return run(model, opt, loss_fn, batches, steps)
    if name == "cached":
        with torch_tos.TOsCounter(model, opt, cache=True):
            return run(model, opt, loss_fn, batches, steps)
    if name == "steady":
        with torch_tos.TOsCounter(model, opt, cache=True) as c:
            run(model, opt, loss_fn, batches, 1)
            dt = run(model, opt, loss_fn, batches[1:] + batches[:1], steps)
            assert sum(r.cache == "miss" for r in c.steps) == 1, "steady state re-counted a step"
            return dt
    if name == "uncached":
        with torch_tos.TOsCounter(model, opt, cache=False):
            return run(model, opt, loss_fn, batches, steps)
    raise ValueError(name)


VARIANTS = ("plain", "cached", "steady", "uncached")


def bench(label, model, opt, loss_fn, batches, steps, rounds):
    run(model, opt, loss_fn, batches, 5)  # warm-up
    times = {v: [] for v in VARIANTS}
    for r in range(rounds):
        order = VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]
        for v in order:
            times[v].append(variant(v, model, opt, loss_fn, batches, steps))
    out = {}
    print(f"\n{label}: blocks of {steps} steps x {rounds} rounds")
    print(f"  {'variant':<10}{'wall ms/step':>14}{'ratio':>8}{'min ratio':>11}"
          f"{'CPU ms/step':>13}{'ratio':>8}{'min ratio':>11}")
    for v in VARIANTS:
        row = []
        for k in (0, 1):  # wall, CPU
            mine = [t[k] for t in times[v]]
            plain = [t[k] for t in times["plain"]]
            med, med_p = statistics.median(mine), statistics.median(plain)
            row.append((med / steps * 1e3, med / med_p, min(mine) / min(plain)))
        out[v] = row
        print(f"  {v:<10}" + "".join(f"{a:>14.3f}{b:>8.3f}{c:>11.3f}" if k == 0 else f"{a:>13.3f}{b:>8.3f}{c:>11.3f}"
                                     for k, (a, b, c) in enumerate(row)))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=None, help="default: 21 FFN, 5 resnet18 (quick: 7, 3)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=("ffn", "resnet18"), default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{args.threads} thread(s), python {platform.python_version()}")
    for i, (label, model, opt, loss_fn, batches) in enumerate(cases(args.quick)):
        if args.only and (i == 0) != (args.only == "ffn"):
            continue
        rounds = args.rounds or ((7 if args.quick else 21) if i == 0 else (3 if args.quick else 5))
        bench(label, model, opt, loss_fn, batches, args.steps, rounds)


if __name__ == "__main__":
    main()
