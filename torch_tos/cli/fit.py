"""``torch-tos fit runs.csv [more.csv ...]``: fit energy laws on measured runs and evaluate them
honestly.

Prints the paper's Table V (TOs- vs FLOPs-based polynomial laws, ``--split`` random or config,
``--seed``), then the held-out evaluation of :func:`torch_tos.energy.evaluate.evaluate` of the
paper's laws next to the mean-only baseline and the noise floor, on the ``--evaluate`` splits
(default ``loco,lofo,random``), every figure mean ± sd over ``--seeds`` split seeds (default 10) or
over the held-out folds. ``--profile law.json`` refits the step-level laws of a calibrated cost
model on these runs (priced by its machine profile; runs of one configuration from two machines
are refused); ``--save`` writes that cost model, or without ``--profile`` the paper's law. Output
paths are checked before any work.

Runs measured on several machines (the runs' ``machine`` column: CPU model or GPU name) are
refused with a line naming the machines and their files: a law is one machine's costs, and one
configuration measured on two machines is not one configuration (its noise floor and held-out
scores would mix them). ``--machine NAME`` fits the runs of that machine only; hosts of one machine
name (the shards of ``torch-tos calibrate --shard``) are one machine.
"""

from __future__ import annotations

from .errors import CLIError, check_input_file, warnings_as_lines


def _names(text):
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _ints(text, what):
    from ..energy.sweep import parse_ints

    try:
        return parse_ints(text, what)
    except ValueError as e:
        raise CLIError(str(e)) from None


def fit_report(runs, features, degrees, split, train_frac, seed, by, trim) -> list[str]:
    """Table V (paper layout) and the laws fitted on all runs, as lines."""
    from ..energy.compare import compare, describe_split, format_table_v
    from ..energy.fit import EnergyModel
    from ..energy.runs import trim_runs

    table = compare(runs, features=features, degrees=degrees, split=split, train_frac=train_frac,
                    seed=seed, by=by, trim=trim)
    lines = [f"Table V — {describe_split(table)}:", format_table_v(table), ""]
    lines.append("laws fitted on all runs" + (f" (trimmed {trim} + {trim})" if trim else "") + ":")
    all_runs = trim_runs(runs, trim)
    groups = [(None, all_runs)] if by is None else list(all_runs.groupby(by, sort=True))
    for key, group in groups:
        for feature in features:
            for degree in degrees:
                law = EnergyModel(feature, degree).fit(group).law()
                lines.append(f"  {'' if key is None else f'{by}={key}: '}degree {degree}: {law}")
    return lines


def evaluation_report(runs, splits, seeds, train_frac, trim) -> tuple[list[str], object]:
    """The held-out evaluation of the paper's TOs and FLOPs laws (lines) and its table."""
    from ..energy.evaluate import default_laws, evaluate, format_evaluation
    from ..energy.runs import config_keys

    laws = default_laws(runs.columns)
    notes = []
    if "lofo" in splits and ("family" not in runs or runs["family"].nunique() < 2):
        splits = [s for s in splits if s != "lofo"]
        notes.append("(leave-one-family-out skipped: the runs hold one family)")
    if "loco" in splits and len(set(config_keys(runs))) < 2:
        splits = [s for s in splits if s != "loco"]
        notes.append("(leave-one-configuration-out skipped: the runs hold one configuration)")
    if not splits:
        return notes, None
    ev = evaluate(runs, laws, splits=splits, seeds=range(seeds), train_frac=train_frac, trim=trim)
    lines = notes + ["held-out evaluation (mean relative error and Table V figures, mean ± sd; mean-only = always the "
             "training mean, noise floor = each run predicted by the other runs of its configuration):",
             format_evaluation(ev)]
    return lines, ev


def cost_model_report(runs, profile_path, save) -> list[str]:
    """Refit a cost model's step-level laws on ``runs`` with the machine profile of the cost model
    at ``profile_path`` (each configuration recounted from its family), its held-out errors, and
    the model saved to ``save`` when given."""
    from ..energy.calibrate import fit_cost_model, heldout_errors, run_counts_of
    from ..energy.evaluate import format_evaluation
    from ..energy.law import load_law
    from ..energy.pricing import price_runs

    base = load_law(profile_path)
    if not hasattr(base, "profile"):
        raise CLIError(f"--profile {profile_path}: holds the paper's law, not a cost model; give a law.json of "
                       "torch-tos calibrate")
    priced = price_runs(runs, run_counts_of(runs), base.profile)
    law = fit_cost_model(base.profile, priced, meta={**base.meta, "runs": "torch-tos fit"},
                         profile_fingerprint=base.fingerprints.get("profile"),
                         profile_fingerprints=base.fingerprints.get("profiles"))
    lines = [f"cost model refitted on these runs with the machine profile of {profile_path}:", str(law)]
    ev = heldout_errors(priced)
    for mode in dict.fromkeys(ev["mode"]) if len(ev) else ():
        lines += [f"held-out {mode} runs:", format_evaluation(ev[ev["mode"] == mode].drop(columns="mode"))]
    if save:
        law.save(save)
        lines.append(f"cost model saved to {save} (next: torch-tos predict MODULE:CALLABLE --input-shape ... --law "
                     f"{save})")
    return lines


def meters_of(runs) -> list[str]:
    return sorted(set(runs["meter"].dropna().astype(str))) if "meter" in runs else []


def plot(runs, features, degrees, split, train_frac, seed, trim, path) -> None:
    try:
        from ..energy.plot import plot_fits

        plot_fits(runs, features, degrees, split=split, train_frac=train_frac, seed=seed, trim=trim, path=path)
    except ImportError as e:
        raise CLIError(str(e)) from None
    print(f"figure: {path}")


def _cmd_fit(args) -> int:
    from ..energy.compare import SPLITS
    from ..energy.evaluate import EVAL_SPLITS
    from ..energy.features import check_features
    from ..energy.fit import EnergyModel
    from ..energy.runcells import RunsOutlierWarning
    from ..energy.runs import check_one_machine, read_runs, trim_runs

    features = _names(args.features)
    try:
        check_features(features)
    except ValueError as e:
        raise CLIError(f"--features: {e}") from None
    degrees = _ints(args.degrees, "--degrees")
    if args.split not in SPLITS:
        raise CLIError(f"unknown --split {args.split!r}; accepted: {', '.join(SPLITS)}")
    splits = _names(args.evaluate)
    bad = [s for s in splits if s not in EVAL_SPLITS and s != "none"]
    if bad:
        raise CLIError(f"unknown --evaluate split {bad[0]!r}; accepted: {', '.join(EVAL_SPLITS)} or none")
    if args.seeds < 1:
        raise CLIError(f"--seeds must be a positive number of split seeds (10 or more recommended), got {args.seeds}")
    save, figure = _outputs(args)
    if args.profile:
        check_input_file(args.profile, "--profile", "make one with torch-tos calibrate --out law.json")
    with warnings_as_lines(RunsOutlierWarning):
        runs = read_runs(args.runs, features=tuple(features))
    try:
        runs = check_one_machine(runs, args.machine, how="--machine ")
    except ValueError as e:
        raise CLIError(str(e)) from None
    meters = meters_of(runs)
    if len(meters) > 1:
        raise CLIError(f"the runs files mix meters ({', '.join(meters)}); fit the runs of one meter at a time")
    from ..energy.runs import machines_of

    machine = ", ".join(machines_of(runs)) or "unknown"
    print(f"{len(runs)} runs from {len(args.runs)} file(s); machine: {machine}; meter: {', '.join(meters) or 'unknown'}")
    if "cputime" in meters:
        print("note: CPU-time estimates track time, not energy.")
    print("\n".join(fit_report(runs, features, degrees, args.split, args.train_frac, args.seed, args.by,
                               args.trim)))
    if splits and splits != ["none"]:
        lines, _ev = evaluation_report(runs, [s for s in splits if s != "none"], args.seeds, args.train_frac, args.trim)
        print("\n" + "\n".join(lines))
    if args.profile:
        print("\n" + "\n".join(cost_model_report(trim_runs(runs, args.trim), args.profile, save)))
    elif save:
        law = EnergyModel(features[0], degrees[0]).fit(trim_runs(runs, args.trim))
        law.save(save)
        print(f"\npaper's law saved to {save}: {law} (a cost model that predicts unmeasured models needs "
              "--profile law.json of torch-tos calibrate)")
    if figure:
        plot(runs, features, degrees, args.split, args.train_frac, args.seed, args.trim, figure)
    return 0


def _outputs(args):
    """``--save`` and ``--plot`` checked before any runs are read or fitted."""
    from .outputs import check_output, check_plot

    save = check_output(args.save, "--save", "law.json") if args.save else None
    figure = check_plot(args.plot) if args.plot else None
    if save is not None and figure is not None and save.resolve() == figure.resolve():
        raise CLIError(f"--save and --plot are the same file {args.save!r}; give two files")
    return save, figure


def register(sub) -> None:
    p = sub.add_parser("fit", help="fit energy laws on runs CSVs: Table V, held-out evaluation, a saved law",
                       description="Fit the paper's polynomial laws (Table V) on runs CSVs, evaluate them on held-out "
                       "runs, configurations and families against a mean-only baseline and the noise floor; with "
                       "--profile, refit a cost model's step-level laws on the runs; optionally save the law.")
    p.add_argument("runs", nargs="+", help="runs CSV file(s) from torch-tos sweep or calibrate")
    p.add_argument("--features", default="tos,flops", help="counted features of the paper's laws")
    p.add_argument("--degrees", default="1,2,3", help="polynomial degrees of the paper's laws")
    p.add_argument("--split", default="random", help="Table V split: random (paper: 60/40 within each "
                   "configuration) or config (hold out whole configurations)")
    p.add_argument("--train-frac", type=float, default=0.6, help="training fraction")
    p.add_argument("--seed", type=int, default=0, help="seed of the Table V split")
    p.add_argument("--by", help="Table V per value of this column, e.g. activation (paper Table V)")
    p.add_argument("--trim", type=int, default=0, help="drop the K highest and K lowest runs of each "
                   "configuration first (paper: 5 of 50)")
    p.add_argument("--profile", help="a cost model (law.json of torch-tos calibrate) whose machine profile prices "
                   "these runs: refit its step-level laws on them (each configuration recounted from its family)")
    p.add_argument("--machine", help="fit only the runs measured on this machine (the runs' machine column: CPU "
                   "model or GPU name); runs of several machines are refused without it")
    p.add_argument("--evaluate", default="loco,lofo,random", help="held-out splits: random, config, loco "
                   "(leave one configuration out), lofo (leave one family out), or none")
    p.add_argument("--seeds", type=int, default=10, help="split seeds of the random/config evaluation")
    p.add_argument("--save", help="write the refitted cost model (with --profile) or else the paper's law of the "
                   "first --features and --degrees to this JSON file")
    p.add_argument("--plot", help="save the figure (energy vs TOs and FLOPs, residuals) to this file")
    p.set_defaults(func=_cmd_fit)
