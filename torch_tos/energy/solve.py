"""Numerics shared by the laws: checked 1-D arrays and non-negative least squares on relative error.

- :func:`_as_1d`: a column or array as finite floats, or a one-line error naming it;
- :func:`lad_relative`: non-negative ``c`` minimising Σ |A c − y| / y — least absolute relative
  deviations (runs span orders of magnitude, so every run weighs by its relative error; absolute
  rather than squared errors, so a few runs whose kernels the profile misprices move the fit no
  more than their share, as a median does).
"""

from __future__ import annotations

import numpy as np

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


def lad_relative(A: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative ``c`` minimising Σ |A c − y| / y, as the linear programme min Σ u subject to
    −u ≤ W c − 1 ≤ u, c ≥ 0, u ≥ 0 with W = A / y (columns scaled to unit norm), solved by HiGHS."""
    from scipy.optimize import linprog

    W = A / y[:, None]
    norms = np.linalg.norm(W, axis=0)
    norms[norms == 0] = 1.0
    W = W / norms
    n, k = W.shape
    eye = np.eye(n)
    A_ub = np.block([[W, -eye], [-W, -eye]])
    b_ub = np.concatenate([np.ones(n), -np.ones(n)])
    cost = np.concatenate([np.zeros(k), np.ones(n)])
    res = linprog(cost, A_ub=A_ub, b_ub=b_ub, bounds=[(0, None)] * (k + n), method="highs")
    if not res.success:  # pragma: no cover - a feasible LP always solves; fall back to least squares
        return nnls_relative(A, y)
    return res.x[:k] / norms


def nnls_relative(A: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative ``c`` minimising Σ ((A c - y) / y)²: NNLS on the rows divided by ``y`` with the
    columns scaled to unit norm (kernel joules ~1 next to op counts ~1e5)."""
    from scipy.optimize import nnls

    W = A / y[:, None]
    norms = np.linalg.norm(W, axis=0)
    norms[norms == 0] = 1.0
    c, _ = nnls(W / norms, np.ones(len(y)), maxiter=50 * A.shape[1] + 500)
    return c / norms
