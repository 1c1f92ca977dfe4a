"""The step-level law: what per-op costs measured in isolation miss, fitted on whole runs.

The machine profile (:mod:`.machine`) prices each call's kernel on its own. A real run adds what
no microbenchmark sees — the framework's work per op (Python, autograd, the dispatcher), per step
(the training loop, ``zero_grad``) and per run — and its kernels run in a different cache state
than in isolation. :class:`StepLaw` fits these on measured runs with a structure fixed in
advance, one law per mode and quantity (joules or seconds):

    E_run = α · C + β_f · N_f + β_b · N_b + β_o · N_o + β_m · B + e_step · steps + e_run

``C`` is the run's kernel cost priced by the profile (the sum over its calls); ``N_f``, ``N_b``,
``N_o`` its aten calls in the forward pass and loss (called from Python), in backward (called by
the autograd engine) and in the optimizer step; ``B`` the bytes of the new output buffers its
calls allocate (:func:`.pricing.fresh_bytes`); ``steps`` its steps. α is the in-step factor of
the isolated kernel costs, β the cost per op of each phase, β_m the cost per fresh byte, e_step
the cost per step, e_run per run. β_m is what a training step's memory costs beyond its kernels:
the microbenchmarks allocate their outputs from a warm C allocator, while a training process
that holds one model hands each step's activations back to the kernel and faults them in again
in the next step (:mod:`.isolate`), at a cost that follows the bytes, not the kernels' work.
Inference runs (forward passes under ``torch.no_grad()``) have ``α, β_f, e_step, e_run``: few of
their buffers are alive at once, and a β_m did not lower the held-out-family error of inference
runs measured in fresh processes (benchmarks/README.md). A law file without β_m (an earlier
calibration) reads it as 0.
Every coefficient is non-negative (no cost is negative), fitted by least absolute relative
deviations (:func:`.solve.lad_relative`: runs span orders of magnitude, and a configuration whose
kernels the profile misprices moves the fit no more than its share).

A fit needs runs that identify every term: runs of at least two lengths (else per-step and per-run
costs are one number) and a design matrix of full rank (else it names the terms the runs cannot
tell apart), each refused with a message naming what to add. :meth:`StepLaw.calibration_ratios`
gives each run's measured / predicted ratio with the run predicted by a law fitted without it —
without its whole family when the runs name three or more (a model never measured is a new family
more often than a new width), else without its configuration — the residuals the prediction
interval (:meth:`StepLaw.interval`) is read from.

Inputs are a *priced runs table* (:func:`.pricing.price_runs`): one row per run with ``steps``,
``cost_joules``, ``cost_seconds``, ``ops_forward``, ``ops_backward``, ``ops_optimizer`` and the
measured ``joules``/``seconds``, plus the configuration columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin

from .solve import lad_relative

MODES = ("training", "inference")
QUANTITIES = ("joules", "seconds")
#: The terms of each mode's law, in order: the priced table's column (or None for a constant).
TERMS: dict[str, tuple[str, ...]] = {
    "training": ("alpha", "beta_forward", "beta_backward", "beta_optimizer", "beta_memory", "e_step", "e_run"),
    "inference": ("alpha", "beta_forward", "e_step", "e_run"),
}
COLUMNS = {"beta_forward": "ops_forward", "beta_backward": "ops_backward", "beta_optimizer": "ops_optimizer",
           "beta_memory": "bytes_fresh", "e_step": "steps"}
#: Terms a law file may lack (written before the term existed): read as 0.
OPTIONAL_TERMS = ("beta_memory",)
#: Units of each term, for printing.
UNITS = {"alpha": "× kernel cost", "beta_forward": "/ forward op", "beta_backward": "/ backward op",
         "beta_optimizer": "/ optimizer op", "beta_memory": "/ fresh byte", "e_step": "/ step", "e_run": "/ run"}
#: Ranges a prediction is checked against (per step, except ``steps``).
RANGE_COLUMNS = ("steps", "cost_joules", "ops_forward", "ops_backward", "ops_optimizer")


def design(X: pd.DataFrame, mode: str, quantity: str, terms=None) -> np.ndarray:
    """The law's design matrix for the priced runs table ``X`` (columns in ``terms`` order, by
    default :data:`TERMS`; an optional term whose column ``X`` lacks is a column of zeros)."""
    cols = []
    for term in TERMS[mode] if terms is None else terms:
        if term == "alpha":
            cols.append(X[f"cost_{quantity}"].to_numpy(dtype=float))
        elif term == "e_run":
            cols.append(np.ones(len(X)))
        elif term in OPTIONAL_TERMS and COLUMNS[term] not in X:
            cols.append(np.zeros(len(X)))
        else:
            cols.append(X[COLUMNS[term]].to_numpy(dtype=float))
    return np.column_stack(cols)


def fit_terms(X: pd.DataFrame, mode: str, quantity: str = "joules") -> tuple[str, ...]:
    """The terms a fit of ``mode``'s law on ``X`` estimates: all of :data:`TERMS`, or, when the
    runs cannot identify an optional term (a narrow calibration whose fresh bytes follow its
    other columns, or a table without the column), the others, the optional ones held at 0. Runs
    that cannot identify even those raise :func:`check_identifiable`'s error."""
    full = TERMS[mode]
    if all(COLUMNS[t] in X for t in full if t in OPTIONAL_TERMS):
        try:
            check_identifiable(X, mode, quantity, full)
            return full
        except ValueError:
            pass
    reduced = tuple(t for t in full if t not in OPTIONAL_TERMS)
    check_identifiable(X, mode, quantity, reduced)
    return reduced


def check_identifiable(X: pd.DataFrame, mode: str, quantity: str = "joules", terms=None) -> None:
    """A one-line ``ValueError`` naming what to add when the runs of ``X`` cannot identify the
    ``terms`` (default: all of :data:`TERMS`) of ``mode``'s law (module doc)."""
    n = len(X)
    terms = TERMS[mode] if terms is None else tuple(terms)
    if n < len(terms) + 2:
        raise ValueError(f"{n} {mode} run(s) cannot fit the {len(terms)} terms of the {mode} law; measure at "
                         f"least {len(terms) + 2} runs of several configurations (torch-tos calibrate)")
    steps = X["steps"].to_numpy(dtype=float)
    if np.unique(steps).size < 2:
        raise ValueError(f"every {mode} run has {steps[0]:g} steps: per-step and per-run costs cannot be told "
                         "apart; add runs of another length (calibrate runs each configuration at two lengths)")
    from .runs import model_keys

    configs = model_keys(X).nunique() if len(X) else 0
    if configs < 3:
        raise ValueError(f"the {mode} runs hold {configs} model configuration(s): the cost per op and per kernel "
                         "cannot be told apart; add runs of other models or sizes (3 configurations or more)")
    A = design(X, mode, quantity, terms)
    A = A / np.where(np.linalg.norm(A, axis=0) > 0, np.linalg.norm(A, axis=0), 1.0)
    if np.linalg.matrix_rank(A) < A.shape[1]:
        dead = [t for t, c in zip(terms, A.T) if not c.any()]
        if dead:
            raise ValueError(f"the {mode} runs have no {', '.join(COLUMNS.get(t, t) for t in dead)}: the term(s) "
                             f"{', '.join(dead)} cannot be fitted; add runs that have them")
        raise ValueError(f"the {mode} runs cannot tell the terms {', '.join(terms)} apart (their columns are "
                         "linearly dependent); add runs of other configurations and lengths")


class StepLaw(RegressorMixin, BaseEstimator):
    """The step-level law of one ``mode`` and ``quantity`` (module doc), a scikit-learn estimator
    on priced runs tables (``clone``, ``cross_val_score`` work).

    Fitted: ``coef_`` (term → value, in the units of :data:`UNITS`: α is a factor, β J or s per
    op, e_step per step, e_run per run), ``ranges_`` (calibrated min/max of :data:`RANGE_COLUMNS`
    per step), ``ratios_`` (held-out measured/predicted ratios), ``interval_source_``, ``n_train_``."""

    def __init__(self, mode: str = "training", quantity: str = "joules"):
        self.mode = mode
        self.quantity = quantity

    def _check(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; accepted: {', '.join(MODES)}")
        if self.quantity not in QUANTITIES:
            raise ValueError(f"unknown quantity {self.quantity!r}; accepted: {', '.join(QUANTITIES)}")

    def _y(self, X, y) -> np.ndarray:
        y = X[self.quantity] if y is None else y
        y = np.asarray(y, dtype=float).reshape(-1)
        if not np.isfinite(y).all() or (y <= 0).any():
            raise ValueError(f"{self.quantity} must be positive finite numbers: the law minimises relative error")
        return y

    def fit(self, X: pd.DataFrame, y=None) -> "StepLaw":
        self._check()
        terms = fit_terms(X, self.mode, self.quantity)
        A, y = design(X, self.mode, self.quantity, terms), self._y(X, y)
        c = lad_relative(A, y)
        self.coef_ = dict.fromkeys(TERMS[self.mode], 0.0)
        self.coef_.update({t: float(v) for t, v in zip(terms, c)})
        per_step = X[[col for col in RANGE_COLUMNS if col in X]].astype(float)
        ranges = {}
        for col in RANGE_COLUMNS:
            if col not in per_step:
                continue
            v = per_step[col].to_numpy() if col == "steps" else per_step[col].to_numpy() / X["steps"].to_numpy()
            ranges[col] = (float(v.min()), float(v.max()))
        self.ranges_ = ranges
        self.n_train_ = len(y)
        self.ratios_, self.interval_source_ = self._heldout(X, A, y, terms)
        return self

    def _heldout(self, X, A, y, terms) -> tuple[np.ndarray, str]:
        from .runs import config_keys

        groups = [("leave-one-family-out", X["family"].astype(str).tolist() if "family" in X else None),
                  ("leave-one-configuration-out", [str(k) for k in config_keys(X)])]
        for source, keys in groups:
            if keys is None or len(set(keys)) < 3:
                continue
            keys = np.array(keys, dtype=object)
            pred = np.full(len(y), np.nan)
            for k in set(keys):
                test = keys == k
                try:
                    check_identifiable(X[~test], self.mode, self.quantity, terms)
                except ValueError:
                    continue
                pred[test] = A[test] @ lad_relative(A[~test], y[~test])
            ratios = y / pred
            ratios = ratios[np.isfinite(ratios) & (pred > 0)]
            if len(ratios) >= 3:
                return ratios, source
        pred = A @ np.array([self.coef_[t] for t in terms])
        return y / pred, "in-sample"

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Predicted joules (or seconds) of each run of the priced runs table ``X``."""
        if not hasattr(self, "coef_"):
            raise ValueError("this StepLaw is not fitted yet; call fit(priced_runs) first")
        return design(X, self.mode, self.quantity) @ np.array([self.coef_[t] for t in TERMS[self.mode]])

    def interval(self, coverage: float = 0.9) -> tuple[float, float]:
        """``(low, high)`` ratios: a prediction P has the ``coverage`` interval ``(low·P, high·P)``,
        the quantiles of the held-out ratios (:attr:`ratios_`)."""
        if not 0 < coverage < 1:
            raise ValueError(f"coverage must be between 0 and 1, got {coverage!r}")
        a = (1 - coverage) / 2
        return float(np.quantile(self.ratios_, a)), float(np.quantile(self.ratios_, 1 - a))

    def to_dict(self) -> dict:
        return {"coef": dict(self.coef_), "ranges": {k: list(v) for k, v in self.ranges_.items()},
                "ratios": [float(r) for r in self.ratios_], "interval_source": self.interval_source_,
                "n_train": int(self.n_train_)}

    @classmethod
    def from_dict(cls, mode: str, quantity: str, data: dict) -> "StepLaw":
        """The law of :meth:`to_dict` (checked whole by :func:`torch_tos.energy.load_law`)."""
        law = cls(mode, quantity)
        law.coef_ = {t: float(data["coef"].get(t, 0.0)) if t in OPTIONAL_TERMS else float(data["coef"][t])
                     for t in TERMS[mode]}
        law.ranges_ = {k: (float(v[0]), float(v[1])) for k, v in data["ranges"].items()}
        law.ratios_ = np.array([float(r) for r in data["ratios"]])
        law.interval_source_ = str(data["interval_source"])
        law.n_train_ = int(data["n_train"])
        return law

    def terms(self, cost: float, ops: dict, steps: int, fresh: float = 0.0) -> dict[str, float]:
        """The prediction of a run split by term: ``cost`` its priced kernel cost, ``ops`` its calls
        per phase group (``forward``, ``backward``, ``optimizer``), ``steps`` its steps, ``fresh``
        its fresh bytes."""
        out = {}
        for term, v in self.coef_.items():
            if term == "alpha":
                out[term] = v * cost
            elif term == "beta_memory":
                out[term] = v * fresh
            elif term == "e_step":
                out[term] = v * steps
            elif term == "e_run":
                out[term] = v
            else:
                out[term] = v * ops.get(term.split("_", 1)[1], 0)
        return out


__all__ = ["StepLaw", "TERMS", "OPTIONAL_TERMS", "fit_terms", "MODES", "QUANTITIES", "UNITS", "design", "check_identifiable", "RANGE_COLUMNS"]
