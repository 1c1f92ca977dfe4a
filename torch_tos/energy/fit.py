"""The paper's energy law E = f(TOs) and the paper's metrics.

:class:`EnergyModel` ``(feature, degree)`` is the polynomial regression of the paper (section II-C
and III, Eq. 7-8): ``Pipeline(StandardScaler, PolynomialFeatures(degree), LinearRegression)`` on one
counted metric of a run (TOs or FLOPs; the runs table's per-step column × ``steps``). The feature is
standardised before it is raised to powers (TOs reach 1e15, so TOs³ would overflow the conditioning
of any solver); the fitted polynomial is then mapped back to original units, so ``intercept_`` is in
joules and ``coef_[k-1]`` in joules per TO^k. It is a scikit-learn estimator (``clone``,
``cross_val_score``, ``GridSearchCV`` over ``feature`` and ``degree``) and owns its serialisation
(:meth:`EnergyModel.to_dict`, :meth:`EnergyModel.from_dict`, :meth:`EnergyModel.save`; read back
with :func:`torch_tos.energy.load_law`). The cost model that predicts models never measured is a
separate estimator (:mod:`.costmodel`).

:func:`metrics` gives what the paper reports (Fig. 6c/e, Table V): adjusted R² with p = number
of regressors, RMSE (J), precision = 100 % x (1 - mean(|Ê - E| / E)) with its min and max over
the points, average and maximum absolute error (J).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
from numpy.polynomial import Polynomial
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from .runs import FEATURES
from .solve import STEPS, _as_1d

_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
#: The file format of a saved paper's law.
FORMAT, VERSION = "torch_tos.paperlaw", 1


class EnergyModel(RegressorMixin, BaseEstimator):
    """The paper's law: the polynomial ``E = a0 + a1 x + … + a_d x^d`` of one run total ``feature``
    (module doc).

    ``X``: a runs table (DataFrame; ``y=None`` takes its ``joules``; with a ``steps`` column the
    per-step feature is multiplied by it), or a 1-D array / one column of feature values.
    Fitted attributes: ``intercept_`` (J), ``coef_`` (J per unit^k), ``pipeline_``, ``n_train_``."""

    def __init__(self, feature: str = "tos", degree: int = 1):
        self.feature = feature
        self.degree = degree

    def _x(self, X) -> np.ndarray:
        """The run totals of ``feature``: per-step column × ``steps`` when the table has a
        ``steps`` column (the runs-table layout), else the column as given."""
        if isinstance(X, pd.DataFrame):
            if self.feature not in X.columns:
                raise ValueError(f"the table has no column {self.feature!r} (feature={self.feature!r}); "
                                 f"columns: {', '.join(map(str, X.columns))}")
            if STEPS in X.columns and X[STEPS].notna().any():  # an all-empty column: old layout
                return _as_1d(f"feature {self.feature!r}", X[self.feature]) * _as_1d(STEPS, X[STEPS])
            X = X[self.feature]
        return _as_1d(f"feature {self.feature!r}", X)

    def _check_params(self) -> int:
        from .features import check_features

        degree = self.degree
        if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) or degree < 1:
            raise ValueError(f"degree must be a positive integer (the paper uses 1, 2, 3), got {degree!r}")
        if not isinstance(self.feature, str) or not self.feature:
            raise ValueError(f"feature must be a column name such as 'tos' or 'flops', got {self.feature!r}")
        check_features((self.feature,))
        return int(degree)

    @staticmethod
    def _y(X, y) -> np.ndarray:
        if y is None:
            if not (isinstance(X, pd.DataFrame) and "joules" in X.columns):
                raise ValueError("y (joules) is required unless X is a runs table with a 'joules' column")
            y = X["joules"]
        return _as_1d("energies (y)", y)

    def fit(self, X, y=None) -> "EnergyModel":
        degree = self._check_params()
        x = self._x(X)
        y = self._y(X, y)
        if len(y) != len(x):
            raise ValueError(f"X has {len(x)} runs but y has {len(y)} energies")
        distinct = len(np.unique(x))
        if distinct < degree + 1:
            raise ValueError(f"a degree-{degree} law needs runs at {degree + 1} or more distinct "
                             f"{self.feature} values (configurations), got {distinct} "
                             f"(from {len(x)} runs)")
        self.pipeline_ = Pipeline([
            ("scale", StandardScaler()),
            ("poly", PolynomialFeatures(degree, include_bias=False)),
            ("linear", LinearRegression()),
        ]).fit(x[:, None], y)
        scaler = self.pipeline_.named_steps["scale"]
        linear = self.pipeline_.named_steps["linear"]
        mean, scale = float(scaler.mean_[0]), float(scaler.scale_[0])
        in_z = Polynomial([float(linear.intercept_), *map(float, np.ravel(linear.coef_))])
        in_x = in_z(Polynomial([-mean / scale, 1.0 / scale]))
        coefs = np.zeros(degree + 1)
        coefs[:len(in_x.coef)] = in_x.coef
        self.intercept_ = float(coefs[0])
        self.coef_ = coefs[1:]
        self.n_features_in_ = 1
        self.n_train_ = len(x)
        return self

    def _check_fitted(self):
        if not hasattr(self, "coef_"):
            raise ValueError("this EnergyModel is not fitted yet; call fit(runs) first")

    def predict(self, X) -> np.ndarray:
        """Joules of each run of ``X`` (a runs table or feature values)."""
        self._check_fitted()
        if hasattr(self, "pipeline_"):
            return self.pipeline_.predict(self._x(X)[:, None])
        return Polynomial([self.intercept_, *self.coef_])(self._x(X))

    def score(self, X, y=None, sample_weight=None) -> float:
        """R² of the predictions (``y=None``: the table's ``joules``)."""
        return super().score(X, self._y(X, y), sample_weight=sample_weight)

    # -- the law ---------------------------------------------------------------------------------
    def law(self, digits: int = 3) -> str:
        """The fitted law in original units: ``E = 1.71e+03 + 3.65e-12 × TOs``."""
        fmt = f"{{:.{max(0, digits - 1)}e}}"
        if not hasattr(self, "coef_"):
            return f"EnergyModel(feature={self.feature!r}, degree={self.degree}) (not fitted)"
        name = FEATURES.get(self.feature, self.feature)
        text = f"E = {fmt.format(self.intercept_)}"
        for k, c in enumerate(self.coef_, start=1):
            power = name if k == 1 else f"{name}{str(k).translate(_SUPERSCRIPT)}"
            sign = "-" if c < 0 else "+"
            text += f" {sign} {fmt.format(abs(c))} × {power}"
        return text

    def __str__(self) -> str:
        return self.law()

    # -- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        self._check_fitted()
        return {"format": FORMAT, "version": VERSION, "feature": self.feature, "degree": int(self.degree),
                "intercept": float(self.intercept_), "coef": [float(c) for c in self.coef_],
                "n_train": int(self.n_train_), "law": self.law()}

    @classmethod
    def from_dict(cls, data: dict) -> "EnergyModel":
        """The law of :meth:`to_dict` (checked whole by :func:`torch_tos.energy.load_law`)."""
        law = cls(data["feature"], int(data["degree"]))
        law.intercept_ = float(data["intercept"])
        law.coef_ = np.array([float(c) for c in data["coef"]])
        law.n_train_ = int(data["n_train"])
        law.n_features_in_ = 1
        return law

    def save(self, path) -> None:
        """Write the fitted law to ``path`` as JSON, atomically."""
        from ..fileio import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")


def metrics(y_true, y_pred, n_features: int) -> dict:
    """The paper's goodness-of-fit figures for energies ``y_true`` (J) and predictions ``y_pred``.

    Returns a dict:

    - ``adj_r2``: 1 - (1 - R²)(n - 1)/(n - p - 1) with p = ``n_features`` (the polynomial degree);
    - ``r2``: 1 - Σ(E - Ê)² / Σ(E - Ē)²;
    - ``rmse``: sqrt(mean (Ê - E)²), J;
    - ``precision``: 100 x (1 - mean(|Ê - E| / E)), %; ``precision_min``/``precision_max``: the
      same per point, lowest and highest (Table V's "min-max");
    - ``avg_error``/``max_error``: mean and max of |Ê - E|, J; ``n``: number of points.

    Needs positive energies and n > p + 1 points (else adjusted R² is undefined).
    """
    y = _as_1d("y_true", y_true)
    p_hat = _as_1d("y_pred", y_pred)
    if len(y) != len(p_hat):
        raise ValueError(f"y_true has {len(y)} values but y_pred has {len(p_hat)}")
    if isinstance(n_features, bool) or not isinstance(n_features, (int, np.integer)) or n_features < 1:
        raise ValueError(f"n_features must be a positive integer (the degree), got {n_features!r}")
    n, p = len(y), int(n_features)
    if n <= p + 1:
        raise ValueError(f"adjusted R² with {p} regressor(s) needs more than {p + 1} runs, got {n}")
    if (y <= 0).any():
        raise ValueError("energies (y_true) must be positive joules: precision divides by E")
    err = p_hat - y
    abs_err = np.abs(err)
    ss_res = float(np.sum(err ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan
    per_point = 100.0 * (1.0 - abs_err / y)
    return {
        "adj_r2": 1.0 - (1.0 - r2) * (n - 1) / (n - p - 1),
        "r2": r2,
        "rmse": float(np.sqrt(np.mean(err ** 2))),
        "precision": float(per_point.mean()),
        "precision_min": float(per_point.min()),
        "precision_max": float(per_point.max()),
        "avg_error": float(abs_err.mean()),
        "max_error": float(abs_err.max()),
        "n": n,
    }
