"""The transistor table of docs/conventions.md §5, derived by hand from the circuit constants."""

from fractions import Fraction

import pytest
import torch

from torch_tos import BOs, TransistorTable, tos
from torch_tos.tables import parse_dtype

T = TransistorTable()


def test_circuits_by_hand():
    # ADDER(n) = (n-1)·FA + HA with FA = 10, HA = 6
    assert T.adder(24) == 23 * 10 + 6 == 236
    assert T.adder(8) == 7 * 10 + 6 == 76
    # MULT(n) = 90000·(n/64)²,  DIVR(n) = 110000·(n/64)²
    assert T.multiplier(24) == Fraction(90000 * 576, 4096) == Fraction(12656.25)
    assert T.divider(24) == Fraction(110000 * 576, 4096) == Fraction(15468.75)
    # Newton-Raphson steps k = max(1, ceil(log2(m/8)))
    assert [T.newton_raphson_steps(m) for m in (8, 11, 24, 53)] == [1, 1, 2, 3]


def test_float32_costs_by_hand():
    add, sub, mul, div, root = T.costs(torch.float32)
    assert add == sub == 236                          # 24-bit adder
    assert mul == 4 + Fraction(12656.25) + 76         # XOR + MULT(24) + ADDER(8) = 12736.25
    assert div == 4 + Fraction(15468.75) + 76         # XOR + DIVR(24) + ADDER(8) = 15548.75
    assert root == 2 * (div + add + mul)              # k = 2 → 57042


@pytest.mark.parametrize("dtype,expected", [
    (torch.float16, (106, 106, 2708.69140625, 3299.51171875, 6114.203125)),
    (torch.bfloat16, (76, 76, 1486.25, 1798.75, 3361)),
    (torch.float32, (236, 236, 12736.25, 15548.75, 57042)),
    (torch.float64, (526, 526, 61831.19140625, 75547.01171875, 413712.609375)),
])
def test_design_table_exact(dtype, expected):
    assert tuple(float(c) for c in T.costs(dtype)) == expected
    # exact binary fractions: the Fraction equals the float exactly
    assert all(Fraction(e) == c for e, c in zip(expected, T.costs(dtype)))


def test_check_values():
    sigmoid = BOs(add=1, sub=1, div=1, root=1)
    gelu = BOs(add=1, sub=1, mul=2, div=1, root=1)
    assert tos(sigmoid, torch.float32) == 73_062.75
    assert tos(gelu, "float32") == 98_535.25
    # Linear 4→18 + sigmoid, one sample (Eq. 4): [(I+1)O, O, IO, O, O]
    eq4 = BOs((4 + 1) * 18, 18, 4 * 18, 18, 18)
    assert tos(eq4, torch.float32) == 2_249_131.5


def test_configurable_constants():
    t = TransistorTable(full_adder=12, half_adder=8, multiplier_64=45_000, nr_seed_bits=4)
    add, _, mul, _, root = t.costs(torch.float32)
    assert add == 23 * 12 + 8
    assert mul == 4 + Fraction(45_000 * 576, 4096) + (7 * 12 + 8)
    assert t.newton_raphson_steps(24) == 3  # ceil(log2(24/4)) = 3
    assert root == 3 * (t.costs(torch.float32)[3] + add + mul)
    assert tos(BOs(add=1), torch.float32, table=t) == 23 * 12 + 8


def test_exact_for_large_counts():
    big = BOs(add=10**15 + 1, mul=3)
    exact = T.tos_exact(big, torch.float16)
    assert exact == (10**15 + 1) * 106 + 3 * Fraction(2708.69140625)
    assert isinstance(exact, Fraction)


def test_dtype_names():
    assert parse_dtype("fp16") is torch.float16
    assert parse_dtype("bf16") is torch.bfloat16
    assert parse_dtype(torch.float64) is torch.float64
    with pytest.raises(ValueError, match="unknown dtype 'float17'.*accepted: float16, bfloat16"):
        parse_dtype("float17")


def test_integer_formats_priced():
    add, _, mul, div, _ = T.costs(torch.int32)
    assert add == T.adder(32) and mul == T.multiplier(32) and div == T.divider(32)
