"""Benchmark: does the overhead-aware law predict held-out configurations and unmeasured models?

On this machine with the CPU-time meter (process CPU seconds × 10 W: it tracks time, not energy),
one torch thread, short SGD runs, pooled sweeps varying width, depth, activation, steps (epochs)
and batch size over MLP, MLP+dropout, conv+batch-norm, depthwise-conv and tiny-transformer
workloads. Reported:

1. leave-one-configuration-out (and leave-one-family-out) mean relative error of the
   overhead-aware law (TOs + calls + bytes, per step, non-negative) vs the TOs-only and FLOPs-only
   laws (the paper's E = a + b·x of run totals, and per-step) vs the noise floor (each run
   predicted by the mean of the other runs of its configuration) and the mean-only baseline;
2. predicted vs measured energy of two workloads outside the calibration: resnet18 at 64×64 and a
   2-layer d=128 transformer encoder.

Goal (issue 9): overhead-aware LOCO error within 1.25× the noise floor and strictly below TOs-only
and FLOPs-only. The machine is shared (2 cores, several processes): runs are kept short and
interleaved across configurations so drift spreads over all of them; figures move from run to run.

    PYTHONPATH=$PWD python benchmarks/bench_energy_law.py [--repeats 3] [--quick] [--out runs.csv]
"""

from __future__ import annotations

import argparse
import gc
import os
import socket
import sys
import time

import numpy as np
import pandas as pd
import torch
from torch import nn

import torch_tos
from torch_tos.energy import EnergyModel
from torch_tos.energy.evaluate import evaluate, format_evaluation, summarize
from torch_tos.energy.features import step_features

WATTS = 10.0


class Tokens(nn.Module):
    def __init__(self, width, depth, act, vocab=256, ff=2):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        layer = nn.TransformerEncoderLayer(width, max(1, width // 32), ff * width, dropout=0.1,
                                           activation=act, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.head = nn.Linear(width, vocab)

    def forward(self, x):
        return self.head(self.enc(self.embed(x))).mean(dim=1)


def mlp(width, depth, act, drop=0.0):
    A = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}[act]
    layers, n = [], 32
    for _ in range(depth):
        layers += [nn.Linear(n, width), A()] + ([nn.Dropout(drop)] if drop else [])
        n = width
    return nn.Sequential(*layers, nn.Linear(n, 10))


def convnet(width, depth, act, dw=False):
    A = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[act]
    layers = [nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), A()]
    for _ in range(depth):
        if dw:
            layers += [nn.Conv2d(width, width, 3, padding=1, groups=width), nn.BatchNorm2d(width), A(),
                       nn.Conv2d(width, width, 1), nn.BatchNorm2d(width), A()]
        else:
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), A()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))


def workload(family, width, depth, act, batch, size):
    """(model, inputs, target, loss_fn) of one configuration."""
    g = torch.Generator().manual_seed(0)
    if family in ("mlp", "mlpdrop"):
        model = mlp(width, depth, act, 0.1 if family == "mlpdrop" else 0.0)
        x = torch.randn(batch, 32, generator=g)
    elif family in ("conv", "dwconv"):
        model = convnet(width, depth, act, dw=family == "dwconv")
        x = torch.randn(batch, 3, size, size, generator=g)
    elif family == "tokens":
        model = Tokens(width, depth, act)
        x = torch.randint(0, 256, (batch, size), generator=g)
    elif family == "resnet18":
        import torchvision

        model = torchvision.models.resnet18(num_classes=10)
        x = torch.randn(batch, 3, size, size, generator=g)
    elif family == "encoder":
        layer = nn.TransformerEncoderLayer(128, 4, 512, dropout=0.1, batch_first=True)
        model = nn.Sequential(nn.TransformerEncoder(layer, 2, enable_nested_tensor=False), nn.Flatten(),
                              nn.Linear(128 * size, 10))
        x = torch.randn(batch, size, 128, generator=g)
    else:
        raise ValueError(family)
    y = torch.randint(0, 10, (batch,), generator=g)
    return model, x, y, nn.CrossEntropyLoss()


def suite(quick: bool):
    """Calibration configurations: (family, width, depth, activation, batch, input size, steps)."""
    c = []
    for w in (32, 256, 1024):
        for d in (1, 3):
            for act in ("relu", "tanh"):
                for b, steps in ((16, 40), (128, 20)):
                    c.append(("mlp", w, d, act, b, 0, steps))
    for w in (64, 512):
        c.append(("mlpdrop", w, 2, "gelu", 64, 0, 30))
    for w, size in ((8, 32), (32, 16), (64, 8)):
        for d in (1, 3):
            c.append(("conv", w, d, "relu", 16, size, 10))
    c += [("conv", 128, 2, "relu", 8, 4, 10), ("conv", 256, 1, "relu", 8, 4, 6)]  # wide convs, tiny maps
    for w, size in ((16, 16), (64, 8)):
        c.append(("dwconv", w, 2, "relu", 16, size, 10))
    for w in (32, 64):
        for d in (1, 2):
            c.append(("tokens", w, d, "gelu", 8, 16, 15))
    c += [("mlp", 256, 3, "gelu", 64, 0, 60), ("conv", 32, 2, "gelu", 32, 16, 20)]  # more steps/epochs
    return c[::3] if quick else c


def count(cfg):
    family, width, depth, act, batch, size, _steps = cfg
    model, x, y, loss_fn = workload(family, width, depth, act, batch, size)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    r = torch_tos.profile(model, x, mode="training", target=y, loss_fn=loss_fn, optimizer=opt, device="meta")
    return step_features(r, model=model)


def measure(cfg, seed) -> tuple[float, float]:
    """CPU-time joules and wall seconds of ``steps`` SGD steps (one untimed warm-up step first)."""
    family, width, depth, act, batch, size, steps = cfg
    torch.manual_seed(seed)
    model, x, y, loss_fn = workload(family, width, depth, act, batch, size)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    step()
    gc.disable()
    try:
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(steps):
            step()
        c1, t1 = time.process_time(), time.perf_counter()
    finally:
        gc.enable()
    return (c1 - c0) * WATTS, t1 - t0


def row(cfg, repeat, joules, seconds, feats):
    family, width, depth, act, batch, size, steps = cfg
    return {"family": family, "width": width, "depth": depth, "activation": act, "batch_size": batch,
            "input_size": size, "steps": steps, "epochs": 1, "threads": 1, "dtype": "float32",
            "optimizer": "sgd", "repeat": repeat, "joules": joules, "seconds": seconds, "meter": "cputime",
            "host": socket.gethostname(), "count_device": "meta", **feats}


from torch_tos.energy.evaluate import CLASS_LAW  # noqa: E402 - TOs and calls per op class


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a third of the suite (a smoke run)")
    ap.add_argument("--out", default=None, help="also write the runs CSV here")
    ap.add_argument("--target-repeats", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    configs = suite(args.quick)
    feats = {cfg: count(cfg) for cfg in configs}
    for cfg in configs:  # warm kernels once
        measure(cfg[:-1] + (1,), 0)
    rows = []
    for r in range(args.repeats):  # interleaved: drift spreads over every configuration
        for cfg in configs:
            j, s = measure(cfg, r)
            rows.append(row(cfg, r, j, s, feats[cfg]))
    runs = pd.DataFrame(rows)
    if args.out:
        runs.to_csv(args.out, index=False)
    t_cal = time.perf_counter() - t_start
    calls = runs["calls"]
    print(f"calibration: {len(configs)} configurations × {args.repeats} repeats = {len(runs)} runs in "
          f"{t_cal:.0f} s (cputime meter, 1 thread, load average {os.getloadavg()[0]:.1f}); calls/step "
          f"{calls.min():.0f}–{calls.max():.0f}, TOs/step {runs['tos'].min():.2g}–{runs['tos'].max():.2g}")
    laws = {"TOs (paper)": EnergyModel("tos"), "FLOPs (paper)": EnergyModel("flops"),
            "TOs/step": EnergyModel(features=("tos",)), "FLOPs/step": EnergyModel(features=("flops",)),
            "TOs+calls+bytes": EnergyModel(features=("tos", "calls", "bytes")),
            "TOs+calls per class": EnergyModel(features=CLASS_LAW)}
    ev = evaluate(runs, laws, splits=("loco", "lofo", "random"), seeds=range(10))
    s = summarize(ev)
    print("\nmean relative error (%) on held-out runs, mean ± sd:")
    print(s.round(2).to_string())
    loco = s[("loco", "mean")]
    floor = loco["noise floor"]
    for name in ("TOs+calls+bytes", "TOs+calls per class"):
        best = loco[name]
        print(f"LOCO: {name} {best:.1f} % vs noise floor {floor:.1f} % (ratio {best / floor:.2f}, goal ≤ 1.25); "
              f"TOs-only {min(loco['TOs (paper)'], loco['TOs/step']):.1f} %, FLOPs-only "
              f"{min(loco['FLOPs (paper)'], loco['FLOPs/step']):.1f} %")
    print("\n" + format_evaluation(ev, "loco"))

    print("\nunmeasured workloads (law fitted on every calibration run):")
    fitted = {n: EnergyModel(**laws[n].get_params()).fit(runs) for n in ("TOs/step", "FLOPs/step",
                                                                         "TOs+calls+bytes", "TOs+calls per class")}
    print("  law:", fitted["TOs+calls+bytes"])
    print("  law:", fitted["TOs+calls per class"])
    targets = [("resnet18", 0, 0, "relu", 8, 64, 5), ("encoder", 0, 0, "relu", 16, 32, 10)]
    for cfg in targets:
        f = count(cfg)
        measured = [measure(cfg, r)[0] for r in range(args.target_repeats)]
        m = float(np.mean(measured))
        one = pd.DataFrame([row(cfg, 0, m, 0.0, f)])
        parts = []
        for name, law in fitted.items():
            p = float(law.predict(one)[0])
            parts.append(f"{name} {p:.3g} J ({100 * (p - m) / m:+.0f} %)")
        lo, hi = fitted["TOs+calls per class"].interval()
        print(f"  {cfg[0]} batch {cfg[4]} size {cfg[5]}, {cfg[6]} steps, calls/step {f['calls']:.0f}: measured "
              f"{m:.3g} J (sd {np.std(measured, ddof=1):.2g}); predicted " + "; ".join(parts)
              + f"; 90 % interval ×{lo:.2f}–×{hi:.2f}")
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
