"""Honest evaluation of energy laws: held-out splits, baselines and the noise floor.

:func:`evaluate` fits each law (a scikit-learn estimator on a runs table: the paper's
:class:`~.fit.EnergyModel`, the step-level law :class:`~.steplaw.StepLaw` on a priced runs table)
on training runs and scores it on held-out runs, for the splits

- ``"random"`` (the paper's): ``train_frac`` of each configuration's runs train, the rest
  validate — how well a law fits configurations it has seen;
- ``"config"``: ``train_frac`` of the configurations train, the others are held out whole;
- ``"loco"``: leave-one-configuration-out — every configuration is predicted by a law fitted on
  all the others (the honest test of predicting an unmeasured model);
- ``"lofo"``: leave-one-family-out — every family is predicted by a law fitted on the others;

next to two references that need no law:

- ``mean-only``: always predicts the mean energy of the training runs (a law must beat it);
- ``noise floor``: predicts each run by the mean of the OTHER runs of its own configuration — the
  run-to-run noise no law of counted features can remove.

Configurations are keyed by every setting of :data:`~torch_tos.energy.runs.CONFIG_COLUMNS`
(:func:`~torch_tos.energy.runs.config_keys`). Held-out predictions are pooled per seed and scored
with the paper's metrics (:func:`~torch_tos.energy.fit.metrics`) plus the mean relative error
``mre`` (%, = 100 − precision). Every figure is a mean ± sd: over ``seeds`` for the seeded splits
(``random``, ``config``, ≥ 10 seeds by default), over the held-out folds (configurations, families)
for ``loco``/``lofo``, which have no seed. A fold whose training runs cannot fit a law (too few, or
terms the runs cannot identify) predicts nothing for that law. :func:`format_evaluation` prints
the paper's Table V layout with one column per law. :func:`evaluate_cost_model` evaluates a
calibration's cost model per mode beside the paper's laws.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import clone

from .fit import EnergyModel, metrics
from .runs import config_keys, trim_runs

EVAL_SPLITS = ("random", "config", "loco", "lofo")
MEAN_ONLY, NOISE_FLOOR = "mean-only", "noise floor"
COST_MODEL = "cost model"
SCORES = ("precision_min", "precision_max", "precision", "adj_r2", "rmse", "avg_error", "max_error", "mre")


def default_laws(columns=None) -> dict:
    """The paper's laws :func:`evaluate` compares by default: TOs and FLOPs, degree 1 (only those
    whose feature is in ``columns``, when given)."""
    laws = {"TOs (paper)": EnergyModel("tos"), "FLOPs (paper)": EnergyModel("flops")}
    if columns is None:
        return laws
    have = set(columns)
    return {n: m for n, m in laws.items() if m.feature in have}


def _n_coef(law) -> int:
    from .steplaw import TERMS

    if isinstance(law, EnergyModel):
        return int(law.degree)
    return len(TERMS.get(getattr(law, "mode", "training"), ()))


def _fit_predict(law, train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    try:
        return np.asarray(clone(law).fit(train).predict(test), dtype=float)
    except ValueError:  # the fold's runs cannot fit this law
        return np.full(len(test), np.nan)


def _folds(runs: pd.DataFrame, split: str, seeds, train_frac: float):
    """``(fold label, train mask, test mask)`` triples; seeded splits give one per seed."""
    from .compare import split_runs

    if split in ("random", "config"):
        for seed in seeds:
            train, test = split_runs(runs, split, train_frac, int(seed), order_by=None)
            yield int(seed), train, test
        return
    if split == "loco":
        keys = np.array(config_keys(runs).tolist() if len(runs) else [], dtype=object)
        labels = [tuple(k) for k in keys]
    else:
        if "family" not in runs.columns or runs["family"].isna().all():
            raise ValueError("split 'lofo' needs a 'family' column")
        labels = list(runs["family"].astype(str))
    names = sorted(set(labels))
    if len(names) < 2:
        raise ValueError(f"split {split!r} needs at least 2 {'configurations' if split == 'loco' else 'families'}, "
                         f"got {len(names)}")
    lab = np.array([names.index(x) for x in labels])
    for i, _name in enumerate(names):
        yield i, lab != i, lab == i


def _floor(runs: pd.DataFrame) -> np.ndarray:
    """Each run predicted by the mean of the other runs of its configuration (NaN when alone)."""
    keys = config_keys(runs)
    y = runs["joules"].to_numpy(dtype=float)
    out = np.full(len(y), np.nan)
    for _k, idx in runs.groupby(keys, sort=False).indices.items():
        if len(idx) > 1:
            out[idx] = (y[idx].sum() - y[idx]) / (len(idx) - 1)
    return out


def _scores(y, p, n_coef) -> dict:
    ok = np.isfinite(p)
    y, p = y[ok], p[ok]
    if len(y) == 0:
        return dict.fromkeys(SCORES, np.nan)
    rel = np.abs(p - y) / y
    out = {"mre": 100.0 * float(rel.mean()), "precision": 100.0 * (1 - float(rel.mean())),
           "precision_min": 100.0 * (1 - float(rel.max())), "precision_max": 100.0 * (1 - float(rel.min())),
           "rmse": float(np.sqrt(np.mean((p - y) ** 2))), "avg_error": float(np.abs(p - y).mean()),
           "max_error": float(np.abs(p - y).max()), "adj_r2": np.nan}
    if len(y) > n_coef + 1 and np.ptp(y) > 0:
        out["adj_r2"] = metrics(y, p, max(1, n_coef))["adj_r2"]
    return out


def evaluate(runs: pd.DataFrame, laws: dict | None = None, splits=("random", "config", "loco", "lofo"),
             seeds=range(10), train_frac: float = 0.6, trim: int = 0) -> pd.DataFrame:
    """Held-out scores of each law and of the two references (module doc).

    Returns a tidy DataFrame: one row per (split, law, fold) with :data:`SCORES`; ``fold`` is the
    seed (random, config) or the held-out configuration/family index (loco, lofo). For loco and
    lofo the scores of a fold are those of its held-out runs (``adj_r2`` is NaN where a fold has
    too few runs), and a last row per law (``fold="pooled"``) scores every run's held-out
    prediction together. :func:`summarize` gives mean ± sd."""
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    bad = [s for s in splits if s not in EVAL_SPLITS]
    if bad or not splits:
        raise ValueError(f"unknown split {bad[0] if bad else '(none)'!r}; accepted: {', '.join(EVAL_SPLITS)}")
    seeds = list(seeds)
    if any(s in ("random", "config") for s in splits) and len(seeds) < 1:
        raise ValueError("seeds is empty; give 10 or more split seeds")
    laws = default_laws(runs.columns if isinstance(runs, pd.DataFrame) else None) if laws is None else dict(laws)
    if not isinstance(runs, pd.DataFrame) or "joules" not in runs.columns:
        raise ValueError("evaluate needs a runs table (DataFrame) with a 'joules' column")
    df = trim_runs(runs.reset_index(drop=True), trim)
    y = df["joules"].to_numpy(dtype=float)
    floor = _floor(df)
    rows = []
    for split in splits:
        pooled = {}
        for fold, train, test in _folds(df, split, seeds, train_frac):
            preds = {MEAN_ONLY: (np.full(test.sum(), y[train].mean()), 1), NOISE_FLOOR: (floor[test], 1)}
            for name, law in laws.items():
                preds[name] = (_fit_predict(law, df[train], df[test]), _n_coef(law))
            for name, (p, k) in preds.items():
                p = np.asarray(p, dtype=float)
                sc = _scores(y[test], p, k)
                if split == "loco":  # one configuration: R² of its repeats says nothing
                    sc["adj_r2"] = np.nan
                rows.append({"split": split, "law": name, "fold": fold, "n_test": int(test.sum()), **sc})
                if split in ("loco", "lofo"):
                    whole = pooled.setdefault(name, (np.full(len(y), np.nan), k))[0]
                    whole[test] = p
        for name, (p, k) in pooled.items():  # every run predicted once, scored together
            rows.append({"split": split, "law": name, "fold": "pooled", "n_test": len(y), **_scores(y, p, k)})
    out = pd.DataFrame(rows)
    out.attrs.update(seeds=seeds, train_frac=train_frac, trim=trim, laws=list(laws))
    return out


def summarize(ev: pd.DataFrame, metric: str = "mre") -> pd.DataFrame:
    """``law × split`` table of ``metric`` as mean and sd (columns ``(split, "mean"|"sd")``): for
    seeded splits the mean and sd over seeds; for loco/lofo the figure of all held-out predictions
    pooled, and the sd over the folds (NaN where a fold cannot define it, e.g. adjusted R² of one
    configuration)."""
    def agg(g):
        whole = g[g["fold"].astype(str) == "pooled"]
        g = g[g["fold"].astype(str) != "pooled"]
        v = g[metric].to_numpy(dtype=float)
        ok = np.isfinite(v)
        sd = float(np.std(v[ok], ddof=1)) if ok.sum() > 1 else np.nan
        if len(whole):
            return pd.Series({"mean": float(whole[metric].iloc[0]), "sd": sd})
        return pd.Series({"mean": float(v[ok].mean()) if ok.any() else np.nan, "sd": sd})

    table = ev.groupby(["law", "split"], sort=False)[["fold", metric, "n_test"]].apply(agg)
    wide = table.unstack("split")
    wide = wide.swaplevel(0, 1, axis=1)
    splits = list(dict.fromkeys(ev["split"]))
    wide = wide.reindex(columns=pd.MultiIndex.from_product([splits, ["mean", "sd"]]))
    return wide.reindex(list(dict.fromkeys(ev["law"])))


def format_evaluation(ev: pd.DataFrame, split: str | None = None, digits: int = 2) -> str:
    """The paper's Table V layout with one column per law (and the two references) for ``split``
    (default: every split in ``ev``, one block each): precision min-max (avg ± sd), adjusted R²,
    RMSE, avg/max error, mean relative error — each figure mean ± sd."""
    blocks = []
    for sp in ([split] if split else list(dict.fromkeys(ev["split"]))):
        sub = ev[ev["split"] == sp]
        if sub.empty:
            raise ValueError(f"the evaluation has no split {sp!r}; it has {', '.join(dict.fromkeys(ev['split']))}")
        names = list(dict.fromkeys(sub["law"]))
        stats = {m: summarize(sub, m) for m in SCORES}
        over = (f"sd over {sub['fold'].nunique()} seeds" if sp in ("random", "config")
                else f"pooled held-out predictions; sd over {sub['fold'].nunique() - 1} held-out "
                f"{'configurations' if sp == 'loco' else 'families'}")

        def cell(m, law):
            r = stats[m].loc[law, sp]
            if not np.isfinite(r["mean"]):
                return "nan"
            sd = f"±{r['sd']:.{digits}f}" if np.isfinite(r["sd"]) else ""
            return f"{r['mean']:.{digits}f}{sd}"

        def joules(m, law):
            r = stats[m].loc[law, sp]
            return f"{r['mean']:.3g}" + (f"±{r['sd']:.2g}" if np.isfinite(r["sd"]) else "")

        lines = [("precision min-max (%)", [f"{stats['precision_min'].loc[n, sp]['mean']:.{digits}f}-"
                                            f"{stats['precision_max'].loc[n, sp]['mean']:.{digits}f}" for n in names]),
                 ("precision avg (%)", [cell("precision", n) for n in names]),
                 ("mean rel. error (%)", [cell("mre", n) for n in names]),
                 ("adjusted R²", [cell("adj_r2", n) for n in names]),
                 ("RMSE (J)", [joules("rmse", n) for n in names]),
                 ("avg error (J)", [joules("avg_error", n) for n in names]),
                 ("max error (J)", [joules("max_error", n) for n in names])]
        w0 = max(len(a) for a, _ in lines)
        widths = [max(len(n), *(len(v[i]) for _, v in lines)) for i, n in enumerate(names)]
        out = [f"{sp} ({over}):", "  ".join([" " * w0, *(n.ljust(w) for n, w in zip(names, widths))]).rstrip()]
        out += ["  ".join([a.ljust(w0), *(v.ljust(w) for v, w in zip(vals, widths))]).rstrip() for a, vals in lines]
        blocks.append("\n".join(out))
    return "\n\n".join(blocks)


def evaluate_cost_model(priced: pd.DataFrame, splits=("loco", "lofo")) -> pd.DataFrame:
    """The held-out scores of the step-level law (joules) of each mode of a priced runs table beside
    the paper's TOs and FLOPs laws (degree 1), the mean-only baseline and the noise floor, on
    ``splits`` (lofo only with 2 or more families); a ``mode`` column says which mode each row
    is."""
    from .steplaw import StepLaw

    frames = []
    modes = sorted(set(priced["mode"].astype(str))) if "mode" in priced else ["training"]
    for mode in modes:
        runs = priced[priced["mode"].astype(str) == mode] if "mode" in priced else priced
        use = [s for s in splits if s != "lofo" or runs["family"].nunique() > 1]
        if not use or len(runs) < 4:
            continue
        laws = {COST_MODEL: StepLaw(mode, "joules"), **default_laws(runs.columns)}
        ev = evaluate(runs, laws=laws, splits=use)
        ev.insert(0, "mode", mode)
        frames.append(ev)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


__all__ = ["evaluate", "evaluate_cost_model", "summarize", "format_evaluation", "default_laws", "EVAL_SPLITS",
           "MEAN_ONLY", "NOISE_FLOOR", "COST_MODEL"]
