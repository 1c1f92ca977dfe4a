"""Complex tensors are priced as complex arithmetic (torch_tos/rules/complex.py): each counted
operation becomes the real operations on (re, im) pairs, priced in the component format."""

from __future__ import annotations

import torch

import torch_tos
from test_rules_seq_helpers import B
from torch_tos.tables import DEFAULT_TABLE


def counted(fn, *args):
    with torch_tos.Engine(flops=False) as engine:
        fn(*args)
    return {op: B(*b) for op, b in engine.bos_by_op().items()}, engine


def test_complex_matmul_multiply_and_scale():
    z = torch.randn(4, 4, dtype=torch.complex64)
    got, _ = counted(lambda z: (z @ z, z * z, z * 2.0, z + z), z)
    # mm: 16 outputs, K = 4 complex products (4 mul, 1 sub, 1 add each) and 3 complex adds (2 add
    # each): mul 16·16 = 256, sub 16·4 = 64, add 16·(4 + 6) = 160
    assert got["aten.mm"] == B(add=160, sub=64, mul=256)
    # z·z: 16·(4 mul, 1 add, 1 sub); z·2.0 (a real operand): 16·2 mul
    assert got["aten.mul"] == B(add=16, sub=16, mul=64 + 32)
    # z + z: 16 complex adds, 2 real adds each
    assert got["aten.add"] == B(add=32)


def test_complex_abs_and_division():
    z, w = torch.randn(3, dtype=torch.complex128), torch.randn(3, dtype=torch.complex128)
    got, _ = counted(lambda z, w: (z.abs(), z / w), z, w)
    # |z| = sqrt(a² + b²): 2 mul, 1 add, 1 root per element (not a compare)
    assert got["aten.abs"] == B(add=3, mul=6, root=3)
    # (ac + bd)/(c² + d²), (bc − ad)/(c² + d²): 6 mul, 2 add, 1 sub, 2 div per element
    assert got["aten.div"] == B(add=6, sub=3, mul=18, div=6)


def test_complex_is_priced_in_its_component_format():
    z = torch.randn(2, 2, dtype=torch.complex64)
    _, engine = counted(lambda z: z + z, z)
    # 4 complex adds = 8 float32 adds = 8·236 TOs
    assert engine.report().tos == 8 * float(DEFAULT_TABLE.costs(torch.float32)[0]) == 1888
