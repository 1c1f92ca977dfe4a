"""Energy laws: the paper's E = f(TOs), the overhead-aware per-step law, and the paper's metrics.

**The overhead-aware law** (``EnergyModel(features=("tos", "calls", "bytes"))``): for a run of
``steps`` training steps whose ONE step has the counted features f_k (:mod:`.features`),

    E = steps × (e_step + Σ_k b_k · f_k) + e_run,

with every coefficient non-negative (joules per step, per TO, per kernel call, per byte, per run
cannot be negative), fitted by non-negative least squares on the *relative* residuals
(Ê - E) / E (runs span orders of magnitude; :func:`scipy.optimize.nnls` on the rows divided by E,
columns scaled to unit norm). ``fixed`` picks the fixed terms (``"step"``, ``"run"``). Features
are restricted to counted quantities (:func:`~.features.check_features`). The runs table holds
per-step feature columns and ``steps`` (:func:`per_step`). ``str(law)`` prints it with units:
``E = steps × (2.1e-04 J/step + 3.6e-12 J/TO · TOs + 1.9e-06 J/call · calls) + 0.0e+00 J``.

**The paper's law** :class:`EnergyModel` ``(feature, degree)`` is the polynomial regression (section II-C and III, Eq. 7-8):
``Pipeline(StandardScaler, PolynomialFeatures(degree), LinearRegression)`` on one metric of a
run (TOs or FLOPs). The feature is standardised before it is raised to powers (TOs reach 1e15,
so TOs³ would overflow the conditioning of any solver); the fitted polynomial is then mapped
back to original units, so ``intercept_`` is in joules and ``coef_[k-1]`` in joules per TO^k.

:func:`metrics` gives what the paper reports (Fig. 6c/e, Table V): adjusted R² with p = number
of regressors, RMSE (J), precision = 100 % x (1 - mean(|Ê - E| / E)) with its min and max over
the points, average and maximum absolute error (J).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.polynomial import Polynomial
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from .runs import FEATURES
from .solve import FIXED, STEPS, _as_1d, _family_keys, _group_keys, nnls_relative, per_step

_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


class EnergyModel(RegressorMixin, BaseEstimator):
    """An energy law fitted to runs: the paper's polynomial ``E = a0 + a1 x + … + a_d x^d`` of one
    run total ``feature`` (``features=None``), or the overhead-aware per-step law
    ``E = steps × (e_step + Σ b_k f_k) + e_run`` on the counted ``features`` (module doc).

    ``X``: a runs table (DataFrame; ``y=None`` takes its ``joules``), or for the paper's law a 1-D
    array / one column of feature values. Works with ``clone``, ``cross_val_score``,
    ``GridSearchCV`` (params ``feature``, ``degree``, ``features``, ``fixed``).

    Fitted attributes, paper's law: ``intercept_`` (J), ``coef_`` (J per unit^k), ``pipeline_``.
    Per-step law: ``e_step_`` (J/step), ``e_run_`` (J, also ``intercept_``), ``coef_`` (J per
    unit of each feature, per step), ``ranges_`` (calibrated min/max of each per-step feature and
    of ``steps``), ``n_train_``; :meth:`interval` (prediction-interval ratios from the calibration
    residuals), :meth:`save`, and ``predict(model, inputs, ...)`` for an unmeasured nn.Module
    (:func:`torch_tos.energy.predict.predict_model`), :meth:`joules_by_row`, :meth:`fixed_joules`.
    """

    def __init__(self, feature: str = "tos", degree: int = 1, features=None, fixed=FIXED):
        self.feature = feature
        self.degree = degree
        self.features = features
        self.fixed = fixed

    @property
    def per_step_law(self) -> bool:
        return self.features is not None

    # -- input handling ------------------------------------------------------------------
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

    def _check_linear(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        from .features import check_features

        feats = check_features(self.features)
        fixed = (self.fixed,) if isinstance(self.fixed, str) else tuple(self.fixed or ())
        bad = [f for f in fixed if f not in FIXED]
        if bad:
            raise ValueError(f"unknown fixed term {bad[0]!r}; accepted: {', '.join(FIXED)} (or none)")
        return feats, fixed

    @staticmethod
    def _y(X, y) -> np.ndarray:
        if y is None:
            if not (isinstance(X, pd.DataFrame) and "joules" in X.columns):
                raise ValueError("y (joules) is required unless X is a runs table with a 'joules' column")
            y = X["joules"]
        return _as_1d("energies (y)", y)

    def _design(self, X) -> np.ndarray:
        feats, fixed = self._check_linear()
        steps, F = per_step(X, feats)
        cols = ([steps] if "step" in fixed else []) + [steps * F[:, k] for k in range(len(feats))]
        cols += [np.ones(len(steps))] if "run" in fixed else []
        return np.column_stack(cols)

    # -- sklearn API ---------------------------------------------------------------------
    def fit(self, X, y=None):
        if self.per_step_law:
            return self._fit_linear(X, y)
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

    def _fit_linear(self, X, y):
        feats, fixed = self._check_linear()
        A = self._design(X)
        y = self._y(X, y)
        if len(y) != len(A):
            raise ValueError(f"X has {len(A)} runs but y has {len(y)} energies")
        if (y <= 0).any():
            raise ValueError("energies (y) must be positive joules: the law minimises relative error")
        if len(y) < 2:
            raise ValueError(f"a law needs at least 2 runs, got {len(y)}")
        c = nnls_relative(A, y)
        i = 0
        self.e_step_ = float(c[0]) if "step" in fixed else 0.0
        i += "step" in fixed
        self.coef_ = c[i:i + len(feats)].astype(float)
        self.e_run_ = float(c[-1]) if "run" in fixed else 0.0
        self.intercept_ = self.e_run_
        steps, F = per_step(X, feats)
        self.ranges_ = {f: (float(F[:, k].min()), float(F[:, k].max())) for k, f in enumerate(feats)}
        self.ranges_[STEPS] = (float(steps.min()), float(steps.max()))
        self.feature_names_in_ = np.array(feats, dtype=object)
        self.n_features_in_ = len(feats)
        self.n_train_ = len(y)
        self._calibration = (A, y, _group_keys(X), _family_keys(X))
        self.meta_ = {}
        from .law import stamp

        stamp(self, X)
        return self

    def _check_fitted(self):
        if not hasattr(self, "coef_"):
            raise ValueError("this EnergyModel is not fitted yet; call fit(runs) first")

    def predict(self, X, *args, **kwargs):
        """Joules of each run of the table ``X``; with an ``nn.Module`` as ``X``, the
        :class:`~torch_tos.energy.predict.Prediction` of training it (see
        :func:`~torch_tos.energy.predict.predict_model`: ``predict(model, inputs, loss_fn=…,
        optimizer=…, steps=N)``)."""
        import torch

        if isinstance(X, torch.nn.Module):
            from .predict import predict_model

            return predict_model(self, X, *args, **kwargs)
        if args or kwargs:
            raise TypeError("predict(X) takes one runs table; predict(model, inputs, ...) takes an nn.Module")
        self._check_fitted()
        if not self.per_step_law:
            return self.pipeline_.predict(self._x(X)[:, None])
        return self._design(X) @ self._coefs()

    def score(self, X, y=None, sample_weight=None) -> float:
        """R² of the predictions (``y=None``: the table's ``joules``)."""
        return super().score(X, self._y(X, y), sample_weight=sample_weight)

    def _coefs(self) -> np.ndarray:
        _feats, fixed = self._check_linear()
        return np.array(([self.e_step_] if "step" in fixed else []) + list(self.coef_)
                        + ([self.e_run_] if "run" in fixed else []))

    # -- the per-step law: parts, intervals, rows ----------------------------------------
    def step_joules(self, features: dict) -> dict[str, float]:
        """Joules of ONE step per term: ``{"step": e_step, feature: b_k · f_k, …}``."""
        self._require_linear()
        out = {"step": self.e_step_}
        for f, b in zip(self.feature_names_in_, self.coef_):
            if f not in features:
                raise ValueError(f"the features have no {f!r}; the law needs {', '.join(self.feature_names_in_)}")
            out[str(f)] = float(b) * float(features[f])
        return out

    def fixed_joules(self, steps: int = 1) -> float:
        """The joules that do not depend on the model: ``e_step × steps + e_run``."""
        self._require_linear()
        return self.e_step_ * steps + self.e_run_

    def joules_by_row(self, counts, *, table=None, model=None, groups=None) -> dict[tuple, float]:
        """Variable joules of ONE step for each row key of ``counts`` (a Counts or a Report): the
        law's per-feature coefficients applied to each row's own features (they add up to the
        step's variable joules; add :meth:`fixed_joules` for the total)."""
        from .features import _groups, as_counts, row_features

        self._require_linear()
        g = _groups(model, groups)
        coefs = dict(zip(map(str, self.feature_names_in_), map(float, self.coef_)))
        out = {}
        for key, row in as_counts(counts).rows.items():
            f = row_features(key, row, table, g)
            out[key] = sum(b * f.get(name, 0.0) for name, b in coefs.items())
        return out

    def interval(self, coverage: float = 0.9) -> tuple[float, float]:
        """``(low, high)`` ratios E/Ê covering ``coverage`` of the calibration runs, each run
        predicted by a law fitted without it (:meth:`calibration_ratios`). A prediction Ê has the
        interval ``(low·Ê, high·Ê)``."""
        self._require_linear()
        if not 0 < coverage < 1:
            raise ValueError(f"coverage must be between 0 and 1, got {coverage!r}")
        ratios = self.calibration_ratios()
        a = (1 - coverage) / 2
        return float(np.quantile(ratios, a)), float(np.quantile(ratios, 1 - a))

    def calibration_ratios(self) -> np.ndarray:
        """E/Ê of every calibration run, Ê from a law fitted without it: without its whole family
        when the runs name 3 or more families (``interval_source_`` "leave-one-family-out": a model
        that was never measured is a new family more often than a new width of a known one), else
        without its configuration (3 or more configurations: "leave-one-configuration-out"), else
        in-sample."""
        self._require_linear()
        cached = getattr(self, "ratios_", None)
        if cached is not None:
            return cached
        A, y, configs, families = self._calibration
        pred = np.empty(len(y))
        for source, keys in (("leave-one-family-out", families), ("leave-one-configuration-out", configs)):
            if keys is not None and len(set(keys)) >= 3:
                self.interval_source_ = source
                for k in set(keys):
                    test = np.array([kk == k for kk in keys])
                    pred[test] = A[test] @ nnls_relative(A[~test], y[~test])
                break
        else:
            self.interval_source_ = "in-sample"
            pred = A @ self._coefs()
        pred = np.where(pred > 0, pred, np.nan)
        self.ratios_ = y / pred
        self.ratios_ = self.ratios_[np.isfinite(self.ratios_)]
        return self.ratios_

    def _require_linear(self):
        self._check_fitted()
        if not self.per_step_law:
            raise ValueError("this is the paper's polynomial law of run totals; per-step parts, intervals and "
                             "predictions need EnergyModel(features=(...))")

    def save(self, path) -> None:
        """Write the fitted per-step law with its machine fingerprint to JSON (:mod:`.law`)."""
        from .law import save_law

        save_law(self, path)

    # -- the law -------------------------------------------------------------------------
    def law(self, digits: int = 3) -> str:
        """The fitted law in original units: ``E = 1.71e+03 + 3.65e-12 × TOs`` (paper), or
        ``E = steps × (… J/step + … J/TO · TOs + …) + … J`` (per-step law)."""
        fmt = f"{{:.{max(0, digits - 1)}e}}"
        if not hasattr(self, "coef_"):
            what = (f"features={tuple(self.features)!r}" if self.per_step_law
                    else f"feature={self.feature!r}, degree={self.degree}")
            return f"EnergyModel({what}) (not fitted)"
        if self.per_step_law:
            from .features import unit

            _feats, fixed = self._check_linear()
            terms = [f"{fmt.format(self.e_step_)} J/step"] if "step" in fixed else []
            for f, b in zip(self.feature_names_in_, self.coef_):
                sing, plural = unit(str(f))
                terms.append(f"{fmt.format(b)} J/{sing} · {plural}")
            text = f"E = steps × ({' + '.join(terms)})"
            return text + (f" + {fmt.format(self.e_run_)} J" if "run" in fixed else "")
        name = FEATURES.get(self.feature, self.feature)
        text = f"E = {fmt.format(self.intercept_)}"
        for k, c in enumerate(self.coef_, start=1):
            power = name if k == 1 else f"{name}{str(k).translate(_SUPERSCRIPT)}"
            sign = "-" if c < 0 else "+"
            text += f" {sign} {fmt.format(abs(c))} × {power}"
        return text

    def __str__(self) -> str:
        return self.law()


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
