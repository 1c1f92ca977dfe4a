"""The zoo's error table: measured vs predicted per model, the summary, the issue's floors, markdown.

Definitions (every figure of the report):

- measured: the mean of a model's repeats (joules; wall seconds); the noise floor of a model is its
  run-to-run coefficient of variation CV = sd / mean (sample sd, ddof = 1);
- error = (predicted − measured) / measured, against that mean;
- summary over a set of models: n (models with a prediction), median / mean / max |error|,
  within ±20 % (|error| ≤ 0.20), beyond ±35 % (|error| > 0.35), interval coverage (models whose
  measurement lies in the prediction's 90 % interval, low ≤ measured ≤ high);
- floors (issue 16, on the whole zoo, joules): median |error| ≤ 10 %; ≥ 80 % of the models within
  ±20 %; none beyond ±35 %; coverage 80–97 %; every float64 and bfloat16 model within ±25 %; every
  inference model within ±20 %. A model without a prediction fails every floor that includes it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from torch_tos.units import duration, energy

QUANTITIES = ("joules", "seconds")
INFO = ["id", "model", "family", "mode", "dtype", "batch", "optimizer", "steps"]


def measured(meas: pd.DataFrame) -> pd.DataFrame:
    """One row per model: :data:`INFO`, ``n`` (repeats), and for joules and seconds the mean,
    sd and CV over the repeats."""
    g = meas.groupby("id", sort=True)
    out = g[INFO[1:]].first()
    out["n"] = g.size()
    for q in QUANTITIES:
        out[q] = g[q].mean()
        out[f"{q}_sd"] = g[q].std(ddof=1)
        out[f"{q}_cv"] = out[f"{q}_sd"] / out[q]
    return out.reset_index()


def errors(table: pd.DataFrame, predictors) -> pd.DataFrame:
    """``table`` (measured, merged with the predictions' ``{p}:{field}`` columns) plus, per
    predictor ``p`` and quantity ``q``: ``{p}:{q}_err`` (relative error) and ``{p}:{q}_in``
    (measurement inside the interval; NaN where there is no prediction)."""
    out = table.copy()
    for p in predictors:
        for q in QUANTITIES:
            pred = out.get(f"{p}:{q}", pd.Series(np.nan, index=out.index)).astype(float)
            lo = out.get(f"{p}:{q}_low", pd.Series(np.nan, index=out.index)).astype(float)
            hi = out.get(f"{p}:{q}_high", pd.Series(np.nan, index=out.index)).astype(float)
            out[f"{p}:{q}_err"] = (pred - out[q]) / out[q]
            inside = ((lo <= out[q]) & (out[q] <= hi)).astype(float)
            out[f"{p}:{q}_in"] = inside.where(pred.notna() & lo.notna() & hi.notna())
    return out


def summarize(err, inside=None) -> dict:
    """The summary of relative errors ``err`` (NaN = not predicted, left out) and interval hits
    ``inside`` (module doc)."""
    e = pd.Series(err, dtype=float).dropna().abs()
    n = len(e)
    res = {"n": n, "median": e.median() if n else math.nan, "mean": e.mean() if n else math.nan,
           "max": e.max() if n else math.nan, "within20": int((e <= 0.20).sum()),
           "beyond35": int((e > 0.35).sum())}
    hits = pd.Series(inside, dtype=float).dropna() if inside is not None else pd.Series(dtype=float)
    res["covered"], res["n_interval"] = int(hits.sum()), len(hits)
    return res


def summary(table: pd.DataFrame, predictors, quantity: str = "joules") -> pd.DataFrame:
    """:func:`summarize` per predictor over all models, each dtype and each mode."""
    groups = [("all", np.ones(len(table), bool))]
    groups += [(f"dtype {d}", (table["dtype"] == d).to_numpy()) for d in sorted(table["dtype"].unique())]
    groups += [(f"mode {m}", (table["mode"] == m).to_numpy()) for m in sorted(table["mode"].unique())]
    rows = []
    for p in predictors:
        for name, mask in groups:
            s = summarize(table.loc[mask, f"{p}:{quantity}_err"], table.loc[mask, f"{p}:{quantity}_in"])
            rows.append({"predictor": p, "models": name, "of": int(mask.sum()), **s})
    return pd.DataFrame(rows)


def floors(table: pd.DataFrame, p: str) -> list[tuple[str, str, bool]]:
    """The issue's floors for predictor ``p`` on joules: (floor, measured value, met)."""
    err, inside = table[f"{p}:joules_err"], table[f"{p}:joules_in"]
    total, missing = len(table), int(err.isna().sum())
    s = summarize(err, inside)
    gap = f" ({missing} of {total} not predicted)" if missing else ""
    out = [("median |error| ≤ 10 %", f"{_pct(s['median'])}{gap}", not missing and s["median"] <= 0.10),
           ("≥ 80 % of models within ±20 %", f"{s['within20']} of {total}",
            s["within20"] >= 0.8 * total),
           ("none beyond ±35 %", f"{s['beyond35']} beyond{gap}", not missing and s["beyond35"] == 0)]
    cov = s["covered"] / total if total else math.nan
    out.append(("90 % interval covers 80–97 %", f"{s['covered']} of {total} ({_pct(cov, 0)})",
                0.80 <= cov <= 0.97))
    for label, mask, limit in (("float64 and bfloat16 models within ±25 %", table["dtype"] != "float32", 0.25),
                               ("inference models within ±20 %", table["mode"] == "inference", 0.20)):
        e = err[mask]
        ok = int((e.abs() <= limit).sum())
        worst = e.abs().max() if e.notna().any() else math.nan
        out.append((label, f"{ok} of {int(mask.sum())} (worst {_pct(worst)})", ok == int(mask.sum())))
    return out


# -- markdown --------------------------------------------------------------------------------
def _pct(x, digits: int = 1, sign: bool = False) -> str:
    if x is None or not np.isfinite(x):
        return "n/a"
    return f"{100 * x:{'+' if sign else ''}.{digits}f} %"


def _cell(x, fmt) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else fmt(x)


def md_table(header, rows) -> str:
    """A markdown table; a ``|`` inside a cell (``|err|``) is escaped."""
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
    return "\n".join([line(header), "|" + "|".join("---" for _ in header) + "|", *map(line, rows)])


def model_rows(table: pd.DataFrame, law: str, baselines) -> str:
    header = ["id", "model", "mode", "dtype", "steps", "measured J (CV)", f"{law} J [90 % interval]", "error",
              "in", *[f"{b} error" for b in baselines], "measured s (CV)", f"{law} s", "s error", "warnings"]
    rows = []
    for _, g in table.iterrows():
        get = lambda k: g.get(f"{law}:{k}", math.nan)  # noqa: E731
        pj, lo, hi, inside = get("joules"), get("joules_low"), get("joules_high"), get("joules_in")
        warn = g.get(f"{law}:warnings", "")
        n_warn = len(warn.split(" | ")) if isinstance(warn, str) and warn else 0
        rows.append([g["id"], g["model"], g["mode"], g["dtype"], int(g["steps"]),
                     f"{energy(g['joules'])} ({_pct(g['joules_cv'])})",
                     _cell(pj, lambda v: f"{energy(v)} [{energy(lo)} – {energy(hi)}]"),
                     _pct(get("joules_err"), sign=True),
                     "n/a" if not np.isfinite(inside) else ("yes" if inside else "**no**"),
                     *[_pct(g[f"{b}:joules_err"], sign=True) for b in baselines],
                     f"{duration(g['seconds'])} ({_pct(g['seconds_cv'])})",
                     _cell(get("seconds"), duration), _pct(get("seconds_err"), sign=True),
                     n_warn or ""])
    return md_table(header, rows)


def summary_rows(s: pd.DataFrame) -> str:
    header = ["predictor", "models", "n predicted", "median |err|", "mean |err|", "max |err|", "within ±20 %",
              "beyond ±35 %", "interval coverage"]
    rows = [[r.predictor, f"{r.models} ({r.of})", r.n, _pct(r.median), _pct(r.mean), _pct(r.max),
             f"{r.within20}/{r.n}" if r.n else "n/a", f"{r.beyond35}/{r.n}" if r.n else "n/a",
             f"{r.covered}/{r.n_interval}" if r.n_interval else "n/a"] for r in s.itertuples()]
    return md_table(header, rows)


def noise_line(table: pd.DataFrame) -> str:
    return ("noise floor (run-to-run CV over the repeats): joules median "
            f"{_pct(table['joules_cv'].median())}, max {_pct(table['joules_cv'].max())} "
            f"({table.loc[table['joules_cv'].idxmax(), 'id']}); seconds median {_pct(table['seconds_cv'].median())}, "
            f"max {_pct(table['seconds_cv'].max())}")


def render(table: pd.DataFrame, law: str, baselines, header_lines=()) -> str:
    """The whole markdown report of one law (see the module doc for every figure)."""
    predictors = [law, *baselines]
    parts = [*header_lines, "", "### Per model", "", model_rows(table, law, baselines), "",
             "### Summary, joules", "", summary_rows(summary(table, predictors, "joules")), "",
             "### Summary, seconds", "", summary_rows(summary(table, predictors, "seconds")), "",
             noise_line(table), "", "### Floors of issue 16 (joules, calibrated law)", "",
             md_table(["floor", "measured", "met"],
                      [[f, v, "yes" if ok else "**no**"] for f, v, ok in floors(table, law)])]
    notes = [(g["id"], g.get(f"{law}:warnings", "")) for _, g in table.iterrows()]
    notes = [(i, w) for i, w in notes if isinstance(w, str) and w]
    if notes:
        parts += ["", "### Warnings the law issued", ""]
        parts += [f"- {i}: {w}" for i, w in notes]
    return "\n".join(parts) + "\n"


def compare_table(table: pd.DataFrame, a: str, b: str) -> tuple[str, pd.DataFrame]:
    """Each model's prediction under laws ``a`` and ``b`` and their relative difference
    (b − a) / a, joules and seconds; returns the markdown and the differences."""
    diff = pd.DataFrame({"id": table["id"]})
    for q in QUANTITIES:
        diff[q] = (table[f"{b}:{q}"] - table[f"{a}:{q}"]) / table[f"{a}:{q}"]
    rows = []
    for (_, g), (_, d) in zip(table.iterrows(), diff.iterrows()):
        rows.append([g["id"], g["model"], g["mode"], g["dtype"], _cell(g[f"{a}:joules"], energy),
                     _cell(g[f"{b}:joules"], energy), _pct(d["joules"], sign=True),
                     _cell(g[f"{a}:seconds"], duration), _cell(g[f"{b}:seconds"], duration),
                     _pct(d["seconds"], sign=True)])
    md = md_table(["id", "model", "mode", "dtype", "A J", "B J", "(B − A)/A", "A s", "B s", "(B − A)/A s"], rows)
    lines = []
    for q in QUANTITIES:
        d = diff[q].dropna().abs()
        if len(d):
            lines.append(f"{q}: {int((d <= 0.10).sum())} of {len(d)} predicted models within 10 % (floor: all "
                         f"{len(table)}); max |difference| {_pct(d.max())}, median {_pct(d.median())}")
        else:
            lines.append(f"{q}: not predicted by both laws")
    return md + "\n\n" + "\n".join(lines) + "\n", diff


__all__ = ["measured", "errors", "summarize", "summary", "floors", "render", "compare_table", "md_table"]
