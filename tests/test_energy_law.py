"""The overhead-aware per-step law: planted-law recovery, non-negativity, the feature whitelist,
save/load with the machine fingerprint, and the honest evaluation."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from torch_tos.energy import EnergyModel
from torch_tos.energy.evaluate import evaluate, format_evaluation, summarize
from torch_tos.energy.law import FingerprintWarning, check_fingerprint, fingerprint, load_law

E_STEP, B_TOS, C_CALL, D_BYTE, E_RUN = 2e-3, 3e-12, 4e-3, 1e-8, 5.0


def planted(n_cfg=30, repeats=3, noise=0.0, seed=0) -> pd.DataFrame:
    """Runs whose energy follows E = steps·(e_step + b·TOs + c·calls + d·bytes) + e_run exactly
    (times a lognormal noise of ``noise`` relative sd)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_cfg):
        tos, calls, nbytes = rng.uniform(1e9, 1e12), rng.uniform(20, 500), rng.uniform(1e6, 1e8)
        steps = int(rng.choice([20, 60, 200]))
        e = steps * (E_STEP + B_TOS * tos + C_CALL * calls + D_BYTE * nbytes) + E_RUN
        for r in range(repeats):
            rows.append({"family": "abc"[i % 3], "width": i, "steps": steps, "repeat": r, "tos": tos,
                         "flops": tos / 50, "calls": calls, "bytes": nbytes, "meter": "cputime",
                         "joules": e * (1 + noise * rng.standard_normal())})
    return pd.DataFrame(rows)


def test_recovers_planted_multi_feature_law_within_one_percent():
    law = EnergyModel(features=("tos", "calls", "bytes")).fit(planted())
    assert law.e_step_ == pytest.approx(E_STEP, rel=0.01)
    np.testing.assert_allclose(law.coef_, [B_TOS, C_CALL, D_BYTE], rtol=0.01)
    assert law.e_run_ == pytest.approx(E_RUN, rel=0.01)
    assert law.score(planted()) == pytest.approx(1.0)
    text = str(law)
    assert text.startswith("E = steps × (2.00e-03 J/step + 3.00e-12 J/TO · TOs + 4.00e-03 J/call · calls"
                           " + 1.00e-08 J/B · bytes) + 5.00e+00 J")


def test_coefficients_are_non_negative():
    runs = planted(noise=0.02)
    # energy that falls with bytes: an unconstrained fit would give bytes a negative coefficient
    runs["joules"] = runs["joules"] * (2 - runs["bytes"] / runs["bytes"].max())
    law = EnergyModel(features=("tos", "calls", "bytes")).fit(runs)
    assert (law.coef_ >= 0).all() and law.e_step_ >= 0 and law.e_run_ >= 0
    # the unconstrained least-squares fit would indeed go negative (the test can fail)
    A = law._calibration[0] / runs["joules"].to_numpy()[:, None]
    free = np.linalg.lstsq(A, np.ones(len(runs)), rcond=None)[0]
    assert (free < 0).any()


def test_minimises_relative_not_absolute_error():
    runs = planted(noise=0.0)
    runs.loc[runs["joules"].idxmax(), "joules"] *= 1.5  # one outlier on the largest run
    law = EnergyModel(features=("tos", "calls", "bytes")).fit(runs)
    rel = np.abs(law.predict(runs) - runs["joules"]) / runs["joules"]
    assert np.median(rel) < 0.02  # the small runs stay well predicted


def test_feature_whitelist_rejects_measured_columns():
    runs = planted()
    with pytest.raises(ValueError, match="'seconds' is a measured column, not a counted feature"):
        EnergyModel(features=("tos", "seconds")).fit(runs.assign(seconds=1.0))
    with pytest.raises(ValueError, match="'joules' is a measured column"):
        EnergyModel("joules").fit(runs)
    with pytest.raises(ValueError, match="'width' is not a counted feature"):
        EnergyModel(features=("width",)).fit(runs)
    with pytest.raises(ValueError, match="no column.*steps"):
        EnergyModel(features=("tos",)).fit(runs.drop(columns="steps"))
    with pytest.raises(ValueError, match="unknown fixed term 'epoch'"):
        EnergyModel(features=("tos",), fixed=("epoch",)).fit(runs)


def test_sklearn_protocol():
    law = EnergyModel(features=("tos", "calls"), fixed=("run",))
    assert law.get_params() == {"feature": "tos", "degree": 1, "features": ("tos", "calls"), "fixed": ("run",)}
    fitted = clone(law).fit(planted())
    assert fitted.e_step_ == 0.0 and not hasattr(law, "coef_")
    assert list(fitted.feature_names_in_) == ["tos", "calls"]


def test_paper_law_uses_run_totals_when_steps_present():
    runs = planted()
    runs["joules"] = 7.0 + 2e-12 * runs["tos"] * runs["steps"]
    law = EnergyModel("tos").fit(runs)
    assert law.intercept_ == pytest.approx(7.0) and law.coef_[0] == pytest.approx(2e-12)


def test_save_load_round_trip(tmp_path):
    runs = planted(noise=0.03)
    law = EnergyModel(features=("tos", "calls", "bytes")).fit(runs)
    law.save(tmp_path / "law.json")
    back = load_law(tmp_path / "law.json")
    assert str(back) == str(law)
    np.testing.assert_allclose(back.predict(runs), law.predict(runs), rtol=1e-12)
    assert back.interval() == pytest.approx(law.interval())
    assert back.ranges_.keys() == law.ranges_.keys()
    for name, (low, high) in law.ranges_.items():
        assert back.ranges_[name] == (pytest.approx(low), pytest.approx(high))
    fp = json.loads((tmp_path / "law.json").read_text())["fingerprint"]
    assert {"cpu", "cores", "logical_cores", "threads", "gpu", "torch", "meter", "date"} <= set(fp)
    assert fp["meter"] == "cputime"
    assert check_fingerprint(back) == []


def test_fingerprint_mismatch_warns(tmp_path):
    law = EnergyModel(features=("tos",)).fit(planted())
    law.fingerprint_ = {**fingerprint(), "cpu": "Some Other CPU", "torch": "0.1"}
    with pytest.warns(FingerprintWarning, match="cpu: law 'Some Other CPU'"):
        diffs = check_fingerprint(law)
    assert len(diffs) == 2


def test_load_law_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_law(tmp_path / "none.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a JSON law file"):
        load_law(tmp_path / "x.json")
    (tmp_path / "y.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a torch_tos law file"):
        load_law(tmp_path / "y.json")
    law = EnergyModel(features=("tos",)).fit(planted())
    law.save(tmp_path / "z.json")
    data = json.loads((tmp_path / "z.json").read_text())
    data["coef"]["tos"] = -1.0
    (tmp_path / "z.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="non-negative"):
        load_law(tmp_path / "z.json")


def test_interval_from_held_out_residuals():
    runs = planted(noise=0.05, n_cfg=30, repeats=4)
    law = EnergyModel(features=("tos", "calls", "bytes")).fit(runs)
    lo, hi = law.interval(0.9)
    assert law.interval_source_ == "leave-one-family-out"  # families a, b, c
    assert 0.8 < lo < 1.0 < hi < 1.2  # ~5 % noise, one law for every family: roughly ±8 %
    one = EnergyModel(features=("tos", "calls", "bytes")).fit(runs.assign(family="a"))
    assert 0.8 < one.interval(0.9)[0] < 1.0 < one.interval(0.9)[1] < 1.2
    assert one.interval_source_ == "leave-one-configuration-out"
    # a family whose runs cost 30 % more than the law of the others: held out, it is predicted
    # 30 % low, so the interval (what a model never measured may cost) widens to cover it
    odd = runs.copy()
    odd.loc[odd.family == "c", "joules"] *= 1.3
    wide = EnergyModel(features=("tos", "calls", "bytes")).fit(odd)
    w_lo, w_hi = wide.interval(0.9)
    assert wide.interval_source_ == "leave-one-family-out" and w_hi > 1.25 and w_lo < lo
    loco = EnergyModel(features=("tos", "calls", "bytes")).fit(odd.assign(family="a"))
    assert w_hi - w_lo > loco.interval(0.9)[1] - loco.interval(0.9)[0]


def test_evaluate_baselines_floor_and_splits():
    runs = planted(noise=0.05, n_cfg=24, repeats=4)
    laws = {"TOs/step": EnergyModel(features=("tos",)),
            "TOs+calls+bytes": EnergyModel(features=("tos", "calls", "bytes"))}
    ev = evaluate(runs, laws, splits=("random", "loco", "lofo"), seeds=range(10))
    s = summarize(ev)
    assert ev[ev["split"] == "random"]["fold"].nunique() == 10
    floor, full = s.loc["noise floor", ("loco", "mean")], s.loc["TOs+calls+bytes", ("loco", "mean")]
    # 5 % noise: the floor is ~4 % (mean |noise|, leave-one-run-out), the true law about the same,
    # a TOs-only law much worse, the mean-only baseline far worse
    assert 3 < floor < 6 and full < 1.25 * floor
    assert s.loc["TOs/step", ("loco", "mean")] > 2 * full
    assert s.loc["mean-only", ("loco", "mean")] > 10 * full
    text = format_evaluation(ev, "loco")
    assert "noise floor" in text and "mean-only" in text and "±" in text and "adjusted R²" in text
    with pytest.raises(ValueError, match="unknown split 'kfold'"):
        evaluate(runs, laws, splits=("kfold",))


def test_configurations_differing_only_in_steps_stay_separate():
    runs = planted(n_cfg=6)
    twin = runs.copy()
    twin["steps"] = twin["steps"] * 3
    twin["joules"] = twin["joules"] * 2.5
    both = pd.concat([runs, twin], ignore_index=True)
    ev = evaluate(both, {}, splits=("loco",))
    n_folds = ev[(ev["split"] == "loco") & (ev["fold"].astype(str) != "pooled")]["fold"].nunique()
    assert n_folds == 12  # 6 configurations × 2 step counts
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        floor = summarize(ev).loc["noise floor", ("loco", "mean")]
    assert floor == pytest.approx(0.0, abs=1e-9)  # the repeats of each configuration agree exactly


def test_default_law_is_a_candidate_with_counted_features():
    from torch_tos.energy.evaluate import CANDIDATES, DEFAULT_FEATURES, DEFAULT_LAW, default_laws
    from torch_tos.energy.features import check_features

    assert CANDIDATES[DEFAULT_LAW] == DEFAULT_FEATURES
    for feats in CANDIDATES.values():
        assert check_features(feats) == tuple(feats)
    laws = default_laws()
    assert DEFAULT_LAW in laws and laws[DEFAULT_LAW].features == DEFAULT_FEATURES
    assert set(CANDIDATES) <= set(default_laws(candidates=True))
    # a table without the class columns keeps only the laws it can fit
    assert set(default_laws(["tos", "flops", "calls", "bytes"])) == {"TOs (paper)", "FLOPs (paper)", "TOs/step",
                                                                      "FLOPs/step", "TOs+calls+bytes"}
