"""Embedding lookups and bags, forward and backward (CPU kernels of Embedding.cpp / EmbeddingBag.cpp).

N = number of indices, D = embedding dim, nb = number of bags. Integer index bookkeeping
(``padding_idx`` tests, offsets, counts, sorting) is not floating-point arithmetic and is not
counted. Rows at ``padding_idx`` are skipped by the kernels, and bags may be empty: both depend on
the index *values*, which a shape-only count cannot see — counts assume no padding index occurs
and no bag is empty (**approximate** otherwise; exact for the common case).

* ``embedding``: a row gather, no arithmetic. ``embedding_renorm_`` (``max_norm``): per looked-up
  row the p-norm of D elements (the ``linalg_vector_norm`` rule; p = 2: D mul, D−1 add, 1 root),
  the compare with max_norm (1 sub), scale = max_norm/(norm + 1e-7) (1 add, 1 div) and the row
  rescale (D mul) — approximate: the kernel visits each *distinct* index once and rescales only
  rows over the limit; counted for all N.
* ``embedding_dense_backward``: grad_weight[idx] += grad[i] for each index: N·D add; with
  ``scale_grad_by_freq`` scale = 1/count (1 div per index) and the scaled add (+N·D mul).
* ``_embedding_bag`` / ``_embedding_bag_forward_only``: sum mode folds each bag of n rows:
  (n−1)·D add → (N − nb)·D add in all; ``per_sample_weights`` scale each row first (N·D mul);
  mean adds the division by the bag size (nb·D div); max mode: (N − nb)·D compares.
* ``_embedding_bag_backward`` (dense, ``_embedding_bag_dense_backward``): sum/mean: per index one
  axpy grad_weight[idx] += scale·grad[bag] (D mul, D add), scale built per index by 1/bag_size
  (mean: 1 div) and 1/count (``scale_grad_by_freq``: 1 div); max: the bag gradient added at the
  arg-max rows (nb·D add). Sparse backward: rows gathered (no arithmetic), mean divides them by
  the bag size (N·D div), per-sample weights multiply (N·D mul), ``scale_grad_by_freq``
  (N·D mul + N div).
* ``_embedding_bag_per_sample_weights_backward``: one dot product of D per index (D mul, D−1 add).
"""

from __future__ import annotations

import torch

from .._compat import disable_current_modes
from ..bos import BOs
from . import reductions  # noqa: F401  (the vector-norm rule used by embedding_renorm_)
from .registry import RULES, numel, register, register_zero

MODE_SUM, MODE_MEAN, MODE_MAX = 0, 1, 2

register_zero("embedding")


def _dim(weight_or_grad) -> int:
    return int(weight_or_grad.shape[-1]) if weight_or_grad.dim() else 1


def _bags(offsets, include_last_offset=False) -> int:
    n = numel(offsets)
    return max(n - 1, 0) if include_last_offset else n


@register("embedding_renorm_")
def embedding_renorm(out, weight, indices, max_norm, norm_type, **kwargs) -> BOs:
    """Approximate, per index: p-norm of its row, compare, scale = max_norm/(norm + 1e-7),
    row rescale → p = 2: [D, 1, 2D, 1, 1]."""
    D, N = _dim(weight), numel(indices)
    with disable_current_modes():
        row = torch.empty(D, device="meta")
    norm = RULES[torch.ops.aten.linalg_vector_norm](None, row, float(norm_type))
    return (norm + BOs(sub=1, add=1, div=1, mul=D)) * N


@register("embedding_dense_backward")
def embedding_dense_backward(out, grad, indices, num_weights, padding_idx, scale_grad_by_freq,
                             **kwargs) -> BOs:
    """Per index: D add (+1 div and D mul with scale_grad_by_freq)."""
    D, N = _dim(grad), numel(indices)
    total = BOs(add=N * D)
    if scale_grad_by_freq:
        total += BOs(div=N, mul=N * D)
    return total


@register("embedding_backward")
def embedding_backward(out, grad, indices, num_weights, padding_idx, scale_grad_by_freq, sparse,
                       **kwargs) -> BOs:
    """Dense: as ``embedding_dense_backward``; sparse: as ``embedding_sparse_backward``."""
    if sparse:
        return embedding_sparse_backward(out, grad, indices, num_weights, padding_idx,
                                         scale_grad_by_freq)
    return embedding_dense_backward(out, grad, indices, num_weights, padding_idx,
                                    scale_grad_by_freq)


@register("embedding_sparse_backward")
def embedding_sparse_backward(out, grad, indices, num_weights, padding_idx, scale_grad_by_freq,
                              **kwargs) -> BOs:
    """Rows gathered into a sparse gradient (no arithmetic); with scale_grad_by_freq 1/count per
    index (1 div) and the row scaling (D mul)."""
    D, N = _dim(grad), numel(indices)
    return BOs(div=N, mul=N * D) if scale_grad_by_freq else BOs()


@register("_embedding_bag", "_embedding_bag_forward_only", "embedding_bag")
def embedding_bag(out, weight, indices, offsets, scale_grad_by_freq=False, mode=0, sparse=False,
                  per_sample_weights=None, include_last_offset=False, padding_idx=-1,
                  **kwargs) -> BOs:
    """sum: (N − nb)·D add (+N·D mul with per_sample_weights); mean: + nb·D div; max:
    (N − nb)·D compares."""
    D, N = _dim(weight), numel(indices)
    nb = _bags(offsets, include_last_offset) if indices.dim() == 1 else int(indices.shape[0])
    fold = max(N - nb, 0) * D
    if int(mode) == MODE_MAX:
        return BOs(sub=fold)
    total = BOs(add=fold)
    if per_sample_weights is not None:
        total += BOs(mul=N * D)
    if int(mode) == MODE_MEAN:
        total += BOs(div=nb * D)
    return total


def _bag_dense_backward(grad, N: int, mode: int, scale_grad_by_freq: bool) -> BOs:
    D, nb = _dim(grad), int(grad.shape[0])
    if mode == MODE_MAX:
        return BOs(add=nb * D)
    total = BOs(add=N * D, mul=N * D)
    if mode == MODE_MEAN:
        total += BOs(div=N)
    if scale_grad_by_freq:
        total += BOs(div=N)
    return total


def _bag_sparse_backward(grad, N: int, mode: int, scale_grad_by_freq: bool, psw) -> BOs:
    D = _dim(grad)
    total = BOs()
    if mode == MODE_MEAN:
        total += BOs(div=N * D)
    if psw is not None:
        total += BOs(mul=N * D)
    if scale_grad_by_freq:
        total += BOs(div=N, mul=N * D)
    return total


@register("_embedding_bag_backward")
def embedding_bag_backward(out, grad, indices, offsets, offset2bag, bag_size, maximum_indices,
                           num_weights, scale_grad_by_freq, mode, sparse, per_sample_weights,
                           padding_idx=-1, **kwargs) -> BOs:
    """Dense: sum/mean per index one axpy (D mul, D add) + 1 div (mean) + 1 div (freq); max:
    nb·D add. Sparse: see module doc."""
    N = numel(indices)
    if sparse:
        return _bag_sparse_backward(grad, N, int(mode), bool(scale_grad_by_freq), per_sample_weights)
    return _bag_dense_backward(grad, N, int(mode), bool(scale_grad_by_freq))


@register("_embedding_bag_dense_backward")
def embedding_bag_dense_backward(out, grad, indices, offset2bag, bag_size, maximum_indices,
                                 num_weights, scale_grad_by_freq, mode, per_sample_weights,
                                 padding_idx=-1, **kwargs) -> BOs:
    """sum/mean: per index D mul, D add (+1 div mean, +1 div freq); max: nb·D add."""
    return _bag_dense_backward(grad, numel(indices), int(mode), bool(scale_grad_by_freq))


@register("_embedding_bag_sparse_backward")
def embedding_bag_sparse_backward(out, grad, indices, offsets, offset2bag, bag_size, num_weights,
                                  scale_grad_by_freq, mode, per_sample_weights, padding_idx=-1,
                                  **kwargs) -> BOs:
    """mean: N·D div; per-sample weights: N·D mul; freq: N div + N·D mul."""
    return _bag_sparse_backward(grad, numel(indices), int(mode), bool(scale_grad_by_freq),
                                per_sample_weights)


@register("_embedding_bag_per_sample_weights_backward")
def embedding_bag_per_sample_weights_backward(out, grad, weight, indices, offsets, offset2bag, mode,
                                              padding_idx=-1, **kwargs) -> BOs:
    """One dot product of D per index: D mul, D−1 add."""
    D, N = _dim(grad), numel(indices)
    return BOs(add=N * (D - 1), mul=N * D)
