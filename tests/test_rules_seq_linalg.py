"""Golden tests for torch_tos/rules/linalg.py: matrix products, forward and backward.

Convention (docs/conventions.md §2): an output that is a dot product of K terms costs K mul and K−1 add; a bias
adds 1 add per output (so Linear(I→O) is I add, I mul per output); alpha/beta ≠ 1 one mul each per
output; beta = 0 drops the bias. ``B(add, sub, mul, div, root)``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from test_rules_seq_helpers import B, aten, meta, op_bos, rule_bos, unit


def test_mm_bmm_mv_dot_outer():
    # mm 2×3 @ 3×4: 8 outputs of K=3 → 8·2 add, 8·3 mul
    assert op_bos(torch.mm, torch.randn(2, 3), torch.randn(3, 4)) == {"mm": B(16, 0, 24)}
    # bmm (2,2,3) @ (2,3,4): 16 outputs of K=3 → 32 add, 48 mul
    assert op_bos(torch.bmm, torch.randn(2, 2, 3), torch.randn(2, 3, 4)) == {"bmm": B(32, 0, 48)}
    # mv (2,3) @ (3,): 2 outputs of K=3 → 4 add, 6 mul
    assert op_bos(torch.mv, torch.randn(2, 3), torch.randn(3)) == {"mv": B(4, 0, 6)}
    # dot of 5: 5 mul, 4 add
    assert op_bos(torch.dot, torch.randn(5), torch.randn(5)) == {"dot": B(4, 0, 5)}
    # outer 2 ⊗ 3: 6 products, no sums (torch.outer decomposes into a broadcast mul before
    # dispatch; the aten rule prices direct callers the same)
    assert op_bos(torch.outer, torch.randn(2), torch.randn(3)) == {"mul": B(0, 0, 6)}
    assert rule_bos(aten.outer, meta(2), meta(3), out=meta(2, 3)) == B(0, 0, 6)


def test_addmm_bias_and_scalars():
    bias, a, b = torch.randn(4), torch.randn(2, 3), torch.randn(3, 4)
    # 8 outputs: product (2 add, 3 mul) + bias (1 add) → 3 add, 3 mul each
    assert op_bos(torch.addmm, bias, a, b) == {"addmm": B(24, 0, 24)}
    # beta = 0.5 scales the bias (+1 mul), alpha = 2 scales the product (+1 mul) per output
    assert op_bos(lambda *t: torch.addmm(*t, beta=0.5, alpha=2.0), bias, a, b) == {"addmm": B(24, 0, 40)}
    # beta = 0: the bias is not read, no add for it
    assert op_bos(lambda *t: torch.addmm(*t, beta=0), bias, a, b) == {"addmm": B(16, 0, 24)}
    # in-place variant is the same kernel
    assert op_bos(lambda c, x, y: c.addmm_(x, y), torch.randn(2, 4), a, b) == {"addmm_": B(24, 0, 24)}


def test_baddbmm_addbmm_addmv_addr():
    # baddbmm: bmm (32 add, 48 mul) + 16 bias adds
    assert op_bos(torch.baddbmm, torch.randn(2, 2, 4), torch.randn(2, 2, 3), torch.randn(2, 3, 4)) \
        == {"baddbmm": B(48, 0, 48)}
    # addbmm: out (2,4), each sums B·K = 2·3 = 6 products (6 mul, 5 add) + bias add → 8·6 add, 8·6 mul
    assert op_bos(torch.addbmm, torch.randn(2, 4), torch.randn(2, 2, 3), torch.randn(2, 3, 4)) \
        == {"addbmm": B(48, 0, 48)}
    # addmv: 2 outputs of K=3 (2 add, 3 mul) + bias → 6 add, 6 mul
    assert op_bos(torch.addmv, torch.randn(2), torch.randn(2, 3), torch.randn(3)) == {"addmv": B(6, 0, 6)}
    # addr: 2×3 outputs, 1 mul + 1 bias add each
    assert op_bos(torch.addr, torch.randn(2, 3), torch.randn(2), torch.randn(3)) == {"addr": B(6, 0, 6)}


def test_addmm_activation_relu_and_gelu():
    bias, a, b = meta(4), meta(2, 3), meta(3, 4)
    out = meta(2, 4)
    # addmm [24, 0, 24] + ReLU: 1 compare per output (8)
    assert rule_bos(aten._addmm_activation, bias, a, b, out=out) == B(24, 8, 24)
    # + GELU: the GELU rule per output (8 × its per-element unit)
    assert rule_bos(aten._addmm_activation, bias, a, b, out=out, use_gelu=True) == \
        B(24, 0, 24) + unit(aten.gelu) * 8
    # and the real fused kernel (CPU) agrees with its rule
    counted = op_bos(lambda *t: torch.ops.aten._addmm_activation(*t), torch.randn(4), torch.randn(2, 3),
                     torch.randn(3, 4), meta=False)
    assert counted == {"_addmm_activation": B(24, 8, 24)}


def test_cross():
    # 4 cross products of 3-vectors: each component a_j·b_k − a_k·b_j → 12 components × (2 mul, 1 sub)
    assert op_bos(torch.linalg.cross, torch.randn(4, 3), torch.randn(4, 3)) == {"linalg_cross": B(0, 12, 24)}


def test_linear_forward_and_backward():
    """Linear(3→4) on a batch of 2, training step with a ones gradient.

    forward addmm: 8 outputs × (3 add incl. bias, 3 mul) = [24, 0, 24]
    backward (input needs no grad): dW = gᵀ·x (4×3 outputs of K=2: 1 add, 2 mul) = [12, 0, 24] (mm);
    db = Σ over the batch of g: 4 outputs × 1 add (sum).
    """
    lin = nn.Linear(3, 4)

    def step(m, x):
        y = m(x)
        y.backward(torch.ones_like(y))

    counted = op_bos(step, lin, torch.randn(2, 3))
    assert counted["addmm"] == B(24, 0, 24)
    assert counted["mm"] == B(12, 0, 24)
    assert counted["sum"] == B(4, 0, 0)


def test_linear_input_grad_is_a_second_mm():
    """With an input that needs grad, backward adds dX = g·W: 2×3 outputs of K=4 → [18, 0, 24]."""
    lin = nn.Linear(3, 4, bias=False)
    x = torch.randn(2, 3, requires_grad=True)

    def step(m, x):
        y = m(x)
        y.backward(torch.ones_like(y))

    counted = op_bos(step, lin, x)
    # forward: bias-free mm 8 outputs × (2 add, 3 mul); backward: dW [12, 0, 24] + dX [18, 0, 24]
    assert counted["mm"] == B(16, 0, 24) + B(12, 0, 24) + B(18, 0, 24)


@pytest.mark.parametrize("op,shapes", [("mm", [(2, 3), (3, 4)]), ("bmm", [(2, 2, 3), (2, 3, 4)])])
def test_flops_and_bos_agree_on_products(op, shapes):
    # FLOPs (FlopCounterMode: 2·K per output) = add + mul + 1 per output for a bias-free product
    args = [meta(*s) for s in shapes]
    out = getattr(torch, op)(*args)
    bos = rule_bos(getattr(aten, op), *args, out=out)
    assert bos.add + bos.mul + out.numel() == 2 * shapes[0][-1] * out.numel()
