"""The per-step law's solver and the runs-table convention it reads.

- :func:`per_step`: the ``steps`` column and the per-step feature columns of a runs table (the one
  place that knows the convention: feature columns count ONE training step, ``steps`` is the
  number of steps of the run);
- :func:`nnls_relative`: non-negative least squares on relative residuals (Ê - E) / E.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

STEPS = "steps"


def _as_1d(name: str, values) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers, got {type(values).__name__}") from None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array or one column, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has NaN or infinite values at positions "
                         f"{np.flatnonzero(~np.isfinite(arr))[:8].tolist()}")
    return arr


FIXED = ("step", "run")


def per_step(X: pd.DataFrame, features) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, F)`` of a runs table: the ``steps`` column (training steps of each run) and the
    per-step feature columns ``features`` as an ``(n, k)`` array. The one place that knows the
    runs-table convention (feature columns count ONE step)."""
    if not isinstance(X, pd.DataFrame):
        raise ValueError(f"the per-step law needs a runs table (DataFrame) with a {STEPS!r} column and "
                         f"the feature columns {', '.join(features)}, got {type(X).__name__}")
    missing = [c for c in (STEPS, *features) if c not in X.columns]
    if missing:
        raise ValueError(f"the runs table has no column(s) {', '.join(missing)}; the per-step law needs "
                         f"{STEPS} and {', '.join(features)} (per-step counts, see energy.features)")
    steps = _as_1d(f"column {STEPS!r}", X[STEPS])
    if (steps <= 0).any():
        raise ValueError(f"column {STEPS!r} must be positive (training steps of each run)")
    F = np.column_stack([_as_1d(f"feature {f!r}", X[f]) for f in features]) if features else \
        np.zeros((len(X), 0))
    if (F < 0).any():
        raise ValueError("counted features cannot be negative")
    return steps, F


def nnls_relative(A: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative ``c`` minimising Σ ((A c - y) / y)²: NNLS on the rows divided by ``y`` with the
    columns scaled to unit norm (TOs ~1e12 next to steps ~1e2)."""
    from scipy.optimize import nnls

    W = A / y[:, None]
    norms = np.linalg.norm(W, axis=0)
    norms[norms == 0] = 1.0
    c, _ = nnls(W / norms, np.ones(len(y)), maxiter=50 * A.shape[1] + 500)
    return c / norms


def _family_keys(X) -> list | None:
    """The runs' families (for leave-one-family-out residuals), or None without a family column."""
    if isinstance(X, pd.DataFrame) and "family" in X.columns:
        return [str(f) for f in X["family"]]
    return None


def _group_keys(X) -> list | None:
    """Configuration keys of the runs (for leave-one-configuration-out residuals), or None."""
    from .runs import CONFIG_COLUMNS

    cols = [c for c in CONFIG_COLUMNS if isinstance(X, pd.DataFrame) and c in X.columns]
    if not cols:
        return None
    from .runs import config_keys

    return list(config_keys(X))


