"""Development-set check of a calibrated cost model: predict each model of ``benchmarks/devset.py``,
measure it, and print predicted vs measured joules and seconds with the intervals.

These are DEVELOPMENT figures (the models were looked at while building the cost model); the
honest accuracy is the held-out zoo's (``benchmarks/bench_heldout_zoo.py``).

    python benchmarks/bench_costmodel_dev.py --law law.json                 # all, 3 repeats
    python benchmarks/bench_costmodel_dev.py --law law.json --ids d01 d05   # some
    python benchmarks/bench_costmodel_dev.py --law law.json --out dev.csv   # also a CSV

Each run, in a process of its own forked from a server made before anything is measured or built
(``torch_tos.energy.isolate``, as a calibration measures its runs; ``--no-isolate``: all in this
process): a freshly built model and optimizer (seed = repeat), ``steps`` steps inside one meter
window (CPU-time meter by default: process CPU seconds × 10 W) with the garbage collector paused,
after one untimed step of another fresh copy (first-call costs stay out). Single-threaded unless
``--threads``. The prediction is ``law.predict(model, inputs, mode=…, steps=…, target=…, loss_fn=…,
optimizer=…)`` of a fresh copy, the first step with the optimizer's fresh state as measured.
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import statistics
import sys
import time
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from devset import DEV, make, run_steps  # noqa: E402

from torch_tos.energy import get_meter, load_law  # noqa: E402
from torch_tos.energy.isolate import FreshProcesses, fork_available  # noqa: E402
from torch_tos.units import duration, energy  # noqa: E402


def measure_one(entry, repeat: int, *, meter, threads: int) -> tuple[float, float]:
    """One measured run of ``entry`` (module doc), in the process it is called in."""
    torch.set_num_threads(threads)
    model, inputs, target, loss_fn, opt = make(entry, seed=1000)
    run_steps(entry, model, inputs, target, loss_fn, opt, 1)  # warm-up on a throwaway copy
    del model, opt
    model, inputs, target, loss_fn, opt = make(entry, seed=repeat)
    gc.collect()
    gc.disable()
    try:
        with meter.measure() as m:
            run_steps(entry, model, inputs, target, loss_fn, opt, entry.steps)
    finally:
        gc.enable()
    return float(m.joules), float(m.seconds)


def measure(entry, meter, repeats: int, threads: int, server=None) -> tuple[list[float], list[float]]:
    """``repeats`` runs of ``entry``: each in a process of its own forked from ``server`` (a
    :class:`~torch_tos.energy.isolate.FreshProcesses`), or here when it is None."""
    runs = [server.run(entry, r) if server else measure_one(entry, r, meter=meter, threads=threads)
            for r in range(repeats)]
    return [j for j, _ in runs], [s for _, s in runs]


def predict(law, entry):
    model, inputs, target, loss_fn, opt = make(entry, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = law.predict(model, inputs, mode=entry.mode, steps=entry.steps, target=target, loss_fn=loss_fn,
                        optimizer=opt)
    return p, [str(w.message) for w in caught]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 allow_abbrev=False)
    ap.add_argument("--law", required=True)
    ap.add_argument("--ids", nargs="*")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--meter", default="cputime")
    ap.add_argument("--out")
    ap.add_argument("--no-isolate", action="store_true", help="measure in this process (default: each run in a "
                    "process of its own, forked before any measuring, as a calibration measures its runs)")
    args = ap.parse_args(argv)
    entries = [e for e in DEV if not args.ids or e.id in args.ids]
    meter = get_meter(args.meter)
    server = None
    if not args.no_isolate and fork_available() and args.threads == 1:
        server = FreshProcesses(functools.partial(measure_one, meter=meter, threads=args.threads), entries)
    try:
        return _report(args, entries, meter, server)
    finally:
        if server is not None:
            server.close()


def _report(args, entries, meter, server) -> int:
    torch.set_num_threads(args.threads)
    law = load_law(args.law)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"law: {args.law}; meter {meter.source}; {args.threads} thread(s); load {load:.1f} on {os.cpu_count()} CPUs")
    print(f"{'id':4} {'model':58} {'mode':9} {'dtype':8} {'pred J':>9} {'meas J':>9} {'err':>6} {'in 90%':>6} "
          f"{'pred s':>8} {'meas s':>8} {'err s':>6}")
    rows = []
    for e in entries:
        t0 = time.perf_counter()
        p, notes = predict(law, e)
        t_pred = time.perf_counter() - t0
        js, ss = measure(e, meter, args.repeats, args.threads, server)
        mj, ms = statistics.mean(js), statistics.mean(ss)
        err, err_s = (p.joules - mj) / mj, (p.seconds - ms) / ms
        inside = p.joules_low <= mj <= p.joules_high
        rows.append({"id": e.id, "family": e.family, "model": e.what, "mode": e.mode, "dtype": e.dtype, "steps": e.steps,
                     "pred_joules": p.joules, "low": p.joules_low, "high": p.joules_high, "meas_joules": mj,
                     "sd_joules": statistics.stdev(js) if len(js) > 1 else 0.0, "err": err, "inside": inside,
                     "pred_seconds": p.seconds, "meas_seconds": ms, "err_seconds": err_s, "predict_s": t_pred,
                     "warnings": " | ".join(notes)})
        print(f"{e.id:4} {e.what[:58]:58} {e.mode:9} {e.dtype:8} {energy(p.joules):>9} {energy(mj):>9} {err:+6.1%} "
              f"{'yes' if inside else 'NO':>6} {duration(p.seconds):>8} {duration(ms):>8} {err_s:+6.1%}", flush=True)
    import pandas as pd

    df = pd.DataFrame(rows)
    a = df["err"].abs()
    print(f"\njoules: median |error| {a.median():.1%}, mean {a.mean():.1%}, max {a.max():.1%}; within ±20 %: "
          f"{(a <= 0.2).mean():.0%}; beyond ±35 %: {(a > 0.35).sum()}; 90 % interval covers {df['inside'].mean():.0%}")
    s = df["err_seconds"].abs()
    print(f"seconds: median |error| {s.median():.1%}, max {s.max():.1%}")
    for col in ("mode", "dtype"):
        for k, g in df.groupby(col):
            print(f"  {col} {k}: median |error| {g['err'].abs().median():.1%}, max {g['err'].abs().max():.1%} "
                  f"({len(g)} models)")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load at the end: {load:.1f}")
    if args.out:
        df.to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
