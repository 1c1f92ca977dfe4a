"""Activation functions and their backward kernels, per element (softmax per row of n).

Forward (docs/conventions.md §2, the paper's conventions; exp counts as one root):

* sigmoid 1/(1+e^−x): −x (1 sub), e^· (1 root), 1+ (1 add), 1/· (1 div) → [1, 1, 0, 1, 1]
* tanh (1−e^−2x)/(1+e^−2x): 2x (1 mul), e^· (root), 1− (sub), 1+ (add), / (div) → [1, 1, 1, 1, 1]
* GELU, both approximations: the paper's x·σ(1.702x): [1, 1, 2, 1, 1]
* ReLU: one compare (1 sub). LeakyReLU/ELU-style slopes: compare + 1 mul.
* SiLU x·σ(x): sigmoid + 1 mul → [1, 1, 1, 1, 1]
* hardtanh / ReLU6: two compares. hardsigmoid min(max(x + 3, 0), 6)/6: 1 add, 2 compares, 1 div.
  hardswish x·hardsigmoid(x): + 1 mul. softplus (βx > threshold ? x : log1p(e^(βx))/β): βx (mul),
  compare (sub), e^· (root), log1p (1 add + 1 root), /β (div) → [1, 1, 1, 1, 2].
  mish x·tanh(log1p(e^x)) (the kernel has no β/threshold): e^x (root), log1p (add, root), tanh
  [1, 1, 1, 1, 1], x· (mul) → [2, 1, 2, 1, 3].
  elu(x; α, scale, input_scale) = x ≤ 0 ? (e^(x·input_scale) − 1)·α·scale : x·scale, counted on
  the negative branch (the kernel evaluates it): compare, x·input_scale, e^·, −1, ·(α·scale) →
  [0, 2, 2, 0, 1] (celu and selu are elu with other constants).
  prelu / leaky_relu: compare + 1 mul. rrelu_with_noise in training: compare, a uniform draw scaled
  to [lower, upper] (1 mul, 1 add; the draw itself is RNG), x·r (1 mul) → [1, 1, 2, 0, 0]; in eval
  it is leaky_relu with slope (lower+upper)/2 → [0, 1, 1, 0, 0].
  glu(a, b) = a·σ(b): sigmoid + 1 mul → [1, 1, 1, 1, 1] per output element.
  softshrink: x > λ ? x − λ : (x < −λ ? x + λ : 0) → 2 compares, 1 sub, 1 add. hardshrink: 2 compares.
  logsigmoid (log_sigmoid_forward): min(x, 0) − log1p(e^−|x|): min, abs, neg (3 sub), e^· (root),
  log1p (add, root), the final subtraction (sub) → [1, 4, 0, 0, 2].
  logit(x, eps): optional clamp to [eps, 1−eps] (2 compares), log(x/(1−x)): 1 sub, 1 div, 1 root.
* softmax over n: max (n−1 sub), shift x−max (n sub), exp (n root), sum (n−1 add), divide (n div).
* log_softmax over n: max (n−1), shift (n sub), exp (n root), sum (n−1 add), log (1 root),
  subtract log-sum (n sub) → add n−1, sub 3n−1, root n+1.

Backward (what the CPU kernels compute, ``g`` = incoming gradient):

* sigmoid_backward(g, y) = g·y·(1−y): 1 sub, 2 mul. tanh_backward(g, y) = g·(1−y²): 1 sub, 2 mul.
* threshold_backward (ReLU): one compare (1 sub). leaky_relu_backward: compare + 1 mul.
* gelu_backward, exact (erf) form: g·(Φ(x) + x·φ(x)) with Φ = ½(1+erf(x/√2)), φ ∝ e^(−x²/2):
  x/√2, ½·, −½x, ·x, α·x, ·φ, g· (7 mul), 1+erf, Φ+ (2 add), erf and exp (2 root).
* gelu_backward, tanh form: x², x³, κx³, β(·), ½x, ½(1+t), t², 3κx², β(1+3κx²), two products
  and g· (13 mul); tanh (its 5 BOs); x+κx³, 1+t, 1+3κx², final sum (4 more add); 1−t² (1 more sub)
  → [5, 2, 13, 1, 1].
* silu_backward = g·s·(1 + x·(1−s)), s = σ(x): sigmoid + 1−s, x·, 1+, s·, g· → [2, 2, 3, 1, 1].
* _softmax_backward_data(g, y) = y·(g − Σ g·y): per row n mul, n−1 add, n sub, n mul.
* _log_softmax_backward_data(g, y) = g − e^y·Σg: n−1 add, n root, n mul, n sub.
* hardtanh_backward: 2 compares. hardsigmoid_backward: 2 compares + g·(1/6) (1 mul) → [0, 2, 1, 0, 0].
  hardswish_backward: x < −3 ? 0 : x ≤ 3 ? g·(x/3 + ½) : g → 2 compares, 1 div, 1 add, 1 mul.
  softplus_backward: z = e^(βx) (mul, root), threshold compare (sub), g·z/(z+1) (mul, add, div)
  → [1, 1, 2, 1, 1].
  elu_backward on the input (is_result=False): compare, g·input_scale·(α·scale)·e^(x·input_scale)
  → [0, 1, 4, 0, 1]; on the result (in-place elu, is_result=True): compare, g·input_scale·(y + α·scale)
  → [1, 1, 2, 0, 0].
  mish_backward g·(t + x·σ(x)·(1−t²)), t = tanh(softplus(x)): sigmoid [1, 1, 0, 1, 1], e^x and
  log1p [1, 0, 0, 0, 2], tanh [1, 1, 1, 1, 1], t², 1−t², x·σ, ·(1−t²), t+, g· → [4, 3, 5, 2, 4].
  log_sigmoid_backward with the saved buffer z = e^−|x|: (x<0 ? 1 : 0) − (x<0 ? 1 : −1)·z/(1+z), ·g:
  compare, 1+z, z/·, sign·, −, g· → [1, 2, 2, 1, 0].
  _prelu_kernel_backward: per element compare, w·g (grad_input) and x·g (grad_weight, reduced to the
  weight's shape by a separate ``sum``) → [0, 1, 2, 0, 0].
  rrelu_with_noise_backward: in training g·noise (1 mul); in eval leaky_relu_backward [0, 1, 1, 0, 0].
  glu_backward per element of g: σ(b) written into the first half [1, 1, 0, 1, 1], (1−σ)·σ·a·g for
  the second half (1 sub, 3 mul), the first half ·g (1 mul) → [1, 2, 4, 1, 1].
  softshrink/hardshrink backward: 2 compares. logit_backward: g/(x·(1−x)): 1 sub, 1 mul, 1 div (+2
  compares with eps).

Meta = CPU: ``mish_backward`` has a CPU kernel but, on meta, PyTorch decomposes it (its
CompositeImplicitAutograd fallback) into softplus/tanh/sigmoid/mul ops; while a counting Engine
runs, the engine layer (:mod:`torch_tos.kernels`) routes it on meta to the single kernel call the
CPU makes, so meta and real counts agree.
"""

import torch

from ..bos import BOs
from .registry import dims_of, numel, per_element, register

_SIGMOID = BOs(add=1, sub=1, div=1, root=1)
_TANH = BOs(add=1, sub=1, mul=1, div=1, root=1)
_SOFTPLUS = BOs(add=1, sub=1, mul=1, div=1, root=2)


def _unit(unit: BOs, doc: str):
    return per_element(*unit, doc=doc)


register("sigmoid", "sigmoid_")(_unit(_SIGMOID, "Per element 1/(1+e^−x): [1, 1, 0, 1, 1]."))
register("tanh", "tanh_")(_unit(_TANH, "Per element (1−e^−2x)/(1+e^−2x): [1, 1, 1, 1, 1]."))
register("gelu", "gelu_")(per_element(add=1, sub=1, mul=2, div=1, root=1,
                                      doc="Per element x·σ(1.702x) (paper, both approximations): [1, 1, 2, 1, 1]."))
register("relu", "relu_", "threshold", "threshold_")(per_element(sub=1, doc="Per element: one compare."))
register("leaky_relu", "leaky_relu_", "prelu", "_prelu_kernel", "rrelu", "rrelu_")(
    per_element(sub=1, mul=1, doc="Per element: compare + slope multiply."))
register("silu", "silu_")(_unit(_SIGMOID + BOs(mul=1), "Per element x·σ(x): [1, 1, 1, 1, 1]."))
register("hardtanh", "hardtanh_", "relu6", "relu6_")(per_element(sub=2, doc="Per element: two compares."))
register("hardsigmoid", "hardsigmoid_")(per_element(add=1, sub=2, div=1, doc="Per element: min(max(x + 3, 0), 6)/6: 1 add, 2 compares, 1 div."))
register("hardswish", "hardswish_")(per_element(add=1, sub=2, mul=1, div=1, doc="Per element: x·min(max(x + 3, 0), 6)/6."))
register("softplus")(_unit(_SOFTPLUS, "Per element βx > threshold ? x : log1p(e^(βx))/β: [1, 1, 1, 1, 2]."))
register("mish", "mish_")(_unit(BOs(add=1, root=2) + _TANH + BOs(mul=1),
                                "Per element x·tanh(log1p(e^x)): [2, 1, 2, 1, 3]."))
register("elu", "elu_", "celu", "celu_", "selu", "selu_")(
    per_element(sub=2, mul=2, root=1,
                doc="Per element: compare, x·input_scale, e^· − 1, ·(α·scale): [0, 2, 2, 0, 1]."))
register("log_sigmoid_forward")(
    per_element(add=1, sub=4, root=2, doc="Per element min(x,0) − log1p(e^−|x|): min, abs, neg, exp, log1p, subtract: [1, 4, 0, 0, 2]."))
register("glu")(_unit(_SIGMOID + BOs(mul=1), "Per output element a·σ(b): [1, 1, 1, 1, 1]."))
register("softshrink")(per_element(add=1, sub=3, doc="Per element: 2 compares, x − λ, x + λ: [1, 3, 0, 0, 0]."))
register("hardshrink")(per_element(sub=2, doc="Per element: 2 compares."))

register("sigmoid_backward")(per_element(sub=1, mul=2, doc="Per element g·y·(1−y): 1 sub, 2 mul."))
register("tanh_backward")(per_element(sub=1, mul=2, doc="Per element g·(1−y²): 1 sub, 2 mul."))
register("threshold_backward")(per_element(sub=1, doc="Per element: one compare selects g or 0."))
register("leaky_relu_backward")(per_element(sub=1, mul=1, doc="Per element: compare + slope multiply."))
register("silu_backward")(_unit(BOs(add=2, sub=2, mul=3, div=1, root=1), "Per element g·s·(1 + x·(1−s)): [2, 2, 3, 1, 1]."))
register("hardtanh_backward")(per_element(sub=2, doc="Per element: two compares."))
register("hardsigmoid_backward")(per_element(sub=2, mul=1, doc="Per element: two compares, g·(1/6): [0, 2, 1, 0, 0]."))
register("hardswish_backward")(per_element(add=1, sub=2, mul=1, div=1, doc="Per element: two compares, g·(x/3 + ½): [1, 2, 1, 1, 0]."))
register("softplus_backward")(per_element(add=1, sub=1, mul=2, div=1, root=1,
                                          doc="Per element z = e^(βx), βx > threshold ? g : g·z/(z+1): [1, 1, 2, 1, 1]."))
register("mish_backward")(_unit(BOs(add=4, sub=3, mul=5, div=2, root=4), "Per element g·(t + x·σ(x)·(1−t²)), t = tanh(softplus(x)): [4, 3, 5, 2, 4]."))
register("log_sigmoid_backward")(per_element(add=1, sub=2, mul=2, div=1,
                                             doc="Per element (m − s·z/(1+z))·g with the saved z = e^−|x|: [1, 2, 2, 1, 0]."))
register("_prelu_kernel_backward")(per_element(sub=1, mul=2, doc="Per element: compare, w·g and x·g: [0, 1, 2, 0, 0]."))
register("softshrink_backward", "hardshrink_backward")(per_element(sub=2, doc="Per element: 2 compares."))


@register("glu_backward")
def glu_backward(out, grad, x, dim=-1, **kwargs) -> BOs:
    """Per element of g (half the input): σ(b), (1−σ)·σ·a·g, first half ·g → [1, 2, 4, 1, 1]."""
    return BOs(add=1, sub=2, mul=4, div=1, root=1) * numel(grad)


@register("elu_backward")
def elu_backward(out, grad, alpha=1, scale=1, input_scale=1, is_result=False, self_or_result=None, **kw) -> BOs:
    """Per element: on the input [0, 1, 4, 0, 1]; on the result (is_result) [1, 1, 2, 0, 0]."""
    unit = BOs(add=1, sub=1, mul=2) if is_result else BOs(sub=1, mul=4, root=1)
    return unit * numel(out)


@register("rrelu_with_noise", "rrelu_with_noise_", "rrelu_with_noise_functional")
def rrelu_with_noise(out, x, noise, lower=0.125, upper=1 / 3, training=False, *args, **kwargs) -> BOs:
    """Per element: training [1, 1, 2, 0, 0] (compare, scaled draw, x·r); eval [0, 1, 1, 0, 0]."""
    training = kwargs.get("training", training)
    unit = BOs(add=1, sub=1, mul=2) if training else BOs(sub=1, mul=1)
    return unit * numel(x)


@register("rrelu_with_noise_backward")
def rrelu_with_noise_backward(out, grad, x, noise, lower, upper, training, *args, **kwargs) -> BOs:
    """Per element: training g·noise (1 mul); eval leaky_relu_backward [0, 1, 1, 0, 0]."""
    unit = BOs(mul=1) if (training and float(upper) - float(lower) > 1e-6) else BOs(sub=1, mul=1)
    return unit * numel(out)


@register("logit", "logit_")
def logit(out, x, eps=None, **kwargs) -> BOs:
    """Per element: clamp to [eps, 1−eps] when eps is given (2 compares), log(x/(1−x)): 1 sub, 1 div, 1 root."""
    eps = kwargs.get("eps", eps)
    return BOs(sub=1 + (2 if eps is not None else 0), div=1, root=1) * numel(out)


@register("logit_backward")
def logit_backward(out, grad, x, eps=None, **kwargs) -> BOs:
    """Per element: g/(x·(1−x)) (1 sub, 1 mul, 1 div), + 2 compares for the eps range."""
    eps = kwargs.get("eps", eps)
    return BOs(sub=1 + (2 if eps is not None else 0), mul=1, div=1) * numel(out)


@register("gelu_backward")
def gelu_backward(out, grad, x, *args, approximate="none", **kwargs) -> BOs:
    """Exact form [2, 0, 7, 0, 2]; tanh form [5, 2, 13, 1, 1] per element (see module doc)."""
    if args:
        approximate = args[0]
    unit = BOs(5, 2, 13, 1, 1) if approximate == "tanh" else BOs(add=2, mul=7, root=2)
    return unit * numel(out)


def _rows(x, dim) -> tuple[int, int]:
    """(number of rows, row length) of a softmax over ``dim`` (nested tensors: the row length
    along ``dim``, which must be regular)."""
    if x.is_nested:
        n = int(x.size(dim))
    else:
        n = int(x.shape[dims_of(x, dim)[0]]) if x.dim() else 1
    return numel(x) // max(n, 1), n


@register("_softmax", "softmax", "_safe_softmax")
def softmax(out, x, dim, *args, **kwargs) -> BOs:
    """Per row of n: add n−1, sub 2n−1, div n, root n."""
    r, n = _rows(x, dim)
    return BOs(add=r * (n - 1), sub=r * (2 * n - 1), div=r * n, root=r * n)


@register("_log_softmax", "log_softmax")
def log_softmax(out, x, dim, *args, **kwargs) -> BOs:
    """Per row of n: add n−1, sub 3n−1, root n+1."""
    r, n = _rows(x, dim)
    return BOs(add=r * (n - 1), sub=r * (3 * n - 1), root=r * (n + 1))


@register("_softmax_backward_data")
def softmax_backward(out, grad, y, dim, *args, **kwargs) -> BOs:
    """Per row of n: y·(g − Σ g·y) → add n−1, sub n, mul 2n."""
    r, n = _rows(y, dim)
    return BOs(add=r * (n - 1), sub=r * n, mul=r * 2 * n)


@register("_log_softmax_backward_data")
def log_softmax_backward(out, grad, y, dim, *args, **kwargs) -> BOs:
    """Per row of n: g − e^y·Σg → add n−1, sub n, mul n, root n."""
    r, n = _rows(y, dim)
    return BOs(add=r * (n - 1), sub=r * n, mul=r * n, root=r * n)
