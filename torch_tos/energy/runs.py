"""The runs table: one row per measured training run, its CSV file, its checks, and trimming.

Columns (:data:`COLUMNS`): ``family, width, depth, activation, repeat, epochs, tos, flops, joules,
seconds, meter, estimated, host, torch``. ``tos``/``flops`` are the counts of the whole run
(one training step from :func:`torch_tos.profile` x the steps of the run); ``joules`` is what the
meter gave for the run; a column that does not apply to a family (``width`` of a CNN) is empty.
A configuration is the tuple :data:`CONFIG_COLUMNS`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = ["family", "width", "depth", "activation", "repeat", "epochs", "tos", "flops", "joules",
           "seconds", "meter", "estimated", "host", "torch"]
CONFIG_COLUMNS = ["family", "width", "depth", "activation"]
NUMERIC = ["width", "depth", "repeat", "epochs", "tos", "flops", "joules", "seconds"]
FEATURES = {"tos": "TOs", "flops": "FLOPs"}


def _rows(mask: pd.Series, offset: int) -> str:
    idx = [int(i) + offset for i in np.flatnonzero(mask.to_numpy())]
    shown = ", ".join(str(i) for i in idx[:8])
    return shown + (f" and {len(idx) - 8} more" if len(idx) > 8 else "")


def validate_runs(runs, *, features=("tos", "flops"), name: str = "runs", line_offset: int = 0) -> pd.DataFrame:
    """Check a runs table and return a copy with numeric columns as numbers.

    Raises ``ValueError`` naming the problem: not a table, missing columns, non-numeric values,
    empty/NaN, infinite, zero or negative energies or features. ``line_offset`` turns row
    positions into file line numbers in messages (2 for a CSV with a header).
    """
    if not isinstance(runs, pd.DataFrame):
        try:
            runs = pd.DataFrame(runs)
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"{name}: expected a runs table (pandas DataFrame or CSV), got "
                             f"{type(runs).__name__}: {e}") from None
    where = "line" if line_offset else "row"
    needed = ["joules", *features]
    missing = [c for c in needed if c not in runs.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {', '.join(missing)}; a runs table needs "
                         f"{', '.join(needed)} (full layout: {', '.join(COLUMNS)})")
    if len(runs) == 0:
        raise ValueError(f"{name}: no runs (the table is empty)")
    df = runs.reset_index(drop=True).copy()
    for col in NUMERIC:
        if col not in df.columns:
            continue
        raw = df[col]
        num = pd.to_numeric(raw, errors="coerce")
        text = raw.astype(str).str.strip()
        bad = num.isna() & raw.notna() & (text != "") & (text.str.lower() != "nan")
        if bad.any():
            example = raw[bad].iloc[0]
            raise ValueError(f"{name}: column {col!r} has non-numeric values on {where}(s) "
                             f"{_rows(bad, line_offset)} (e.g. {example!r}); expected numbers")
        df[col] = num
    for col in needed:
        values = df[col]
        if values.isna().any():
            raise ValueError(f"{name}: column {col!r} is empty or NaN on {where}(s) "
                             f"{_rows(values.isna(), line_offset)}; every run needs a value")
        if not np.isfinite(values.to_numpy(dtype=float)).all():
            raise ValueError(f"{name}: column {col!r} is infinite on {where}(s) "
                             f"{_rows(~np.isfinite(values.astype(float)), line_offset)}")
        if (values <= 0).any():
            what = "energies" if col == "joules" else "counts"
            raise ValueError(f"{name}: column {col!r} has zero or negative {what} on {where}(s) "
                             f"{_rows(values <= 0, line_offset)}; "
                             + ("energies must be positive joules" if col == "joules" else
                                "counts of a training run must be positive"))
    for col in CONFIG_COLUMNS:
        if col not in df.columns:
            df[col] = np.nan
    return df


def read_runs(paths, *, features=("tos", "flops")) -> pd.DataFrame:
    """Read and validate one or more runs CSV files into one DataFrame (column ``file`` added)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    frames = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"runs file {str(path)!r} does not exist")
        try:
            raw = pd.read_csv(path, dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError:
            raise ValueError(f"{path}: the file is empty; expected a CSV with header "
                             f"{','.join(COLUMNS)}") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not a readable CSV ({str(e).splitlines()[0]})") from None
        raw = raw.replace("", np.nan)
        df = validate_runs(raw, features=features, name=str(path), line_offset=2)
        df["file"] = str(path)
        frames.append(df)
    if not frames:
        raise ValueError("no runs file given")
    return pd.concat(frames, ignore_index=True)


def config_keys(runs: pd.DataFrame) -> pd.Series:
    """One hashable key per row: its configuration (family, width, depth, activation)."""
    cols = [c for c in CONFIG_COLUMNS if c in runs.columns]
    if not cols:
        return pd.Series([("all",)] * len(runs), index=runs.index)
    return pd.Series(list(zip(*(runs[c].astype(str) for c in cols))), index=runs.index)


def config_label(row) -> str:
    """``ffn w=8 d=3 gelu`` from a row (dict or Series) of a runs table."""
    parts = [str(row.get("family", ""))]
    for col, tag in (("width", "w="), ("depth", "d=")):
        v = row.get(col)
        if v is not None and not (isinstance(v, float) and math.isnan(v)) and str(v) != "":
            parts.append(f"{tag}{int(float(v))}")
    act = row.get("activation")
    if isinstance(act, str) and act:
        parts.append(act)
    return " ".join(p for p in parts if p)


def trim_runs(runs: pd.DataFrame, k: int) -> pd.DataFrame:
    """Drop the ``k`` highest- and ``k`` lowest-energy runs of each configuration (the paper: 50
    runs, ``k=5``). A configuration needs more than ``2k`` runs."""
    if k is None or k == 0:
        return runs
    if not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"trim must be a non-negative integer of runs to drop at each end, got {k!r}")
    keys = config_keys(runs)
    keep = []
    for key, idx in runs.groupby(keys, sort=False).groups.items():
        group = runs.loc[idx]
        if len(group) <= 2 * k:
            raise ValueError(f"cannot trim {k} highest and {k} lowest runs of configuration "
                             f"{config_label(group.iloc[0])}: it has only {len(group)} runs "
                             f"(needs more than {2 * k})")
        order = group["joules"].sort_values(kind="stable").index
        keep.extend(order[k:len(order) - k])
    return runs.loc[sorted(keep)].reset_index(drop=True)
