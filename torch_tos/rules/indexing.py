"""Scatter-style writes that accumulate: index_put(accumulate), index_add, scatter_add/reduce,
the backward kernels that sum gradients back onto overlapping sources (unfold, col2im, padding).

A plain write (``index_put`` without ``accumulate``, ``scatter`` without ``reduce``, ``index_copy``)
moves data and counts zero. An accumulating write ``dst[i] ⊕= src`` costs one ⊕ per *written source
element* — adds for ``sum``/``add``, muls for ``prod``/``multiply``, compares for ``amax``/``amin`` —
counted as the kernel runs it: ``+=`` into the destination, including the first contribution into a
zero-initialised gradient (the same convention as max-pool backward, one add per output gradient).

* ``index_put(self, indices, values, accumulate)``: written elements = Π(broadcast index shape) ×
  Π(sizes of the dims not indexed) (for boolean masks, the number of values); accumulate → 1 add each.
* ``index_add(self, dim, index, source, alpha)``: numel(source) adds (+ numel(source) muls for α ≠ 1).
* ``scatter_add(self, dim, index, src)`` and ``scatter(…, reduce='add')``: numel(index) adds;
  ``reduce='multiply'``: numel(index) muls. ``scatter_reduce(…, reduce)`` and ``index_reduce``:
  sum → adds, prod → muls, amax/amin → compares, one per written source element; mean adds the
  same adds and one div per output element (the counts are integer bookkeeping).
* ``put_(index, source, accumulate)``: numel(source) adds when accumulating.
* ``unfold_backward(grad, sizes, dim, size, step)``: each window element of ``grad`` added back
  onto its source: numel(grad) adds.
* ``col2im`` (``F.fold``, and ``F.unfold``'s backward): every column element whose source pixel
  lies inside the image (taps on the zero padding are skipped by the kernel) is added into it —
  exact per spatial dim, Σ over kernel offsets and positions of [0 ≤ pos·stride − pad + k·dil < size].
* ``reflection_pad*_backward`` / ``replication_pad*_backward``: each output gradient is added into
  its source element: numel(grad_output) adds.
"""

from __future__ import annotations

from math import prod

import torch

from ..bos import BOs
from .registry import numel, register


def written_elements(self_t, indices, values) -> int:
    """Number of destination elements an advanced-indexing write addresses."""
    idx = [i for i in indices if i is not None] if indices is not None else []
    if not idx:
        return numel(values)
    if any(i.dtype in (torch.bool, torch.uint8) for i in idx):
        return numel(values)
    shape = torch.broadcast_shapes(*(tuple(i.shape) for i in idx))
    # dims addressed by an index (None entries and trailing dims keep their full extent)
    indexed = {d for d, i in enumerate(indices) if i is not None}
    rest = prod(int(s) for d, s in enumerate(self_t.shape) if d not in indexed)
    return prod(shape) * rest


@register("index_put", "index_put_", "_index_put_impl_", "_unsafe_index_put")
def index_put(out, self_t, indices, values, accumulate=False, *args, **kwargs) -> BOs:
    """accumulate=True: 1 add per written element; a plain write: zero."""
    accumulate = kwargs.get("accumulate", accumulate)
    if not accumulate:
        return BOs()
    return BOs(add=written_elements(self_t, indices, values))


@register("_unsafe_masked_index_put_accumulate")
def masked_index_put_accumulate(out, self_t, mask, indices, values, **kwargs) -> BOs:
    """Accumulating write of ``values``: 1 add per value."""
    return BOs(add=numel(values))


@register("index_add", "index_add_")
def index_add(out, self_t, dim, index, source, *args, alpha=1, **kwargs) -> BOs:
    """numel(source) adds (+ as many muls for alpha ≠ 1)."""
    if args:
        alpha = args[0]
    n = numel(source)
    return BOs(add=n, mul=n if alpha != 1 else 0)


def _reduce_bos(n: int, reduce: str | None, n_out: int = 0) -> BOs:
    if reduce in (None, "none"):
        return BOs()
    if reduce in ("add", "sum"):
        return BOs(add=n)
    if reduce == "mean":
        return BOs(add=n, div=n_out)
    if reduce in ("multiply", "prod"):
        return BOs(mul=n)
    if reduce in ("amax", "amin"):
        return BOs(sub=n)
    raise ValueError(f"unknown scatter reduction {reduce!r}")


@register("scatter", "scatter_")
def scatter(out, self_t, dim, index, src=None, *args, reduce=None, **kwargs) -> BOs:
    """No reduce: a write (zero). reduce='add': numel(index) adds; 'multiply': numel(index) muls."""
    if args and isinstance(args[0], str):
        reduce = args[0]
    return _reduce_bos(numel(index), reduce)


@register("scatter_add", "scatter_add_")
def scatter_add(out, self_t, dim, index, src, **kwargs) -> BOs:
    """numel(index) adds."""
    return BOs(add=numel(index))


@register("scatter_reduce", "scatter_reduce_")
def scatter_reduce(out, self_t, dim, index, src, reduce, *args, **kwargs) -> BOs:
    """One ⊕ per element of ``index`` (mean: + 1 div per output element)."""
    return _reduce_bos(numel(index), reduce, numel(out))


@register("index_reduce", "index_reduce_")
def index_reduce(out, self_t, dim, index, source, reduce, *args, **kwargs) -> BOs:
    """One ⊕ per element of ``source`` (mean: + 1 div per output element)."""
    return _reduce_bos(numel(source), reduce, numel(out))


@register("put", "put_")
def put(out, self_t, index, source, accumulate=False, **kwargs) -> BOs:
    """accumulate: numel(source) adds; else a write."""
    return BOs(add=numel(source)) if kwargs.get("accumulate", accumulate) else BOs()


@register("unfold_backward")
def unfold_backward(out, grad, input_sizes, dim, size, step, **kwargs) -> BOs:
    """Each window element of ``grad`` added back onto its source: numel(grad) adds."""
    return BOs(add=numel(grad))


def _as_list(v, nd: int) -> list[int]:
    if isinstance(v, int):
        return [v] * nd
    v = [int(a) for a in v]
    return v * nd if len(v) == 1 else v


def col2im_taps(size: int, kernel: int, dilation: int, padding: int, stride: int) -> int:
    """Column entries along one dim whose source index lies inside [0, size)."""
    blocks = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    return sum(1 for k in range(kernel) for b in range(blocks)
               if 0 <= b * stride - padding + k * dilation < size)


@register("col2im")
def col2im(out, x, output_size, kernel_size, dilation, padding, stride, **kwargs) -> BOs:
    """One add per in-image column element (exact per dim, padding taps skipped)."""
    osz, k, d, p, s = (_as_list(v, 2) for v in (output_size, kernel_size, dilation, padding, stride))
    per_plane = prod(col2im_taps(osz[i], k[i], d[i], p[i], s[i]) for i in range(2))
    planes = numel(out) // max(osz[0] * osz[1], 1)
    return BOs(add=planes * per_plane)


@register("reflection_pad1d_backward", "reflection_pad2d_backward", "reflection_pad3d_backward",
          "replication_pad1d_backward", "replication_pad2d_backward", "replication_pad3d_backward")
def pad_backward(out, grad, x, padding, **kwargs) -> BOs:
    """Each output gradient added into its source element: numel(grad_output) adds."""
    return BOs(add=numel(grad))


def _isin_compares(elements, test, n: int, m: int) -> int:
    """Compares of ``isin``'s kernel (TensorCompare.cpp): with few test elements
    (m < 10·n^0.145) each element is compared with the test elements in order until the first
    match (early exit): exact on real tensors, n·m on meta (warned); otherwise the sort-based path,
    priced (n + m)·⌈log2(n + m)⌉ sort compares + (n + m) adjacent compares (approximate)."""
    import math

    if m >= 10.0 * n ** 0.145:
        k = n + m
        return k * math.ceil(math.log2(k)) + k if k > 1 else k
    if not isinstance(elements, torch.Tensor) or not isinstance(test, torch.Tensor):
        return n * m
    if elements.device.type == "meta" or test.device.type == "meta":
        from .registry import warn_approximate

        warn_approximate("aten.isin", "its early-exit compares depend on the values; meta prices "
                         "every element against every test element")
        return n * m
    eq = elements.reshape(-1, 1) == test.reshape(1, -1)
    hit = eq.any(1)
    first = eq.int().argmax(1) + 1
    return int(torch.where(hit, first, torch.full_like(first, m)).sum())


@register("isin")
def isin(out, elements, test_elements, *args, **kwargs) -> BOs:
    """Compares of isin's kernel: early-exit linear search for few test elements (exact on real
    tensors, worst case on meta), sort-based otherwise (approximate); a scalar test element: one
    compare per element; a scalar element: m compares (worst case)."""
    n = numel(elements) if isinstance(elements, torch.Tensor) else 1
    m = numel(test_elements) if isinstance(test_elements, torch.Tensor) else 1
    if not isinstance(test_elements, torch.Tensor):
        return BOs(sub=n)
    if not isinstance(elements, torch.Tensor):   # one scalar against m test elements: m at most
        return BOs(sub=m)
    return BOs(sub=_isin_compares(elements, test_elements, n, m))
