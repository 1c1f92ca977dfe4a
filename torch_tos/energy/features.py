"""The counted features of one step: the per-step totals a runs table records for the paper's law.

:func:`step_features` turns the :class:`~torch_tos.counts.Counts` of ONE step (a
:func:`torch_tos.profile` report) into a flat ``{name: float}`` dict whose names are runs-CSV
column names (:data:`FEATURE_NAMES`):

- ``tos``: transistor operations (exact, priced per dtype with ``table``); ``flops``: the
  ``torch.utils.flop_counter`` FLOPs; ``bos_add … bos_root``: basic operations per kind;
- ``tos_<dtype>`` (``tos_float32``, ``tos_bfloat16``, …): TOs computed in each dtype;
- ``calls``: aten calls; ``bytes``: Σ bytes of each op's tensor inputs and outputs — an
  *estimate* of data movement (each tensor once; caches, re-reads and fusion ignored; views move 0).

These are what the paper's law ``E = f(TOs)`` (:class:`~.fit.EnergyModel`) and its FLOPs
baseline regress on; the cost model prices the counts themselves (:mod:`.costmodel`). Only counted
quantities are features: :func:`is_counted_feature` is the whitelist (measured columns such as
``joules`` and ``seconds`` are rejected with :func:`check_features`).
"""

from __future__ import annotations

from fractions import Fraction

from ..bos import BO_NAMES
from ..counts import BYTES, CALLS, FLOPS, N_BOS, Counts, price_bos
from ..tables import COMPLEX_COMPONENT, FLOAT_FORMATS, INT_FORMATS, dtype_name

#: dtypes with a ``tos_<dtype>`` column (every dtype the transistor table prices).
DTYPES: tuple[str, ...] = tuple(dict.fromkeys(dtype_name(d) for d in (*FLOAT_FORMATS, *INT_FORMATS,
                                                                      *COMPLEX_COMPONENT)))
BASE_FEATURES: tuple[str, ...] = ("tos", "flops", *(f"bos_{b}" for b in BO_NAMES), "calls", "bytes")
#: Every counted feature, in CSV column order.
FEATURE_NAMES: tuple[str, ...] = (*BASE_FEATURES, *(f"tos_{d}" for d in DTYPES))
_FEATURE_SET = frozenset(FEATURE_NAMES)
#: Printable unit names (a law prints ``J/TO · TOs``).
UNITS = {"tos": ("TO", "TOs"), "flops": ("FLOP", "FLOPs"), "calls": ("call", "calls"),
         "bytes": ("B", "bytes"), "bos": ("BO", "BOs")}
#: Columns of a runs table that are measured, never features.
MEASURED = frozenset({"joules", "seconds", "cpu_seconds", "wall_seconds", "joules_raw", "seconds_raw",
                      "reference_joules", "reference_seconds", "power", "watts", "estimated"})


def step_features(counts, table=None) -> dict[str, float]:
    """Every feature of :data:`FEATURE_NAMES` for the counts of one step (zeros included, so rows
    of a runs CSV line up). ``table``: the transistor table (default
    :data:`~torch_tos.tables.DEFAULT_TABLE`)."""
    from ..tables import DEFAULT_TABLE

    counts = as_counts(counts)
    table = table or DEFAULT_TABLE
    out = dict.fromkeys(FEATURE_NAMES, 0.0)
    tos: dict[str, Fraction] = {}
    for key, row in counts.rows.items():
        dtype = key[2]
        if any(row[:N_BOS]):
            t = price_bos(table, row, dtype)
            for name in ("tos", f"tos_{dtype_name(dtype)}"):
                tos[name] = tos.get(name, Fraction(0)) + t
        out["calls"] += row[CALLS]
        out["flops"] += row[FLOPS]
        out["bytes"] += row[BYTES]
        for name, v in zip(BO_NAMES, row[:N_BOS]):
            out[f"bos_{name}"] += v
    for name, t in tos.items():
        out[name] = float(t)
    return {k: float(v) for k, v in out.items()}


def as_counts(counts) -> Counts:
    """A :class:`Counts` from a Counts, a :class:`~torch_tos.report.Report` or a rows dict."""
    if isinstance(counts, Counts):
        return counts
    inner = getattr(counts, "counts", None)
    if isinstance(inner, Counts):
        return inner
    if isinstance(counts, dict):
        return Counts(counts)
    raise TypeError(f"expected a torch_tos Counts table or a Report, got {type(counts).__name__}")


def is_counted_feature(name) -> bool:
    """Whether ``name`` is a counted quantity (a column :func:`step_features` produces, or
    ``tos_<dtype>`` for any dtype name). Measured columns (``joules``, ``seconds``, …) are not."""
    if not isinstance(name, str):
        return False
    return name in _FEATURE_SET or (name.startswith("tos_") and name[4:] in DTYPES)


def check_features(features) -> tuple[str, ...]:
    """``features`` as a tuple of counted feature names; a measured or unknown column is a
    one-line ``ValueError`` naming it and what is accepted."""
    if isinstance(features, str):
        features = (features,)
    try:
        features = tuple(features)
    except TypeError:
        raise ValueError(f"features must be feature names such as ('tos', 'flops'), got {features!r}") from None
    if not features:
        raise ValueError("features is empty; accepted: counted features such as tos, flops, calls, bytes")
    for f in features:
        if not is_counted_feature(f):
            what = ("a measured column, not a counted feature" if f in MEASURED else "not a counted feature")
            raise ValueError(f"feature {f!r} is {what}; accepted: {', '.join(BASE_FEATURES)}, tos_<dtype>")
    if len(set(features)) != len(features):
        raise ValueError(f"features has duplicates: {', '.join(features)}")
    return features


def unit(feature: str) -> tuple[str, str]:
    """``(singular, plural)`` unit names of a feature: ``tos_float32`` → ``("TO", "float32 TOs")``."""
    kind, _, rest = feature.partition("_")
    sing, plural = UNITS.get(kind, (feature, feature))
    if kind == "bos" and rest:
        return "BO", f"{rest} BOs"
    return sing, (f"{rest} {plural}" if rest else plural)


__all__ = ["FEATURE_NAMES", "BASE_FEATURES", "DTYPES", "step_features", "as_counts", "is_counted_feature",
           "check_features", "unit", "MEASURED"]
