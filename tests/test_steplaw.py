"""The step-level law: planted coefficients recovered, identifiability refused with what to add,
held-out ratios and intervals, serialisation."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from torch_tos.energy.steplaw import StepLaw, TERMS

PLANT = {"training": {"alpha": 1.3, "beta_forward": 2e-5, "beta_backward": 8e-6, "beta_optimizer": 3e-5,
                      "beta_memory": 2e-9, "e_step": 1e-3, "e_run": 0.05},
         "inference": {"alpha": 0.9, "beta_forward": 1e-5, "e_step": 2e-4, "e_run": 0.02}}


def priced(mode="training", noise=0.0, families=4, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for f in range(families):
        for width in (1, 2, 3):
            cost = rng.uniform(0.01, 1.0) * width
            ops = rng.integers(50, 2000, size=3)
            fresh = rng.uniform(1e5, 1e7) * width
            for steps in (5, 20):
                for repeat in range(2):
                    row = {"family": f"fam{f}", "width": width, "depth": 1, "steps": steps, "mode": mode,
                           "epochs": steps, "repeat": repeat, "cost_joules": cost * steps,
                           "cost_seconds": cost * steps / 10, "ops_forward": ops[0] * steps,
                           "ops_backward": ops[1] * steps if mode == "training" else 0,
                           "ops_optimizer": ops[2] * steps if mode == "training" else 0,
                           "bytes_fresh": fresh * steps}
                    c = PLANT[mode]
                    e = (c["alpha"] * row["cost_joules"] + c["beta_forward"] * row["ops_forward"]
                         + c.get("beta_backward", 0) * row["ops_backward"] + c.get("beta_optimizer", 0)
                         * row["ops_optimizer"] + c.get("beta_memory", 0) * row["bytes_fresh"] + c["e_step"] * steps
                         + c["e_run"])
                    row["joules"] = e * (1 + noise * rng.standard_normal())
                    row["seconds"] = row["joules"] / 10
                    rows.append(row)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("mode", ["training", "inference"])
def test_planted_coefficients_are_recovered(mode):
    law = StepLaw(mode).fit(priced(mode))
    assert list(law.coef_) == list(TERMS[mode])
    for term, value in PLANT[mode].items():
        assert law.coef_[term] == pytest.approx(value, rel=1e-6)
    assert law.predict(priced(mode)) == pytest.approx(priced(mode)["joules"].to_numpy(), rel=1e-9)
    sec = StepLaw(mode, "seconds").fit(priced(mode))
    assert sec.coef_["alpha"] == pytest.approx(PLANT[mode]["alpha"], rel=1e-6)


def test_held_out_ratios_give_the_interval():
    law = StepLaw().fit(priced(noise=0.05))
    assert law.interval_source_ == "leave-one-family-out"
    assert len(law.ratios_) == len(priced())
    lo, hi = law.interval(0.9)
    assert lo < 1 < hi
    assert lo == pytest.approx(np.quantile(law.ratios_, 0.05)) and hi == pytest.approx(np.quantile(law.ratios_, 0.95))
    with pytest.raises(ValueError, match="coverage"):
        law.interval(1.5)


def test_runs_that_cannot_identify_the_terms_are_refused():
    runs = priced()
    with pytest.raises(ValueError, match="add runs of another length"):
        StepLaw().fit(runs[runs["steps"] == 20])
    one = runs[(runs["family"] == "fam0") & (runs["width"] < 3)]
    with pytest.raises(ValueError, match=r"configuration\(s\).*add runs of other models"):
        StepLaw().fit(one)
    no_opt = runs.assign(ops_optimizer=0)
    with pytest.raises(ValueError, match="no ops_optimizer.*beta_optimizer"):
        StepLaw().fit(no_opt)
    with pytest.raises(ValueError, match="joules must be positive"):
        StepLaw().fit(runs.assign(joules=-1.0))


def test_an_optional_term_the_runs_cannot_identify_is_held_at_zero():
    runs = priced()
    law = StepLaw().fit(runs)
    assert law.coef_["beta_memory"] == pytest.approx(2e-9, rel=1e-6)
    # fresh bytes that follow the kernel cost exactly (a narrow calibration): the other terms are fitted
    follows = StepLaw().fit(runs.assign(bytes_fresh=runs["cost_joules"] * 1e7))
    without = StepLaw().fit(runs.drop(columns="bytes_fresh"))
    for fitted in (follows, without):
        assert list(fitted.coef_) == list(TERMS["training"]) and fitted.coef_["beta_memory"] == 0.0
        assert fitted.coef_["e_run"] > 0 and fitted.predict(runs.drop(columns="bytes_fresh")).shape == (len(runs),)
    # a law file written before the term existed reads it as 0
    old = law.to_dict()
    del old["coef"]["beta_memory"]
    assert StepLaw.from_dict("training", "joules", old).coef_["beta_memory"] == 0.0


def test_sklearn_conventions_and_round_trip():
    law = StepLaw("training")
    assert clone(law).get_params() == {"mode": "training", "quantity": "joules"}
    with pytest.raises(ValueError, match="unknown mode"):
        StepLaw("validation").fit(priced())
    fitted = law.fit(priced(noise=0.02))
    back = StepLaw.from_dict("training", "joules", fitted.to_dict())
    assert back.coef_ == fitted.coef_ and back.interval() == fitted.interval()
    assert back.predict(priced()) == pytest.approx(fitted.predict(priced()))
