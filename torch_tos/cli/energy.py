"""The energy commands of ``torch-tos``: ``sweep`` and ``demo`` (``fit`` lives in :mod:`.fit`).

``torch-tos sweep ffn|cnn --out runs.csv [--widths 4-18] [--depths 2-10] [--activations
sigmoid,tanh,gelu] [--epochs N] [--repeats R] [--meter auto|rapl|nvml|cputime] [--shard i/n]
[--paper]`` measures training runs into a CSV (resumable);
``torch-tos demo`` runs a small FFN sweep on the bundled Banknote data, the
fit, Table V and the figure. Registered by :func:`register` from :mod:`torch_tos.cli.main`.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from ..energy.meters import METERS, InvalidWindow, Meter, MeterUnavailable
from .errors import CLIError
from .fit import fit_report as _fit_report
from .fit import plot as _plot

DEMO_WIDTHS = "16,32,64,128,192,256,384,512"
DEMO_EPOCHS = 3
DEMO_REPEATS = 6


def _ints(text, what):
    from ..energy.sweep import parse_ints

    try:
        return parse_ints(text, what)
    except ValueError as e:
        raise CLIError(str(e)) from None


def _names(text: str | None):
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def _meter(args) -> Meter:
    from ..energy.meters import get_meter

    if args.meter not in METERS:
        raise CLIError(f"unknown --meter {args.meter!r}; accepted: {', '.join(METERS)}")
    logging.getLogger("torch_tos.energy").addHandler(logging.NullHandler())  # we print it ourselves
    try:
        return get_meter(args.meter, watts_per_core=args.watts_per_core)
    except MeterUnavailable as e:
        raise CLIError(f"--meter {args.meter}: {e}") from None


def _meter_lines(meter: Meter) -> list[str]:
    lines = [f"meter: {meter.describe()}", f"  why: {meter.why}"]
    if meter.name == "cputime":
        lines.append("  note: CPU-time numbers are an estimate (CPU seconds × a fixed power per core): "
                     "they track time, not energy.")
    return lines


def _run_sweep(family, out, meter, args, **kw):
    from ..energy.sweep import sweep

    try:
        return sweep(family, out, meter=meter, progress=not args.no_progress, **kw)
    except (MeterUnavailable, InvalidWindow) as e:
        raise CLIError(str(e)) from None


# -- sweep ------------------------------------------------------------------------------------
def _cmd_sweep(args) -> int:
    from ..energy.families import FAMILIES

    if args.family not in FAMILIES:
        raise CLIError(f"unknown family {args.family!r}; accepted: {', '.join(FAMILIES)}")
    paper = FAMILIES[args.family].paper if args.paper else {}
    kw = {
        "widths": _ints(args.widths, "--widths") if args.widths else None,
        "depths": _ints(args.depths, "--depths") if args.depths else None,
        "activations": _names(args.activations),
        "epochs": args.epochs if args.epochs is not None else paper.get("epochs"),
        "repeats": args.repeats if args.repeats is not None else paper.get("repeats", 3),
        "image_size": args.image_size if args.image_size is not None else paper.get("image_size"),
        "n_images": args.n_images if args.n_images is not None else paper.get("n_images"),
        "shard": args.shard, "seed": args.seed, "batch_size": args.batch_size, "lr": args.lr,
        "threads": args.threads, "cooldown": args.cooldown,
    }
    meter = _meter(args)
    print("\n".join(_meter_lines(meter)), flush=True)
    t0 = time.perf_counter()
    runs = _run_sweep(args.family, args.out, meter, args, **kw)
    print(f"{len(runs)} runs of this sweep in {args.out} ({time.perf_counter() - t0:.0f} s); "
          f"next: torch-tos fit {args.out}" + (f" --trim {paper['trim']}" if paper.get("trim") else ""))
    return 0


# -- demo -------------------------------------------------------------------------------------
def _cmd_demo(args) -> int:
    from ..energy.runs import read_runs

    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "runs.csv"
    if args.fresh and csv_path.exists():
        csv_path.unlink()
    meter = _meter(args)
    widths = _ints(args.widths, "--widths")
    print("torch-tos demo: the energy scaling law of the paper's feed-forward family on the bundled "
          "Banknote data")
    print(f"sweep: ffn, widths {args.widths}, 3 hidden layers, sigmoid/tanh/gelu, batch 64, MSE, SGD, "
          f"{args.epochs} epochs per run, {args.repeats} runs per configuration, 1 thread")
    print("\n".join(_meter_lines(meter)), flush=True)
    _run_sweep("ffn", csv_path, meter, args, widths=widths, epochs=args.epochs, repeats=args.repeats,
               seed=args.seed, threads=1)
    t_sweep = time.perf_counter() - t0
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    runs = read_runs(csv_path)
    runs = runs[runs["width"].isin(widths) & (runs["epochs"] == args.epochs)
                & (runs["repeat"] < args.repeats)].reset_index(drop=True)
    print(f"\n{len(runs)} runs in {csv_path} (sweep {t_sweep:.0f} s; {os.cpu_count()} CPUs, load average "
          f"{load:.1f} at the end: other processes share this machine)\n")
    lines = _fit_report(runs, ("tos", "flops"), (1, 2, 3), "random", 0.6, args.seed, None, 0)
    from ..energy.compare import compare, describe_split, format_table_v

    held = compare(runs, degrees=(1, 2, 3), split="config", seed=args.seed)
    lines += ["", f"Table V — {describe_split(held)}:", format_table_v(held)]
    text = "\n".join(lines)
    print(text)
    (out / "table_v.txt").write_text(text + "\n")
    _plot(runs, ("tos", "flops"), (1, 2, 3), "random", 0.6, args.seed, 0, str(out / "fig.png"))
    print(f"demo finished in {time.perf_counter() - t0:.0f} s; files in {out}/")
    return 0


# -- registration -----------------------------------------------------------------------------
def _common(p, meter_default="auto"):
    p.add_argument("--meter", default=meter_default, help="auto | rapl | nvml | cputime (default: auto)")
    p.add_argument("--watts-per-core", type=float, default=10.0,
                   help="power per busy core for the cputime estimate (default 10 W)")
    p.add_argument("--seed", type=int, default=0, help="seed of model initialisation and splits")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def register(subparsers) -> None:
    """Add ``sweep`` and ``demo`` to the ``torch-tos`` parser."""
    p = subparsers.add_parser("sweep", help="measure training energy over a model family into a CSV",
                              description="Measure the training energy of every configuration of a family "
                              "(paper Table IV); each finished run is appended to --out at once, and a "
                              "rerun skips what is done.")
    p.add_argument("family", help="ffn (Banknote feed-forward) or cnn (synthetic images)")
    p.add_argument("--out", required=True, help="results CSV (created or resumed)")
    p.add_argument("--widths", help="ffn hidden widths, e.g. 4-18, 4-18:2 or 4,8,12 (default 4-18)")
    p.add_argument("--depths", help="ffn hidden layers (default 3) or cnn conv layers (default 2-10)")
    p.add_argument("--activations", help="comma-separated: sigmoid, tanh, gelu, relu, silu "
                   "(default ffn: sigmoid,tanh,gelu; cnn: gelu)")
    p.add_argument("--epochs", type=int, help="epochs per run (default ffn 10, cnn 1; paper 2000 / 25)")
    p.add_argument("--repeats", type=int, help="runs per configuration (default 3; paper 50)")
    p.add_argument("--shard", help="i/n: run every n-th configuration starting at the i-th (1-based)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default 64, paper)")
    p.add_argument("--lr", type=float, help="SGD learning rate (default ffn 0.01, cnn 1e-4)")
    p.add_argument("--image-size", type=int, help="cnn image side (default 32; paper 256)")
    p.add_argument("--n-images", type=int, help="cnn images per epoch (default 128; paper 300)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1, paper)")
    p.add_argument("--cooldown", type=float, default=0.0, help="seconds to sleep before each run")
    p.add_argument("--paper", action="store_true",
                   help="the paper's settings where not given: ffn 2000 epochs, cnn 25 epochs on 300 "
                   "256×256 images, 50 repeats (then fit with --trim 5)")
    _common(p)
    p.set_defaults(func=_cmd_sweep)

    p = subparsers.add_parser("demo", help="small FFN sweep on Banknote, the fit, Table V and the figure",
                              description="A small feed-forward sweep on the bundled Banknote data (a few "
                              "minutes on a laptop CPU), then the TOs- and FLOPs-based laws, the paper's "
                              "Table V (random and held-out-configuration splits) and the figure.")
    p.add_argument("--out", default="torch-tos-demo", help="folder for runs.csv, table_v.txt, fig.png "
                   "(default ./torch-tos-demo; a rerun resumes)")
    p.add_argument("--widths", default=DEMO_WIDTHS, help=f"hidden widths (default {DEMO_WIDTHS})")
    p.add_argument("--epochs", type=int, default=DEMO_EPOCHS, help=f"epochs per run (default {DEMO_EPOCHS})")
    p.add_argument("--repeats", type=int, default=DEMO_REPEATS,
                   help=f"runs per configuration (default {DEMO_REPEATS})")
    p.add_argument("--fresh", action="store_true", help="discard the runs of a previous demo in --out")
    _common(p)
    p.set_defaults(func=_cmd_demo)
