"""Golden tests: activations, element-wise arithmetic and reductions, forward and backward.

Each expected count is the per-element (or per-row / per-output) unit of the rule's docstring
times the element count of a tiny tensor, derived in the comment or the table row; the op runs
under the counting Engine on CPU and on meta and both must match. ``B(add, sub, mul, div, root)``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_tos import BOs
from test_rules_vision import leaf, op_bos, step

B = BOs
N = 6  # elements of the 2×3 test tensor

# module, forward op, per-element forward unit, backward op, per-element backward unit
ACTIVATIONS = [
    # sigmoid 1/(1+e^−x): neg, exp, 1+, 1/ ; backward g·y·(1−y): 1 sub, 2 mul
    (nn.Sigmoid(), "sigmoid", B(1, 1, 0, 1, 1), "sigmoid_backward", B(0, 1, 2, 0, 0)),
    # tanh (1−e^−2x)/(1+e^−2x): 2x, exp, 1−, 1+, ÷ ; backward g·(1−y²): y², 1−, g·
    (nn.Tanh(), "tanh", B(1, 1, 1, 1, 1), "tanh_backward", B(0, 1, 2, 0, 0)),
    # GELU as the paper's x·σ(1.702x); backward exact form: 7 mul, 2 add, erf + exp
    (nn.GELU(), "gelu", B(1, 1, 2, 1, 1), "gelu_backward", B(2, 0, 7, 0, 2)),
    # tanh-approximate backward: 13 mul, tanh (5 BOs) + 4 add + 1 sub
    (nn.GELU("tanh"), "gelu", B(1, 1, 2, 1, 1), "gelu_backward", B(5, 2, 13, 1, 1)),
    # ReLU: one compare; backward threshold_backward: one compare
    (nn.ReLU(), "relu", B(0, 1, 0, 0, 0), "threshold_backward", B(0, 1, 0, 0, 0)),
    # LeakyReLU: compare + slope multiply, both ways
    (nn.LeakyReLU(0.1), "leaky_relu", B(0, 1, 1, 0, 0), "leaky_relu_backward", B(0, 1, 1, 0, 0)),
    # SiLU x·σ(x): sigmoid + 1 mul; backward g·s·(1 + x·(1−s)): sigmoid, 1−s, x·, 1+, s·, g·
    (nn.SiLU(), "silu", B(1, 1, 1, 1, 1), "silu_backward", B(2, 2, 3, 1, 1)),
    # ReLU6 = hardtanh(0, 6): two compares, both ways
    (nn.ReLU6(), "hardtanh", B(0, 2, 0, 0, 0), "hardtanh_backward", B(0, 2, 0, 0, 0)),
    # hardsigmoid min(max(x+3, 0), 6)/6; backward (−3 < x < 3) ? g·(1/6) : 0
    (nn.Hardsigmoid(), "hardsigmoid", B(1, 2, 0, 1, 0), "hardsigmoid_backward", B(0, 2, 1, 0, 0)),
    # hardswish x·min(max(x+3,0),6)/6; backward x < −3 ? 0 : x ≤ 3 ? g·(x/3 + ½) : g
    (nn.Hardswish(), "hardswish", B(1, 2, 1, 1, 0), "hardswish_backward", B(1, 2, 1, 1, 0)),
    # softplus: βx, compare, exp, log1p (add + root), /β ; backward z = e^(βx), g·z/(z+1), compare
    (nn.Softplus(), "softplus", B(1, 1, 1, 1, 2), "softplus_backward", B(1, 1, 2, 1, 1)),
    # mish x·tanh(log1p(e^x)): exp, log1p, tanh, x· ; backward [4, 3, 5, 2, 4] (docstring)
    (nn.Mish(), "mish", B(2, 1, 2, 1, 3), "mish_backward", B(4, 3, 5, 2, 4)),
    # elu: compare, x·input_scale, e^·−1, ·α ; backward on the input: compare, 3 products, exp, g·
    (nn.ELU(), "elu", B(0, 2, 2, 0, 1), "elu_backward", B(0, 1, 4, 0, 1)),
    (nn.SELU(), "elu", B(0, 2, 2, 0, 1), "elu_backward", B(0, 1, 4, 0, 1)),
    (nn.CELU(0.5), "celu", B(0, 2, 2, 0, 1), "elu_backward", B(0, 1, 4, 0, 1)),
    # logsigmoid min(x,0) − log1p(e^−|x|); backward (m − s·z/(1+z))·g
    (nn.LogSigmoid(), "log_sigmoid_forward", B(1, 4, 0, 0, 2), "log_sigmoid_backward", B(1, 2, 2, 1, 0)),
    # PReLU: compare + w·x; backward compare, w·g, x·g (the weight gradient's reduction is a sum)
    (nn.PReLU(), "_prelu_kernel", B(0, 1, 1, 0, 0), "_prelu_kernel_backward", B(0, 1, 2, 0, 0)),
    # softshrink: 2 compares, x − λ, x + λ ; backward 2 compares
    (nn.Softshrink(), "softshrink", B(1, 3, 0, 0, 0), "softshrink_backward", B(0, 2, 0, 0, 0)),
    (nn.Hardshrink(), "hardshrink", B(0, 2, 0, 0, 0), "hardshrink_backward", B(0, 2, 0, 0, 0)),
]


@pytest.mark.parametrize("module, fwd, fwd_unit, bwd, bwd_unit", ACTIVATIONS,
                         ids=[f"{type(a[0]).__name__}-{a[1]}" for a in ACTIVATIONS])
def test_activation(module, fwd, fwd_unit, bwd, bwd_unit):
    got = op_bos(step, module, leaf(2, 3))
    assert got[fwd] == fwd_unit * N
    assert got[bwd] == bwd_unit * N


def test_prelu_weight_gradient_is_a_sum():
    # PReLU() (one weight): the 6 per-element x·g terms are summed to the weight: 5 adds
    got = op_bos(step, nn.PReLU(), leaf(2, 3))
    assert got["sum"] == B(add=5)


def test_elu_in_place_backward_uses_the_result():
    # ELU(inplace=True) on a non-leaf: elu_ then elu_backward(is_result=True):
    # compare, g·input_scale·(y + α·scale) → [1, 1, 2, 0, 0] per element
    got = op_bos(lambda x: step(nn.ELU(inplace=True), x * 1), leaf(2, 3))
    assert got["elu_"] == B(0, 2, 2, 0, 1) * N
    assert got["elu_backward"] == B(1, 1, 2, 0, 0) * N


def test_rrelu_train_and_eval():
    # training: compare, draw scaled to [l, u] (1 mul, 1 add), x·r → [1, 1, 2, 0, 0];
    # backward g·noise: 1 mul. eval: leaky relu with the mean slope, both ways [0, 1, 1, 0, 0]
    got = op_bos(step, nn.RReLU(), leaf(2, 3))
    assert got["rrelu_with_noise"] == B(1, 1, 2, 0, 0) * N
    assert got["rrelu_with_noise_backward"] == B(mul=N)
    got = op_bos(step, nn.RReLU().eval(), leaf(2, 3))
    assert got["leaky_relu" if "leaky_relu" in got else "rrelu_with_noise"] == B(0, 1, 1, 0, 0) * N


def test_glu():
    # GLU on 2×6 → 2×3: a·σ(b) per output (6): [1, 1, 1, 1, 1]; backward per gradient element (6):
    # σ(b) [1, 1, 0, 1, 1], (1−σ)·σ·a·g (1 sub, 3 mul), first half ·g (1 mul) → [1, 2, 4, 1, 1]
    got = op_bos(step, nn.GLU(), leaf(2, 6))
    assert got["glu"] == B(1, 1, 1, 1, 1) * 6
    assert got["glu_backward"] == B(1, 2, 4, 1, 1) * 6


def test_logit():
    # logit(x, eps): clamp (2 compares), log(x/(1−x)): 1 sub, 1 div, 1 root → [0, 3, 0, 1, 1];
    # backward g/(x·(1−x)) with the range test: [0, 3, 1, 1, 0]
    got = op_bos(lambda x: step(lambda t: torch.logit(t, eps=1e-6), x), leaf(2, 3))
    assert got["logit"] == B(0, 3, 0, 1, 1) * N
    assert got["logit_backward"] == B(0, 3, 1, 1, 0) * N


@pytest.mark.parametrize("dim, rows, n", [(1, 2, 3), (0, 3, 2), (-1, 2, 3)])
def test_softmax_dims(dim, rows, n):
    # softmax over rows of n: max (n−1 sub), shift (n sub), exp (n root), sum (n−1 add), ÷ (n div)
    # backward y·(g − Σg·y): n mul, n−1 add, n sub, n mul — per row; 2×3 softmaxed over dim
    got = op_bos(step, nn.Softmax(dim), leaf(2, 3))
    assert got["_softmax"] == B(add=rows * (n - 1), sub=rows * (2 * n - 1), div=rows * n, root=rows * n)
    assert got["_softmax_backward_data"] == B(add=rows * (n - 1), sub=rows * n, mul=rows * 2 * n)


def test_log_softmax():
    # log_softmax over rows of 3 (2 rows): add 2·2, sub 2·(3·3 − 1), root 2·4;
    # backward g − e^y·Σg: add 2·2, sub 6, mul 6, root 6
    got = op_bos(step, nn.LogSoftmax(-1), leaf(2, 3))
    assert got["_log_softmax"] == B(add=4, sub=16, root=8)
    assert got["_log_softmax_backward_data"] == B(add=4, sub=6, mul=6, root=6)


# -- element-wise ---------------------------------------------------------------------------------

def _fwd(fn, *args):
    return op_bos(fn, *args)


def test_arithmetic():
    a, b = torch.randn(2, 3), torch.randn(3)  # broadcast: 6 outputs
    got = _fwd(lambda a, b: (a + b, a - b, a * b, a / b, torch.add(a, b, alpha=2), torch.rsub(a, b),
                             -a, a.abs(), torch.maximum(a, b)), a, b)
    # add: 6 + (6 add + 6 mul for α = 2); sub 6; rsub 6; mul 6; div 6; neg, abs: a compare each;
    # maximum: a compare
    assert got["add"] == B(add=12, mul=6)
    assert got["sub"] == B(sub=6) and got["rsub"] == B(sub=6)
    assert got["mul"] == B(mul=6) and got["div"] == B(div=6)
    assert got["neg"] == B(sub=6) and got["abs"] == B(sub=6) and got["maximum"] == B(sub=6)


def test_transcendentals():
    x = torch.rand(2, 3) + 0.5
    got = _fwd(lambda x: (x.exp(), x.log(), x.sqrt(), x.rsqrt(), x.log1p(), x.expm1(), x.erf(),
                          x.reciprocal(), torch.hypot(x, x), torch.xlogy(x, x)), x)
    # exp, log, sqrt, erf: 1 root; rsqrt: div + root; log1p/expm1: add + root; reciprocal: div;
    # hypot √(a² + b²): 2 mul, 1 add, 1 root; xlogy: zero test, log, mul
    for op in ("exp", "log", "sqrt", "erf"):
        assert got[op] == B(root=6), op
    assert got["rsqrt"] == B(div=6, root=6)
    assert got["log1p"] == got["expm1"] == B(add=6, root=6)
    assert got["reciprocal"] == B(div=6)
    assert got["hypot"] == B(add=6, mul=12, root=6)
    assert got["xlogy"] == B(sub=6, mul=6, root=6)


@pytest.mark.parametrize("exponent, unit", [
    (2, B(mul=1)),            # x·x
    (3, B(mul=2)),            # x² · x
    (4, B(mul=2)),            # (x²)²
    (5, B(mul=3)),            # (x²)² · x
    (-2, B(mul=1, div=1)),    # 1/(x·x)
    (0.5, B(root=1)),         # √x
    (-0.5, B(div=1, root=1)),  # rsqrt
    (1, B()), (0, B()),       # copy / fill
    (2.5, B(mul=1, root=2)),  # exp(2.5·log x)
])
def test_pow_scalar_exponent(exponent, unit):
    x = torch.rand(2, 3) + 0.5
    got = _fwd(lambda x: torch.pow(x, exponent), x)
    assert got.get("pow", B()) == unit * N


def test_pow_tensor_exponent_same_on_meta_and_cpu():
    # a tensor exponent is data (unknown on meta): the general exp(e·log x) per element on both
    # devices, even when it holds the value 2 (op_bos checks meta == cpu)
    x = torch.rand(2, 3) + 0.5
    got = _fwd(lambda x, e: torch.pow(x, e), x, torch.tensor(2.0))
    assert got["pow"] == B(mul=1, root=2) * N


def test_pow_backward():
    # d/dx x³ = 3x²·g: autograd runs pow(x, 2) (1 mul), ·3 (mul), ·g (mul) → 3 mul per element,
    # on top of the forward pow(x, 3) (2 mul)
    got = op_bos(step, lambda x: x.pow(3), leaf(2, 3))
    assert got["pow"] == B(mul=2 * N + N)
    assert got["mul"] == B(mul=2 * N)


def test_clamp_variants():
    x = torch.randn(2, 3)
    got = _fwd(lambda x, lo, hi: (x.clamp(-1, 1), x.clamp(min=0), x.clamp(max=0.5), x.clamp_min(0),
                                  torch.clamp(x, lo, hi)), x, torch.zeros(3), torch.ones(3))
    # one compare per bound given: 2 + 1 + 1 (clamp) and the tensor-bound clamp 2 → 6·6 = 36
    assert got["clamp"] == B(sub=36)
    assert got["clamp_min"] == B(sub=6)


def test_clamp_backward():
    # clamp(−1, 1) backward: x ≥ −1 and x ≤ 1 (2 compares), logical_and (1), where (1)
    got = op_bos(step, lambda x: x.clamp(-1, 1), leaf(2, 3))
    assert got["clamp"] == B(sub=2 * N)
    assert got["logical_and_"] == B(sub=N) and got["where"] == B(sub=N)


def test_fused_elementwise():
    s, a, b = torch.randn(2, 3), torch.randn(2, 3), torch.rand(2, 3) + 1
    got = _fwd(lambda s, a, b: (torch.addcmul(s, a, b), torch.addcmul(s, a, b, value=0.5),
                                torch.addcdiv(s, a, b, value=2), torch.lerp(s, a, 0.3)), s, a, b)
    # addcmul: a·b + s (1 mul, 1 add), value ≠ 1: +1 mul; addcdiv value 2: div, mul, add;
    # lerp s + w·(a − s): sub, mul, add
    assert got["addcmul"] == B(add=12, mul=6 + 12)
    assert got["addcdiv"] == B(add=6, mul=6, div=6)
    assert got["lerp"] == B(add=6, sub=6, mul=6)


def test_dropout_paths():
    # CPU/meta dropout: bernoulli_ (1 compare per element), ÷(1−p) on the mask, x·mask
    got = op_bos(step, nn.Dropout(0.5), leaf(2, 3))
    assert got["bernoulli_"] == B(sub=N)
    assert got["div_"] == B(div=N)
    assert got["mul"] == B(mul=2 * N)  # forward x·mask and backward g·mask
    # the fused kernel (CUDA's path): compare, x·mask·scale; backward g·mask·scale
    got = op_bos(lambda x: torch.ops.aten.native_dropout(x, 0.5, True), torch.randn(2, 3))
    assert got["native_dropout"] == B(sub=N, mul=2 * N)
    got = op_bos(lambda g, m: torch.ops.aten.native_dropout_backward(g, m, 2.0), torch.randn(2, 3),
                 torch.ones(2, 3, dtype=torch.bool))
    assert got["native_dropout_backward"] == B(mul=2 * N)


def test_compares_and_selects():
    x = torch.randn(2, 3)
    got = _fwd(lambda x: (x > 0, x.eq(0), torch.where(x > 0, x, 0.0), x.masked_fill(x < 0, 0.0),
                          torch.logical_and(x > 0, x < 1), x.sign()), x)
    # every comparison, select and logical op is one compare per element (docs/conventions.md §2);
    # x > 0 runs three times, x < · twice
    assert got["gt"] == B(sub=18) and got["eq"] == B(sub=6) and got["lt"] == B(sub=12)
    assert got["where"] == got["masked_fill"] == got["logical_and"] == got["sign"] == B(sub=6)


# -- reductions -----------------------------------------------------------------------------------

def test_sum_mean_over_dims():
    x = torch.randn(2, 3, 4)
    got = _fwd(lambda x: (x.sum(), x.sum((0, 2)), x.mean(-1), x.mean(dim=[]), x.nansum(1)), x)
    # sum all: 23 add; sum over (0, 2): 3 outputs of 8 → 21; nansum over dim 1: 8 outputs of 3 → 16
    # mean over -1: 6 outputs of 4 → 18 add, 6 div; mean over [] = all: 23 add, 1 div
    assert got["sum"] == B(add=23 + 21)
    assert got["nansum"] == B(add=16)
    assert got["mean"] == B(add=18 + 23, div=6 + 1)


def test_extrema_and_order():
    x = torch.randn(2, 8)
    got = _fwd(lambda x: (x.amax(1), x.max(), x.max(1), x.argmin(0), torch.aminmax(x, dim=1),
                          x.sort(1), x.topk(3, 1), x.cummax(1), x.median(1), x.kthvalue(2, 1)), x)
    # amax over 8 (2 outputs): 14; max (all 16): 15; max.dim: 14 → max 29; argmin over 2 (8 outputs): 8
    # aminmax: 2·14; cummax: 2 lines of 7 compares
    assert got["amax"] == B(sub=14) and got["max"] == B(sub=29) and got["argmin"] == B(sub=8)
    assert got["aminmax"] == B(sub=28) and got["cummax"] == B(sub=14)
    # approximate order statistics: sort 2 lines · 8·⌈log2 8⌉ = 48; topk(3) 2·(7 + 2·3) = 26;
    # median and kthvalue 2·2·8 = 32 each
    assert got["sort"] == B(sub=48) and got["topk"] == B(sub=26)
    assert got["median"] == got["kthvalue"] == B(sub=32)


def test_prod_cumsum_logsumexp_logical():
    x = torch.rand(2, 4) + 0.5
    got = _fwd(lambda x: (x.prod(1), x.cumsum(1), x.cumprod(0), x.logsumexp(1), (x > 1).any(1),
                          (x > 1).all(), torch.count_nonzero(x, 1)), x)
    # prod over 4: 2·3 mul; cumsum: 2 lines of 3 adds; cumprod over dim 0: 4 lines of 1 mul
    # logsumexp over n = 4 (2 outputs): add n, sub 2n−1, root n+1 → [8, 14, 0, 0, 10]
    # any over 4: 2·3 folds; all over 8: 7; count_nonzero: 2·(4 compares, 3 adds)
    assert got["prod"] == B(mul=6) and got["cumsum"] == B(add=6) and got["cumprod"] == B(mul=4)
    assert got["logsumexp"] == B(add=8, sub=14, root=10)
    assert got["any"] == B(sub=6) and got["all"] == B(sub=7)
    assert got["count_nonzero"] == B(add=6, sub=8)


def test_var_std_norm():
    x = torch.randn(2, 5)
    got = _fwd(lambda x: (x.var(1), x.std(1, correction=0), torch.var_mean(x, 1),
                          torch.linalg.vector_norm(x, dim=1), x.norm(p=1, dim=1),
                          torch.linalg.vector_norm(x, float("inf"), dim=1),
                          torch.linalg.vector_norm(x, 3, dim=1)), x)
    # var over n = 5 per output: mean (4 add, 1 div), deviations (5 sub), squares (5 mul),
    # sum (4 add), ÷(n − c) (1 div) → [8, 5, 5, 2, 0]; 2 outputs. std: + 1 root
    assert got["var"] == B(16, 10, 10, 4, 0) and got["var_mean"] == B(16, 10, 10, 4, 0)
    assert got["std"] == B(16, 10, 10, 4, 2)
    # norms per output of 5: p=2 [4, 0, 5, 0, 1]; p=1 [4, 5, 0, 0, 0]; p=∞ [0, 9, 0, 0, 0];
    # p=3: |x| (5 sub), x^p (5·(mul, 2 root)), sum (4 add), ^(1/p) (mul, 2 root) → [4, 5, 6, 0, 12]
    assert got["linalg_vector_norm"] == (B(4, 0, 5, 0, 1) + B(4, 5, 0, 0, 0) + B(0, 9, 0, 0, 0)
                                         + B(4, 5, 6, 0, 12)) * 2


def test_sum_backward_and_mean_backward():
    # sum backward is an expand (free); mean backward expands then divides: 6 div
    got = op_bos(step, lambda x: x.sum(1, keepdim=True), leaf(2, 3))
    assert got == {"sum": B(add=4)}
    got = op_bos(step, lambda x: x.mean(1, keepdim=True), leaf(2, 3))
    assert got == {"mean": B(add=4, div=2), "div": B(div=6)}
