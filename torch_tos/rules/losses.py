"""Loss functions and their backward kernels (``reduction``: 0 none, 1 mean, 2 sum).

Reduction of n per-element losses: mean = n−1 add + 1 div, sum = n−1 add, none = nothing.
Integer index bookkeeping (targets compared with ``ignore_index``, class lookups) is not
floating-point arithmetic and is not counted; input range checks are validation, not counted.

* MSE: (x−t) (1 sub), square (1 mul) per element, then the reduction (docs/conventions.md §2: n−1 add, n sub,
  n mul, 1 div). Backward: norm·(x−t)·g with norm = 2/n (mean, 1 div once) or 2: 1 sub, 2 mul per
  element.
* L1: x−t (1 sub), |·| (1 compare) per element + reduction (in PyTorch 2.x ``l1_loss`` decomposes
  into ``sub``/``abs``/``mean`` before dispatch; the rule serves callers of the aten op).
* Smooth L1 (β) — the vectorized CPU kernel evaluates both branches and blends: z = |x−t|
  (2 sub), z < β (1 sub), ½·z·z/β (2 mul, 1 div), z − ½β (1 sub; ½β hoisted) → [0, 4, 2, 1, 0]
  per element + reduction. Backward: x−t, sign test x > 0, |x|, |x| ≥ β (4 sub), x/β (1 div),
  norm·out·g (2 mul) → [0, 4, 2, 1, 0] per element, + 1 div once for mean (norm = 1/n).
* Huber (δ): z = |x−t| (2 sub), z < δ (1 sub), ½·z·z (2 mul), δ·(z − ½δ) (1 sub, 1 mul) →
  [0, 4, 3, 0, 0] + reduction. Backward: x−t, x > 0, |x|, |x| ≥ δ (4 sub), sign·δ, norm·out·g
  (3 mul) → [0, 4, 3, 0, 0], + 1 div once for mean.
* BCE with logits (one fused op): log σ(x) = min(x,0) − log1p(e^−|x|) (min, |x|, −|x|, subtract:
  4 sub; exp, log1p: 1 add, 2 root), loss = (1−t)·x − log σ(x) (2 sub, 1 mul) → [1, 6, 1, 0, 2]
  per element; pos_weight p: log_w = (p−1)·t + 1 ((p−1) once per pos_weight element: 1 sub;
  ·t, +1: 1 mul, 1 add per element) and log σ·log_w (1 mul) → [1, 0, 2, 0, 0] per element;
  weight: 1 mul; + reduction. (Its backward is a composite of ordinary ops.)
* BCE on probabilities: (t−1)·max(log1p(−x), −100) − t·max(log x, −100): −x, t−1, 2 clamps,
  final subtraction (5 sub), log1p (1 add, 1 root), log (1 root), 2 mul → [1, 5, 2, 0, 2]
  (+1 mul with weight) + reduction. Backward g·(x−t)/max((1−x)·x, ε): [0, 3, 2, 1, 0] (+1 mul with
  weight, +1 div per element for mean).
* NLL (CPU kernel: for each sample ``loss −= x[t]·w[t]``, ``total_weight += w[t]``): mean/sum:
  per sample 1 sub (+1 mul, +1 add for the weight sum, with class weights); the kernel's cascade
  summation merges partial sums Σ_{j=1..7} ⌈N/2^{j·lp}⌉ times (lp = max(4, ⌈log2 N⌉ // 8)) and
  folds its 8 partial sums at the end (8 adds) — for the loss and, with weights, for the weight
  sum; mean: 1 div. reduction none: per sample −x[t]·w (1 sub, 1 mul; w = 1 without weights).
  Backward: none: per sample −w·g (1 sub, 1 mul); mean/sum: −g/total_weight once (1 sub, +1 div
  for mean), per sample w·g (1 mul, with weights). ``cross_entropy`` is log_softmax + nll_loss,
  counted through those two. Ignored targets (``ignore_index``) depend on the data: counted as
  not ignored.
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


@register("smooth_l1_loss")
def smooth_l1_loss(out, x, t, reduction=1, *args, **kwargs) -> BOs:
    """Per element [0, 4, 2, 1, 0] (both branches, blended); then the reduction."""
    n = max(numel(x), numel(t))
    return BOs(sub=4 * n, mul=2 * n, div=n) + reduce_bos(n, reduction)


@register("huber_loss")
def huber_loss(out, x, t, reduction=1, *args, **kwargs) -> BOs:
    """Per element [0, 4, 3, 0, 0] (both branches, blended); then the reduction."""
    n = max(numel(x), numel(t))
    return BOs(sub=4 * n, mul=3 * n) + reduce_bos(n, reduction)


@register("smooth_l1_loss_backward")
def smooth_l1_loss_backward(out, g, x, t, reduction, *args, **kwargs) -> BOs:
    """Per element [0, 4, 2, 1, 0]; +1 div once for mean (norm = 1/n)."""
    n = numel(out)
    return BOs(sub=4 * n, mul=2 * n, div=n + (1 if reduction == 1 else 0))


@register("huber_loss_backward")
def huber_loss_backward(out, g, x, t, reduction, *args, **kwargs) -> BOs:
    """Per element [0, 4, 3, 0, 0]; +1 div once for mean (norm = 1/n)."""
    n = numel(out)
    return BOs(sub=4 * n, mul=3 * n, div=1 if reduction == 1 else 0)


@register("binary_cross_entropy_with_logits")
def bce_with_logits(out, x, t, weight=None, pos_weight=None, reduction=1, **kwargs) -> BOs:
    """Per element [1, 6, 1, 0, 2] (+[1, 0, 2, 0, 0] and 1 sub per pos_weight element with
    pos_weight, +1 mul with weight); then the reduction."""
    n = max(numel(x), numel(t))
    unit = BOs(add=1, sub=6, mul=1, root=2)
    extra = BOs()
    if pos_weight is not None:
        unit += BOs(add=1, mul=2)
        extra += BOs(sub=numel(pos_weight))
    if weight is not None:
        unit += BOs(mul=1)
    return unit * n + extra + reduce_bos(n, reduction)


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


def _ceil_log2(n: int) -> int:
    return max(int(n) - 1, 0).bit_length()


def cascade_adds(n: int) -> int:
    """Adds of the CPU NLL kernel's cascade summation over n terms: partial sums merged when the
    running index's low (j+1)·lp bits are zero (7 levels), then the 8 partial sums folded."""
    if n <= 0:
        return 0
    lp = max(4, _ceil_log2(n) // 8)
    return sum(-(-n // (1 << ((j + 1) * lp))) for j in range(7)) + 8


@register("nll_loss_forward", "nll_loss2d_forward", "nll_loss", "nll_loss2d", "nll_loss_nd")
def nll_loss(out, x, t, weight=None, reduction=1, *args, **kwargs) -> BOs:
    """none: per sample [0, 1, 1, 0, 0]; mean/sum: per sample 1 sub (+1 mul, +1 add with class
    weights), the cascade merges of the loss sum (and of the weight sum, with weights); mean:
    +1 div. See module doc."""
    n = _samples(x, t)
    if reduction == 0:
        return BOs(sub=n, mul=n)
    w = weight is not None
    total = BOs(sub=n, mul=n if w else 0, add=(n if w else 0) + cascade_adds(n) * (2 if w else 1))
    if reduction == 1:
        total += BOs(div=1)
    return total


@register("nll_loss_backward", "nll_loss2d_backward")
def nll_loss_backward(out, g, x, t, weight=None, reduction=1, *args, **kwargs) -> BOs:
    """none: per sample −w·g (1 sub, 1 mul); mean/sum: −g/total_weight once (1 sub, +1 div for
    mean) and w·g per sample with class weights (1 mul)."""
    n = _samples(x, t)
    if reduction == 0:
        return BOs(sub=n, mul=n)
    return BOs(sub=1, div=1 if reduction == 1 else 0, mul=n if weight is not None else 0)
