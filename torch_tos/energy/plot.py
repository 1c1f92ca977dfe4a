"""Figures of the energy laws (the paper's Fig. 6): needs matplotlib (``pip install 'torch-tos[plot]'``).

:func:`plot_fits` draws, for each feature side by side (TOs, FLOPs):

- top: every run's energy against the feature (dots), each configuration's mean with its
  min-max spread (bars), and the law of each degree fitted on the training runs, labelled with
  its held-out precision and adjusted R²;
- bottom: the residuals Ê - E of the held-out runs for each degree (the paper's residual analysis).

It uses ``matplotlib.figure.Figure`` directly (no pyplot, no display, no global state).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .compare import split_runs
from .fit import EnergyModel, metrics
from .runs import FEATURES, config_keys, trim_runs, validate_runs

_DEGREE_STYLE = {1: "-", 2: "--", 3: ":"}


def _figure(**kwargs):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install 'torch-tos[plot]'") from None
    return Figure(**kwargs)


def plot_fits(runs, features=("tos", "flops"), degrees=(1, 2, 3), *, split: str = "random",
              train_frac: float = 0.6, seed: int = 0, trim: int = 0, path=None, title: str | None = None,
              logx: bool | None = None, dpi: int = 130):
    """Energy vs TOs and vs FLOPs with fitted laws of each degree, and held-out residuals.

    ``runs``: a runs table (DataFrame). The split is the one :func:`~torch_tos.energy.compare`
    uses with the same arguments. ``logx``: logarithmic feature axis (default: when the feature
    spans more than 30x). Saves to ``path`` when given; returns the matplotlib Figure.
    """
    features = (features,) if isinstance(features, str) else tuple(features)
    degrees = (degrees,) if isinstance(degrees, int) else tuple(degrees)
    df = trim_runs(validate_runs(runs, features=features), trim)
    train, test = split_runs(df, split, train_frac, seed, order_by=features[0])
    fig = _figure(figsize=(6.2 * len(features), 8.4), dpi=dpi, layout="constrained")
    axes = fig.subplots(2, len(features), squeeze=False, sharex="col", height_ratios=(3, 2))
    groups = df["activation"].fillna(df.get("family", "")).astype(str) if "activation" in df else \
        pd.Series(["runs"] * len(df))
    names = list(dict.fromkeys(groups))
    cmap = _colors(len(names))
    colour = {n: cmap[i] for i, n in enumerate(names)}
    keys = config_keys(df)
    for col, feature in enumerate(features):
        ax, res = axes[0, col], axes[1, col]
        x, y = df[feature].to_numpy(float), df["joules"].to_numpy(float)
        scale = 10.0 ** np.floor(np.log10(np.abs(x).max()))
        label = FEATURES.get(feature, feature)
        for name in names:
            sel = (groups == name).to_numpy()
            ax.scatter(x[sel] / scale, y[sel], s=9, alpha=0.35, color=colour[name], linewidths=0)
        for _key, idx in df.groupby(keys, sort=False).indices.items():
            xs, ys = x[idx], y[idx]
            c = colour[groups.iloc[idx[0]]]
            ax.errorbar(xs.mean() / scale, ys.mean(), yerr=[[ys.mean() - ys.min()], [ys.max() - ys.mean()]],
                        fmt="o", ms=4, color=c, capsize=2, lw=1)
        log = logx if logx is not None else x.max() > 30 * x.min() > 0
        grid = np.geomspace(x.min(), x.max(), 300) if log else np.linspace(x.min(), x.max(), 200)
        if log:
            ax.set_xscale("log")
        for degree in degrees:
            model = EnergyModel(feature, degree).fit(df[train], df.loc[train, "joules"])
            m = metrics(y[test], model.predict(df[test]), degree) if test.sum() > degree + 1 else None
            stats = f" — precision {m['precision']:.2f} %, adj. R² {m['adj_r2']:.3f}" if m else ""
            ax.plot(grid / scale, model.predict(grid), _DEGREE_STYLE.get(degree, "-."), color="black",
                    lw=1.3, label=f"degree {degree}{stats}")
            r = model.predict(df[test]) - y[test]
            shift = (1 + (degree - 2) * 0.015) if log else 1
            res.scatter(x[test] / scale * shift + (0 if log else (degree - 2) * 0.004 * (x.max() - x.min()) / scale), r, s=10,
                        alpha=0.6, marker="os^D"[(degree - 1) % 4], label=f"degree {degree}")
        res.axhline(0, color="black", lw=0.8)
        for name in names:
            ax.scatter([], [], color=colour[name], label=name, s=20)
        exp = int(np.log10(scale))
        ax.set_ylabel("energy per training run (J)")
        ax.set_title(f"{label}-based laws (fitted on {int(train.sum())} runs)", fontsize=10)
        ax.legend(fontsize=7, loc="best", framealpha=0.85)
        ax.grid(alpha=0.25)
        res.set_xlabel(f"{label} per training run (×1e{exp})")
        res.set_ylabel("residual Ê − E (J), held-out runs")
        res.legend(fontsize=7, frameon=False)
        res.grid(alpha=0.25)
    meter = _meter_note(df)
    fig.suptitle(title or f"Energy scaling law{meter}", fontsize=11)
    if path is not None:
        from ..fileio import save_figure

        save_figure(fig, path)
    return fig


def _meter_note(df: pd.DataFrame) -> str:
    if "meter" not in df or df["meter"].isna().all():
        return ""
    meters = ", ".join(sorted(set(df["meter"].dropna().astype(str))))
    est = df.get("estimated")
    estimated = est is not None and est.astype(str).str.lower().isin(["true", "1"]).any()
    return f" — meter: {meters}" + (" (estimate: tracks CPU time, not energy)" if "cputime" in meters
                                    else " (estimated)" if estimated else "")


def _colors(n: int):
    base = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    return [base[i % len(base)] for i in range(n)]
