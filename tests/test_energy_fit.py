"""EnergyModel (the scikit-learn estimator of E = f(TOs)) and the paper's metrics."""

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score

from torch_tos.energy import EnergyModel, metrics

A, B = 1.71e3, 3.65e-12  # the paper's Eq. 7, laptop CPU, sigmoid, TOs


def synthetic(n=300, seed=0, noise=5.0):
    rng = np.random.default_rng(seed)
    tos = rng.uniform(2e13, 2e14, n)
    return tos, A + B * tos + rng.normal(0, noise, n)


def test_recovers_a_and_b_within_one_percent():
    tos, e = synthetic()
    model = EnergyModel("tos", 1).fit(tos, e)
    assert model.intercept_ == pytest.approx(A, rel=0.01)
    assert model.coef_[0] == pytest.approx(B, rel=0.01)
    assert model.coef_.shape == (1,)
    assert str(model) == model.law()
    assert model.law().startswith("E = 1.7") and "e-12 × TOs" in model.law()


def test_law_prints_like_eq7():
    tos = np.array([1e13, 2e13, 3e13, 4e13])
    model = EnergyModel().fit(tos, A + B * tos)
    assert model.law() == "E = 1.71e+03 + 3.65e-12 × TOs"
    flops = EnergyModel("flops", 2).fit(pd.DataFrame({"flops": tos / 1e4, "joules": 5 - 1e-9 * tos / 1e4
                                                      + 2e-18 * (tos / 1e4) ** 2}))
    assert flops.law() == "E = 5.00e+00 - 1.00e-09 × FLOPs + 2.00e-18 × FLOPs²"
    assert "not fitted" in str(EnergyModel())


def test_higher_degree_in_original_units():
    x = np.linspace(1e14, 1e15, 40)
    y = 100 + 2e-13 * x + 3e-28 * x ** 2 + 1e-43 * x ** 3
    model = EnergyModel("tos", 3).fit(x, y)
    assert model.intercept_ == pytest.approx(100, rel=1e-4)
    np.testing.assert_allclose(model.coef_, [2e-13, 3e-28, 1e-43], rtol=1e-4)
    np.testing.assert_allclose(model.predict(x), y, rtol=1e-9)
    # the polynomial in original units reproduces the pipeline's predictions
    manual = model.intercept_ + sum(c * x ** (k + 1) for k, c in enumerate(model.coef_))
    np.testing.assert_allclose(manual, y, rtol=1e-6)


def test_input_forms_agree():
    tos, e = synthetic(50)
    df = pd.DataFrame({"tos": tos, "flops": tos / 1e4, "joules": e})
    preds = [EnergyModel().fit(X, e).predict(X) for X in (tos, tos[:, None], df, df[["tos"]])]
    for p in preds[1:]:
        np.testing.assert_allclose(p, preds[0])
    np.testing.assert_allclose(EnergyModel().fit(df).predict(df), preds[0])  # y from 'joules'


def test_sklearn_protocol_clone_cross_val_grid():
    tos, e = synthetic(120)
    df = pd.DataFrame({"tos": tos, "flops": tos, "joules": e})
    model = EnergyModel(feature="tos", degree=2)
    assert model.get_params() == {"feature": "tos", "degree": 2}
    assert clone(model).set_params(degree=3).degree == 3
    scores = cross_val_score(EnergyModel(), df, df["joules"], cv=KFold(5, shuffle=True, random_state=0))
    assert scores.min() > 0.9  # R² from RegressorMixin.score
    grid = GridSearchCV(EnergyModel(), {"degree": [1, 2, 3]}, cv=3).fit(df, df["joules"])
    assert grid.best_params_["degree"] in (1, 2, 3)


def test_bad_input():
    with pytest.raises(ValueError, match="needs runs at 3 or more distinct tos values"):
        EnergyModel(degree=2).fit([1e13, 1e13, 2e13, 2e13], [1, 1, 2, 2])
    with pytest.raises(ValueError, match="degree must be a positive integer"):
        EnergyModel(degree=0).fit([1, 2, 3], [1, 2, 3])
    with pytest.raises(ValueError, match="no column 'tos'"):
        EnergyModel().fit(pd.DataFrame({"flops": [1, 2, 3]}), [1, 2, 3])
    with pytest.raises(ValueError, match="NaN"):
        EnergyModel().fit([1, 2, 3], [1, np.nan, 3])
    with pytest.raises(ValueError, match="X has 3 runs but y has 2"):
        EnergyModel().fit([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="one column"):
        EnergyModel().fit(np.ones((3, 2)), [1, 2, 3])
    with pytest.raises(ValueError, match="not fitted"):
        EnergyModel().predict([1, 2])


def test_metrics_on_a_hand_computed_four_point_example():
    e = np.array([100.0, 200.0, 300.0, 400.0])
    e_hat = np.array([110.0, 190.0, 330.0, 400.0])
    # errors Ê - E = 10, -10, 30, 0; |errors| = 10, 10, 30, 0
    # RMSE = sqrt((100 + 100 + 900 + 0) / 4) = sqrt(275) = 16.5831...
    # avg error = 50 / 4 = 12.5 J; max error = 30 J
    # relative errors = 0.1, 0.05, 0.1, 0 -> mean 0.0625 -> precision = 93.75 %
    # per point precision: 90, 95, 90, 100 -> min 90, max 100
    # SS_res = 1100; mean E = 250; SS_tot = 22500 + 2500 + 2500 + 22500 = 50000
    # R² = 1 - 1100 / 50000 = 0.978; adjusted (n = 4, p = 1) = 1 - 0.022 * 3 / 2 = 0.967
    m = metrics(e, e_hat, n_features=1)
    assert m["rmse"] == pytest.approx(math.sqrt(275))
    assert m["avg_error"] == pytest.approx(12.5)
    assert m["max_error"] == pytest.approx(30.0)
    assert m["precision"] == pytest.approx(93.75)
    assert m["precision_min"] == pytest.approx(90.0)
    assert m["precision_max"] == pytest.approx(100.0)
    assert m["r2"] == pytest.approx(0.978)
    assert m["adj_r2"] == pytest.approx(0.967)
    assert m["n"] == 4


def test_metrics_bad_input():
    with pytest.raises(ValueError, match="needs more than 3 runs, got 3"):
        metrics([1, 2, 3], [1, 2, 3], n_features=2)
    with pytest.raises(ValueError, match="positive joules"):
        metrics([1, -2, 3, 4], [1, 2, 3, 4], n_features=1)
    with pytest.raises(ValueError, match="y_true has 4 values but y_pred has 3"):
        metrics([1, 2, 3, 4], [1, 2, 3], n_features=1)
