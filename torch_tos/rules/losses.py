"""Loss functions and their backward kernels (``reduction``: 0 none, 1 mean, 2 sum).

Reduction of n per-element losses: mean = n−1 add + 1 div, sum = n−1 add, none = nothing.

* MSE: (x−t) (1 sub), square (1 mul) per element, then the reduction (DESIGN §3: n−1 add, n sub,
  n mul, 1 div). Backward: g·norm·(x−t) with norm = 2/n (mean, 1 div) or 2: 1 sub, 2 mul per element.
* L1: x−t (1 sub), |·| (1 compare) per element + reduction (backward decomposes into
  sgn/mul/div, each counted by its own rule).
* Smooth L1 / Huber: d = x−t, |d|, compare with β, quadratic branch ½d²/β (priced for every
  element: the kernel evaluates it, then selects): 3 sub, 2 mul, 1 div per element + reduction.
  Backward: d, compare, d/β or sign, ·g·norm: 3 sub, 2 mul, 1 div per element (+1 div for mean).
* BCE with logits, per element: log σ(x) = min(x,0) − log1p(e^−|x|) (|x|, −|x|, exp, log1p,
  min, subtract: 1 add, 3 sub, 2 root), loss = (1−t)·x − log σ(x) (1−t, ·x, subtract: 2 sub, 1 mul)
  → [1, 5, 1, 0, 2]; pos_weight p: w_log = (p−1)·t + 1 and its product (1 add, 1 sub, 2 mul);
  weight: 1 mul; + reduction.
* BCE on probabilities: −(t·log x + (1−t)·log(1−x)), logs clamped at −100: [1, 5, 2, 0, 2].
  Backward g·(x−t)/max(x(1−x), ε): [0, 3, 2, 1, 0] (+1 mul with weight).
* NLL, per sample: ignore-index compare (1 sub), −x[t] (1 sub), ·w[t] with class weights (1 mul);
  mean: Σ of losses and Σ of weights (2(N−1) add) and 1 div; sum: N−1 add.
  Backward per sample: compare, −g·w[t]/total (1 sub, 1 mul with weights) and 1 div for mean.
  ``cross_entropy`` is log_softmax + nll_loss and is counted through those two.
"""

from ..bos import BOs
from .registry import numel, register


def reduce_bos(n: int, reduction: int) -> BOs:
    """Folding n per-element losses by ``reduction`` (0 none, 1 mean, 2 sum)."""
    if reduction == 1:
        return BOs(add=n - 1, div=1)
    if reduction == 2:
        return BOs(add=n - 1)
    return BOs()


@register("mse_loss")
def mse_loss(out, x, t, reduction=1, **kwargs) -> BOs:
    """Per element 1 sub, 1 mul; then the reduction."""
    n = max(numel(x), numel(t))
    return BOs(sub=n, mul=n) + reduce_bos(n, reduction)


@register("mse_loss_backward")
def mse_loss_backward(out, g, x, t, reduction, **kwargs) -> BOs:
    """Per element 1 sub, 2 mul; 1 div for mean (norm = 2/n)."""
    n = numel(out)
    return BOs(sub=n, mul=2 * n, div=1 if reduction == 1 else 0)


@register("l1_loss")
def l1_loss(out, x, t, reduction=1, **kwargs) -> BOs:
    """Per element 2 sub (difference, |·|); then the reduction."""
    n = max(numel(x), numel(t))
    return BOs(sub=2 * n) + reduce_bos(n, reduction)


@register("smooth_l1_loss", "huber_loss")
def smooth_l1_loss(out, x, t, reduction=1, *args, **kwargs) -> BOs:
    """Per element 3 sub, 2 mul, 1 div; then the reduction."""
    n = max(numel(x), numel(t))
    return BOs(sub=3 * n, mul=2 * n, div=n) + reduce_bos(n, reduction)


@register("smooth_l1_loss_backward", "huber_loss_backward")
def smooth_l1_loss_backward(out, g, x, t, reduction, *args, **kwargs) -> BOs:
    """Per element 3 sub, 2 mul, 1 div (+1 div for mean)."""
    n = numel(out)
    return BOs(sub=3 * n, mul=2 * n, div=n + (1 if reduction == 1 else 0))


@register("binary_cross_entropy_with_logits")
def bce_with_logits(out, x, t, weight=None, pos_weight=None, reduction=1, **kwargs) -> BOs:
    """Per element [1, 5, 1, 0, 2] (+[1, 1, 2, 0, 0] with pos_weight, +1 mul with weight)."""
    n = numel(x)
    unit = BOs(add=1, sub=5, mul=1, root=2)
    if pos_weight is not None:
        unit += BOs(add=1, sub=1, mul=2)
    if weight is not None:
        unit += BOs(mul=1)
    return unit * n + reduce_bos(n, reduction)


@register("binary_cross_entropy")
def binary_cross_entropy(out, x, t, weight=None, reduction=1, **kwargs) -> BOs:
    """Per element [1, 5, 2, 0, 2] (+1 mul with weight); then the reduction."""
    n = numel(x)
    unit = BOs(add=1, sub=5, mul=2, root=2) + (BOs(mul=1) if weight is not None else BOs())
    return unit * n + reduce_bos(n, reduction)


@register("binary_cross_entropy_backward")
def binary_cross_entropy_backward(out, g, x, t, weight=None, reduction=1, **kwargs) -> BOs:
    """Per element [0, 3, 2, 1, 0] (+1 mul with weight, +1 div per element for mean)."""
    n = numel(x)
    unit = BOs(sub=3, mul=2, div=1) + (BOs(mul=1) if weight is not None else BOs())
    return unit * n + (BOs(div=n) if reduction == 1 else BOs())


def _samples(x, t) -> int:
    return numel(t)


@register("nll_loss_forward", "nll_loss2d_forward", "nll_loss", "nll_loss2d", "nll_loss_nd")
def nll_loss(out, x, t, weight=None, reduction=1, *args, **kwargs) -> BOs:
    """Per sample 2 sub (+1 mul with weights); mean: 2(N−1) add, 1 div; sum: N−1 add."""
    n = _samples(x, t)
    total = BOs(sub=2 * n, mul=n if weight is not None else 0)
    if reduction == 1:
        total += BOs(add=2 * (n - 1), div=1)
    elif reduction == 2:
        total += BOs(add=n - 1)
    return total


@register("nll_loss_backward", "nll_loss2d_backward")
def nll_loss_backward(out, g, x, t, weight=None, reduction=1, *args, **kwargs) -> BOs:
    """Per sample 2 sub (+1 mul with weights); 1 div for mean."""
    n = _samples(x, t)
    return BOs(sub=2 * n, mul=n if weight is not None else 0, div=1 if reduction == 1 else 0)
