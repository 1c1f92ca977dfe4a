"""The runs table: one row per measured training run, its CSV file, its checks, and trimming.

A row holds everything that defines its run, so runs of different settings never mix:

- the **configuration** (:data:`CONFIG_COLUMNS`, the key every fit, split and trim groups by):
  ``family, width, depth, activation, input_size, batch_size, optimizer, epochs, steps, dtype,
  threads, mode`` (``training`` or ``inference``), ``device`` — a column that does not apply to a
  family (``width`` of the paper's CNN) is empty; a file without ``mode``/``device`` reads as
  training on the CPU;
- the **measurement**: ``repeat``, ``joules`` (reference-corrected when the run was measured
  with a reference workload, else the meter's figure), ``joules_raw`` (the meter's figure),
  ``seconds`` (wall clock), ``ref_before``/``ref_after``/``ref_nominal`` (joules of the
  reference workload, :mod:`.reference`; empty without one), ``meter``, ``estimated``, ``host``,
  ``machine`` (the CPU model or GPU name that ran it), ``torch``, ``count_device`` (where the features were counted: ``meta``, or the run's own
  device where meta would run other kernels, e.g. fused recurrent layers);
- the **counted features of one step** (:data:`FEATURE_COLUMNS` =
  :data:`torch_tos.energy.features.FEATURE_NAMES`: ``tos``, ``flops``, BOs per kind, ``calls``,
  ``bytes``, TOs per dtype), each the mean over the run's
  ``steps`` steps (the last batch of an epoch may be smaller): a run's total is ``steps`` × it.

:func:`read_runs` reads CSV files as strictly as the sweep writes them, line by line through the
writer's own reading (:func:`torch_tos.energy.runfile.scan`): a damaged line (a last line without
its line end — a run cut by a kill, possibly inside its last field —, NUL bytes, a wrong number of
fields), a header naming a column twice, a file without these columns (written by an older
torch_tos, whose rows did not record epochs or batch size), a cell that is not of its column's
kind (:data:`CELL_KINDS`, :mod:`.runcells`: ``steps`` a positive integer, ``joules`` a positive
finite number, features finite and non-negative …) or a run of impossible mean power are errors
naming file, line and column (1-based) and what to do; the same file given twice and duplicate
(configuration, repeat, host) rows (:func:`find_duplicates`) are refused; outliers are reported
with a :class:`~.runcells.RunsOutlierWarning`. :func:`validate_runs` checks a DataFrame built by
hand and is lenient about the layout (missing configuration columns are empty).
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .features import FEATURE_NAMES
from .runcells import RunsOutlierWarning, check_cells, outliers
from .runfile import scan

CONFIG_COLUMNS = ["family", "width", "depth", "activation", "input_size", "batch_size", "optimizer",
                  "epochs", "steps", "dtype", "threads", "mode", "device"]
#: Configuration columns a runs file written before they existed may lack: value they then have.
DEFAULTS = {"mode": "training", "device": "cpu"}
RUN_COLUMNS = ["repeat", "joules", "joules_raw", "seconds", "ref_before", "ref_after", "ref_nominal",
               "meter", "estimated", "host", "machine", "torch", "count_device"]
FEATURE_COLUMNS = list(FEATURE_NAMES)
COLUMNS = CONFIG_COLUMNS + RUN_COLUMNS + FEATURE_COLUMNS
#: A run's identity in a results file: its configuration, repeat and host.
RUN_KEY = CONFIG_COLUMNS + ["repeat", "host"]
NUMERIC = ["width", "depth", "input_size", "batch_size", "epochs", "steps", "threads", "repeat", "joules",
           "joules_raw", "seconds", "ref_before", "ref_after", "ref_nominal", *FEATURE_COLUMNS]
FEATURES = {"tos": "TOs", "flops": "FLOPs"}
#: what each numeric column's cells hold (:mod:`.runcells`); a column added to the lists above is
#: checked once it is given a kind here
CELL_KINDS = {**{c: "count" for c in ("width", "depth", "input_size", "batch_size", "epochs", "steps", "threads")},
              "repeat": "index", "joules": "joules", "joules_raw": "energy", "seconds": "duration",
              "ref_before": "energy", "ref_after": "energy", "ref_nominal": "energy",
              **{c: "amount" for c in FEATURE_COLUMNS}}
#: columns every run of a runs file must fill (with the features a fit uses)
REQUIRED = ["repeat", "joules"]


def _rows(mask: pd.Series, offset: int) -> str:
    idx = [int(i) + offset for i in np.flatnonzero(mask.to_numpy())]
    shown = ", ".join(str(i) for i in idx[:8])
    return shown + (f" and {len(idx) - 8} more" if len(idx) > 8 else "")


def validate_runs(runs, *, features=("tos", "flops"), name: str = "runs", line_offset: int = 0) -> pd.DataFrame:
    """Check a runs table and return a copy with numeric columns as numbers.

    Raises ``ValueError`` naming the problem: not a table, missing columns, non-numeric values,
    empty/NaN, infinite, zero or negative energies, negative features. ``line_offset`` turns row
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
                         f"{', '.join(needed)} (full layout: see torch_tos.energy.runs.COLUMNS)")
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
        if col == "joules" and (values <= 0).any():
            raise ValueError(f"{name}: column 'joules' has zero or negative energies on {where}(s) "
                             f"{_rows(values <= 0, line_offset)}; energies must be positive joules")
        if col != "joules" and (values < 0).any():  # a per-class count may be 0 (no conv in an MLP)
            raise ValueError(f"{name}: column {col!r} has negative counts on {where}(s) "
                             f"{_rows(values < 0, line_offset)}; counted features cannot be negative")
    for col in ("family", "width", "depth", "activation"):
        if col not in df.columns:
            df[col] = np.nan
    if "estimated" in df.columns and df["estimated"].dtype == object:
        df["estimated"] = df["estimated"].astype(str).str.lower() == "true"
    return df


def read_runs(paths, *, features=("tos", "flops")) -> pd.DataFrame:
    """Read and validate one or more runs CSV files into one DataFrame (columns ``file`` and
    ``line``, the 1-based file line, added): see the module doc for what is refused and what is
    reported."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    frames, seen = [], {}
    for path in paths:
        path = Path(path)
        if path.is_dir():
            raise ValueError(f"runs file {str(path)!r} is a folder; give the CSV files in it")
        if not path.is_file():
            raise FileNotFoundError(f"runs file {str(path)!r} does not exist")
        data = path.read_bytes()
        ident = hashlib.sha256(data).hexdigest()
        if ident in seen:
            raise ValueError(f"{path} and {seen[ident]} are the same file (or identical copies): "
                             "give each runs file once, or its runs would be counted twice")
        seen[ident] = path
        frames.append(_read_file(path, data, features))
    if not frames:
        raise ValueError("no runs file given")
    runs = pd.concat(frames, ignore_index=True)
    check_no_duplicates(runs)
    notes = outliers(runs, config_keys(runs))
    if notes:
        import warnings

        warnings.warn(f"{len(notes)} outlier run(s): {'; '.join(notes[:5])}{' …' if len(notes) > 5 else ''} — "
                      "check them (a meter glitch, another load on the machine, an edited cell?) and delete "
                      "the lines that are not real measurements", RunsOutlierWarning, stacklevel=2)
    return runs


def _read_file(path: Path, data: bytes, features) -> pd.DataFrame:
    """One runs file as a checked DataFrame (module doc)."""
    if not data.strip():
        raise ValueError(f"{path}: the file is empty; expected a runs CSV written by torch-tos sweep or calibrate")
    found = scan(data)
    if found.header is None:
        raise ValueError(f"{path}: no header line; expected a runs CSV written by torch-tos sweep or calibrate")
    header = found.header
    twice = sorted({c for c in header if header.count(c) > 1}, key=header.index)
    if twice:
        at = [i + 1 for i, c in enumerate(header) if c == twice[0]]
        raise ValueError(f"{path} line 1: column {twice[0]!r} is named twice (columns {' and '.join(map(str, at))}); "
                         "a runs file names each column once — remove the extra column (a file edited by hand or "
                         "two files pasted together?)")
    if found.damage:
        d = found.damage[0]
        name = f" ({header[d.column - 1]})" if 0 < d.column <= len(header) else ""
        more = f" (and {len(found.damage) - 1} more damaged line(s))" if len(found.damage) > 1 else ""
        raise ValueError(f"{path} line {d.line}, column {d.column}{name}: {d.what} ({d.cause}){more} — a sweep "
                         "or calibration resumed on this file removes damaged lines and says so; or delete the "
                         "line by hand")
    defaulted = [c for c in DEFAULTS if c not in header]
    missing = [c for c in CONFIG_COLUMNS + ["repeat", "joules", "host"] if c not in header and c not in DEFAULTS]
    if missing:
        raise ValueError(f"{path}: no column(s) {', '.join(missing)}: a runs file of an older torch_tos "
                         "(its rows do not say their epochs, batch size or steps, so configurations "
                         "would mix); measure it again with torch-tos sweep or calibrate")
    absent = [f for f in features if f not in header]
    if absent:
        raise ValueError(f"{path}: no column(s) {', '.join(absent)}, which the fit uses; a runs table needs "
                         f"joules and {', '.join(features)} (full layout: see torch_tos.energy.runs.COLUMNS)")
    if not found.rows:
        raise ValueError(f"{path}: no runs (only a header line)")
    table = pd.DataFrame([fields for _, fields in found.rows], columns=header, dtype=str)
    lines = np.array([line for line, _ in found.rows])
    numbers = check_cells(path, table, lines, CELL_KINDS, set(REQUIRED) | set(features))
    for name, values in numbers.items():
        table[name] = values
    for col in defaulted:
        table[col] = DEFAULTS[col]
    table = table.replace("", np.nan)
    df = validate_runs(table, features=features, name=str(path))
    df["file"] = str(path)
    df["line"] = lines
    return df


def _norm(value) -> str:
    """A cell as canonical text: ``""`` for empty/NaN, ``"8"`` for 8, 8.0 and "8.0"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = str(value).strip()
    if text.lower() in ("", "nan", "none"):
        return ""
    try:
        f = float(text)
        return str(int(f)) if f.is_integer() else repr(f)
    except ValueError:
        return text


def _key_frame(runs: pd.DataFrame, columns) -> list[tuple]:
    cols = [c for c in columns if c in runs.columns]
    if not cols:
        return [("all",)] * len(runs)
    return list(zip(*(runs[c].map(_norm) for c in cols)))


def find_duplicates(runs: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``runs`` whose (configuration, repeat, host) occurs more than once (all of
    them, in file order); empty when every run is there once."""
    if "repeat" not in runs.columns:
        return runs.iloc[0:0]
    keys = pd.Series(_key_frame(runs, RUN_KEY), index=runs.index)
    return runs[keys.duplicated(keep=False)]


def check_no_duplicates(runs: pd.DataFrame) -> None:
    """A one-line ``ValueError`` naming the first run found twice, if any."""
    dups = find_duplicates(runs)
    if dups.empty:
        return
    keys = pd.Series(_key_frame(dups, RUN_KEY), index=dups.index)
    first = dups[keys == keys.iloc[0]]
    where = [f"{r.get('file', 'runs')}" + (f" line {int(r['line'])}" if "line" in r and pd.notna(r["line"])
                                          else f" row {i}") for i, r in first.iterrows()]
    n = int(keys.duplicated().sum())
    raise ValueError(f"{n} duplicate run(s): {config_label(first.iloc[0])} repeat {_norm(first.iloc[0]['repeat'])} "
                     f"on host {first.iloc[0].get('host', '?')} appears at {' and '.join(where[:3])}; a file "
                     "given twice or two sweeps that measured one run twice — keep one of each")


def config_keys(runs: pd.DataFrame) -> pd.Series:
    """One hashable key per row: its configuration (every :data:`CONFIG_COLUMNS` present)."""
    return pd.Series(_key_frame(runs, CONFIG_COLUMNS), index=runs.index)


def model_keys(runs: pd.DataFrame) -> pd.Series:
    """One hashable key per row: its configuration without its length (``epochs``, ``steps``) —
    which model it ran, however long."""
    return pd.Series(_key_frame(runs, [c for c in CONFIG_COLUMNS if c not in ("epochs", "steps")]), index=runs.index)


def config_label(row) -> str:
    """``ffn w=8 d=3 gelu`` (+ ``in=32 b=64 e=10`` …, when present) from a row of a runs table."""
    parts = [str(row.get("family", "")) if _norm(row.get("family")) else ""]
    for col, tag in (("width", "w="), ("depth", "d="), ("activation", ""), ("input_size", "in="),
                     ("batch_size", "b="), ("epochs", "e="), ("steps", "steps=")):
        v = _norm(row.get(col))
        if v:
            parts.append(f"{tag}{v}")
    return " ".join(p for p in parts if p)


def machines_of(runs: pd.DataFrame) -> dict[str, int]:
    """The machines (the ``machine`` column, :func:`~.fingerprint.machine_name`) that measured
    ``runs`` → their numbers of runs, most runs first (then by name); a run without a machine is
    ``"unknown"``."""
    if "machine" not in runs.columns or runs.empty:
        return {}
    names = runs["machine"].map(_norm).replace("", "unknown")
    counts = {str(k): int(v) for k, v in names.value_counts().items()}
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def check_one_machine(runs: pd.DataFrame, machine: str | None = None, *, how: str = "machine=") -> pd.DataFrame:
    """The runs of one machine: those of ``machine`` when given, else all of them when one machine
    measured them; runs of several machines are a ``ValueError`` naming them and what to do (a
    law is one machine's costs, and one configuration measured on two machines is not one
    configuration: its noise floor and held-out scores would mix machines). ``how``: the option
    that picks a machine, for the message (``--machine`` in the CLI)."""
    found = machines_of(runs)
    names = runs["machine"].map(_norm).replace("", "unknown") if "machine" in runs.columns else None
    listed = "; ".join(f"{m!r} ({n} runs{_files(runs[names == m])})" for m, n in found.items())
    if machine is not None:
        if machine not in found:
            raise ValueError(f"no runs of machine {machine!r}; the runs were measured on {listed or 'no named machine'}")
        return runs[names == machine].reset_index(drop=True)
    if len(found) > 1:
        first = next(iter(found))
        raise ValueError(f"the runs were measured on {len(found)} machines: {listed}; a law is one machine's costs, "
                         f"so they are not pooled: pick one with {how}{first!r} (and fit each machine's runs "
                         "separately)")
    return runs


def _files(runs: pd.DataFrame) -> str:
    if "file" not in runs.columns:
        return ""
    files = list(dict.fromkeys(str(f) for f in runs["file"].dropna()))
    return (" in " + ", ".join(files[:3]) + (" …" if len(files) > 3 else "")) if files else ""


def trim_runs(runs: pd.DataFrame, k: int) -> pd.DataFrame:
    """Drop the ``k`` highest- and ``k`` lowest-energy runs of each configuration (the paper: 50
    runs, ``k=5``). A configuration needs more than ``2k`` runs."""
    if k is None or k == 0:
        return runs
    if not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"trim must be a non-negative integer of runs to drop at each end, got {k!r}")
    keys = config_keys(runs)
    keep = []
    for _key, idx in runs.groupby(keys, sort=False).groups.items():
        group = runs.loc[idx]
        if len(group) <= 2 * k:
            raise ValueError(f"cannot trim {k} highest and {k} lowest runs of configuration "
                             f"{config_label(group.iloc[0])}: it has only {len(group)} runs "
                             f"(needs more than {2 * k})")
        order = group["joules"].sort_values(kind="stable").index
        keep.extend(order[k:len(order) - k])
    return runs.loc[sorted(keep)].reset_index(drop=True)
