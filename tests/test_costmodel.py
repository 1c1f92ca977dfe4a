"""The cost model's one prediction path: rows add up, profile(law=), report.with_law() and
law.predict() agree exactly, runs compose first + steady steps, modes, dtypes and warnings."""

import warnings

import pytest
import torch
from torch import nn

import torch_tos
from torch_tos.energy import DtypeNotMeasured, ExtrapolationWarning, load_law
from torch_tos.energy.pricing import PHASE_GROUPS, price_counts
from torch_tos.energy.stepcount import count_steps

from energy_fakes import synthetic_law


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))


@pytest.fixture
def law():
    return synthetic_law()


def _quiet():
    w = warnings.catch_warnings()
    w.__enter__()
    warnings.simplefilter("ignore")
    return w


def test_rows_and_layers_add_up_to_the_total(law):
    m = mlp()
    r = torch_tos.profile(m, torch.randn(8, 16), mode="training", optimizer=torch.optim.SGD(m.parameters(), lr=0.1),
                          device="meta")
    p = law.price(r, warn=False)
    for k, q in ((0, "joules"), (1, "seconds")):
        rows = sum(v[k] for v in p.by_row.values())
        fixed = p.fixed_joules if q == "joules" else p.fixed_seconds
        assert rows + fixed == pytest.approx(getattr(p, q), rel=1e-12)
        assert p.per_layer[q].sum() == pytest.approx(getattr(p, q), rel=1e-12)
        assert sum(p.terms[q].values()) == pytest.approx(getattr(p, q), rel=1e-12)
    assert "(fixed)" in set(p.per_layer["layer"])
    # a row is α × its kernel cost + β of its phase × its calls + β_m × its fresh bytes
    priced = price_counts(law.profile, r.counts)
    c = law.law("training").coef_
    assert c["beta_memory"] > 0
    for key, (j, _s) in p.by_row.items():
        expected = (c["alpha"] * priced.rows[key][1] + c[f"beta_{PHASE_GROUPS[key[1]]}"] * priced.calls[key]
                    + c["beta_memory"] * priced.fresh[key])
        assert j == pytest.approx(expected, rel=1e-12)
    assert p.terms["joules"]["beta_memory"] == pytest.approx(c["beta_memory"] * 6936)


def test_fresh_bytes_by_hand():
    """The output buffers one SGD step of Linear(16, 32) → ReLU → Linear(32, 4) on a batch of 8
    allocates (float32, 4 B): forward 8·32 (addmm), 8·32 (relu), 8·4 (addmm), the loss's sum 1;
    backward ones_like 1, layer 2's mm 8·32 (grad input) + 4·32 (grad weight) and bias sum 4,
    threshold_backward 8·32, layer 0's mm 32·16 (grad weight only: its input needs no grad) and bias
    sum 32. Views (t, expand, view, detach) and the optimizer's in-place add_ allocate nothing."""
    m = mlp()
    r = torch_tos.profile(m, torch.randn(8, 16), mode="training", optimizer=torch.optim.SGD(m.parameters(), lr=0.1),
                          device="meta")
    fresh = {k: b for k, b in _fresh(r.counts).items() if b}
    want = {("0", "forward", "aten.addmm"): 8 * 32, ("1", "forward", "aten.relu"): 8 * 32,
            ("2", "forward", "aten.addmm"): 8 * 4, ("(loss)", "loss", "aten.sum"): 1,
            ("(loss)", "backward", "aten.ones_like"): 1, ("2", "backward", "aten.mm"): 8 * 32 + 4 * 32,
            ("2", "backward", "aten.sum"): 4, ("1", "backward", "aten.threshold_backward"): 8 * 32,
            ("0", "backward", "aten.mm"): 32 * 16, ("0", "backward", "aten.sum"): 32}
    assert fresh == {k: 4.0 * v for k, v in want.items()}
    assert sum(fresh.values()) == 6936


def _fresh(counts) -> dict:
    from torch_tos.energy.pricing import fresh_bytes

    return {(k[0], k[1], k[3]): fresh_bytes(k[3], counts.work_of(k)) for k in counts.rows}
    lo, hi = law.law("training").interval(0.9)
    assert (p.joules_low, p.joules_high) == pytest.approx((lo * p.joules, hi * p.joules))


def test_profile_with_law_report_with_law_and_predict_agree_exactly(law):
    m, x, y = mlp(), torch.randn(8, 16), torch.randint(0, 4, (8,))
    opt = torch.optim.Adam(m.parameters())
    q = _quiet()
    try:
        via_profile = torch_tos.profile(m, x, mode="training", target=y, loss_fn=nn.CrossEntropyLoss(), optimizer=opt,
                                        law=law, device="meta")
        plain = torch_tos.profile(m, x, mode="training", target=y, loss_fn=nn.CrossEntropyLoss(), optimizer=opt,
                                  device="meta")
        predicted = law.predict(m, x, mode="training", steps=1, target=y, loss_fn=nn.CrossEntropyLoss(), optimizer=opt)
    finally:
        q.__exit__(None, None, None)
    assert via_profile.joules == predicted.joules
    assert plain.with_law(law).joules == predicted.joules
    assert via_profile.prediction.seconds == predicted.seconds
    layer = {r["layer"]: r["joules"] for r in via_profile.rows() if r["phase"] == "forward"}
    assert layer["0"] == pytest.approx(sum(j for k, (j, _s) in predicted.by_row.items()
                                           if k[0] == "0" and k[1] == "forward"), rel=1e-12)
    assert len(opt.state) == 0  # the user's optimizer was never stepped


def test_a_run_is_its_first_step_and_steady_steps(law):
    m, x = mlp(), torch.randn(8, 16)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    q = _quiet()
    try:
        p10 = law.predict(m, x, steps=10, optimizer=opt)
        counted = count_steps(m, x, optimizer=opt)
        first = law.price(counted.first.counts, mode="training", steps=1, warn=False)
        steady = law.price(counted.steady.counts, mode="training", steps=1, warn=False)
    finally:
        q.__exit__(None, None, None)
    one_fixed = first.fixed_joules
    expected = (first.joules - one_fixed) + 9 * (steady.joules - steady.fixed_joules) \
        + law.law("training").coef_["e_step"] * 10 + law.law("training").coef_["e_run"]
    assert p10.joules == pytest.approx(expected, rel=1e-12)
    ops = {k[3] for k in counted.first.counts.rows if k[1] == "optimizer"}
    assert "aten.clone" in ops and "aten.clone" not in {k[3] for k in counted.steady.counts.rows if k[1] == "optimizer"}


def test_inference_mode_and_a_law_without_it(law):
    m, x = mlp(), torch.randn(8, 16)
    q = _quiet()
    try:
        p = law.predict(m, x, mode="inference", steps=20)
        r = torch_tos.profile(m, x, mode="inference", device="meta", law=law)
    finally:
        q.__exit__(None, None, None)
    assert p.mode == "inference" and r.prediction.mode == "inference"
    assert set(k[1] for k in p.by_row) == {"forward"}
    training_only = synthetic_law(modes=("training",))
    with pytest.raises(ValueError, match="no inference terms.*calibrate"):
        training_only.predict(m, x, mode="inference")
    with pytest.raises(ValueError, match="unknown mode"):
        count_steps(m, x, mode="validation")


def test_an_unmeasured_dtype_is_an_error_naming_what_to_add(law):
    m = mlp().to(torch.bfloat16)
    with pytest.raises(DtypeNotMeasured, match=r"bfloat16.*--dtypes float32,float64,bfloat16"):
        law.predict(m, torch.randn(8, 16, dtype=torch.bfloat16), mode="inference")
    q = _quiet()
    try:
        f64 = law.predict(mlp().double(), torch.randn(8, 16, dtype=torch.float64), mode="inference").joules
        f32 = law.predict(mlp(), torch.randn(8, 16), mode="inference").joules
    finally:
        q.__exit__(None, None, None)
    assert f64 > f32  # the synthetic float64 kernels cost twice float32's


def test_warnings_outside_the_calibration(law):
    m, x = mlp(), torch.randn(8, 16)
    with pytest.warns(ExtrapolationWarning, match="1000 steps is beyond the longest calibrated run"):
        p = law.predict(m, x, steps=1000, optimizer=torch.optim.SGD(m.parameters(), lr=0.1))
    assert any("1000 steps" in w for w in p.warnings)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        law.predict(m, x, steps=0)


def test_a_law_calibrated_on_a_noisy_machine_says_so_with_every_prediction(law):
    m, x = mlp(), torch.randn(8, 16)
    q = _quiet()
    try:
        quiet = law.predict(m, x, steps=3)
    finally:
        q.__exit__(None, None, None)
    assert not any("noisy machine" in w or "state moved" in w for w in quiet.warnings)
    law.meta.update(noise_cv=0.12, runs_state=1.3)
    with pytest.warns(ExtrapolationWarning, match="noisy machine: repeats of one run differed by 12.0 %"):
        p = law.predict(m, x, steps=3)
    assert any("×1.30 as much during the runs" in w for w in p.warnings)
    assert (p.joules, p.seconds) == (quiet.joules, quiet.seconds)  # a note, not a correction


def test_saved_and_loaded_law_predicts_the_same(law, tmp_path):
    path = tmp_path / "law.json"
    law.save(path)
    back = load_law(path)
    m, x = mlp(), torch.randn(8, 16)
    q = _quiet()
    try:
        a = law.predict(m, x, steps=7, optimizer=torch.optim.SGD(m.parameters(), lr=0.1))
        b = back.predict(m, x, steps=7, optimizer=torch.optim.SGD(m.parameters(), lr=0.1))
    finally:
        q.__exit__(None, None, None)
    assert (a.joules, a.seconds, a.joules_low, a.seconds_high) == (b.joules, b.seconds, b.joules_low, b.seconds_high)
    assert "cost model of synthetic" in str(back)
    text = str(a)
    assert "energy" in text and "time" in text and "J" in text and "(fixed)" in text
