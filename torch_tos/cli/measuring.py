"""What the measuring commands (``sweep``, ``calibrate``, ``demo``) share: number and name lists,
the meter options, the meter's description, results-file repairs reported as warnings."""

from __future__ import annotations

import logging

from ..energy.meters import METERS, Meter, MeterUnavailable
from .errors import CLIError, warnings_as_lines


def parse_int_list(text, what):
    from ..energy.sweep import parse_ints

    try:
        return parse_ints(text, what)
    except ValueError as e:
        raise CLIError(str(e)) from None


def parse_names(text: str | None):
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def make_meter(args) -> Meter:
    from ..energy.meters import get_meter

    if args.meter not in METERS:
        raise CLIError(f"unknown --meter {args.meter!r}; accepted: {', '.join(METERS)}")
    logging.getLogger("torch_tos.energy").addHandler(logging.NullHandler())  # we print it ourselves
    try:
        return get_meter(args.meter, watts_per_core=args.watts_per_core)
    except MeterUnavailable as e:
        raise CLIError(f"--meter {args.meter}: {e}") from None


def meter_lines(meter: Meter) -> list[str]:
    lines = [f"meter: {meter.describe()}", f"  why: {meter.why}"]
    if meter.name == "cputime":
        lines.append("  note: CPU-time numbers are an estimate (CPU seconds × a fixed power per core): "
                     "they track time, not energy.")
    return lines


def repairs_reported():
    """Print each repair of a results file as one ``torch-tos: warning:`` line on stderr, at once
    (:func:`~.errors.warnings_as_lines` for :class:`~torch_tos.energy.runfile.ResultFileRepaired`)."""
    from ..energy.runfile import ResultFileRepaired

    return warnings_as_lines(ResultFileRepaired)


def isolate_option(p) -> None:
    """``--isolate/--no-isolate``: each run measured in a process of its own (default: on a CPU)."""
    import argparse

    p.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                   help="measure each run in a process of its own, forked before any measuring, so that the C "
                   "allocator is in the state of a training process that holds one model (on by default on a CPU "
                   "with os.fork)")


def common_options(p, meter_default="auto"):
    """``--meter``, ``--watts-per-core``, ``--seed``, ``--no-progress``."""
    p.add_argument("--meter", default=meter_default, help=f"{' | '.join(METERS)} (default: auto)")
    p.add_argument("--watts-per-core", type=float, default=10.0,
                   help="power per busy core for the cputime estimate (default 10 W)")
    p.add_argument("--seed", type=int, default=0, help="seed of model initialisation and splits")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


__all__ = ["common_options", "repairs_reported", "make_meter", "meter_lines", "parse_int_list", "parse_names"]
