"""The cells of a runs file, checked as :func:`torch_tos.energy.runs.read_runs` reads them, and
the runs that look wrong although every cell is valid (outliers).

**Cells.** Each numeric column has a kind (:data:`torch_tos.energy.runs.CELL_KINDS`):

- ``count``: a positive integer (``8``, also written ``8.0``) — widths, batch sizes, epochs,
  steps, threads; ``index``: a non-negative integer (``repeat``);
- ``joules``: a finite positive number of joules (a run's energy); ``energy``: a finite
  non-negative number of joules (raw and reference figures); ``duration``: finite positive seconds;
  ``amount``: a finite non-negative count (the counted features: TOs, FLOPs, calls, bytes …).

Numbers are plain decimals (``12.5``, ``1e-05``); ``nan``, ``inf`` and values beyond the float
range are refused. A required column (``joules``, the features a fit uses …) must hold a value on
every line. The first bad cell is one ``ValueError`` naming the
file, its 1-based line and column, the value, what the column holds and what to do.

**Physically impossible runs** are errors too: ``joules / seconds`` is the run's mean power, and a
mean power below 1 µW or above 10 MW is no computer's (``joules = 1e-300`` or ``1e308``, a meter
glitch or an edited cell); these bounds are sanity limits, not a model of any machine.

**Outliers** (:func:`outliers`) are reported, not refused: a run whose energy is more than 10×
away from the median of its configuration's runs (3 runs or more), or whose mean power is more
than 10× away from the median power of its file (runs of one meter on one machine draw
comparable power). Each note names file, line, the value and the reference it was compared with.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

#: a plain decimal number: what the sweep writes (``repr`` of a float, ``str`` of an int)
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
#: a run's mean power outside these bounds (watts) is no computer's (module doc)
POWER_BOUNDS = (1e-6, 1e7)
#: an energy or a power this many times away from its reference is an outlier
OUTLIER_FACTOR = 10.0

_KINDS = {
    "count": "a positive integer",
    "index": "a non-negative integer",
    "joules": "a finite positive number of joules",
    "energy": "a finite number of joules, 0 or more",
    "duration": "a finite positive number of seconds",
    "amount": "a finite count, 0 or more",
}


class RunsOutlierWarning(UserWarning):
    """Runs whose energy or power is far from their peers' (:func:`outliers`)."""


def _problems(text: pd.Series, kind: str) -> tuple[np.ndarray, pd.Series]:
    """The cells' values (NaN where empty or wrong) and, per cell, what is wrong ("" if nothing;
    empty cells are not judged here)."""
    empty = text.eq("")
    number = text.str.fullmatch(_NUMBER.pattern)
    with np.errstate(over="ignore"):
        values = pd.to_numeric(text.where(number & ~empty), errors="coerce").to_numpy(dtype=float, copy=True)
    problem = pd.Series("", index=text.index, dtype=object)
    finite = np.isfinite(values)
    problem[(~number & ~empty).to_numpy()] = "is not a number"
    problem[(number & ~empty).to_numpy() & ~finite] = "is beyond the range of a float"
    ok = finite.copy()
    if kind in ("count", "index"):
        whole = ok & (np.mod(np.where(ok, values, 0), 1) == 0)
        problem[ok & ~whole] = "is not a whole number"
        low = whole & (values < (1 if kind == "count" else 0))
        problem[low] = "is not positive" if kind == "count" else "is negative"
    elif kind == "duration":
        problem[ok & (values <= 0)] = "is not positive"
    elif kind == "joules":
        problem[ok & (values < 0)] = "is negative"
        problem[ok & (values == 0)] = "is zero (a meter that read nothing?)"
    else:
        problem[ok & (values < 0)] = "is negative"
    values[problem.ne("").to_numpy()] = np.nan
    return values, problem


def _also(lines: list[int]) -> str:
    if not lines:
        return ""
    shown = ", ".join(map(str, lines[:5])) + (f" and {len(lines) - 5} more" if len(lines) > 5 else "")
    return f" (also line{'s' if len(lines) > 1 else ''} {shown})"


def check_cells(path, table: pd.DataFrame, lines: np.ndarray, kinds: dict, required) -> dict[str, np.ndarray]:
    """Check every cell of ``table`` (strings, as read) whose column has a kind in ``kinds``;
    columns in ``required`` must hold a value on every line. ``lines`` are the rows' 1-based file
    lines. Returns the numeric columns (NaN where empty); raises one ``ValueError`` (module doc)."""
    columns = list(table.columns)
    out = {}
    for name, kind in kinds.items():
        if name not in table.columns:
            continue
        where = f"{path} line {{}}, column {columns.index(name) + 1} ({name})"
        text = table[name].fillna("").astype(str).str.strip()
        values, problem = _problems(text, kind)
        bad = np.flatnonzero(problem.ne("").to_numpy())
        if len(bad):
            i = bad[0]
            raise ValueError(f"{where.format(lines[i])}: {table[name].iat[i]!r} {problem.iat[i]}; {name} holds "
                             f"{_KINDS[kind]}{_also([int(lines[j]) for j in bad[1:]])} — correct the value or "
                             "delete the line")
        empty = np.flatnonzero(text.eq("").to_numpy()) if name in required else []
        if len(empty):
            i = empty[0]
            raise ValueError(f"{where.format(lines[i])} is empty; every run needs its {name}"
                             f"{_also([int(lines[j]) for j in empty[1:]])} — measure the run again or "
                             "delete the line")
        out[name] = values
    _check_power(path, columns, out, lines)
    return out


def _check_power(path, columns, values, lines) -> None:
    if "joules" not in values or "seconds" not in values:
        return
    joules, seconds = values["joules"], values["seconds"]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_power = np.log10(joules) - np.log10(seconds)
    lo, hi = POWER_BOUNDS
    wrong = np.flatnonzero(np.isfinite(seconds) & ((log_power < np.log10(lo)) | (log_power > np.log10(hi))))
    if len(wrong):
        i = wrong[0]
        raise ValueError(
            f"{path} line {lines[i]}, column {columns.index('joules') + 1} (joules): {joules[i]:.3g} J in "
            f"{seconds[i]:.3g} s is a mean power of {_power(log_power[i])}, outside what any computer draws "
            f"({lo:g} W to {hi:g} W){_also([int(lines[j]) for j in wrong[1:]])} — a meter glitch or an edited "
            "cell: correct the value or delete the line")


def _power(log10_watts: float) -> str:
    return f"{10 ** log10_watts:.3g} W" if abs(log10_watts) < 300 else f"10^{log10_watts:.0f} W"


def _times(log10_ratio: float) -> str:
    """``"22.7×"`` or ``"1/12.7 of"`` a reference, from the ratio's log10 (no overflow)."""
    size = abs(log10_ratio)
    text = f"{10 ** size:.3g}" if size < 300 else f"10^{size:.0f}"
    return f"{text}×" if log10_ratio >= 0 else f"1/{text} of"


def _far_from_median(log_values: np.ndarray, groups):
    """``(row, log10 of its group's median, group size)`` of each finite value more than
    :data:`OUTLIER_FACTOR` times away from the median of its group (groups of 3 finite values or
    more; ``groups`` yields row positions)."""
    limit = np.log10(OUTLIER_FACTOR)
    for idx in groups:
        ok = [i for i in idx if np.isfinite(log_values[i])]
        if len(ok) < 3:
            continue
        typical = float(np.median(log_values[ok]))
        for i in ok:
            if abs(log_values[i] - typical) > limit:
                yield i, typical, len(ok)


def outliers(runs: pd.DataFrame, keys: pd.Series) -> list[str]:
    """One note per outlier run of ``runs`` (columns ``joules``, ``file``, ``line``; ``seconds``
    when present), ``keys`` its configuration key per row (module doc), in file order."""
    found: dict[int, list[str]] = {}
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_j = np.log10(runs["joules"].to_numpy(dtype=float))
        log_s = np.log10(runs["seconds"].to_numpy(dtype=float)) if "seconds" in runs else None
    for i, typical, n in _far_from_median(log_j, runs.groupby(keys, sort=False).indices.values()):
        found.setdefault(i, []).append(
            f"{10 ** log_j[i]:.3g} J, {_times(log_j[i] - typical)} the median of its configuration's "
            f"{n} runs ({10 ** typical:.3g} J)")
    if log_s is not None:
        log_p = log_j - log_s
        for i, typical, _n in _far_from_median(log_p, runs.groupby("file", sort=False).indices.values()):
            found.setdefault(i, []).append(
                f"a mean power of {_power(log_p[i])}, {_times(log_p[i] - typical)} the file's median "
                f"({_power(typical)})")
    return [f"{runs['file'].iat[i]} line {int(runs['line'].iat[i])}: {', '.join(found[i])}" for i in sorted(found)]


__all__ = ["check_cells", "outliers", "RunsOutlierWarning", "POWER_BOUNDS", "OUTLIER_FACTOR"]
