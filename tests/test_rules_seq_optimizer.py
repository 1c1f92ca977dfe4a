"""Golden tests for torch_tos/rules/optimizer.py: fused kernels, foreach ops, and one optimizer
step of Adam/AdamW/RMSprop/Adagrad/SGD, single-tensor and foreach (and fused on CPU).

The model is Linear(4→3): 15 parameters in 2 tensors (W 12, b 3). ``B(add, sub, mul, div, root)``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import torch_tos
from test_rules_seq_helpers import B, aten, meta, op_bos, rule_bos

O = torch.optim


def optimizer_bos(make, device="meta", x=None) -> B:
    """BOs of the optimizer phase of one training step of Linear(4→3) on a batch of 2."""
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    report = torch_tos.profile(model, torch.randn(2, 4) if x is None else x, mode="training",
                               optimizer=make(model.parameters()), device=device)
    assert not report.unsupported, report.unsupported
    return report.by_phase()["optimizer"].bos


def test_single_tensor_adam_step():
    # per element: m.lerp_(g, 1−β1) [1, 1, 1]; v.mul_(β2) [0, 0, 1]; v.addcmul_(g, g, value=1−β2)
    # [1, 0, 2]; denom = (√v / √bc2).add_(ε): 1 root, 1 div, 1 add; p.addcdiv_(m, denom,
    # value=−lr/bc1): 1 add, 1 mul, 1 div ⇒ [4, 1, 5, 2, 1] × 15 = [60, 15, 75, 30, 15];
    # per tensor step += 1 (2 add); the bias corrections are Python floats (not aten ops)
    assert optimizer_bos(lambda p: O.Adam(p, foreach=False)) == B(62, 15, 75, 30, 15)


def test_adam_options():
    # weight_decay: g.add(p, alpha=wd) +[1, 0, 1] per element; amsgrad: torch.maximum +1 sub
    assert optimizer_bos(lambda p: O.Adam(p, foreach=False, weight_decay=0.1, amsgrad=True)) == \
        B(62 + 15, 15 + 15, 75 + 15, 30, 15)
    # AdamW: p.mul_(1 − lr·wd) +1 mul per element
    assert optimizer_bos(lambda p: O.AdamW(p, foreach=False)) == B(62, 15, 90, 30, 15)


@pytest.mark.parametrize("make", [
    lambda p, fe: O.Adam(p, foreach=fe),
    lambda p, fe: O.Adam(p, foreach=fe, weight_decay=0.1, amsgrad=True),
    lambda p, fe: O.AdamW(p, foreach=fe),
    lambda p, fe: O.RMSprop(p, foreach=fe),
    lambda p, fe: O.RMSprop(p, foreach=fe, momentum=0.9, centered=True, weight_decay=0.1),
    lambda p, fe: O.Adagrad(p, foreach=fe),
    lambda p, fe: O.Adagrad(p, foreach=fe, lr_decay=0.1, weight_decay=0.1),
    lambda p, fe: O.SGD(p, lr=0.1, foreach=fe, momentum=0.9, nesterov=True, weight_decay=0.1),
], ids=["adam", "adam-wd-amsgrad", "adamw", "rmsprop", "rmsprop-full", "adagrad", "adagrad-full", "sgd"])
def test_foreach_equals_single_tensor(make):
    """The _foreach_ rules price each op as the single-tensor op summed over the list."""
    assert optimizer_bos(lambda p: make(p, True)) == optimizer_bos(lambda p: make(p, False))


def test_rmsprop_and_adagrad_steps():
    # RMSprop: v.mul_(α) [0,0,1]; v.addcmul_(g, g, value=1−α) [1,0,2]; avg = v.sqrt().add_(ε)
    # [1,0,0,0,1]; p.addcdiv_(g, avg, value=−lr) [1,0,1,1] ⇒ [3, 0, 4, 1, 1] × 15, + 2 step adds
    assert optimizer_bos(lambda p: O.RMSprop(p, foreach=False)) == B(47, 0, 60, 15, 15)
    # Adagrad: s.addcmul_(g, g, value=1) [1,0,1]; std = s.sqrt().add_(ε) [1,0,0,0,1];
    # p.addcdiv_(g, std, value=−clr) [1,0,1,1] ⇒ [3, 0, 2, 1, 1] × 15, + 2 step adds
    # (optimizer state created in the constructor: its step stays a CPU scalar on meta)
    assert optimizer_bos(lambda p: O.Adagrad(p, foreach=False)) == B(47, 0, 30, 15, 15)


def test_fused_adam_rule():
    params = [meta(3, 4), meta(3)]
    lists = [params] * 5
    steps = [meta(()), meta(())]
    # per element [3, 2, 5, 2, 1] (lerp, v = β2·v + (1−β2)·g², √v/√bc2 + ε, p −= (lr/bc1)·m/denom)
    # × 15 = [45, 30, 75, 30, 15]; per tensor [0, 2, 2, 1, 5] × 2 = [0, 4, 4, 2, 10]
    kw = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, amsgrad=False, maximize=False)
    assert rule_bos(aten._fused_adam_, *lists, steps, weight_decay=0.0, **kw) == B(45, 34, 79, 32, 25)
    # Adam with decay: g + wd·p [1, 0, 1] per element; AdamW: p·(1 − lr·wd) [0, 0, 1] per element
    # and (1 − lr·wd) once per tensor [0, 1, 1]
    assert rule_bos(aten._fused_adam_, *lists, steps, weight_decay=0.1, **kw) == B(60, 34, 94, 32, 25)
    assert rule_bos(aten._fused_adamw_, *lists, steps, weight_decay=0.1, **kw) == B(45, 36, 96, 32, 25)
    # maximize: g·(−1) +15 mul; AMP grad_scale: g / scale +15 div
    kw.update(maximize=True)
    assert rule_bos(aten._fused_adam_, *lists, steps, weight_decay=0.0, grad_scale=meta(()), **kw) == \
        B(45, 34, 94, 47, 25)


def test_fused_sgd_and_adagrad_rules():
    params = [meta(3, 4), meta(3)]
    # SGD: p −= lr·g [0, 1, 1]; decay [1, 0, 1]; momentum (not first step) [1, 0, 2]; nesterov [1, 0, 1]
    kw = dict(lr=0.1, dampening=0.0, maximize=False)
    assert rule_bos(aten._fused_sgd_, params, params, params, weight_decay=0.0, momentum=0.0,
                    nesterov=False, is_first_step=False, **kw) == B(0, 15, 15)
    assert rule_bos(aten._fused_sgd_, params, params, params, weight_decay=0.1, momentum=0.9,
                    nesterov=True, is_first_step=False, **kw) == B(45, 15, 75)
    # first step: the momentum buffer is a copy
    assert rule_bos(aten._fused_sgd_, params, params, params, weight_decay=0.0, momentum=0.9,
                    nesterov=False, is_first_step=True, **kw) == B(0, 15, 15)
    # Adagrad: s += g·g [1,0,1]; √s + ε [1,0,0,0,1]; p −= clr·g/std [0,1,1,1] ⇒ [2,1,2,1,1] × 15;
    # per tensor clr = lr/(1 + (t−1)·decay) [1, 1, 1, 1, 0] × 2
    assert rule_bos(aten._fused_adagrad_, params, params, params, [meta(()), meta(())], lr=0.1,
                    lr_decay=0.0, weight_decay=0.0, eps=1e-10, maximize=False) == B(32, 17, 32, 17, 15)


@pytest.mark.parametrize("make", [
    lambda p: O.Adam(p, fused=True), lambda p: O.AdamW(p, fused=True, weight_decay=0.1),
    lambda p: O.SGD(p, lr=0.1, momentum=0.9, fused=True), lambda p: O.Adagrad(p, fused=True)],
    ids=["adam", "adamw", "sgd", "adagrad"])
def test_fused_optimizers_run_on_cpu(make):
    """Fused CPU kernels are counted by their rules (no unsupported ops on a real step)."""
    bos = optimizer_bos(make, device="cpu")
    assert bos.total > 0


def test_foreach_ops():
    xs = [torch.randn(2, 3), torch.randn(4)]
    # _foreach_add(xs, ys, alpha=2): 10 adds + 10 muls (alpha ≠ 1)
    assert op_bos(lambda a, b: torch._foreach_add(a, b, alpha=2.0), xs, xs) == {"_foreach_add": B(10, 0, 10)}
    # _foreach_addcmul_(xs, a, b, value=0.5): per element a·b·value + s → [1, 0, 2]
    assert op_bos(lambda a, b, c: torch._foreach_addcmul_(a, b, c, value=0.5), xs, xs, xs) == \
        {"_foreach_addcmul_": B(10, 0, 20)}
    # _foreach_sqrt: 1 root per element; _foreach_norm: per tensor n mul, n−1 add, 1 root
    assert op_bos(torch._foreach_sqrt, xs) == {"_foreach_sqrt": B(0, 0, 0, 0, 10)}
    assert op_bos(torch._foreach_norm, xs) == {"_foreach_norm": B(5 + 3, 0, 10, 0, 2)}
    # generic fallback: _foreach_floor = Σ floor (1 compare-style sub per element)
    assert op_bos(torch._foreach_floor, xs) == {"_foreach_floor": B(0, 10)}
    # _foreach_max: n−1 compares per tensor
    assert op_bos(torch._foreach_max, xs) == {"_foreach_max": B(0, 5 + 3)}
    # _foreach_pow(β, steps) (Scalar ** TensorList, Adam's capturable path): exp(e·log β) →
    # 1 mul, 2 root per element
    assert op_bos(lambda s: torch._foreach_pow(0.9, s), [torch.tensor(1.0), torch.tensor(2.0)]) == \
        {"_foreach_pow": B(0, 0, 2, 0, 4)}
