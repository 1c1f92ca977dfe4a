"""The held-out zoo: 25 real models nobody tuned to, measured, and predicted by an energy law.

The zoo (``benchmarks/heldout_zoo/models.py``; issue 16, item 6) was fixed before any law was
fitted and is never used to choose anything: torchvision CNNs, ConvNeXt and VGG, timm ViT,
MLP-Mixer and GhostNet, Hugging Face BERT, T5, GPT-2 and Llama (from config objects), an LSTM
language model, an MLP and nn.TransformerEncoder; 16 training and 9 inference runs; float32,
float64 and bfloat16. Measurement and prediction are separate steps, so one set of measurements
serves several laws:

    # 1. a law (and its calibration runs, law.runs.csv next to it)
    python -m torch_tos calibrate --out DATA/law.json
    # 2. the zoo's real runs: 1 thread, one warm-up step, CPU-time meter, 3 repeats (resumable)
    python benchmarks/bench_heldout_zoo.py measure --out DATA/measurements.csv
    # 3. each model's prediction vs its measurement, beside the TOs and FLOPs laws of the same runs
    python benchmarks/bench_heldout_zoo.py report --law DATA/law.json --measurements DATA/measurements.csv --md DATA/zoo.md
    # two calibrations: every model's prediction under both, and their difference
    python benchmarks/bench_heldout_zoo.py report --compare DATA/law-a.json DATA/law-b.json --measurements DATA/measurements.csv
    # the one timing the run lengths were chosen from (CPU seconds of one step)
    python benchmarks/bench_heldout_zoo.py time-steps

Keep the data outside the repository. Calibrate and measure within the same hour on a machine
as idle as it gets, and record its load (the report prints the load of every run).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heldout_zoo.measure import measure, measured_state, read_measurements, steps_for, time_one_step  # noqa: E402
from heldout_zoo.models import ZOO, select  # noqa: E402

LAW = "law"


def _ids(text):
    return None if text is None else [s.strip() for s in text.split(",") if s.strip()]


def cmd_measure(args) -> int:
    entries = select(_ids(args.models))
    df = measure(args.out, entries, repeats=args.repeats, meter=args.meter, threads=args.threads,
                 progress=not args.no_progress, isolate=not args.no_isolate)
    print(f"{len(df)} runs in {args.out} ({df['id'].nunique()} models; load average now "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs)")
    return 0


def cmd_time_steps(args) -> int:
    print("| id | model | CPU s of one step | steps for ≈ 2 s (10–60) | steps in the zoo |")
    print("|---|---|---|---|---|")
    for e in select(_ids(args.models)):
        t = time_one_step(e)
        print(f"| {e.id} | {e.name} | {t:.4f} | {steps_for(t)} | {e.steps} |", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    return 0


def _measurement_lines(meas) -> list[str]:
    return [f"measurements: {len(meas)} runs of {meas['id'].nunique()} models, meter "
            f"{', '.join(sorted(set(meas['meter'])))}, threads {', '.join(map(str, sorted(set(meas['threads']))))}, "
            f"host {', '.join(sorted(set(meas['host'])))}, torch {', '.join(sorted(set(meas['torch'])))}, "
            f"{meas['date'].min()} – {meas['date'].max()}, load average during the runs "
            f"{meas['load'].min():.2f}–{meas['load'].max():.2f} (median {meas['load'].median():.2f}) on "
            f"{os.cpu_count()} CPUs"]


def _states(args, laws: dict) -> tuple[dict, list[str]]:
    """With ``--at-measured-state``: each law's machine-state factor — the median reference reading
    of the measurements over the law's calibration nominal — and a line saying so."""
    if not args.at_measured_state:
        return {}, []
    reading, steps = measured_state(args.measurements)
    states = {}
    for name, law in laws.items():
        meta = getattr(law, "meta", {})
        if not meta.get("reference_joules") or meta.get("reference_steps") != steps:
            raise SystemExit(f"--at-measured-state: law {name} was not calibrated with the drift reference the "
                             f"measurements read ({steps} steps)")
        states[name] = reading / float(meta["reference_joules"])
    return states, [f"joules rescaled to the machine's state during the measurements (reference median "
                    f"{reading:.4g} J): " + ", ".join(f"{k} ×{v:.3f}" for k, v in states.items())]


def cmd_report(args) -> int:
    from heldout_zoo import predict as P
    from heldout_zoo import report as R

    warnings.filterwarnings("ignore", category=UserWarning, module="torch_tos.*")
    meas = read_measurements(args.measurements)
    table = R.measured(meas)
    entries = select(list(table["id"]))
    if args.compare:
        laws = {name: P.load_law(path) for name, path in zip(("A", "B"), args.compare)}
        states, state_lines = _states(args, laws)
        preds = P.predict_zoo(entries, laws, progress=not args.no_progress, states=states)
        table = table.merge(preds, on="id")
        md, _ = R.compare_table(table, "A", "B")
        head = ["## Held-out zoo: two laws compared", "", f"A: {args.compare[0]}: {laws['A']}",
                f"B: {args.compare[1]}: {laws['B']}", *_measurement_lines(meas), *state_lines, ""]
        text = "\n".join(head) + "\n" + md
    else:
        law = P.load_law(args.law)
        runs_path = Path(args.runs) if args.runs else P.runs_file(args.law)
        runs = P.read_calibration_runs(runs_path)
        baselines = [P.Baseline("tos", runs), P.Baseline("flops", runs)]
        states, state_lines = _states(args, {LAW: law})
        preds = P.predict_zoo(entries, {LAW: law}, baselines, progress=not args.no_progress, states=states)
        table = R.errors(table.merge(preds, on="id"), [LAW, *(b.name for b in baselines)])
        fp = getattr(law, "fingerprint_", None) or {}
        head = ["## Held-out zoo", "", f"law: {args.law} (calibrated {fp.get('date', '?')}): {law}",
                f"baselines, fitted on the law's {len(runs)} calibration runs ({runs_path}): "
                + "; ".join(str(b) for b in baselines), *_measurement_lines(meas), *state_lines,
                f"report made with load average {os.getloadavg()[0]:.2f}"]
        text = R.render(table, LAW, [b.name for b in baselines], head)
        if args.csv:
            from torch_tos.fileio import atomic_write_text

            atomic_write_text(args.csv, table.to_csv(index=False))
    print(text)
    if args.md:
        from torch_tos.fileio import atomic_write_text

        atomic_write_text(args.md, text)
        print(f"written to {args.md}")
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    sub = ap.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="measure the zoo's real runs into a CSV (resumable)", allow_abbrev=False)
    m.add_argument("--out", required=True, help="measurements CSV (a rerun measures only what is missing)")
    m.add_argument("--repeats", type=int, default=3, help="runs per model (default: 3)")
    m.add_argument("--models", help=f"only these ids, comma-separated ({ZOO[0].id}…{ZOO[-1].id})")
    m.add_argument("--meter", default="cputime", help="energy meter (default: cputime)")
    m.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    m.add_argument("--no-progress", action="store_true")
    m.add_argument("--no-isolate", action="store_true", help="measure every run in this process (default: each "
                   "in a process of its own, forked before any measuring)")
    m.set_defaults(func=cmd_measure)
    r = sub.add_parser("report", help="predictions vs measurements (or two laws compared)", allow_abbrev=False)
    which = r.add_mutually_exclusive_group(required=True)
    which.add_argument("--law", help="law JSON file (torch-tos calibrate --out)")
    which.add_argument("--compare", nargs=2, metavar=("LAW_A", "LAW_B"), help="two law files to compare")
    r.add_argument("--measurements", required=True, help="measurements CSV (from measure)")
    r.add_argument("--at-measured-state", action="store_true", help="rescale each law's joules to the machine's "
                   "state during the measurements (their reference readings over the law's calibration nominal)")
    r.add_argument("--runs", help="the law's calibration runs CSV (default: <law>.runs.csv next to --law)")
    r.add_argument("--md", help="also write the markdown report here")
    r.add_argument("--csv", help="also write the per-model table (every column) here (--law only)")
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(func=cmd_report)
    t = sub.add_parser("time-steps", help="CPU seconds of one step of each model (how steps were chosen)",
                       allow_abbrev=False)
    t.add_argument("--models", help="only these ids, comma-separated")
    t.set_defaults(func=cmd_time_steps)
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
