"""FFT kernels and angle (torch_tos/rules/spectral.py): radix-2 butterfly convention."""

from __future__ import annotations

import torch

import torch_tos
from test_rules_seq_helpers import B
from torch_tos.rules.spectral import complex_fft, real_fft


def counted(fn, *args, device="cpu"):
    with torch_tos.Engine(flops=False) as engine:
        fn(*[a.to(device) for a in args])
    return {op: B(*b) for op, b in engine.bos_by_op().items()}


def test_complex_fft_convention_by_hand():
    # N = 8: L = 3 stages of 4 butterflies = 12 butterflies, each 4 mul, 3 add, 3 sub (a twiddle
    # product and a complex add and sub): 48 mul, 36 add, 36 sub — 120 = 5·8·log2 8
    assert complex_fft(8, 1) == B(add=36, sub=36, mul=48)
    # N = 6 is priced with ⌈log2 6⌉ = 3 stages: NL = 18 → mul 36, add ⌈27⌉ = 27, sub 27
    assert complex_fft(6, 1) == B(add=27, sub=27, mul=36)
    # a real transform is half: N = 8 → mul 24, add 18, sub 18
    assert real_fft(8, 1) == B(add=18, sub=18, mul=24)


def test_fft_ops_on_cpu_and_meta():
    x = torch.randn(2, 8)
    for device in ("cpu", "meta"):
        got = counted(lambda x: torch.fft.fft(x.to(torch.complex64)), x, device=device)
        # 2 complex transforms of 8 (no normalisation on the forward side)
        assert got["aten._fft_c2c"] == B(add=72, sub=72, mul=96)
        got = counted(lambda x: torch.fft.irfft(torch.fft.rfft(x), n=8), x, device=device)
        # rfft: 2 real transforms of 8 → [36, 36, 48]
        assert got["aten._fft_r2c"] == B(add=36, sub=36, mul=48)
        # irfft: 2 real transforms of 8 + the 1/N normalisation, 1 mul per real output (16)
        assert got["aten._fft_c2r"] == B(add=36, sub=36, mul=48 + 16)


def test_fft2_is_one_transform_per_line_along_each_dim():
    # fft2 on 4×8 complex: 4 transforms of 8 ([36, 36, 48] each) + 8 transforms of 4 (L = 2:
    # NL = 8 → [12, 12, 16] each)
    x = torch.randn(4, 8, dtype=torch.complex64)
    got = counted(torch.fft.fft2, x)
    assert got["aten._fft_c2c"] == B(add=4 * 36 + 8 * 12, sub=4 * 36 + 8 * 12, mul=4 * 48 + 8 * 16)


def test_angle():
    # real: 1 compare per element; complex: atan2 → 2 compares, 1 div, 1 root per element
    assert counted(torch.angle, torch.randn(5))["aten.angle"] == B(sub=5)
    got = counted(torch.angle, torch.randn(5, dtype=torch.complex64))
    assert got["aten.angle"] == B(sub=10, div=5, root=5)


def test_nested_tensor_linear_softmax_relu():
    # strided nested tensor of 2×4 and 3×4 rows: Linear(4→5) gives 25 outputs, dots of 4 + bias
    # → 100 mul, 75 + 25 add; relu 25 compares; softmax over 5 per row (5 rows): add 4, sub 9,
    # div 5, root 5 each
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nt = torch.nested.nested_tensor([torch.randn(2, 4), torch.randn(3, 4)])
    lin = torch.nn.Linear(4, 5)
    got = counted(lambda nt: torch.softmax(lin(nt).relu(), -1), nt)
    assert got["aten.linear"] == B(add=100, mul=100)
    assert got["aten.relu"] == B(sub=25)
    assert got["aten._softmax"] == B(add=20, sub=45, div=25, root=25)
