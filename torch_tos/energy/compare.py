"""TOs-based versus FLOPs-based energy laws, laid out like the paper's Table V.

For each feature (TOs, FLOPs) and polynomial degree (1-3) an :class:`EnergyModel` is fitted on
the training runs and scored on the held-out runs with :func:`metrics`. Both features see the
same split, so their rows compare like for like.

Splits:

- ``"random"`` (the paper's): within each configuration, ``train_frac`` of its runs train and
  the rest validate ("we randomly split the collected energy data for each DNN into training
  sets (60 %) and validation sets (40 %)"). It tests how well the law fits configurations it has
  seen.
- ``"config"``: whole configurations are held out (train on some widths/depths/activations,
  predict the others) - the honest test of predicting a new model's energy. The configurations
  with the lowest and highest value of the first feature always train, so held-out ones are
  interpolated, not extrapolated.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .fit import EnergyModel, metrics
from .runs import FEATURES, config_keys, config_label, trim_runs, validate_runs

SPLITS = ("random", "config")
METRICS = ["precision_min", "precision_max", "precision_avg", "adj_r2", "rmse", "avg_error",
           "max_error", "train_adj_r2", "train_rmse"]


def split_runs(runs: pd.DataFrame, split: str = "random", train_frac: float = 0.6, seed: int = 0,
               order_by: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks ``(train, test)`` over the rows of ``runs`` (see the module doc)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; accepted: {', '.join(SPLITS)}")
    if not 0 < train_frac < 1:
        raise ValueError(f"train_frac must be between 0 and 1 (exclusive), got {train_frac!r}")
    rng = np.random.default_rng(seed)
    keys = config_keys(runs)
    groups = runs.groupby(keys, sort=True).indices
    train = np.zeros(len(runs), dtype=bool)
    if split == "random":
        for _key, idx in sorted(groups.items()):
            idx = rng.permutation(idx)
            if len(idx) == 1:
                train[idx] = rng.random() < train_frac
                continue
            n_train = int(np.clip(round(train_frac * len(idx)), 1, len(idx) - 1))
            train[idx[:n_train]] = True
    else:
        names = sorted(groups)
        if len(names) < 3:
            raise ValueError(f"split='config' needs at least 3 configurations (2 to train, 1 to "
                             f"hold out), got {len(names)}; use split='random'")
        pinned = set()
        if order_by is not None:
            means = {k: float(runs[order_by].iloc[groups[k]].mean()) for k in names}
            pinned = {min(names, key=means.get), max(names, key=means.get)}
        rest = [names[i] for i in rng.permutation(len(names)) if names[i] not in pinned]
        n_train = int(np.clip(round(train_frac * len(names)), len(pinned) or 1, len(names) - 1))
        for k in list(pinned) + rest[:n_train - len(pinned)]:
            train[groups[k]] = True
    if train.all() or not train.any():
        raise ValueError(f"the {split} split left {'no' if train.all() else 'all'} runs to validate; "
                         "add runs or configurations")
    return train, ~train


def compare_long(runs, features=("tos", "flops"), degrees=(1, 2, 3), split: str = "random",
                 train_frac: float = 0.6, seed: int = 0, by: str | None = None,
                 trim: int = 0) -> pd.DataFrame:
    """Tidy form of :func:`compare`: one row per (group, feature, degree) with every metric, the
    law fitted on the training runs, and the train/test sizes."""
    features = (features,) if isinstance(features, str) else tuple(features)
    degrees = (degrees,) if isinstance(degrees, (int, np.integer)) else tuple(degrees)
    if not features:
        raise ValueError("features is empty; accepted: tos, flops (or any numeric runs column)")
    if not degrees:
        raise ValueError("degrees is empty; the paper uses 1, 2, 3")
    df = validate_runs(runs, features=features)
    df = trim_runs(df, trim)
    if by is not None and by not in df.columns:
        raise ValueError(f"cannot group by {by!r}: no such column; try activation, family, depth or width")
    groups = [(None, df)] if by is None else [(k, g.reset_index(drop=True))
                                              for k, g in df.groupby(by, sort=True, dropna=False)]
    rows = []
    for key, group in groups:
        train, test = split_runs(group, split, train_frac, seed, order_by=features[0])
        where = "" if key is None else f" (group {by}={key})"
        top = max(degrees)
        for feature in features:
            distinct = group.loc[train, feature].nunique()
            if distinct < top + 1:
                raise ValueError(f"a degree-{top} law needs runs at {top + 1} or more distinct {feature} "
                                 f"values (configurations) to train on, the {split} split gives {distinct}"
                                 f"{where}; add configurations or lower the degree")
        for feature in features:
            for degree in degrees:
                if test.sum() <= degree + 1:
                    raise ValueError(f"the {split} split holds out {test.sum()} runs{where}; a degree-"
                                     f"{degree} law needs more than {degree + 1} to score: add repeats "
                                     f"or configurations, or lower the degree")
                try:
                    model = EnergyModel(feature, degree).fit(group[train], group.loc[train, "joules"])
                except ValueError as e:
                    raise ValueError(f"{e}{where}; add configurations or lower the degree") from None
                y_tr = group.loc[train, "joules"].to_numpy()
                y_te = group.loc[test, "joules"].to_numpy()
                m = metrics(y_te, model.predict(group[test]), degree)
                fit_m = (metrics(y_tr, model.predict(group[train]), degree)
                         if train.sum() > degree + 1 else {"adj_r2": np.nan, "rmse": np.nan})
                row = {} if by is None else {by: key}
                row.update({"feature": feature, "degree": degree,
                            "precision_min": m["precision_min"], "precision_max": m["precision_max"],
                            "precision_avg": m["precision"], "adj_r2": m["adj_r2"], "rmse": m["rmse"],
                            "avg_error": m["avg_error"], "max_error": m["max_error"],
                            "train_adj_r2": fit_m["adj_r2"], "train_rmse": fit_m["rmse"],
                            "n_train": int(train.sum()), "n_test": int(test.sum()),
                            "law": model.law()})
                rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs.update(split=split, train_frac=train_frac, seed=seed, by=by, trim=trim)
    return out


def compare(runs, features=("tos", "flops"), degrees=(1, 2, 3), split: str = "random",
            train_frac: float = 0.6, seed: int = 0, by: str | None = None, trim: int = 0) -> pd.DataFrame:
    """The paper's Table V for these runs: TOs- vs FLOPs-based laws of each degree.

    Returns a DataFrame indexed by ``degree`` (``(by, degree)`` when grouping, e.g.
    ``by="activation"`` for the paper's per-activation rows) with columns
    ``(feature, metric)``: ``precision_min``, ``precision_max``, ``precision_avg`` (%),
    ``adj_r2``, ``rmse`` (J), ``avg_error``, ``max_error`` (J) on the held-out runs, and
    ``train_adj_r2``, ``train_rmse`` on the training runs. ``trim=k`` first drops each
    configuration's ``k`` highest and lowest runs. ``attrs`` holds the split settings, the
    train/test sizes and the fitted laws. :func:`format_table_v` prints it.
    """
    long = compare_long(runs, features, degrees, split, train_frac, seed, by, trim)
    index = ["degree"] if by is None else [by, "degree"]
    wide = long.pivot(index=index, columns="feature", values=METRICS)
    wide = wide.swaplevel(0, 1, axis=1)
    feats = list(dict.fromkeys(long["feature"]))
    wide = wide.reindex(columns=pd.MultiIndex.from_product([feats, METRICS], names=["feature", "metric"]))
    wide.attrs.update(long.attrs)
    wide.attrs["n_train"] = int(long["n_train"].sum() // max(1, len(feats) * len(set(long["degree"]))))
    wide.attrs["n_test"] = int(long["n_test"].sum() // max(1, len(feats) * len(set(long["degree"]))))
    wide.attrs["laws"] = {(r.get(by) if by else None, r["feature"], r["degree"]): r["law"]
                          for r in long.to_dict("records")}
    return wide


def format_table_v(table: pd.DataFrame, digits: int = 2) -> str:
    """Render :func:`compare`'s result like the paper's Table V: one column per feature, rows
    ``precision (%)  min-max (avg …)``, ``adjusted R²``, ``RMSE (J)``, ``avg/max error (J)`` per
    degree (and group)."""
    feats = list(dict.fromkeys(table.columns.get_level_values(0)))
    header = [FEATURES.get(f, f) for f in feats]
    lines = []
    for key in table.index:
        label = (f"{key[0]}, degree {key[1]}" if isinstance(key, tuple) else f"degree {key}")
        cells = {"precision (%)": [], "adjusted R²": [], "RMSE (J)": [], "avg/max error (J)": []}
        for f in feats:
            r = table.loc[key, f]
            cells["precision (%)"].append(f"{r['precision_min']:.{digits}f}-{r['precision_max']:.{digits}f} "
                                          f"(avg {r['precision_avg']:.{digits}f})")
            cells["adjusted R²"].append(f"{r['adj_r2']:.4f}")
            cells["RMSE (J)"].append(_num(r["rmse"], digits))
            cells["avg/max error (J)"].append(f"{_num(r['avg_error'], digits)}/{_num(r['max_error'], digits)}")
        lines.append((label, [""] * len(feats)))
        lines.extend((f"  {name}", vals) for name, vals in cells.items())
    w0 = max(len(label) for label, _ in lines)
    widths = [max(len(h), *(len(vals[i]) for _, vals in lines)) for i, h in enumerate(header)]
    out = ["  ".join([" " * w0, *(h.ljust(w) for h, w in zip(header, widths))]).rstrip()]
    for label, vals in lines:
        out.append("  ".join([label.ljust(w0), *(v.ljust(w) for v, w in zip(vals, widths))]).rstrip())
    return "\n".join(out)


def _num(x: float, digits: int) -> str:
    """``digits`` decimals for joules ≥ 1 (like the paper's 11.16/36.05), 3 significant below."""
    if not np.isfinite(x):
        return "nan"
    return f"{x:.{digits}f}" if abs(x) >= 1 or x == 0 else f"{x:.3g}"


def describe_split(table: pd.DataFrame) -> str:
    a = table.attrs
    how = ("random 60/40-style split within each configuration" if a.get("split") == "random"
           else "held-out configurations")
    text = (f"{how}: train_frac={a.get('train_frac')}, seed={a.get('seed')}, "
            f"{a.get('n_train')} training / {a.get('n_test')} validation runs")
    if a.get("trim"):
        text += f", trimmed {a['trim']} highest + {a['trim']} lowest runs per configuration"
    return text


__all__ = ["compare", "compare_long", "format_table_v", "split_runs", "describe_split", "config_label"]
