"""The paper's law as its own estimator and the honest evaluation harness (held-out splits, the
mean-only baseline, the noise floor) on the paper's laws and the step-level law."""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from torch_tos.energy import EnergyModel
from torch_tos.energy.evaluate import evaluate, evaluate_cost_model, format_evaluation, summarize
from torch_tos.energy.steplaw import StepLaw

from test_steplaw import priced


def test_paper_law_uses_run_totals_when_steps_present():
    runs = priced()
    runs["tos"] = runs["cost_joules"] / runs["steps"] * 1e12
    runs["joules"] = 7.0 + 2e-12 * runs["tos"] * runs["steps"]
    law = EnergyModel("tos").fit(runs)
    assert law.intercept_ == pytest.approx(7.0) and law.coef_[0] == pytest.approx(2e-12)
    assert law.get_params() == {"feature": "tos", "degree": 1}
    assert not hasattr(clone(law), "coef_")
    with pytest.raises(ValueError, match="not a counted feature"):
        EnergyModel("joules").fit(runs)


def test_evaluate_baselines_floor_and_splits():
    runs = priced(noise=0.05, families=6)
    runs["tos"] = runs["cost_joules"] / runs["steps"] * 1e12
    laws = {"step law": StepLaw("training"), "TOs (paper)": EnergyModel("tos")}
    ev = evaluate(runs, laws, splits=("random", "loco", "lofo"), seeds=range(10))
    s = summarize(ev)
    assert ev[ev["split"] == "random"]["fold"].nunique() == 10
    floor, law = s.loc["noise floor", ("loco", "mean")], s.loc["step law", ("loco", "mean")]
    # 5 % noise: the floor is ~4 % (mean |noise| of the other repeat), the true structure about the same
    assert 2 < floor < 8 and law < 1.5 * floor
    assert s.loc["mean-only", ("loco", "mean")] > 5 * law
    text = format_evaluation(ev, "loco")
    assert "noise floor" in text and "mean-only" in text and "±" in text and "adjusted R²" in text
    with pytest.raises(ValueError, match="unknown split 'kfold'"):
        evaluate(runs, laws, splits=("kfold",))
    both = evaluate_cost_model(pd.concat([runs, priced("inference", noise=0.05, families=6)]))
    assert set(both["mode"]) == {"training", "inference"} and "cost model" in set(both["law"])


def test_configurations_differing_only_in_steps_stay_separate():
    runs = priced(families=2)
    twin = runs.copy()
    twin["steps"] = twin["steps"] * 3
    twin["joules"] = twin["joules"] * 2.5
    both = pd.concat([runs, twin], ignore_index=True)
    ev = evaluate(both, {}, splits=("loco",))
    n_folds = ev[(ev["split"] == "loco") & (ev["fold"].astype(str) != "pooled")]["fold"].nunique()
    assert n_folds == 2 * 3 * 2 * 2  # families × widths × lengths × the two step counts
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        floor = summarize(ev).loc["noise floor", ("loco", "mean")]
    assert floor == pytest.approx(0.0, abs=1e-9)  # the repeats of each configuration agree exactly


def test_a_fold_that_cannot_fit_predicts_nothing():
    runs = priced(families=3)
    ev = evaluate(runs[runs["steps"] == 20].reset_index(drop=True), {"step law": StepLaw()}, splits=("lofo",))
    assert np.isnan(ev[ev["law"] == "step law"]["mre"]).all()  # one length: no fold identifies e_step vs e_run
