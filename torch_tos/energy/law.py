"""Law files: read a saved law back, checked whole before anything uses it.

:func:`load_law` reads a cost model (``torch-tos calibrate``, :meth:`.costmodel.CostModel.save`;
format ``torch_tos.costmodel`` version 2) or a paper's law (:meth:`.fit.EnergyModel.save`;
``torch_tos.paperlaw`` version 1) and returns the estimator. A law file is data from outside: it is
refused whole, with one ``ValueError`` naming the field, when

- the file is larger than :data:`MAX_BYTES` or nests deeper than :data:`MAX_DEPTH` (checked
  before parsing: no RecursionError, no 60 MB parse), is not UTF-8 JSON, or holds ``NaN``,
  ``Infinity`` or a duplicate key;
- the format or version is not one this torch_tos reads;
- a field is missing, unknown or of the wrong type (strict: a bool is not a number, a string is
  not a list, ``"nan"`` is not a number);
- a coefficient, cost or size is not a finite number in its bounds (non-negative; coefficients at
  most :data:`MAX_COEF`, so no prediction overflows), ratios are not a non-empty list of finite
  positive numbers, a range is not ``[low, high]`` with ``low ≤ high``, a term, mode, quantity,
  op class or dtype is not a known name, a fingerprint is not a dict of strings and integers.

The CLI prints the message on one line and exits with code 2.

law.json (cost model), version 2::

    {"format": "torch_tos.costmodel", "version": 2,
     "meta": {"dtypes": [...], "threads": 1, "meter": "cputime", "device": "cpu", ...},
     "profile": {"device": {"type", "name", "index", "threads"}, "floor": {"seconds", "joules"},
                 "alloc": [[bytes, seconds, joules], ...],
                 "fields": ["class", "op", "dtype", "attrs", "flops", "bytes_in", "bytes_out",
                            "seconds", "joules"],
                 "points": [[...], ...]},
     "laws": {"training": {"joules": {"coef": {"alpha", "beta_forward", "beta_backward",
                                               "beta_optimizer", "beta_memory", "e_step", "e_run"},
                                      "ranges": {"steps": [lo, hi], ...}, "ratios": [...],
                                      "interval_source": "...", "n_train": n},
                           "seconds": {...}},
              "inference": {...}},
     "fingerprints": {"profile": {...}, "runs": [{...}, ...], "profiles": [{...}, ...]}, "summary": "..."}

``fingerprints.profile`` is the machine that measured the microbenchmarks, ``fingerprints.runs``
one entry per (host, machine, torch, threads) that measured the step-level runs, and the optional
``fingerprints.profiles`` every shard's microbenchmarking machine of a sharded calibration
(``torch-tos calibrate --merge``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .costmodel import FORMAT as COST_FORMAT, VERSION as COST_VERSION, CostModel
from .fit import FORMAT as PAPER_FORMAT, VERSION as PAPER_VERSION, EnergyModel
from .machine import POINT_FIELDS
from .opclasses import CLASSES
from .steplaw import OPTIONAL_TERMS, QUANTITIES, RANGE_COLUMNS, TERMS

#: Largest law file read (bytes).
MAX_BYTES = 16 * 2 ** 20
#: Deepest nesting of brackets read.
MAX_DEPTH = 32
#: Largest coefficient accepted (a factor, J or s per op, per step, per run).
MAX_COEF = 1e12
#: Largest measured cost (s or J per call) and size (FLOPs, bytes) accepted.
MAX_VALUE = 1e30
_DTYPES = frozenset({"float32", "float64", "float16", "bfloat16", "tf32", "int8", "int16", "int32", "int64",
                     "uint8", "bool", "complex64", "complex128"})
_FP_KEYS = frozenset({"host", "cpu", "cores", "logical_cores", "gpu", "device", "threads", "torch", "date",
                      "machine", "meter", "shard"})


class _Bad(ValueError):
    pass


def _fail(where: str, what: str, got=None) -> None:
    shown = f", got {got!r}" if got is not None or what.endswith("got") else ""
    raise _Bad(f"{where}: {what}{shown}")


def _number(v, where: str, *, lo: float = 0.0, hi: float = MAX_VALUE, positive: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        _fail(where, "must be a number", v)
    if not math.isfinite(v):
        _fail(where, "must be a finite number", v)
    if v < lo or (positive and v <= 0) or v > hi:
        _fail(where, f"must be {'positive' if positive else 'non-negative'}" + (f" and at most {hi:g}" if hi < MAX_VALUE
                                                                                 else ""), v)
    return float(v)


def _integer(v, where: str, lo: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        _fail(where, f"must be an integer ≥ {lo}", v)
    return v


def _dict(v, where: str, keys=None, optional=()) -> dict:
    if not isinstance(v, dict):
        _fail(where, "must be an object", type(v).__name__)
    if keys is not None:
        missing = [k for k in keys if k not in v]
        if missing:
            _fail(f"{where}.{missing[0]}", "is missing")
        extra = [k for k in v if k not in keys and k not in optional]
        if extra:
            _fail(f"{where}.{extra[0]}", f"is not a known field (accepted: {', '.join(keys)})")
    return v


def _list(v, where: str, nonempty: bool = False) -> list:
    if not isinstance(v, list):
        _fail(where, "must be a list", type(v).__name__)
    if nonempty and not v:
        _fail(where, "must not be empty")
    return v


def _text(v, where: str) -> str:
    if not isinstance(v, str):
        _fail(where, "must be a string", v)
    return v


def _fingerprint(v, where: str) -> None:
    _dict(v, where)
    for k, x in v.items():
        if k not in _FP_KEYS:
            _fail(f"{where}.{k}", f"is not a known fingerprint field (accepted: {', '.join(sorted(_FP_KEYS))})")
        if x is not None and (isinstance(x, bool) or not isinstance(x, (str, int))):
            _fail(f"{where}.{k}", "must be a string, an integer or null", x)


def _check_steplaw(d, mode: str, where: str) -> None:
    _dict(d, where, ("coef", "ranges", "ratios", "interval_source", "n_train"))
    required = [t for t in TERMS[mode] if t not in OPTIONAL_TERMS]
    coef = _dict(d["coef"], f"{where}.coef", required, optional=OPTIONAL_TERMS)
    for t in TERMS[mode]:
        if t in coef:
            _number(coef[t], f"{where}.coef.{t}", hi=MAX_COEF)
    ranges = _dict(d["ranges"], f"{where}.ranges")
    if "steps" not in ranges:
        _fail(f"{where}.ranges.steps", "is missing")
    for k, r in ranges.items():
        if k not in RANGE_COLUMNS:
            _fail(f"{where}.ranges.{k}", f"is not a known range (accepted: {', '.join(RANGE_COLUMNS)})")
        if not isinstance(r, list) or len(r) != 2:
            _fail(f"{where}.ranges.{k}", "must be [low, high]", r)
        lo, hi = (_number(x, f"{where}.ranges.{k}") for x in r)
        if lo > hi:
            _fail(f"{where}.ranges.{k}", "must have low ≤ high", r)
    for i, r in enumerate(_list(d["ratios"], f"{where}.ratios", nonempty=True)):
        _number(r, f"{where}.ratios[{i}]", positive=True, hi=1e6)
    _text(d["interval_source"], f"{where}.interval_source")
    _integer(d["n_train"], f"{where}.n_train", 1)


def _check_profile(p, where: str) -> None:
    _dict(p, where, ("device", "dtypes", "floor", "alloc", "fields", "points"))
    dtypes = _list(p["dtypes"], f"{where}.dtypes", nonempty=True)
    for i, d in enumerate(dtypes):
        if d not in _DTYPES:
            _fail(f"{where}.dtypes[{i}]", f"is not a known dtype (accepted: {', '.join(sorted(_DTYPES))})", d)
    dev = _dict(p["device"], f"{where}.device")
    for k, x in dev.items():
        if x is not None and (isinstance(x, bool) or not isinstance(x, (str, int))):
            _fail(f"{where}.device.{k}", "must be a string, an integer or null", x)
    floor = _dict(p["floor"], f"{where}.floor", ("seconds", "joules"))
    for q in ("seconds", "joules"):
        _number(floor[q], f"{where}.floor.{q}", hi=1.0)
    for i, row in enumerate(_list(p["alloc"], f"{where}.alloc")):
        if not isinstance(row, list) or len(row) != 3:
            _fail(f"{where}.alloc[{i}]", "must be [bytes, seconds, joules]", row)
        _number(row[0], f"{where}.alloc[{i}][0]", positive=True)
        for j in (1, 2):
            _number(row[j], f"{where}.alloc[{i}][{j}]", hi=1e6)
    if p["fields"] != list(POINT_FIELDS):
        _fail(f"{where}.fields", f"must be {list(POINT_FIELDS)}", p["fields"])
    points = _list(p["points"], f"{where}.points", nonempty=True)
    for i, row in enumerate(points):
        at = f"{where}.points[{i}]"
        if not isinstance(row, list) or len(row) != len(POINT_FIELDS):
            _fail(at, f"must be a list of {len(POINT_FIELDS)} values ({', '.join(POINT_FIELDS)})", row)
        cls, op, dtype, attrs = row[:4]
        if cls not in CLASSES:
            _fail(f"{at}.class", f"is not a known op class (accepted: {', '.join(CLASSES)})", cls)
        _text(op, f"{at}.op")
        if dtype not in _DTYPES:
            _fail(f"{at}.dtype", f"is not a known dtype (accepted: {', '.join(sorted(_DTYPES))})", dtype)
        if attrs is not None:
            for a in _list(attrs, f"{at}.attrs"):
                if a is not None and not isinstance(a, (str, bool)):
                    _number(a, f"{at}.attrs")
        for name, v in zip(POINT_FIELDS[4:7], row[4:7]):
            _number(v, f"{at}.{name}")
        for name, v in zip(POINT_FIELDS[7:], row[7:]):
            _number(v, f"{at}.{name}", positive=True, hi=1e6)


def check_costmodel(data: dict) -> None:
    """A one-line ``ValueError`` naming the first defect of a cost model's data (module doc)."""
    _dict(data, "law", ("format", "version", "meta", "profile", "laws", "fingerprints"), optional=("summary",))
    meta = _dict(data["meta"], "meta")
    for k, v in meta.items():
        if isinstance(v, (dict, list)) and k not in ("dtypes", "suite"):
            _fail(f"meta.{k}", "must be a string, a number or null", type(v).__name__)
    _check_profile(data["profile"], "profile")
    laws = _dict(data["laws"], "laws")
    if not laws:
        _fail("laws", "must hold at least one mode (training, inference)")
    for mode, per in laws.items():
        if mode not in TERMS:
            _fail(f"laws.{mode}", f"is not a known mode (accepted: {', '.join(TERMS)})")
        _dict(per, f"laws.{mode}", QUANTITIES)
        for q in QUANTITIES:
            _check_steplaw(per[q], mode, f"laws.{mode}.{q}")
    fps = _dict(data["fingerprints"], "fingerprints", ("profile", "runs"), optional=("profiles",))
    _fingerprint(fps["profile"], "fingerprints.profile")
    for i, fp in enumerate(_list(fps.get("profiles", []), "fingerprints.profiles")):
        _fingerprint(fp, f"fingerprints.profiles[{i}]")
    for i, fp in enumerate(_list(fps["runs"], "fingerprints.runs")):
        _fingerprint(fp, f"fingerprints.runs[{i}]")


def check_paperlaw(data: dict) -> None:
    """A one-line ``ValueError`` naming the first defect of a paper's law's data."""
    from .features import is_counted_feature

    _dict(data, "law", ("format", "version", "feature", "degree", "intercept", "coef", "n_train"), optional=("law",))
    if not is_counted_feature(data["feature"]):
        _fail("feature", "is not a counted feature (e.g. tos, flops)", data["feature"])
    degree = _integer(data["degree"], "degree", 1)
    v = data["intercept"]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or abs(v) > MAX_COEF:
        _fail("intercept", "must be a finite number of joules", v)
    coef = _list(data["coef"], "coef", nonempty=True)
    if len(coef) != degree:
        _fail("coef", f"must hold {degree} coefficient(s) (the degree)", coef)
    for i, c in enumerate(coef):
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c) or abs(c) > MAX_COEF:
            _fail(f"coef[{i}]", "must be a finite number", c)
    _integer(data["n_train"], "n_train", 1)


def _depth(text: str) -> int:
    """The deepest bracket nesting of JSON ``text`` (outside strings)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                return deepest
        elif ch in "]}":
            depth -= 1
    return deepest


def _no_constant(name):
    raise _Bad(f"holds {name}, which is not a number JSON allows (NaN and infinities are refused)")


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise _Bad(f"the key {k!r} appears twice in one object")
        out[k] = v
    return out


def law_from_data(data, source: str = "law"):
    """The estimator of a parsed law file (``source`` names it in errors)."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: not a torch_tos law file (a JSON object with a \"format\"); make one with "
                         "torch-tos calibrate --out law.json")
    fmt, version = data.get("format"), data.get("version")
    try:
        if fmt == COST_FORMAT:
            if isinstance(version, bool) or version != COST_VERSION:
                _fail("version", f"is not supported (this torch_tos reads {COST_FORMAT} version {COST_VERSION}; "
                      "calibrate again)", version)
            check_costmodel(data)
            return CostModel.from_dict(data)
        if fmt == PAPER_FORMAT:
            if isinstance(version, bool) or version != PAPER_VERSION:
                _fail("version", f"is not supported (this torch_tos reads {PAPER_FORMAT} version {PAPER_VERSION})",
                      version)
            check_paperlaw(data)
            return EnergyModel.from_dict(data)
    except _Bad as e:
        raise ValueError(f"{source}: {e}") from None
    if fmt == "torch_tos.law":
        raise ValueError(f"{source}: a law of an older torch_tos (the per-step feature law, format torch_tos.law); "
                         "this torch_tos predicts with a cost model: make one with torch-tos calibrate --out law.json")
    raise ValueError(f"{source}: not a torch_tos law file (\"format\" is {fmt!r}; accepted: {COST_FORMAT}, "
                     f"{PAPER_FORMAT}); make one with torch-tos calibrate --out law.json")


def load_law(path):
    """Read and check a law file (module doc): a :class:`~.costmodel.CostModel` or a paper's
    :class:`~.fit.EnergyModel`."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"law file {str(path)!r} is a folder; give the law's JSON file (torch-tos calibrate --out "
                         "law.json)")
    if not path.is_file():
        raise FileNotFoundError(f"law file {str(path)!r} does not exist; make one with torch-tos calibrate "
                                "--out law.json")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ValueError(f"{path}: {size:,} bytes is larger than a law file can be ({MAX_BYTES:,} bytes at most)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a UTF-8 text file ({e.reason})") from None
    if _depth(text) > MAX_DEPTH:
        raise ValueError(f"{path}: nests deeper than {MAX_DEPTH} levels; not a law file")
    try:
        data = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_no_duplicates)
    except _Bad as e:
        raise ValueError(f"{path}: {e}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a JSON law file ({e})") from None
    return law_from_data(data, str(path))


__all__ = ["load_law", "law_from_data", "check_costmodel", "check_paperlaw", "MAX_BYTES", "MAX_DEPTH", "MAX_COEF"]
