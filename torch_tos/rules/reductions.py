"""Reductions. A reduction folding n elements into one output costs n−1 of its operation.

* ``sum``: n−1 add per output. ``mean``: n−1 add + 1 div per output.
* ``amax``/``amin``/``max``/``min``/``argmax``/``argmin`` (and ``max.dim`` with indices): n−1 compares
  (1 sub each); ``aminmax`` finds both: 2(n−1). ``prod``: n−1 mul.
* ``all``/``any`` over n: n−1 logical folds per output (a logical op counts as a compare, as
  ``logical_or``). ``count_nonzero``: n compares with zero and n−1 adds per output.
* ``cummax``/``cummin``: n−1 compares per scanned line.
* Order statistics, **approximate** (comparison sorts branch on the data): ``sort`` of a line of n:
  n·⌈log2 n⌉ compares; ``topk(k)``: a tournament, n−1 compares for the first and ⌈log2 n⌉ for each
  of the k−1 others; ``kthvalue``/``median``/``nanmedian``/``mode`` (selection): 2n compares per
  line.
* ``var``/``std`` over n (``correction`` c): mean (n−1 add, 1 div), deviations (n sub), squares
  (n mul), their sum (n−1 add), divide by n−c (1 div); ``std`` adds 1 root; ``var_mean``/
  ``std_mean`` return the mean they computed anyway.
* ``linalg_vector_norm``/``norm`` of order p over n: p = 2: n mul, n−1 add, 1 root; p = 1: n abs
  (sub), n−1 add; p = ∞: n abs + n−1 compares; p = 0: n compares + n−1 adds; other p: n abs,
  n pow (2 root + 1 mul each), n−1 add, one 1/p power (2 root + 1 mul).
* ``cumsum``: an inclusive scan of n elements costs n−1 adds per scanned line; ``cumprod`` n−1 muls.
* ``logsumexp`` over n: max (n−1 sub), shift (n sub), exp (n root), sum (n−1 add), log (1 root),
  add the max back (1 add).
"""

from ..bos import BOs
from .registry import numel, reduced_size, register


def _fold(out, x, dim) -> tuple[int, int]:
    """(outputs, elements folded into each output) for a reduction of ``x`` over ``dim``."""
    n = reduced_size(x, dim) if dim is not None else numel(x)
    return max(numel(x) // max(n, 1), 1) if numel(x) else 0, n


def _dim_arg(args, kwargs):
    dim = kwargs.get("dim", args[0] if args else None)
    if isinstance(dim, bool):  # sum(x, keepdim) style positional flags never come here, guard anyway
        dim = None
    return dim


@register("sum", "nansum")
def sum_(out, x, *args, **kwargs) -> BOs:
    """n−1 adds per output."""
    outs, n = _fold(out, x, _dim_arg(args, kwargs))
    return BOs(add=outs * (n - 1))


@register("mean", "nanmean")
def mean(out, x, *args, **kwargs) -> BOs:
    """n−1 adds and 1 div per output."""
    outs, n = _fold(out, x, _dim_arg(args, kwargs))
    return BOs(add=outs * (n - 1), div=outs)


@register("amax", "amin", "max", "min", "argmax", "argmin")
def extremum(out, x, *args, **kwargs) -> BOs:
    """n−1 compares per output (``max(a, b)`` element-wise: 1 compare per output)."""
    if args and hasattr(args[0], "shape"):  # binary max/min(Tensor, Tensor)
        return BOs(sub=numel(out[0] if isinstance(out, tuple) else out))
    outs, n = _fold(out, x, _dim_arg(args, kwargs))
    return BOs(sub=outs * (n - 1))


@register("prod")
def prod_(out, x, *args, **kwargs) -> BOs:
    """n−1 muls per output."""
    outs, n = _fold(out, x, _dim_arg(args, kwargs))
    return BOs(mul=outs * (n - 1))


def _var_bos(out, x, args, kwargs, root: bool) -> BOs:
    outs, n = _fold(out, x, _dim_arg(args, kwargs))
    per = BOs(add=2 * (n - 1), sub=n, mul=n, div=2, root=1 if root else 0)
    return per * outs


@register("var", "var_mean")
def var(out, x, *args, **kwargs) -> BOs:
    """Per output over n: add 2(n−1), sub n, mul n, div 2."""
    return _var_bos(out, x, args, kwargs, root=False)


@register("std", "std_mean")
def std(out, x, *args, **kwargs) -> BOs:
    """Per output over n: as var, + 1 root."""
    return _var_bos(out, x, args, kwargs, root=True)


@register("linalg_vector_norm", "norm")
def vector_norm(out, x, ord=2, dim=None, *args, **kwargs) -> BOs:
    """Per output of n elements, by order p (see module doc)."""
    ord = kwargs.get("ord", kwargs.get("p", ord))
    if ord is None:
        ord = 2
    if isinstance(dim, bool):
        dim = None
    dim = kwargs.get("dim", dim)
    outs, n = _fold(out, x, dim)
    p = float(ord)
    if p == 2:
        per = BOs(add=n - 1, mul=n, root=1)
    elif p == 1:
        per = BOs(add=n - 1, sub=n)
    elif p == 0:
        per = BOs(add=n - 1, sub=n)
    elif p in (float("inf"), float("-inf")):
        per = BOs(sub=2 * n - 1)
    else:
        per = BOs(add=n - 1, sub=n, mul=n + 1, root=2 * n + 2)
    return per * outs


@register("cumsum", "cumsum_", "logcumsumexp")
def cumsum(out, x, dim, *args, **kwargs) -> BOs:
    """n−1 adds per scanned line (logcumsumexp is priced as its additions only: approximate)."""
    n = int(x.shape[dim]) if x.dim() else 1
    return BOs(add=(numel(x) // max(n, 1)) * (n - 1))


@register("cumprod", "cumprod_")
def cumprod(out, x, dim, *args, **kwargs) -> BOs:
    """n−1 muls per scanned line."""
    n = int(x.shape[dim]) if x.dim() else 1
    return BOs(mul=(numel(x) // max(n, 1)) * (n - 1))


@register("logsumexp")
def logsumexp(out, x, dim, *args, **kwargs) -> BOs:
    """Per output over n: sub 2n−1, root n+1, add n."""
    outs, n = _fold(out, x, dim)
    return BOs(add=n, sub=2 * n - 1, root=n + 1) * outs


@register("aminmax")
def aminmax(out, x, *args, **kwargs) -> BOs:
    """2(n−1) compares per output (min and max)."""
    outs, n = _fold(out, x, kwargs.get("dim"))
    return BOs(sub=2 * outs * (n - 1))


@register("all", "any")
def all_any(out, x, *args, **kwargs) -> BOs:
    """n−1 logical folds per output (counted as compares)."""
    outs, n = _fold(out, x, _dim_arg(args, kwargs))
    return BOs(sub=outs * (n - 1))


@register("count_nonzero")
def count_nonzero(out, x, *args, **kwargs) -> BOs:
    """n compares and n−1 adds per output."""
    outs, n = _fold(out, x, _dim_arg(args, kwargs))
    return BOs(add=outs * (n - 1), sub=outs * n)


@register("cummax", "cummin")
def cummax(out, x, dim, *args, **kwargs) -> BOs:
    """n−1 compares per scanned line."""
    n = int(x.shape[dim]) if x.dim() else 1
    return BOs(sub=(numel(x) // max(n, 1)) * (n - 1))


def _line(x, dim) -> tuple[int, int]:
    n = int(x.shape[dim]) if x.dim() else 1
    return numel(x) // max(n, 1), n


def _log2ceil(n: int) -> int:
    return max(n - 1, 0).bit_length()


@register("sort")
def sort(out, x, *args, **kwargs) -> BOs:
    """Approximate: n·⌈log2 n⌉ compares per sorted line."""
    dim = kwargs.get("dim", -1)
    if args and isinstance(args[0], int) and not isinstance(args[0], bool):
        dim = args[0]
    lines, n = _line(x, dim)
    return BOs(sub=lines * n * _log2ceil(n))


@register("topk")
def topk(out, x, k, dim=-1, *args, **kwargs) -> BOs:
    """Approximate (tournament): n−1 + (k−1)·⌈log2 n⌉ compares per line."""
    lines, n = _line(x, kwargs.get("dim", dim))
    return BOs(sub=lines * (n - 1 + (int(k) - 1) * _log2ceil(n)))


@register("kthvalue")
def kthvalue(out, x, k, dim=-1, *args, **kwargs) -> BOs:
    """Approximate (selection): 2n compares per line."""
    lines, n = _line(x, kwargs.get("dim", dim))
    return BOs(sub=lines * 2 * n)


@register("mode")
def mode(out, x, dim=-1, *args, **kwargs) -> BOs:
    """Approximate (sort-based selection): 2n compares per line along ``dim`` (default −1)."""
    lines, n = _line(x, kwargs.get("dim", dim))
    return BOs(sub=lines * 2 * n)


@register("median", "nanmedian")
def median(out, x, *args, **kwargs) -> BOs:
    """Approximate (selection): 2n compares per line (the whole tensor without ``dim``)."""
    dim = kwargs.get("dim", args[0] if args else None)
    if dim is None:
        return BOs(sub=2 * numel(x))
    lines, n = _line(x, dim)
    return BOs(sub=lines * 2 * n)
