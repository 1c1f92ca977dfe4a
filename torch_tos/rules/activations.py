"""Activation functions and their backward kernels, per element (softmax per row of n).

Forward (DESIGN §3, the paper's conventions; exp counts as one root):

* sigmoid 1/(1+e^−x): −x (1 sub), e^· (1 root), 1+ (1 add), 1/· (1 div) → [1, 1, 0, 1, 1]
* tanh (1−e^−2x)/(1+e^−2x): 2x (1 mul), e^· (root), 1− (sub), 1+ (add), / (div) → [1, 1, 1, 1, 1]
* GELU, both approximations: the paper's x·σ(1.702x): [1, 1, 2, 1, 1]
* ReLU: one compare (1 sub). LeakyReLU/ELU-style slopes: compare + 1 mul.
* SiLU x·σ(x): sigmoid + 1 mul → [1, 1, 1, 1, 1]
* hardtanh / ReLU6: two compares. hardsigmoid x/6 + 1/2 clamped: 1 div, 1 add, 2 sub.
  hardswish x·hardsigmoid(x): + 1 mul. softplus log(1+e^(βx))/β: β·x, exp, 1+, log, /β →
  [1, 0, 1, 1, 2] (+ the threshold compare: 1 sub). mish x·tanh(softplus(x)): softplus + tanh + 1 mul.
  elu: compare, exp, −1, ·α → [0, 2, 1, 0, 1]. prelu: compare + 1 mul.
* softmax over n: max (n−1 sub), shift x−max (n sub), exp (n root), sum (n−1 add), divide (n div).
* log_softmax over n: max (n−1), shift (n sub), exp (n root), sum (n−1 add), log (1 root),
  subtract log-sum (n sub) → add n−1, sub 3n−1, root n+1.

Backward (what the CPU/CUDA kernels compute, ``g`` = incoming gradient):

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
* hardtanh_backward: 2 compares. hardsigmoid_backward: 2 compares + 1 div (g/6).
  hardswish_backward: 2 compares, g·(2x+3)/6 → 1 mul, 1 add, 1 div, 1 mul.
  softplus_backward g·σ(βx): βx (mul), sigmoid, g· (mul), threshold (sub) → [1, 2, 2, 1, 1].
  elu_backward: compare, g·α·e^x (reuse output: g·(y+α)) → 1 sub, 1 add, 1 mul.
  mish_backward: recompute softplus, tanh, sigmoid, combine: [4, 3, 5, 2, 4] (stated kernel
  formula: g·(t + x·σ(x)·(1−t²)), t = tanh(softplus(x))).
"""

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
register("hardsigmoid", "hardsigmoid_")(per_element(add=1, sub=2, div=1, doc="Per element: clamp(x/6 + ½): 1 div, 1 add, 2 compares."))
register("hardswish", "hardswish_")(per_element(add=1, sub=2, mul=1, div=1, doc="Per element: x·hardsigmoid(x)."))
register("softplus")(_unit(_SOFTPLUS, "Per element log(1+e^(βx))/β with threshold compare: [1, 1, 1, 1, 2]."))
register("mish", "mish_")(_unit(_SOFTPLUS + _TANH + BOs(mul=1), "Per element x·tanh(softplus(x))."))
register("elu", "elu_", "celu", "celu_", "selu", "selu_")(
    per_element(sub=2, mul=1, root=1, doc="Per element: compare, e^x − 1, ·α: [0, 2, 1, 0, 1]."))
register("logsigmoid", "log_sigmoid_forward")(
    per_element(add=1, sub=3, root=2, doc="Per element: min(x,0) − log1p(e^−|x|): abs, neg, exp, log1p, min, subtract."))

register("sigmoid_backward")(per_element(sub=1, mul=2, doc="Per element g·y·(1−y): 1 sub, 2 mul."))
register("tanh_backward")(per_element(sub=1, mul=2, doc="Per element g·(1−y²): 1 sub, 2 mul."))
register("threshold_backward")(per_element(sub=1, doc="Per element: one compare selects g or 0."))
register("leaky_relu_backward", "rrelu_with_noise_backward")(per_element(sub=1, mul=1, doc="Per element: compare + slope multiply."))
register("silu_backward")(_unit(BOs(add=2, sub=2, mul=3, div=1, root=1), "Per element g·s·(1 + x·(1−s)): [2, 2, 3, 1, 1]."))
register("hardtanh_backward")(per_element(sub=2, doc="Per element: two compares."))
register("hardsigmoid_backward")(per_element(sub=2, div=1, doc="Per element: two compares, g/6."))
register("hardswish_backward")(per_element(add=1, sub=2, mul=2, div=1, doc="Per element: two compares, g·(2x+3)/6."))
register("softplus_backward")(_unit(_SIGMOID + BOs(sub=1, mul=2), "Per element g·σ(βx) with threshold compare: [1, 2, 2, 1, 1]."))
register("elu_backward")(per_element(add=1, sub=1, mul=1, doc="Per element: compare, g·(y+α)."))
register("mish_backward")(_unit(BOs(add=4, sub=3, mul=5, div=2, root=4), "Per element g·(t + x·σ(x)·(1−t²)), t = tanh(softplus(x))."))
register("log_sigmoid_backward")(per_element(add=1, sub=2, mul=1, div=1, root=1, doc="Per element g·(1 − σ(x)) via the saved buffer: [1, 2, 1, 1, 1]."))


@register("gelu_backward")
def gelu_backward(out, grad, x, *args, approximate="none", **kwargs) -> BOs:
    """Exact form [2, 0, 7, 0, 2]; tanh form [5, 2, 13, 1, 1] per element (see module doc)."""
    if args:
        approximate = args[0]
    unit = BOs(5, 2, 13, 1, 1) if approximate == "tanh" else BOs(add=2, mul=7, root=2)
    return unit * numel(out)


def _rows(x, dim) -> tuple[int, int]:
    """(number of rows, row length) of a softmax over ``dim``."""
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
