"""``torch-tos calibrate`` and ``torch-tos demo``: measure this device into a cost model, then
predict models that were not in the calibration and measure them.

``torch-tos calibrate --out law.json [--device cpu|cuda|cuda:i] [--dtypes float32,float64,bfloat16]
[--threads 1] [--repeats 2] [--no-reference] [--meter auto]`` runs the microbenchmarks
(``law.bench.jsonl``) and the step-level suite (``law.runs.csv``) — both resumable — fits the cost
model (:mod:`torch_tos.energy.calibrate`), saves it and prints it with its held-out errors beside
the paper's TOs and FLOPs laws, the mean-only baseline and the noise floor.

``--shard i/n`` (or ``auto``: a SLURM array's task, torchrun's rank) measures one host's share of the
suite and that host's own microbenchmarks into ``<name>.shard-I-of-N.*`` files; ``--merge`` merges
the finished shards into the law (:mod:`torch_tos.energy.shards`).

``torch-tos demo [--out torch-tos-demo]`` calibrates, prints the model and its Table V, then
predicts a training run of torchvision's mnasnet0_5 and an inference run of torchvision's
googlenet (neither in the calibration) and measures both: predicted vs measured joules and
seconds with the intervals. Registered by :func:`torch_tos.cli.energy.register`.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from .errors import CLIError
from .measuring import common_options, isolate_option, make_meter, meter_lines, parse_names, repairs_reported

#: The demo's two targets: (name, torchvision builder, kwargs, batch, image side, steps, mode).
DEMO_TARGETS = (("mnasnet0_5", {}, 8, 64, 20, "training"),
                ("googlenet", {"aux_logits": False, "init_weights": True}, 8, 64, 20, "inference"))


def load_line() -> str | None:
    """A warning when other processes keep this machine busy (1-min load average minus this
    process ≥ half the CPUs), else ``None``."""
    if not hasattr(os, "getloadavg"):
        return None
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    if load - 1 >= 0.5 * cpus:
        return (f"warning: machine load {load:.1f} on {cpus} CPUs: other processes share this machine, so "
                "measurements are noisier and drift (calibrate on an idle machine)")
    return None


def _calibrate(args, law_path, runs_csv=None, meter=None):
    from ..energy.calibrate import calibrate
    from ..energy.meters import InvalidWindow, MeterUnavailable

    families = parse_names(args.families)
    for name, v in (("--repeats", args.repeats), ("--threads", args.threads)):
        if v < 1:
            raise CLIError(f"{name} must be a positive integer, got {v}")
    if not args.scale > 0:
        raise CLIError(f"--scale must be a positive number, got {args.scale}")
    try:
        with repairs_reported():
            cal = calibrate(law_path, device=args.device, dtypes=args.dtypes, threads=args.threads, meter=meter,
                            repeats=args.repeats, runs=runs_csv, reference=args.reference, families=families,
                            scale=args.scale, seed=args.seed, progress=not args.no_progress, isolate=args.isolate)
    except (MeterUnavailable, InvalidWindow, OSError) as e:
        raise CLIError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    return cal, calibration_lines(cal)


def calibration_lines(cal) -> list[str]:
    """A calibration for people: what was measured, the model, its run-to-run noise and Table V."""
    from ..energy.evaluate import format_evaluation
    from ..energy.reference import cv_by_config, format_cv
    from ..energy.runs import config_keys
    from ..units import duration

    runs = cal.runs
    lines = [f"calibration of {cal.law.profile.device.get('name')} in {duration(cal.seconds)}: "
             f"{len(cal.law.profile.points)} microbenchmarked calls ({cal.bench_path}), {len(runs)} runs of "
             f"{config_keys(runs).nunique()} configurations of {runs['family'].nunique()} families ({cal.runs_path})",
             str(cal.law), f"saved: {cal.law_path}", format_cv(cv_by_config(runs)), *cal.notes]
    for mode in dict.fromkeys(cal.errors["mode"]) if len(cal.errors) else ():
        lines += ["", f"Table V, {mode} runs held out (each predicted by a law fitted without it; mean ± sd over "
                  "folds):", format_evaluation(cal.errors[cal.errors["mode"] == mode].drop(columns="mode"))]
    return lines


def _cmd_calibrate(args) -> int:
    if args.merge and args.shard:
        raise CLIError("--merge and --shard exclude each other: measure each shard with --shard i/n, then merge "
                       "them once with --merge")
    if (args.merge or args.shard) and args.runs:
        raise CLIError("--runs names one runs file; a sharded calibration names its files from --out "
                       "(<name>.shard-I-of-N.runs.csv): leave --runs out")
    if args.merge:
        return _cmd_merge(args)
    if args.shard:
        return _cmd_shard(args)
    meter = make_meter(args)
    print("\n".join(meter_lines(meter)), flush=True)
    warning = load_line()
    if warning:
        print(warning, flush=True)
    _cal, lines = _calibrate(args, args.out, args.runs, meter)
    print("\n".join(lines))
    return 0


def _cmd_shard(args) -> int:
    from ..energy.meters import InvalidWindow, MeterUnavailable
    from ..energy.shards import calibrate_shard, parse_shard
    from ..units import duration

    try:
        shard = parse_shard(args.shard)
    except ValueError as e:
        raise CLIError(f"--shard: {e}") from None
    for name, v in (("--repeats", args.repeats), ("--threads", args.threads)):
        if v < 1:
            raise CLIError(f"{name} must be a positive integer, got {v}")
    if not args.scale > 0:
        raise CLIError(f"--scale must be a positive number, got {args.scale}")
    meter = make_meter(args)
    print("\n".join(meter_lines(meter)), flush=True)
    warning = load_line()
    if warning:
        print(warning, flush=True)
    try:
        with repairs_reported():
            done = calibrate_shard(args.out, shard, device=args.device, dtypes=args.dtypes, threads=args.threads,
                                   meter=meter, repeats=args.repeats, reference=args.reference,
                                   families=parse_names(args.families), scale=args.scale, seed=args.seed,
                                   progress=not args.no_progress, isolate=args.isolate)
    except (MeterUnavailable, InvalidWindow, OSError) as e:
        raise CLIError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    i, n = done["shard"]
    files = done["paths"]
    print(f"shard {i}/{n} finished in {duration(done['seconds'])}: {done['points']} microbenchmarked calls "
          f"({files['bench']}), {done['runs']} runs of {done['configurations']} configurations ({files['runs']})")
    print(f"when all {n} shards have finished (their files in one folder): torch-tos calibrate --merge --out {args.out}")
    return 0


def _cmd_merge(args) -> int:
    from ..energy.shards import merge_shards

    cal = merge_shards(args.out)
    print("\n".join(calibration_lines(cal)))
    return 0


def _target(name: str, kwargs: dict, batch: int, side: int):
    import torchvision

    from ..energy.families.micro import Classifier

    return Classifier(name, lambda: getattr(torchvision.models, name)(num_classes=10, **kwargs), batch_size=batch,
                      input_size=side, n_batches=1)


def _demo_workload(args, spec):
    """The :class:`~torch_tos.energy.runner.Workload` of the demo target ``spec``."""
    from ..energy.runner import Workload

    name, kwargs, batch, side, steps, mode = spec
    fam = _target(name, kwargs, batch, side)
    return Workload(fam, fam.configs()[0], args.steps or steps, fam.default_lr, args.threads, mode, None, "cpu",
                    "sgd_momentum" if mode == "training" else None)


def _demo_target(cal, args, meter, out: Path, spec, w, server) -> list[str]:
    import warnings

    import torch

    from ..energy.calibrate import REFERENCE_STEPS
    from ..energy.reference import Reference, cv_by_config, format_cv, recorrect
    from ..energy.runner import run_plan
    from ..energy.runs import read_runs
    from ..units import duration, energy

    name, kwargs, batch, side, _steps, mode = spec
    steps, fam = w.epochs, w.family
    X, y = w.data()
    model = w.build()
    opt = w.make_optimizer(model.parameters()) if mode == "training" else None
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)  # the threads the run is measured with, as the law expects
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pred = cal.law.predict(model, X, mode=mode, steps=steps, target=y, loss_fn=fam.loss_fn(),
                                   optimizer=opt)
    finally:
        torch.set_num_threads(threads)
    what = f"{steps} SGD-momentum training steps" if mode == "training" else f"{steps} inference steps (no_grad)"
    lines = [f"\n{name} (torchvision, 10 classes) on {batch}×3×{side}×{side} images, {what} — not in the calibration:",
             f"  predicted: {energy(pred.joules)} ({pred.coverage:.0%} interval {energy(pred.joules_low)} – "
             f"{energy(pred.joules_high)}), {duration(pred.seconds)} ({duration(pred.seconds_low)} – "
             f"{duration(pred.seconds_high)})"]
    lines += [f"  note: {str(c.message).splitlines()[0]}" for c in caught]
    path = out / f"{name}.runs.csv"
    nominal = cal.law.meta.get("reference_joules")  # measured in the calibration's units when it has them
    ref = Reference(int(cal.law.meta.get("reference_steps", REFERENCE_STEPS))) if nominal is not None else None
    with repairs_reported():
        run_plan([w], path, repeats=max(args.repeats, 3), meter=meter, reference=ref, seed=args.seed,
                 progress=not args.no_progress, desc=f"measuring {name}", nominal=nominal, fresh=server)
    measured = read_runs(path, features=())
    if nominal is not None:
        measured = recorrect(measured, nominal, path)
    measured = measured[(measured["steps"] == steps) & (measured["batch_size"] == batch)]
    mj, ms = float(measured["joules"].mean()), float(measured["seconds"].mean())
    sd = float(measured["joules"].std(ddof=1)) if len(measured) > 1 else 0.0
    inside = "inside" if pred.joules_low <= mj <= pred.joules_high else "OUTSIDE"
    drift = (f", drift-corrected to the calibration's reference: raw {energy(float(measured['joules_raw'].mean()))}"
             if nominal is not None else "")
    lines += [f"  measured:  {energy(mj)} ± {energy(sd)}, {duration(ms)} (mean of {len(measured)} runs; "
              f"{format_cv(cv_by_config(measured)).split(': ', 1)[-1]}{drift})",
              f"  predicted / measured: joules {pred.joules / mj:.2f} ({100 * (pred.joules - mj) / mj:+.0f} %, "
              f"{inside} the interval), seconds {pred.seconds / ms:.2f} ({100 * (pred.seconds - ms) / ms:+.0f} %)"]
    return lines


def _cmd_demo(args) -> int:
    import torch

    from ..energy.isolate import fresh_server, resolve_isolate
    from ..energy.runfile import check_output

    t0 = time.perf_counter()
    out = Path(args.out)
    for name, v in (("--steps", args.steps), ("--repeats", args.repeats), ("--threads", args.threads)):
        if v is not None and v < 1:
            raise CLIError(f"{name} must be a positive integer, got {v}")
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {str(out)!r} is an existing file; the demo writes a folder: give a new or "
                       "existing folder name")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CLIError(f"--out {str(out)!r}: cannot create the folder ({e.strerror})") from None
    files = [out / n for n in ("law.json", "law.runs.csv", "law.bench.jsonl")] + \
        [out / f"{t[0]}.runs.csv" for t in DEMO_TARGETS]
    try:
        for p in files:
            check_output(p, what="--out")
    except ValueError as e:
        raise CLIError(str(e)) from None
    if args.fresh:
        for p in files:
            p.unlink(missing_ok=True)
    meter = make_meter(args)
    print("torch-tos demo: calibrate this machine's cost model (microbenchmarks and a suite of small models), "
          "then predict a training run and an inference run of two models outside the calibration and measure them")
    print("\n".join(meter_lines(meter)), flush=True)
    warning = load_line()
    if warning:
        print(warning, flush=True)
    targets = [_demo_workload(args, spec) for spec in DEMO_TARGETS]
    try:
        isolate = resolve_isolate(args.isolate, targets, torch.device("cpu"))
    except ValueError as e:
        raise CLIError(str(e)) from None
    with fresh_server(isolate, targets, meter) as server:  # forked before any work
        cal, lines = _calibrate(args, out / "law.json", out / "law.runs.csv", meter)
        print("\n".join(lines), flush=True)
        for spec, w in zip(DEMO_TARGETS, targets):
            print("\n".join(_demo_target(cal, args, meter, out, spec, w, server)), flush=True)
    if meter.name == "cputime":
        print("\n(CPU-time meter: joules are estimates, CPU seconds × "
              f"{meter.watts_per_core:g} W per core; they track time, not energy)")
    from ..units import duration

    print(f"\ndemo finished in {duration(time.perf_counter() - t0)}; files in {out}/")
    return 0


def _options(p):
    p.add_argument("--device", default="cpu", help="the device to calibrate: cpu, cuda or cuda:<index>")
    p.add_argument("--dtypes", help="dtypes to measure, comma-separated (default: cpu float32,float64,bfloat16; "
                   "cuda float32,float16,bfloat16,tf32)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of every measurement")
    p.add_argument("--repeats", type=int, default=2, help="runs per suite entry")
    p.add_argument("--reference", action=argparse.BooleanOptionalAction, default=None,
                   help="correct the machine's drift with a fixed reference workload (on by default on a CPU), read "
                   "every few seconds of microbenchmarks and before and after each run: both stages' joules are "
                   "expressed at one nominal, the median reading (raw values kept)")
    isolate_option(p)
    p.add_argument("--families", help="only these suite families, comma-separated (a quicker, narrower model)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every suite entry's epochs (longer or "
                   "shorter runs)")


def register(subparsers) -> None:
    """Add ``calibrate`` and ``demo`` to the ``torch-tos`` parser."""
    p = subparsers.add_parser("calibrate", help="measure this device into a cost model (law.json)",
                              description="Microbenchmark every op class in every dtype on this device, measure "
                              "a suite of small models (training and inference), fit the cost model and save it; "
                              "resumable.")
    p.add_argument("--out", required=True, help="the cost model's JSON file (its measurements go next to it: "
                   "<name>.bench.jsonl, <name>.runs.csv)")
    p.add_argument("--runs", help="runs CSV of the suite (default: next to --out)")
    p.add_argument("--shard", help="i/n: measure the i-th of n shares of the suite (and this host's own "
                   "microbenchmarks) into <name>.shard-I-of-N.* files next to --out; 'auto' reads i/n from a SLURM "
                   "array or torchrun; merge the shards with --merge")
    p.add_argument("--merge", action="store_true", help="merge the finished shards of --out into the law (their "
                   "options are the shards' own: the other options are not used)")
    _options(p)
    common_options(p)
    p.set_defaults(func=_cmd_calibrate)

    p = subparsers.add_parser("demo", help="calibrate, then predict and measure two models outside the calibration",
                              description="Calibrate this machine's cost model (a few minutes), print it with its "
                              "held-out errors, then predict a training run of mnasnet0_5 and an inference run of "
                              "googlenet and measure both.")
    p.add_argument("--out", default="torch-tos-demo", help="folder for law.json and the measurements (a rerun "
                   "resumes)")
    p.add_argument("--fresh", action="store_true", help="discard the measurements of a previous demo in --out")
    p.add_argument("--steps", type=int, help="steps of each predicted and measured run (default 20)")
    _options(p)
    common_options(p)
    p.set_defaults(func=_cmd_demo)
