"""The energy commands of ``torch-tos``: ``sweep`` (and, through :mod:`torch_tos.cli.calibrate`,
``calibrate`` and ``demo``; ``fit`` lives in :mod:`torch_tos.cli.fit`).

``torch-tos sweep ffn|cnn --out runs.csv [--widths 4-18] [--depths 2-10] [--activations
sigmoid,tanh,gelu] [--epochs N] [--repeats R] [--meter auto|rapl|nvml|cputime] [--shard i/n]
[--paper]`` measures training runs into a CSV (resumable);
``--reference`` drift-corrects each run with a fixed reference workload.
``calibrate`` and ``demo`` live in :mod:`torch_tos.cli.calibrate`; the helpers both use (meter
options, repair warnings) in :mod:`torch_tos.cli.measuring`. Registered by :func:`register` from
:mod:`torch_tos.cli.main`.
"""

from __future__ import annotations

import time

from ..energy.meters import InvalidWindow, MeterUnavailable
from .errors import CLIError
from .measuring import common_options, isolate_option, make_meter, meter_lines, parse_int_list, parse_names, repairs_reported


def _run_sweep(family, out, meter, args, **kw):
    from ..energy.sweep import sweep

    try:
        with repairs_reported():
            return sweep(family, out, meter=meter, progress=not args.no_progress, **kw)
    except (MeterUnavailable, InvalidWindow, OSError) as e:
        raise CLIError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None


# -- sweep ------------------------------------------------------------------------------------
def _cmd_sweep(args) -> int:
    from ..energy.families import FAMILIES
    from ..energy.reference import cv_by_config, format_cv
    from ..energy.runfile import check_output

    if args.family not in FAMILIES:
        raise CLIError(f"unknown family {args.family!r}; accepted: {', '.join(FAMILIES)}")
    try:
        check_output(args.out)
    except ValueError as e:
        raise CLIError(str(e)) from None
    paper = FAMILIES[args.family].paper if args.paper else {}
    kw = {
        "widths": parse_int_list(args.widths, "--widths") if args.widths else None,
        "depths": parse_int_list(args.depths, "--depths") if args.depths else None,
        "activations": parse_names(args.activations),
        "epochs": args.epochs if args.epochs is not None else paper.get("epochs"),
        "repeats": args.repeats if args.repeats is not None else paper.get("repeats", 3),
        "image_size": args.image_size if args.image_size is not None else paper.get("image_size"),
        "n_images": args.n_images if args.n_images is not None else paper.get("n_images"),
        "shard": args.shard, "seed": args.seed, "batch_size": args.batch_size, "lr": args.lr,
        "threads": args.threads, "cooldown": args.cooldown, "reference": args.reference,
        "input_size": args.input_size, "isolate": args.isolate,
    }
    meter = make_meter(args)
    print("\n".join(meter_lines(meter)), flush=True)
    t0 = time.perf_counter()
    runs = _run_sweep(args.family, args.out, meter, args, **kw)
    if len(runs):
        print(format_cv(cv_by_config(runs)))
    print(f"{len(runs)} runs of this sweep in {args.out} ({time.perf_counter() - t0:.0f} s); "
          f"next: torch-tos fit {args.out}" + (f" --trim {paper['trim']}" if paper.get("trim") else ""))
    return 0


# -- registration -----------------------------------------------------------------------------
def register(subparsers) -> None:
    """Add ``sweep`` (and calibrate, demo) to the ``torch-tos`` parser."""
    p = subparsers.add_parser("sweep", help="measure training energy over a model family into a CSV",
                              description="Measure the training energy of every configuration of a family "
                              "(paper Table IV); each finished run is appended to --out at once, and a "
                              "rerun skips what is done.")
    p.add_argument("family", help="ffn (Banknote feed-forward), cnn (synthetic images) or a micro family: "
                   "mlp, mlpdrop, conv, dwconv, transformer, embed, lstm, gru")
    p.add_argument("--out", required=True, help="results CSV (created or resumed)")
    p.add_argument("--widths", help="ffn hidden widths, e.g. 4-18, 4-18:2 or 4,8,12 (default 4-18)")
    p.add_argument("--depths", help="ffn hidden layers (default 3) or cnn conv layers (default 2-10)")
    p.add_argument("--activations", help="comma-separated: sigmoid, tanh, gelu, relu, silu "
                   "(default ffn: sigmoid,tanh,gelu; cnn: gelu)")
    p.add_argument("--epochs", type=int, help="epochs per run (default ffn 10, cnn 1; paper 2000 / 25)")
    p.add_argument("--repeats", type=int, help="runs per configuration (default 3; paper 50)")
    p.add_argument("--shard", help="i/n: run every n-th configuration starting at the i-th (1-based)")
    p.add_argument("--batch-size", type=int, help="batch size (default: the family's; ffn/cnn 64, paper)")
    p.add_argument("--lr", type=float, help="SGD learning rate (default ffn 0.01, cnn 1e-4)")
    p.add_argument("--image-size", type=int, help="cnn image side (default 32; paper 256)")
    p.add_argument("--n-images", type=int, help="cnn images per epoch (default 128; paper 300)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1, paper)")
    isolate_option(p)
    p.add_argument("--cooldown", type=float, default=0.0, help="seconds to sleep before each run")
    p.add_argument("--reference", action="store_true", help="measure a fixed reference workload right before "
                   "and after each run and correct the run for the machine's drift (raw value kept)")
    p.add_argument("--input-size", type=int, help="micro families: features, image side, sequence length or "
                   "vocabulary (see torch_tos.energy.families.micro)")
    p.add_argument("--paper", action="store_true",
                   help="the paper's settings where not given: ffn 2000 epochs, cnn 25 epochs on 300 "
                   "256×256 images, 50 repeats (then fit with --trim 5)")
    common_options(p)
    p.set_defaults(func=_cmd_sweep)


    from . import calibrate

    calibrate.register(subparsers)
