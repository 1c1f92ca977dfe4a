"""Element-wise arithmetic, per output element (broadcasting included, in-place variants alike).

* ``add``/``sub``: 1 add / 1 sub; an ``alpha`` ≠ 1 scales the second operand: +1 mul.
* ``rsub``: 1 sub (+1 mul for alpha ≠ 1). ``mul``: 1 mul. ``div``: 1 div (rounding modes too).
* ``neg``: 1 sub (0 − x). ``abs``, ``sgn``/``sign``, comparisons (``eq``, ``lt``, ``maximum``,
  ``clamp``…), ``where`` with a computed mask excluded: a comparator is a subtractor (docs/conventions.md §2) —
  1 sub per compare; ``clamp(min, max)`` compares twice.
* ``exp``/``log``/``sqrt`` (and ``exp2``, ``log2``, ``log10``, ``erf``, ``erfc``, ``sin``, ``cos``…):
  one iterative transcendental = 1 root (paper convention for exp); ``log1p``/``expm1`` add 1 add.
* ``rsqrt``: 1 div + 1 root; ``reciprocal``: 1 div.
* ``pow(x, n)``: integer n ≥ 2 by repeated squaring, ⌊log2 n⌋ + popcount(n) − 1 muls; n = 1 or 0:
  nothing; negative integer: the same muls + 1 div; n = 0.5: 1 root; n = −0.5: rsqrt; any other
  exponent, and every tensor exponent (its value is data, unknown on meta): ``exp(n·log x)``
  = 2 root + 1 mul.
* ``addcmul(s, a, b, value)``: a·b (1 mul), ·value if ≠ 1 (1 mul), + s (1 add).
  ``addcdiv``: the same with a div. ``lerp(a, b, w)``: a + w·(b − a): 1 sub, 1 mul, 1 add.
* ``bernoulli_(p)``: one compare of a uniform draw with p (1 sub); the draw itself is RNG.
* ``nonzero``/``argwhere``: one compare with zero per input element.
* ``native_dropout(x, p)`` (the fused kernel CUDA uses; CPU/meta run bernoulli_, div_, mul instead):
  draw ≥ p compare (1 sub), x·mask, ·1/(1−p) (2 mul). ``native_dropout_backward``: g·mask·scale (2 mul).
* ``hypot(a, b)`` = √(a² + b²): 2 mul, 1 add, 1 root. ``xlogy(x, y)``: x == 0 test (1 sub), log y
  (1 root), x· (1 mul).
"""

import torch

from ..bos import BOs
from .registry import numel, per_element, register

register("abs", "abs_", "sgn", "sgn_", "sign", "sign_", "eq", "eq_", "ne", "ne_", "lt", "lt_",
         "le", "le_", "gt", "gt_", "ge", "ge_", "maximum", "minimum", "fmax", "fmin",
         "clamp_min", "clamp_min_", "clamp_max", "clamp_max_", "isnan", "isinf", "isfinite",
         "signbit", "logical_not", "logical_and", "logical_or", "logical_xor", "logical_not_",
         "logical_and_", "logical_or_", "logical_xor_", "bitwise_not", "bitwise_not_", "bitwise_and",
         "bitwise_or", "bitwise_xor", "bitwise_and_", "bitwise_or_", "bitwise_xor_", "heaviside", "masked_fill", "masked_fill_",
         "where", "copysign", "floor", "ceil", "trunc", "round", "round_", "floor_", "ceil_",
         "trunc_", "frac", "isneginf", "isposinf", "nan_to_num", "nan_to_num_")(
    per_element(sub=1, doc="Per output element: one comparison (a comparator is a subtractor)."))

register("neg", "neg_", "negative")(per_element(sub=1, doc="Per element: 0 − x, 1 sub."))
register("mul", "mul_", "square")(per_element(mul=1, doc="Per output element: 1 mul."))
register("div", "div_", "true_divide", "floor_divide", "floor_divide_", "remainder",
         "remainder_", "fmod", "fmod_")(per_element(div=1, doc="Per output element: 1 div."))
register("reciprocal", "reciprocal_")(per_element(div=1, doc="Per element: 1/x, 1 div."))
register("exp", "exp_", "log", "log_", "sqrt", "sqrt_", "exp2", "exp2_", "log2", "log2_",
         "log10", "log10_", "erf", "erf_", "erfc", "erfc_", "erfinv", "sin", "sin_", "cos",
         "cos_", "tan", "atan", "asin", "acos", "sinh", "cosh", "asinh", "acosh", "atanh",
         "lgamma", "digamma", "atan2")(
    per_element(root=1, doc="Per element: one iterative transcendental (counted as root, as the paper counts exp)."))
register("log1p", "log1p_", "expm1", "expm1_")(
    per_element(add=1, root=1, doc="Per element: 1 ± x (1 add) and one transcendental (1 root)."))
register("rsqrt", "rsqrt_")(per_element(div=1, root=1, doc="Per element: 1/√x: 1 root + 1 div."))
register("lerp", "lerp_")(per_element(add=1, sub=1, mul=1, doc="Per element: a + w·(b − a)."))
register("bernoulli", "bernoulli_")(per_element(sub=1, doc="Per element: compare a uniform draw with p (1 sub)."))
register("native_dropout")(per_element(sub=1, mul=2, doc="Per element: draw compare, x·mask·scale: [0, 1, 2, 0, 0]."))
register("native_dropout_backward")(per_element(mul=2, doc="Per element: g·mask·scale: [0, 0, 2, 0, 0]."))
register("hypot", "hypot_")(per_element(add=1, mul=2, root=1, doc="Per element √(a² + b²): [1, 0, 2, 0, 1]."))
register("xlogy", "xlogy_")(per_element(sub=1, mul=1, root=1, doc="Per element x == 0 ? 0 : x·log y: [0, 1, 1, 0, 1]."))


def _alpha_bos(n: int, kind: str, alpha) -> BOs:
    base = BOs(add=n) if kind == "add" else BOs(sub=n)
    if alpha is not None and alpha != 1:
        base += BOs(mul=n)
    return base


@register("add", "add_")
def add(out, a, b=None, *args, alpha=1, **kwargs) -> BOs:
    """Per output element: 1 add; ``alpha`` ≠ 1 adds 1 mul."""
    if args:
        alpha = args[0]
    return _alpha_bos(numel(out), "add", alpha)


@register("sub", "sub_", "subtract", "rsub")
def sub(out, a, b=None, *args, alpha=1, **kwargs) -> BOs:
    """Per output element: 1 sub; ``alpha`` ≠ 1 adds 1 mul."""
    if args:
        alpha = args[0]
    return _alpha_bos(numel(out), "sub", alpha)


def pow_exponent_bos(n: int, exponent) -> BOs:
    """BOs of ``x ** exponent`` on ``n`` elements (see module docstring)."""
    if isinstance(exponent, torch.Tensor):
        # a tensor exponent is data: the kernel (pow_tensor_tensor) runs the general pow per
        # element, and on meta its value is unknown anyway — so meta and real counts agree
        return BOs(mul=n, root=2 * n)
    e = float(exponent)
    if e.is_integer():
        k = abs(int(e))
        if k <= 1:
            base = BOs()
        else:
            base = BOs(mul=(k.bit_length() - 1 + bin(k).count("1") - 1) * n)
        return base + (BOs(div=n) if e < 0 else BOs())
    if e == 0.5:
        return BOs(root=n)
    if e == -0.5:
        return BOs(div=n, root=n)
    return BOs(mul=n, root=2 * n)


@register("pow", "pow_", "float_power")
def pow_(out, a, exponent, *args, **kwargs) -> BOs:
    """``a ** exponent``: repeated squaring for integer exponents, root for ±½, else exp·log."""
    if not isinstance(a, torch.Tensor):  # Scalar ** Tensor: exp(e·log a)
        return BOs(mul=numel(out), root=2 * numel(out))
    return pow_exponent_bos(numel(out), exponent)


@register("addcmul", "addcmul_")
def addcmul(out, s, a, b, *args, value=1, **kwargs) -> BOs:
    """Per element: s + value·a·b — 1 mul (+1 for value ≠ 1), 1 add."""
    if args:
        value = args[0]
    n = numel(out)
    return BOs(add=n, mul=n * (2 if value != 1 else 1))


@register("addcdiv", "addcdiv_")
def addcdiv(out, s, a, b, *args, value=1, **kwargs) -> BOs:
    """Per element: s + value·a/b — 1 div, 1 mul for value ≠ 1, 1 add."""
    if args:
        value = args[0]
    n = numel(out)
    return BOs(add=n, div=n, mul=n if value != 1 else 0)


@register("clamp", "clamp_", "clip", "clip_")
def clamp(out, x, lo=None, hi=None, *args, **kwargs) -> BOs:
    """Per element: one compare per bound given (``hardtanh`` has both)."""
    lo = kwargs.get("min", kwargs.get("min_val", lo))
    hi = kwargs.get("max", kwargs.get("max_val", hi))
    bounds = (lo is not None) + (hi is not None)
    return BOs(sub=numel(out) * bounds)


@register("nonzero", "argwhere", "nonzero_static")
def nonzero(out, x, *args, **kwargs) -> BOs:
    """One compare with zero per input element."""
    return BOs(sub=numel(x))
