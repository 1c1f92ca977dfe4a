"""profile() on the meta device, training mode, vs torch's FlopCounterMode alone — same run.

Both sides run the same step on a meta-device model: forward, ``output.sum()`` loss, backward (and
with ``--optimizer sgd|adam`` one optimizer step). torch_tos additionally prices every op in BOs and
TOs and attributes it to a layer; FlopCounterMode only applies its FLOP formulas. The figure that
matters is the ratio (ours / FlopCounterMode), measured alternately in one process. "FLOPs equal" compares
our FLOPs with ``torch_tos.flops.flop_counter()`` — FlopCounterMode with torch_tos's custom mapping
and the kernel a real CPU run takes (on meta, plain FlopCounterMode sees SDPA's unfused math path,
whose FLOPs differ from the flash kernel a CPU actually runs).

    python benchmarks/bench_profile.py            # resnet50 b8, vit_b_16 b8, TransformerEncoder 32×4096, seq 2048
    python benchmarks/bench_profile.py --quick    # smaller models, seconds
    python benchmarks/bench_profile.py --real     # real CPU: overhead over a plain step (below)

``--real``: the models on the CPU with real weights, as a user profiles a model in memory.
Inference at batch 1 (resnet50, vit_b_16, mobilenet_v3_small; all under ``no_grad``) and one
training step of resnet18 at batch 8 (forward, ``output.sum()``, backward). Each round times the
plain step, the step inside ``FlopCounterMode`` and the whole ``torch_tos.profile`` call (which
also builds its workspace: shared weights, no copies) once each, in an order rotating from round
to round; the figures are medians over rounds (``--repeats``, at least 15) of the per-round ratios
to the plain step, and ``tos/FCM`` the median per-round ratio of torch_tos to FlopCounterMode
(below 1: cheaper). ``--cpu-time`` times with the process's CPU time instead of the wall clock and
``--threads 1`` runs torch single-threaded: both steadier on a machine shared with other jobs.

    python benchmarks/bench_profile.py --real --threads 1 --repeats 21
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn as nn
import torchvision
from torch.utils.flop_counter import FlopCounterMode

import torch_tos
from torch_tos.flops import flop_counter


def cases(quick: bool):
    with torch.device("meta"):
        if quick:
            yield "resnet18 b2", torchvision.models.resnet18(), torch.empty(2, 3, 64, 64)
            yield "TransformerEncoder 2×256 seq 64", nn.TransformerEncoder(
                nn.TransformerEncoderLayer(256, 4, batch_first=True), 2, enable_nested_tensor=False), \
                torch.empty(1, 64, 256)
            return
        yield "resnet50 b8", torchvision.models.resnet50(), torch.empty(8, 3, 224, 224)
        yield "vit_b_16 b8", torchvision.models.vit_b_16(), torch.empty(8, 3, 224, 224)
        yield "TransformerEncoder 32×4096 seq 2048", nn.TransformerEncoder(
            nn.TransformerEncoderLayer(4096, 32, batch_first=True), 32, enable_nested_tensor=False), \
            torch.empty(1, 2048, 4096)


def make_opt(kind, model):
    if kind == "sgd":
        return torch.optim.SGD(model.parameters(), lr=0.1)
    if kind == "adam":
        return torch.optim.Adam(model.parameters())
    return None


def run_flop_counter(model, x, opt_kind, baseline=False):
    """The anchor: plain FlopCounterMode. ``baseline=True``: torch_tos's FLOPs baseline
    (FlopCounterMode with torch_tos's custom mapping and kernel choices), for the equality check."""
    opt = make_opt(opt_kind, model)
    t0 = time.perf_counter()
    with (flop_counter() if baseline else FlopCounterMode(display=False)) as fc:
        model(x).sum().backward()
        if opt is not None:
            opt.step()
    dt = time.perf_counter() - t0
    for p in model.parameters():
        p.grad = None
    return dt, fc.get_total_flops()


def run_torch_tos(model, x, opt_kind):
    opt = make_opt(opt_kind, model)
    t0 = time.perf_counter()
    report = torch_tos.profile(model, x, mode="training", optimizer=opt, device="meta")
    return time.perf_counter() - t0, report


def real_cases(quick: bool):
    tv = torchvision.models
    if quick:
        yield "mobilenet_v3_small b1 inference", tv.mobilenet_v3_small().eval(), torch.randn(1, 3, 224, 224), "inference"
        yield "resnet18 b2 training", tv.resnet18(), torch.randn(2, 3, 64, 64), "training"
        return
    for name, build in (("resnet50", tv.resnet50), ("vit_b_16", tv.vit_b_16),
                        ("mobilenet_v3_small", tv.mobilenet_v3_small)):
        yield f"{name} b1 inference", build().eval(), torch.randn(1, 3, 224, 224), "inference"
    yield "resnet18 b8 training", tv.resnet18(), torch.randn(8, 3, 224, 224), "training"


def _plain(model, x, mode, counter=None):
    t0 = CLOCK()
    with (counter if counter is not None else torch.enable_grad()):
        if mode == "inference":
            with torch.no_grad():
                model(x)
        else:
            model(x).sum().backward()
    dt = CLOCK() - t0
    for p in model.parameters():
        p.grad = None
    return dt


CLOCK = time.perf_counter


def _time_profile(model, x, mode):
    t0 = CLOCK()
    torch_tos.profile(model, x, mode=mode)
    return CLOCK() - t0


def main_real(repeats: int, quick: bool) -> int:
    """Each round times the three paths once, in an order that rotates from round to round (so
    a slow spell of a shared machine hits each path alike); the figures are medians over rounds
    of the per-round ratios to the plain step (and of torch_tos / FlopCounterMode)."""
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, real CPU, {repeats} rounds "
          f"(median of per-round ratios), clock: {CLOCK.__name__}")
    print(f"{'model':36s} {'plain s':>8s} {'FlopCounterMode':>16s} {'torch_tos':>10s} {'tos/FCM':>8s}")
    for name, model, x, mode in real_cases(quick):
        paths = (lambda: _plain(model, x, mode),
                 lambda: _plain(model, x, mode, FlopCounterMode(display=False)),
                 lambda: _time_profile(model, x, mode))
        for _ in range(2):  # warm up every path
            for path in paths:
                path()
        times = [[], [], []]
        for r in range(repeats):
            for i in (r % 3, (r + 1) % 3, (r + 2) % 3):
                times[i].append(paths[i]())
        plain, fcm, ours = times
        med = statistics.median
        print(f"{name:36s} {med(plain):8.4f} {med(f / p for f, p in zip(fcm, plain)):15.2f}x "
              f"{med(t / p for t, p in zip(ours, plain)):9.2f}x "
              f"{med(t / f for t, f in zip(ours, fcm)):8.3f}", flush=True)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--optimizer", choices=("none", "sgd", "adam"), default="none")
    ap.add_argument("--real", action="store_true", help="real CPU models: overhead over a plain step")
    ap.add_argument("--cpu-time", action="store_true",
                    help="--real: time with the process's CPU time (steadier on a loaded machine)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads(N) first (--threads 1: steadier on a shared machine)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cpu_time:
        global CLOCK
        CLOCK = time.process_time
    if args.real:
        return main_real(max(args.repeats, 15), args.quick)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, optimizer: {args.optimizer}")
    print(f"{'model':40s} {'FlopCounterMode s':>18s} {'torch_tos s':>12s} {'ratio':>6s}  "
          f"{'FLOPs equal':>11s} {'unsupported':>11s}")
    for name, model, x in cases(args.quick):
        run_flop_counter(model, x, args.optimizer)  # warm up both paths once
        run_torch_tos(model, x, args.optimizer)
        ft, tt = [], []
        for _ in range(args.repeats):
            dt, flops = run_flop_counter(model, x, args.optimizer)
            ft.append(dt)
            dt, report = run_torch_tos(model, x, args.optimizer)
            tt.append(dt)
        _, baseline = run_flop_counter(model, x, args.optimizer, baseline=True)
        f, t = statistics.median(ft), statistics.median(tt)
        print(f"{name:40s} {f:18.3f} {t:12.3f} {t / f:6.2f}  {str(report.flops == baseline):>11s} "
              f"{len(report.unsupported):>11d}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
