"""``torch-tos fit runs.csv [more.csv ...]``: fit energy laws on measured runs and evaluate them
honestly.

Prints the paper's Table V (TOs- vs FLOPs-based polynomial laws, ``--split`` random or config,
``--seed``), then the held-out evaluation of :func:`torch_tos.energy.evaluate.evaluate`: the
paper's laws, the per-step TOs-only and FLOPs-only laws and the overhead-aware law ``--law``
(default ``tos,calls,bytes``) next to the mean-only baseline and the noise floor, on the
``--evaluate`` splits (default ``loco,lofo,random``), every figure mean ± sd over ``--seeds`` split
seeds (default 10) or over the held-out folds. ``--save law.json`` writes the overhead-aware law
fitted on every run, with this machine's fingerprint, for ``torch-tos predict``.
"""

from __future__ import annotations

from .errors import CLIError


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


def evaluation_report(runs, law_features, splits, seeds, train_frac, trim) -> tuple[list[str], object]:
    """The honest evaluation (lines) and the evaluation table."""
    from ..energy.evaluate import default_laws, evaluate, format_evaluation
    from ..energy.fit import EnergyModel
    from ..energy.runs import config_keys

    laws = default_laws(runs.columns)
    laws.pop("TOs+calls+bytes", None)
    name = "+".join(law_features)
    laws[name] = EnergyModel(features=tuple(law_features))
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
    from ..energy.runs import read_runs
    from .errors import warnings_as_lines

    features = _names(args.features)
    if args.law.lower().endswith(".json") or "/" in args.law:
        raise CLIError(f"fit --law takes the features of the overhead-aware law (e.g. tos,calls,bytes), not a "
                       f"file; to write the fitted law to {args.law!r} use --save {args.law}")
    try:
        check_features(features)
        law_features = check_features(_names(args.law))
    except ValueError as e:
        raise CLIError(f"--{'features' if not features or not all(map(_ok, features)) else 'law'}: {e}") from None
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
    with warnings_as_lines(RunsOutlierWarning):
        runs = read_runs(args.runs, features=tuple(features))  # per-class law features may be 0
    meters = meters_of(runs)
    if len(meters) > 1:
        raise CLIError(f"the runs files mix meters ({', '.join(meters)}); fit the runs of one meter at a time")
    print(f"{len(runs)} runs from {len(args.runs)} file(s); meter: {', '.join(meters) or 'unknown'}")
    if "cputime" in meters:
        print("note: CPU-time estimates track time, not energy.")
    print("\n".join(fit_report(runs, features, degrees, args.split, args.train_frac, args.seed, args.by,
                               args.trim)))
    if splits and splits != ["none"]:
        lines, _ev = evaluation_report(runs, law_features, [s for s in splits if s != "none"], args.seeds,
                                       args.train_frac, args.trim)
        print("\n" + "\n".join(lines))
    from ..energy.runs import trim_runs

    law = EnergyModel(features=law_features).fit(trim_runs(runs, args.trim))
    lo, hi = law.interval()
    print(f"\noverhead-aware law fitted on all runs: {law}\n  90 % prediction interval: ×{lo:.2f} – ×{hi:.2f} "
          f"({law.interval_source_} residuals)")
    if save:
        law.save(save)
        print(f"law saved to {save} (next: torch-tos predict MODULE:CALLABLE --input-shape ... --law "
              f"{save})")
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


def _ok(name) -> bool:
    from ..energy.features import is_counted_feature

    return is_counted_feature(name)


def register(sub) -> None:
    p = sub.add_parser("fit", help="fit energy laws on runs CSVs: Table V, held-out evaluation, a saved law",
                       description="Fit the paper's polynomial laws (Table V) and the overhead-aware per-step "
                       "law on runs CSVs, evaluate them on held-out runs, configurations and families "
                       "against a mean-only baseline and the noise floor, and optionally save the law.")
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
    p.add_argument("--law", default="tos,calls,bytes", help="features of the overhead-aware per-step law, "
                   "e.g. tos,calls,bytes or tos_matmul,tos_conv,calls,bytes")
    p.add_argument("--evaluate", default="loco,lofo,random", help="held-out splits: random, config, loco "
                   "(leave one configuration out), lofo (leave one family out), or none")
    p.add_argument("--seeds", type=int, default=10, help="split seeds of the random/config evaluation")
    p.add_argument("--save", help="write the overhead-aware law (with machine fingerprint) to this JSON file")
    p.add_argument("--plot", help="save the figure (energy vs TOs and FLOPs, residuals) to this file")
    p.set_defaults(func=_cmd_fit)
