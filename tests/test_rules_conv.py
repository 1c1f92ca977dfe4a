"""Golden tests for the convolution rules against the peers' hand-derived cases: transposed
convolution and conv grad_input add only the products that land inside the output (padding crops
the rest; mul counts every product the kernel computes), and the FLOPs baseline of grouped /
depthwise convolution backward (PyTorch 2.14's ``conv_backward_flop`` ignores groups)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import torch_tos
from test_rules_seq_helpers import B
from test_rules_vision import leaf, op_bos, step
from torch_tos.flops import flop_counter
from torch_tos.rules.conv import _landing_1d


def forward(m, x):
    return m(x)


def test_fvcore_transposed_case():
    # fvcore test_conv, transposed 2-d: ConvTranspose2d(10→3, k 3, stride 1, pad 1) on 5×10×15×15.
    # Output 15×15 (= (15−1) − 2 + 3). Products: numel(x)·C_out·k² = 11,250·27 = 303,750 (mul;
    # fvcore's 0.00030375 GMACs). Along one dim, input i and tap k land on i + k − 1 ∈ [0, 15):
    # 45 pairs minus (i=0, k=0) and (i=14, k=2) → L = 43, every output reached → R = 15.
    # adds = N·C_out·(C_in·L² − R²) = 5·3·(10·1849 − 225) = 15·18,265 = 273,975 (bias: none here;
    # the old count, products − outputs, was 303,750 − 3,375 = 300,375).
    m = nn.ConvTranspose2d(10, 3, 3, stride=1, padding=1, bias=False)
    got = op_bos(forward, m, torch.randn(5, 10, 15, 15), meta=True)
    assert got["convolution"] == B(add=273_975, mul=303_750)


def test_thop_grouped_transposed_case():
    # ConvTranspose2d(8→4, k 3, pad 1, groups 2, no bias) on 1×8×4×4 → out 1×4×4×4 (64 outputs).
    # mul: numel(x)·(C_out/g)·k² = 128·2·9 = 2,304. Per dim L = 2+3+3+2 = 10, R = 4;
    # each output sums C_in/g = 4 channels: adds = 1·4·(4·100 − 16) = 1,536 (old: 2,304 − 64 = 2,240)
    m = nn.ConvTranspose2d(8, 4, 3, padding=1, groups=2, bias=False)
    got = op_bos(forward, m, torch.randn(1, 8, 4, 4))
    assert got["convolution"] == B(add=1_536, mul=2_304)


def test_conv_grad_input_with_padding():
    # Conv2d(1→1, k 3, pad 1, no bias) on 1×1×4×4: 16 outputs × 9 taps = 144 products each way.
    # grad_input = transposed conv of g: per dim (o, k) pairs landing on input positions 0..3:
    # 2, 3, 3, 2 → L = 10, R = 4 → adds 1·1·(1·100 − 16) = 84 (old: 144 − 16 = 128), mul 144;
    # grad_weight: 144 mul, 144 − 9 = 135 add
    got = op_bos(step, nn.Conv2d(1, 1, 3, padding=1, bias=False), leaf(1, 1, 4, 4))
    assert got["convolution_backward"] == B(add=84 + 135, mul=288)


def test_output_positions_no_product_reaches_cost_no_add():
    # ConvTranspose1d(1→1, k 1, stride 3) on 1×1×3, output_padding 2: out length (3−1)·3 + 1 + 2 = 9;
    # products land on 0, 3, 6 only: L = 3, R = 3 → adds 1·1·(3 − 3) = 0, + 9 with the bias
    m = nn.ConvTranspose1d(1, 1, 1, stride=3, output_padding=2)
    got = op_bos(forward, m, torch.randn(1, 1, 3))
    assert got["convolution"] == B(add=9, mul=3)


@pytest.mark.parametrize("nd,stride,padding,dilation,groups", [
    (1, 2, 1, 1, 1), (2, 1, 2, 2, 2), (2, 3, 1, 1, 1), (1, 1, 0, 3, 2),
])
def test_landing_counts_equal_a_brute_force_scatter(nd, stride, padding, dilation, groups):
    # A transposed convolution of all-ones tensors writes, at each output, the number of products
    # landing there; Σ (n − 1) over outputs that get n > 0 is the add count the rule must give.
    x = torch.ones((2, 2 * groups) + (5,) * nd)
    w = torch.ones((2 * groups, 3) + (3,) * nd)
    conv_t = F.conv_transpose1d if nd == 1 else F.conv_transpose2d
    y = conv_t(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)
    expected = int(((y - 1) * (y > 0)).sum())
    m = (nn.ConvTranspose1d if nd == 1 else nn.ConvTranspose2d)(
        2 * groups, 3 * groups, 3, stride=stride, padding=padding, dilation=dilation,
        groups=groups, bias=False)
    assert op_bos(forward, m, x)["convolution"].add == expected


def test_landing_1d_by_hand():
    # 4 sources, 3 taps, 4 targets, stride 1, pad 1: i + k − 1 ∈ [0, 4) → 12 − 2 = 10 pairs, 4 hit
    assert _landing_1d(4, 3, 4, 1, 1, 1) == (10, 4)
    # stride 2, no pad, 2 taps: 2i + k for i < 3 → 0,1,2,3,4,5: 6 pairs, 6 targets
    assert _landing_1d(3, 2, 6, 2, 0, 1) == (6, 6)


def test_depthwise_backward_flops_are_twice_the_forward():
    # Depthwise Conv2d(64, 64, 3, groups 64, pad 1) on 2×64×8×8: forward 2·(2·64·64·9) = 147,456
    # FLOPs. Backward: grad_input and grad_weight each compute the forward's products again →
    # 294,912. PyTorch 2.14's own formula counts grad_weight over all 64 input channels: 64× too
    # much for that term (fixed upstream in pytorch PR #183405); torch_tos's baseline carries the fix.
    m = nn.Conv2d(64, 64, 3, groups=64, padding=1)
    x = torch.randn(2, 64, 8, 8, requires_grad=True)
    report = torch_tos.profile(m, (x,), mode="training", loss_fn=lambda y: y.sum())
    phases = report.by_phase()
    assert phases["forward"].flops == 147_456
    assert phases["backward"].flops == 294_912
    # the same step under torch_tos.flops.flop_counter() (the custom mapping) agrees
    with flop_counter() as fc:
        m(x).sum().backward()
    assert fc.get_total_flops() == 147_456 + 294_912
    with FlopCounterMode(display=False) as stock:                   # what PyTorch itself says
        m(x).sum().backward()
    assert stock.get_total_flops() == 147_456 + 147_456 + 64 * 147_456


def test_grouped_transposed_backward_flops():
    # ConvTranspose2d(4→4, k 2, stride 2, groups 2) on 1×4×3×3: forward products numel(x)·2·4 = 288,
    # 576 FLOPs; backward grad_input + grad_weight: 2·576
    m = nn.ConvTranspose2d(4, 4, 2, stride=2, groups=2)
    x = torch.randn(1, 4, 3, 3, requires_grad=True)
    phases = torch_tos.profile(m, (x,), mode="training", loss_fn=lambda y: y.sum()).by_phase()
    assert phases["forward"].flops == 576
    assert phases["backward"].flops == 2 * 576
