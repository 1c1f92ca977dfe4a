"""A Report with an energy law: a joules column, per-phase joules and an (overhead) line."""

import json

import pytest
import torch
import torch.nn as nn

import torch_tos
from torch_tos.counts import BYTES, FLOPS


class FakeLaw:
    """The contract a law keeps: joules per counts row, plus a fixed per-step overhead.
    Here 0.5 J per FLOP and 0.25 J per byte; 3 J per step."""

    def __init__(self):
        self.seen = []

    def joules_by_row(self, counts):
        self.seen.append(counts)
        return {key: 0.5 * row[FLOPS] + 0.25 * row[BYTES] for key, row in counts.rows.items()}

    def fixed_joules(self, steps=1):
        return 3.0 * steps


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
    with pytest.raises(TypeError, match="law must have joules_by_row.*lacks fixed_joules"):
        torch_tos.profile(model, x, law=type("L", (), {"joules_by_row": lambda s, c: {}})())

    class Wrong(FakeLaw):
        def joules_by_row(self, counts):
            return {("nope", "forward", torch.float32, "aten.mm"): 1.0}

    with pytest.raises(ValueError, match="not a row of the counts"):
        torch_tos.profile(model, x, law=Wrong()).joules

    class NotADict(FakeLaw):
        def joules_by_row(self, counts):
            return [1.0]

    with pytest.raises(TypeError, match="expected a dict"):
        torch_tos.profile(model, x, law=NotADict()).joules
