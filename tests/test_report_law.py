"""A Report with a cost model: a joules column, per-phase joules and an (overhead) line, all read
from the law's one pricing function ``price(counts, steps=1)``."""

import json

import pytest
import torch
import torch.nn as nn

import torch_tos
from torch_tos.counts import BYTES, FLOPS
from torch_tos.energy.predict import Prediction, per_layer_table


class FakeLaw:
    """The contract a law keeps: ``price(counts, steps=1, …)`` → a Prediction whose rows' joules and
    fixed joules add up. Here 0.5 J per FLOP and 0.25 J per byte; 3 J per step."""

    def __init__(self):
        self.seen = []

    def price(self, counts, *, steps=1, types=None, report=None, **kw):
        self.seen.append(counts)
        rows = {key: (0.5 * row[FLOPS] + 0.25 * row[BYTES], 0.0) for key, row in counts.rows.items()}
        total = sum(j for j, _ in rows.values()) + 3.0 * steps
        return Prediction(total, total, total, 0.0, 0.0, 0.0, steps, "inference", 0.9,
                          per_layer_table(rows, (3.0 * steps, 0.0), types), rows, 3.0 * steps, 0.0)


def _linear():
    return nn.Linear(2, 3, bias=False), torch.randn(1, 2)


def test_joules_by_hand():
    model, x = _linear()
    r = torch_tos.profile(model, x, law=FakeLaw())
    # aten.mm: 1×2 @ 2×3 → 12 FLOPs, reads 2 + 6 floats, writes 3: 44 bytes → 6 + 11 = 17 J;
    # aten.t is a view (0 FLOPs, 0 bytes) → 0 J; plus 3 J overhead
    assert r.joules_by_phase() == {"forward": 17.0}
    assert (r.overhead_joules, r.joules) == (3.0, 20.0)
    assert r.rows()[0]["joules"] == 17.0
    df = r.to_dataframe()
    assert list(df.columns)[-1] == "joules" and df.joules.sum() == 17.0
    data = json.loads(r.to_json())
    assert data["total"]["joules"] == 20.0 and data["total"]["overhead_joules"] == 3.0
    assert data["phases"]["forward"]["joules"] == 17.0
    text = str(r)  # the Energy column and the totals in J: 17 J in the layer, 3 J overhead, 20 J in all
    assert "Energy" in text and "17 J" in text and "(overhead)" in text and "energy 20 J" in text


def test_with_law_is_a_new_report_and_without_a_law_nothing_changes():
    model, x = _linear()
    plain = torch_tos.profile(model, x)
    assert plain.joules is None and plain.joules_by_phase() == {} and "joules" not in plain.rows()[0]
    str(plain)  # fill the caches: with_law must not reuse rows without joules
    withj = plain.with_law(FakeLaw())
    assert withj.joules == 20.0 and plain.joules is None
    assert withj.rows()[0]["joules"] == 17.0 and withj.tos == plain.tos
    assert "Joules" not in str(plain)


def test_the_law_reads_the_priced_dtype_under_an_override():
    model, x = _linear()
    law = FakeLaw()
    r = torch_tos.profile(model, x, dtype="float16", law=law)
    r.joules
    assert {k[2] for k in law.seen[-1].rows} == {torch.float16}
    assert r.counts.rows.keys() != law.seen[-1].rows.keys()  # the report's counts stay as they ran


def test_bad_laws_are_clear_errors():
    model, x = _linear()
    with pytest.raises(TypeError, match="law must be a cost model with price"):
        torch_tos.profile(model, x, law=type("L", (), {"joules_by_row": lambda s, c: {}})())


def test_a_real_cost_model_on_a_report():
    from energy_fakes import synthetic_law

    law = synthetic_law()
    model, x = _linear()
    r = torch_tos.profile(model, x, law=law, device="meta")
    p = r.prediction
    assert r.joules == p.joules and r.overhead_joules == p.fixed_joules
    assert sum(row["joules"] for row in r.rows()) + r.overhead_joules == pytest.approx(r.joules, rel=1e-12)
    assert p.mode == "inference" and p.seconds > 0
