"""Golden tests for torch_tos/rules/losses.py, forward and backward, on n = 6 elements (x, t of
shape 2×3) or N = 4 samples. Reductions: mean of n = n−1 add + 1 div; sum = n−1 add.
``B(add, sub, mul, div, root)``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from test_rules_seq_helpers import B, aten, meta, op_bos, rule_bos
from torch_tos.rules.losses import cascade_adds


def _fwd_bwd(loss):
    def step(x, t, *rest):
        loss(x, t, *rest).backward()
    return step


X = lambda: torch.rand(2, 3).clamp(0.05, 0.95).requires_grad_()  # noqa: E731  (probabilities)
T = lambda: torch.rand(2, 3)  # noqa: E731


@pytest.mark.parametrize("reduction,fwd", [
    # per element (x−t) 1 sub, square 1 mul → [0, 6, 6]; mean + [5 add, 1 div]; sum + 5 add
    ("mean", B(5, 6, 6, 1, 0)), ("sum", B(5, 6, 6, 0, 0)), ("none", B(0, 6, 6, 0, 0))])
def test_mse(reduction, fwd):
    counted = op_bos(lambda x, t: F.mse_loss(x, t, reduction=reduction).sum().backward(), X(), T())
    assert counted["mse_loss"] == fwd
    # backward norm·(x−t)·g: 1 sub, 2 mul per element; mean: norm = 2/n, 1 div once
    assert counted["mse_loss_backward"] == B(0, 6, 12, 1 if reduction == "mean" else 0, 0)


def test_smooth_l1():
    counted = op_bos(_fwd_bwd(lambda x, t: F.smooth_l1_loss(x, t, beta=0.5)), X(), T())
    # forward per element: x−t, |·|, z<β, z−½β (4 sub); ½·z·z (2 mul); /β (1 div) → [0,24,12,6,0]
    # + mean [5, 0, 0, 1, 0]
    assert counted["smooth_l1_loss"] == B(5, 24, 12, 7, 0)
    # backward per element: x−t, x>0, |x|, |x|≥β (4 sub); x/β (1 div); norm·out·g (2 mul);
    # + norm = 1/n once (1 div)
    assert counted["smooth_l1_loss_backward"] == B(0, 24, 12, 7, 0)


def test_huber():
    counted = op_bos(_fwd_bwd(lambda x, t: F.huber_loss(x, t, delta=0.5)), X(), T())
    # forward per element: x−t, |·|, z<δ, z−½δ (4 sub); ½·z·z (2 mul), δ·(…) (1 mul) → [0,24,18,0,0]
    # + mean [5, 0, 0, 1, 0]
    assert counted["huber_loss"] == B(5, 24, 18, 1, 0)
    # backward per element: 4 sub (x−t, x>0, |x|, |x|≥δ), 3 mul (sign·δ, norm·out·g); + 1 div once
    assert counted["huber_loss_backward"] == B(0, 24, 18, 1, 0)


def test_bce_with_logits():
    x = torch.randn(2, 3, requires_grad=True)
    counted = op_bos(_fwd_bwd(F.binary_cross_entropy_with_logits), x, T())
    # per element: log σ = min(x,0) − log1p(e^−|x|) → min, |x|, −|x|, subtract (4 sub), exp (root),
    # log1p (1 add, 1 root); (1−t)·x − log σ → 2 sub, 1 mul ⇒ [1, 6, 1, 0, 2] × 6 = [6, 36, 6, 0, 12]
    # + mean [5, 0, 0, 1, 0]
    assert counted["binary_cross_entropy_with_logits"] == B(11, 36, 6, 1, 12)
    # pos_weight (3,): (p−1) once per pos_weight element (3 sub); ·t, +1, logσ·log_w per element
    # (1 add, 2 mul) → + [6, 3, 12, 0, 0]; weight (3,): ·w per element (+6 mul)
    counted = op_bos(_fwd_bwd(lambda x, t, w, p: F.binary_cross_entropy_with_logits(
        x, t, weight=w, pos_weight=p)), x, T(), torch.rand(3), torch.rand(3))
    assert counted["binary_cross_entropy_with_logits"] == B(17, 39, 24, 1, 12)


def test_bce_with_logits_backward_is_ordinary_ops():
    # the backward is a composite of ordinary ops, each priced by its own rule: no dedicated op
    counted = op_bos(_fwd_bwd(F.binary_cross_entropy_with_logits), torch.randn(2, 3, requires_grad=True), T())
    assert "sigmoid" in counted and "binary_cross_entropy_with_logits_backward" not in counted


def test_bce():
    counted = op_bos(_fwd_bwd(F.binary_cross_entropy), X(), T())
    # per element (t−1)·max(log1p(−x), −100) − t·max(log x, −100):
    # −x, t−1, 2 clamps, final − (5 sub); log1p (1 add, 1 root), log (1 root); 2 mul
    # ⇒ [1, 5, 2, 0, 2] × 6 = [6, 30, 12, 0, 12]; + mean [5, 0, 0, 1, 0]
    assert counted["binary_cross_entropy"] == B(11, 30, 12, 1, 12)
    # backward g·(x−t)/max((1−x)·x, ε): x−t, 1−x, max (3 sub), 2 mul, 1 div per element;
    # mean divides every element by n (+6 div)
    assert counted["binary_cross_entropy_backward"] == B(0, 18, 12, 12, 0)
    # with weight: one more mul per element, forward and backward
    counted = op_bos(_fwd_bwd(lambda x, t, w: F.binary_cross_entropy(x, t, weight=w)), X(), T(), torch.rand(2, 3))
    assert counted["binary_cross_entropy"] == B(11, 30, 18, 1, 12)
    assert counted["binary_cross_entropy_backward"] == B(0, 18, 18, 12, 0)


def test_cascade_adds():
    # N = 4: lp = max(4, ⌈log2 4⌉ // 8) = 4; only b = 0 has its low 4, 8, …, 28 bits zero → 7 merges;
    # then the 8 partial sums are folded (8 adds) → 15
    assert cascade_adds(4) == 15
    # N = 40: level 1 merges at b = 0, 16, 32 (3); levels 2..7 only at b = 0 (6) → 9 + 8 = 17
    assert cascade_adds(40) == 17
    # N = 2^20: lp = max(4, 20 // 8) = 4; Σ_j ⌈2^20 / 2^(4j)⌉ for j = 1..7 = 65536+4096+256+16+1+1+1
    assert cascade_adds(1 << 20) == 65536 + 4096 + 256 + 16 + 1 + 1 + 1 + 8


def test_nll_and_cross_entropy():
    x = torch.randn(4, 5, requires_grad=True)
    t = torch.tensor([0, 3, 1, 4])
    counted = op_bos(lambda x, t: F.nll_loss(x, t).backward(), x, t)
    # mean, no weights: per sample loss −= x[t] (4 sub); cascade merges + fold (15 add); /N (1 div)
    assert counted["nll_loss_forward"] == B(15, 4, 0, 1, 0)
    # backward: −g/total_weight once (1 sub, 1 div); unweighted rows are written, not scaled
    assert counted["nll_loss_backward"] == B(0, 1, 0, 1, 0)
    # class weights: per sample −x·w (1 mul) and Σw (1 add); both sums cascade (2 × 15 add)
    counted = op_bos(lambda x, t, w: F.nll_loss(x, t, weight=w).backward(), x, t, torch.rand(5))
    assert counted["nll_loss_forward"] == B(4 + 30, 4, 4, 1, 0)
    assert counted["nll_loss_backward"] == B(0, 1, 4, 1, 0)
    # sum: no division; none: per sample −x[t]·1 (1 sub, 1 mul), backward −w·g (1 sub, 1 mul)
    counted = op_bos(lambda x, t: F.nll_loss(x, t, reduction="sum").backward(), x, t)
    assert counted["nll_loss_forward"] == B(15, 4, 0, 0, 0)
    assert counted["nll_loss_backward"] == B(0, 1, 0, 0, 0)
    counted = op_bos(lambda x, t: F.nll_loss(x, t, reduction="none").sum().backward(), x, t)
    assert counted["nll_loss_forward"] == B(0, 4, 4, 0, 0)
    assert counted["nll_loss_backward"] == B(0, 4, 4, 0, 0)
    # cross_entropy = log_softmax + nll_loss: the log_softmax rows are priced by their own rule
    counted = op_bos(lambda x, t: F.cross_entropy(x, t).backward(), x, t)
    assert counted["nll_loss_forward"] == B(15, 4, 0, 1, 0) and "_log_softmax" in counted


def test_nll_2d():
    # (N, C, H, W) = (2, 3, 2, 2): 8 "samples"; cascade: lp = 4, b = 0 only → 7 + 8 = 15
    x = torch.randn(2, 3, 2, 2, requires_grad=True)
    t = torch.randint(0, 3, (2, 2, 2))
    counted = op_bos(lambda x, t: F.nll_loss(x, t).backward(), x, t)
    assert counted["nll_loss2d_forward"] == B(15, 8, 0, 1, 0)
    assert counted["nll_loss2d_backward"] == B(0, 1, 0, 1, 0)


def test_l1_rule_for_direct_callers():
    # F.l1_loss decomposes before dispatch; the aten rule: per element x−t, |·| (2 sub) + mean
    assert rule_bos(aten.l1_loss, meta(2, 3), meta(2, 3), 1) == B(5, 12, 0, 1, 0)
