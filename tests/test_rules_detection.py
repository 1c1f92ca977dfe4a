"""Golden tests: torchvision nms / roi_align (+ backward), the MoE grouped GEMM, isin, weight
norm and CTC loss — data-dependent ops priced from the real inputs, approximate (warned) on meta."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import torch_tos
from test_rules_seq_helpers import B
from torch_tos.rules.registry import ApproximateCountWarning

torchvision = pytest.importorskip("torchvision")


def counted(fn, *args):
    with torch_tos.Engine() as engine:
        fn(*args)
    assert not engine.unsupported
    return {op: B(*b) for op, b in engine.bos_by_op().items()}, engine


BOXES = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 9, 9.]])
SCORES = torch.tensor([0.9, 0.8, 0.7, 0.6])


def test_nms_counts_the_pairs_the_kernel_evaluates():
    # 4 boxes: areas 4·[0, 2, 1]; stable sort 4·⌈log2 4⌉ = 8 compares. Box 0 (kept) is compared
    # with 1, 2, 3: IoU(0,1) = 81/119 > 0.5 and IoU(0,3) = 81/100 suppress 1 and 3; box 2 (kept)
    # has no live box after it → 3 pairs of [1, 10, 1, 1, 0]
    got, _ = counted(torchvision.ops.nms, BOXES, SCORES, 0.5)
    assert got["torchvision.nms"] == B(add=3, sub=8 + 8 + 30, mul=4 + 3, div=3)


def test_nms_rule_on_meta_prices_every_pair_and_warns():
    # nms cannot run on meta (its output size is data); under a fake-tensor trace the rule sees
    # meta boxes: the worst case N(N−1)/2 = 6 pairs, with a warning
    from torch_tos.rules import lookup

    rule = lookup(torch.ops.torchvision.nms.default)
    with pytest.warns(ApproximateCountWarning, match="torchvision.nms"):
        got = rule(None, BOXES.to("meta"), SCORES.to("meta"), 0.5)
    assert got == B(add=6, sub=8 + 8 + 60, mul=4 + 6, div=6)


def test_roi_align_forward_and_backward():
    # input 1×2×4×4, one RoI (0, 0)–(3, 3), 2×2 bins, sampling_ratio 2 → 4 samples per bin,
    # 16 per RoI. RoI setup (not aligned): 4 sub (size 2, clamp 2), 5 mul (scale 4, count 1), 4 div.
    # bilinear weights per RoI·bin·sample [4, 12, 8]·16 = [64, 192, 128]; 4-tap sums per channel
    # [4, 0, 4]·32 = [128, 0, 128]; 1 div per output (8) → [192, 196, 261, 12, 0]
    x = torch.randn(1, 2, 4, 4, requires_grad=True)
    rois = torch.tensor([[0, 0, 0, 3, 3.]])

    def step(x, rois):
        y = torchvision.ops.roi_align(x, rois, (2, 2), spatial_scale=1.0, sampling_ratio=2)
        y.sum().backward()

    got, _ = counted(step, x, rois)
    assert got["torchvision.roi_align"] == B(add=192, sub=196, mul=261, div=12)
    # backward: setup [0, 4, 5, 4, 0]; per channel·bin·sample (32) weights + scattered adds
    # [8, 12, 12]: [256, 384, 384]; 1 div per output gradient (8)
    assert got["torchvision._roi_align_backward"] == B(add=256, sub=388, mul=389, div=12)


def test_grouped_mm_reads_the_group_offsets():
    # a [6, 8] × b [3, 8, 8], offsets (2, 4, 5) along M: the first 5 rows, 40 dots of 8
    a, b = torch.randn(6, 8), torch.randn(3, 8, 8)
    offs = torch.tensor([2, 4, 5], dtype=torch.int32)
    got, engine = counted(torch._grouped_mm, a, b, offs)
    assert got["aten._grouped_mm"] == B(add=40 * 7, mul=40 * 8)
    assert engine.report().flops == 2 * 320
    # 3-D × 3-D: a batched matmul, 3·2·4 outputs of K = 8
    got, _ = counted(torch._grouped_mm, torch.randn(3, 2, 8), torch.randn(3, 8, 4))
    assert got["aten._grouped_mm"] == B(add=24 * 7, mul=24 * 8)


def test_isin_early_exit_compares():
    # few test elements (2 < 10·4^0.145): each element scans (3, 1) until its first match:
    # 1 → 2 compares, 2 → 2 (no match), 3 → 1, 4 → 2 = 7
    got, _ = counted(torch.isin, torch.tensor([1, 2, 3, 4]), torch.tensor([3, 1]))
    assert got["aten.isin"] == B(sub=7)


def test_weight_norm_forward_and_backward():
    # Linear(3→4) weight-normed along dim 0: 4 slices of n = 3. forward per slice: 3 mul + 2 add
    # (squares, sum), 1 root, 1 div (g/‖v‖), 3 mul (scaling) → [8, 0, 24, 4, 4];
    # backward per slice: dot 3 mul 2 add, ‖v‖² 1 mul, 3 div, per element 2 mul 1 sub
    # → [8, 12, 40, 12, 0]
    lin = torch.nn.utils.parametrizations.weight_norm(torch.nn.Linear(3, 4))
    got, _ = counted(lambda x: lin(x).sum().backward(), torch.randn(2, 3))
    assert got["aten._weight_norm_interface"] == B(add=8, mul=24, div=4, root=4)
    assert got["aten._weight_norm_interface_backward"] == B(add=8, sub=12, mul=40, div=12)


def test_ctc_loss_by_hand():
    # sample 0: T = 6, labels (1, 2, 2): L = 7 states, 1 odd state whose label differs from the
    # previous one. Per step: 7·[4, 3, 0, 0, 4] + compares 1 (guard) + 2 (s = 1) + 3·5 (s ≥ 2) + 1
    # = 19 → [28, 40, 0, 0, 28], 5 steps → [140, 200, 0, 0, 140], + loss [1, 5, 0, 0, 3].
    # sample 1: T = 5, labels (3, 1): L = 5, compares 1 + 2 + 9 + 1 = 13 → per step
    # [20, 28, 0, 0, 20] × 4 + loss → [81, 117, 0, 0, 83]. Total [222, 322, 0, 0, 226]
    lp = torch.randn(6, 2, 5).log_softmax(2).requires_grad_()
    targets, il, tl = torch.tensor([[1, 2, 2], [3, 1, 0]]), torch.tensor([6, 5]), torch.tensor([3, 2])
    got, _ = counted(lambda lp: F.ctc_loss(lp, targets, il, tl).backward(), lp)
    assert got["aten._ctc_loss"] == B(add=222, sub=322, root=226)
    # backward: β as α ([220, 312, 0, 0, 220]: the recursions without the loss terms) + α·β accumulation
    # [3, 3, 0, 0, 3]·(6·7 + 5·5 = 67) + gradient [1, 2, 1, 0, 2]·(6·5 + 5·5 = 55)
    assert got["aten._ctc_loss_backward"] == B(add=220 + 201 + 55, sub=312 + 201 + 110, mul=55,
                                               root=220 + 201 + 110)
