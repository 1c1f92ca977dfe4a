"""``torch-tos calibrate`` and ``torch-tos demo``: calibrate this machine's energy law, then
predict a model that was not in the calibration and measure it.

``torch-tos calibrate --out law.json [--repeats 3] [--reference] [--threads 1] [--features
tos,calls,bytes] [--meter auto]`` measures the built-in suite (:mod:`torch_tos.energy.calibrate`)
into ``law.runs.csv`` (resumable), fits and saves the law, and prints its held-out errors.

``torch-tos demo [--out torch-tos-demo] [--batch-size 16] [--steps 20]`` runs the calibration,
prints the law and its held-out errors with the TOs-only and FLOPs-only baselines and the noise
floor, then predicts the energy of training torchvision's resnet18 (32×32 images, not in the
suite) and measures it, printing predicted vs measured. Registered by
:func:`torch_tos.cli.energy.register`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .errors import CLIError

DEMO_TARGET = "resnet18"
DEMO_STEPS = 20
DEMO_BATCH = 16
DEMO_IMAGE = 32


def load_line() -> str | None:
    """A warning when other processes keep this machine busy (1-min load average minus this
    process ≥ half the CPUs), else ``None``."""
    if not hasattr(os, "getloadavg"):
        return None
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    if load - 1 >= 0.5 * cpus:
        return (f"warning: machine load {load:.1f} on {cpus} CPUs: other processes share this machine, so "
                "measurements are noisier and drift (use --reference to correct drift)")
    return None


def _calibrate(args, law_path, runs_csv=None, meter=None):
    from ..energy.calibrate import calibrate
    from ..energy.evaluate import format_evaluation
    from ..energy.meters import InvalidWindow, MeterUnavailable
    from ..energy.reference import cv_by_config, format_cv
    from .energy import _features, repairs_reported

    features = _features(args.features)
    families = [f.strip() for f in args.families.split(",") if f.strip()] if args.families else None
    for name, v in (("--repeats", args.repeats), ("--threads", args.threads)):
        if v < 1:
            raise CLIError(f"{name} must be a positive integer, got {v}")
    if not args.scale > 0:
        raise CLIError(f"--scale must be a positive number, got {args.scale}")
    try:
        with repairs_reported():
            cal = calibrate(law_path, runs=runs_csv, meter=meter, repeats=args.repeats, reference=args.reference,
                            threads=args.threads, features=features, seed=args.seed,
                            progress=not args.no_progress, families=families, scale=args.scale)
    except (MeterUnavailable, InvalidWindow, OSError) as e:
        raise CLIError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    from ..energy.runs import config_keys

    n_cfg = config_keys(cal.runs).nunique()
    lines = [f"calibration: {len(cal.runs)} runs of {n_cfg} configurations of "
             f"{cal.runs['family'].nunique()} families in {cal.runs_path} ({cal.seconds:.0f} s)",
             f"law ({', '.join(features)}): {cal.law}", f"saved: {cal.law_path}",
             format_cv(cv_by_config(cal.runs)), "",
             "Table V on held-out runs (each predicted by a law fitted without it; mean ± sd over folds):",
             format_evaluation(cal.errors)]
    return cal, lines


def _cmd_calibrate(args) -> int:
    from .energy import _meter, _meter_lines

    meter = _meter(args)
    print("\n".join(_meter_lines(meter)), flush=True)
    warning = load_line()
    if warning:
        print(warning, flush=True)
    _cal, lines = _calibrate(args, args.out, args.runs, meter)
    print("\n".join(lines))
    return 0


def _target(batch: int):
    import torchvision

    from ..energy.families.micro import Classifier

    return Classifier(DEMO_TARGET, lambda: torchvision.models.resnet18(num_classes=10), batch_size=batch,
                      input_size=DEMO_IMAGE, n_batches=1)


def _cmd_demo(args) -> int:
    import warnings

    import torch

    from ..energy.reference import cv_by_config, format_cv
    from ..energy.runfile import check_output
    from ..energy.runner import Workload, run_plan
    from ..energy.runs import read_runs
    from .energy import _meter, _meter_lines

    t0 = time.perf_counter()
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {str(out)!r} is an existing file; the demo writes a folder: give a new or "
                       "existing folder name")
    for name, v in (("--batch-size", args.batch_size), ("--steps", args.steps)):
        if v < 1:
            raise CLIError(f"{name} must be a positive integer, got {v}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CLIError(f"--out {str(out)!r}: cannot create the folder ({e.strerror})") from None
    paths = {n: out / n for n in ("law.json", "law.runs.csv", "target.runs.csv")}
    try:
        for p in paths.values():
            check_output(p, what="--out")
    except ValueError as e:
        raise CLIError(str(e)) from None
    if args.fresh:
        for p in paths.values():
            p.unlink(missing_ok=True)
    meter = _meter(args)
    print("torch-tos demo: calibrate this machine's energy law on a suite of micro-workloads, then predict "
          f"the energy of training a model outside the suite ({DEMO_TARGET}) and measure it")
    print("\n".join(_meter_lines(meter)), flush=True)
    warning = load_line()
    if warning:
        print(warning, flush=True)
    cal, lines = _calibrate(args, paths["law.json"], paths["law.runs.csv"], meter)
    print("\n".join(lines), flush=True)

    fam = _target(args.batch_size)
    config = fam.configs()[0]
    epochs = args.steps  # one batch per epoch: steps = epochs
    X, y = fam.data(config)
    model = fam.build(config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pred = cal.law.predict(model, X, target=y, loss_fn=fam.loss_fn(),
                               optimizer=torch.optim.SGD(model.parameters(), lr=fam.default_lr), steps=epochs)
    print(f"\n{DEMO_TARGET} (torchvision, 10 classes) on {args.batch_size}×3×{DEMO_IMAGE}×{DEMO_IMAGE} images, "
          f"{args.steps} SGD steps — not in the calibration suite:")
    print(f"  predicted: {pred.joules:.3g} J (90 % interval {pred.low:.3g} – {pred.high:.3g} J)")
    for w in caught:
        print(f"  note: {str(w.message).splitlines()[0]}")
    from .energy import repairs_reported

    with repairs_reported():
        run_plan([Workload(fam, config, epochs, fam.default_lr, args.threads)], paths["target.runs.csv"],
                 repeats=args.repeats, meter=meter, reference=args.reference, seed=args.seed,
                 progress=not args.no_progress, desc=f"measuring {DEMO_TARGET}")
    measured = read_runs(paths["target.runs.csv"], features=())
    measured = measured[(measured["steps"] == epochs) & (measured["batch_size"] == args.batch_size)]
    mean, sd = float(measured["joules"].mean()), float(measured["joules"].std(ddof=1)) if len(measured) > 1 else 0.0
    print(f"  measured:  {mean:.3g} J ± {sd:.2g} (mean ± sd of {len(measured)} runs; "
          f"{format_cv(cv_by_config(measured)).split(': ', 1)[-1]})")
    print(f"  predicted / measured = {pred.joules / mean:.2f} ({100 * (pred.joules - mean) / mean:+.0f} %)")
    if meter.name == "cputime":
        print("  (CPU-time meter: both figures are estimates, CPU seconds × "
              f"{meter.watts_per_core:g} W per core)")
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s; files in {out}/")
    return 0


def _options(p):
    from ..energy.calibrate import DEFAULT_FEATURES

    p.add_argument("--repeats", type=int, default=3, help="runs per suite entry")
    p.add_argument("--reference", action="store_true", help="measure a fixed reference workload before and "
                   "after each run and correct the run for the machine's drift (raw values kept)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--features", default=",".join(DEFAULT_FEATURES),
                   help="the law's counted features, comma-separated")
    p.add_argument("--families", help="only these suite families, comma-separated (a quicker, narrower law)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every suite entry's epochs (longer or "
                   "shorter runs)")


def register(subparsers) -> None:
    """Add ``calibrate`` and ``demo`` to the ``torch-tos`` parser."""
    from .energy import _common

    p = subparsers.add_parser("calibrate", help="measure a built-in suite of micro-workloads and fit this "
                              "machine's energy law", description="Measure the calibration suite (MLPs, "
                              "convs, depthwise convs, transformers, embeddings, LSTM/GRU, the paper's FFN and "
                              "CNN) on this machine, fit the overhead-aware law and save it; resumable.")
    p.add_argument("--out", required=True, help="the law's JSON file (its runs go to <name>.runs.csv)")
    p.add_argument("--runs", help="runs CSV (default: next to --out)")
    _options(p)
    _common(p)
    p.set_defaults(func=_cmd_calibrate)

    p = subparsers.add_parser("demo", help="calibrate, then predict and measure a model outside the suite",
                              description="Calibrate this machine's energy law (a few minutes), print it with "
                              "its held-out errors, then predict the energy of training resnet18 and measure it.")
    p.add_argument("--out", default="torch-tos-demo", help="folder for law.json and the runs CSVs (a rerun "
                   "resumes)")
    p.add_argument("--batch-size", type=int, default=DEMO_BATCH, help="batch size of the predicted model")
    p.add_argument("--steps", type=int, default=DEMO_STEPS, help="training steps of the predicted model")
    p.add_argument("--fresh", action="store_true", help="discard the runs of a previous demo in --out")
    _options(p)
    _common(p)
    p.set_defaults(func=_cmd_demo)
