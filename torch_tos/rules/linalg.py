"""Matrix products: mm, addmm, bmm, baddbmm, addmv, mv, dot, addbmm, addr, outer, vdot.

Each output element of a product with inner dimension K is K multiplications and K-1
accumulations (paper Eq. 3-4). A bias (``addmm``'s ``self``, added once per output) is one more
add, so Linear(I→O) costs ``I`` adds and ``I`` muls per output — the paper's convention — and a
bias-free product costs ``I-1`` adds. Scalars ``alpha``/``beta`` different from 1 cost one mul per
output each (``beta = 0`` drops the bias term entirely, as the kernels do).
``_addmm_activation`` (the fused Linear + ReLU/GELU of the transformer fast path) is addmm plus
the activation's own per-element rule. Backward of every product is again products — dA = dC·Bᵀ,
dB = Aᵀ·dC as ``mm``/``bmm`` (only those autograd needs), bias gradients as ``sum`` — priced by
the same rules.
"""

import torch

from ..bos import BOs
from . import activations  # noqa: F401  (_addmm_activation composes the activation rules)
from .registry import RULES, numel, register


def _product(outputs: int, k: int) -> BOs:
    """``outputs`` dot products of length ``k``."""
    return BOs(add=outputs * max(k - 1, 0), mul=outputs * k)


def _scaled_bias(out_n: int, beta=1, alpha=1) -> BOs:
    extra = BOs()
    if beta != 0:
        extra += BOs(add=out_n)
        if beta != 1:
            extra += BOs(mul=out_n)
    if alpha != 1:
        extra += BOs(mul=out_n)
    return extra


@register("mm")
def mm(out, a, b, *args, **kwargs) -> BOs:
    """``a[n,k] @ b[k,m]``: n·m outputs, each k mul + (k-1) add."""
    return _product(numel(out), int(a.shape[-1]))


@register("addmm", "addmm_")
def addmm(out, bias, a, b, *, beta=1, alpha=1, **kwargs) -> BOs:
    """``beta·bias + alpha·(a @ b)``: the product, plus one add per output for the bias
    (a Linear layer's K products + bias = K adds, K muls per output)."""
    return _product(numel(out), int(a.shape[-1])) + _scaled_bias(numel(out), beta, alpha)


@register("bmm")
def bmm(out, a, b, *args, **kwargs) -> BOs:
    """Batched ``a[B,n,k] @ b[B,k,m]``: B·n·m outputs of length-k dot products."""
    return _product(numel(out), int(a.shape[-1]))


@register("baddbmm", "baddbmm_")
def baddbmm(out, bias, a, b, *, beta=1, alpha=1, **kwargs) -> BOs:
    """``beta·bias + alpha·bmm(a, b)``: bmm plus one add per output (scalars as in addmm)."""
    return _product(numel(out), int(a.shape[-1])) + _scaled_bias(numel(out), beta, alpha)


@register("addbmm", "addbmm_")
def addbmm(out, bias, a, b, *, beta=1, alpha=1, **kwargs) -> BOs:
    """``beta·bias + alpha·Σ_b a[b] @ b[b]``: each output sums B·k products (B·k mul,
    B·k-1 add), plus the bias add."""
    k = int(a.shape[0]) * int(a.shape[-1])
    return _product(numel(out), k) + _scaled_bias(numel(out), beta, alpha)


@register("mv")
def mv(out, a, v, *args, **kwargs) -> BOs:
    """``a[n,k] @ v[k]``: n outputs of length-k dot products."""
    return _product(numel(out), int(a.shape[-1]))


@register("addmv", "addmv_")
def addmv(out, bias, a, v, *, beta=1, alpha=1, **kwargs) -> BOs:
    """``beta·bias + alpha·(a @ v)``: mv plus one add per output."""
    return _product(numel(out), int(a.shape[-1])) + _scaled_bias(numel(out), beta, alpha)


@register("dot", "vdot")
def dot(out, a, b, *args, **kwargs) -> BOs:
    """One length-n dot product: n mul, n-1 add."""
    return _product(1, numel(a))


@register("outer", "ger")
def outer(out, a, b, *args, **kwargs) -> BOs:
    """``a ⊗ b``: one mul per output."""
    return BOs(mul=numel(out))


@register("addr", "addr_")
def addr(out, bias, a, b, *, beta=1, alpha=1, **kwargs) -> BOs:
    """``beta·bias + alpha·(a ⊗ b)``: one mul and one add per output (scalars as in addmm)."""
    return BOs(mul=numel(out)) + _scaled_bias(numel(out), beta, alpha)


@register("_addmm_activation")
def addmm_activation(out, bias, a, b, *, beta=1, alpha=1, use_gelu=False, **kwargs) -> BOs:
    """addmm, then ReLU (1 compare per output) or GELU (the GELU rule, per output)."""
    act = RULES[torch.ops.aten.gelu if use_gelu else torch.ops.aten.relu](out, out)
    return addmm(out, bias, a, b, beta=beta, alpha=alpha) + act


@register("linalg_cross", "cross")
def cross(out, a, b, *args, **kwargs) -> BOs:
    """3-vector cross products: each output component a_j·b_k − a_k·b_j (2 mul, 1 sub)."""
    n = numel(out)
    return BOs(sub=n, mul=2 * n)


_META_GROUPS = ("the group offsets are data; meta assumes every row (column, depth) up to the "
                "end belongs to a group and every group is non-empty, as in transformers' experts "
                "when every expert receives a token")


def _used(offs, full: int) -> int:
    """Rows / columns / depth a grouped matmul covers: the last group offset (real tensors), else
    the full extent (meta: the offsets' values are unknown — warned)."""
    if offs is None:
        return full
    if offs.device.type == "meta":
        from .registry import warn_approximate

        warn_approximate("aten._grouped_mm", _META_GROUPS)
        return full
    return int(offs[-1]) if offs.numel() else 0


def _group_sizes(offs, depth: int) -> tuple[int, int]:
    """(Σ K_g, number of non-empty groups) of groups split along K by ``offs``; on meta the groups
    cover the whole depth and as many as can be are non-empty (min(G, depth))."""
    if offs.device.type == "meta":
        used = _used(offs, depth)
        return used, min(int(offs.shape[0]), used)
    ends = [int(v) for v in offs.tolist()]
    sizes = [e - s for s, e in zip([0] + ends[:-1], ends)]
    return sum(sizes), sum(1 for k in sizes if k > 0)


@register("_grouped_mm")
def grouped_mm(out, a, b, offs=None, bias=None, out_dtype=None, **kwargs) -> BOs:
    """Grouped GEMM (Mixture-of-Experts expert matmuls; the CPU kernel is one ``mm`` per group,
    PyTorch's ``_grouped_mm_fallback``): every output covered by a group is a dot product of K
    (mul K, add K−1; + 1 add with a bias).

    * a [M, K] × b [G, K, N], offsets along M (experts' forward, dX): the first offs[−1] rows,
      offs[−1]·N dots of K;
    * a [G, M, K] × b [K, N], offsets along N: the first offs[−1] columns, M·offs[−1] dots of K;
    * a [M, K] × b [K, N], offsets along K, out [G, M, N] (experts' weight gradient): group g's
      M·N outputs sum its K_g terms (K_g mul, K_g − 1 add); an empty group costs nothing (its
      output is zero-filled): mul M·N·ΣK_g, add M·N·(ΣK_g − non-empty groups);
    * 3-D × 3-D: a batched matmul, G·M·N dots of K.

    Offsets are read on real tensors. On meta their values are unknown: the groups are taken to
    cover the whole extent and every group to be non-empty (as many as the depth allows) — exact
    for transformers' experts, whose offsets end at the routed-row count, whenever every expert
    receives a token (approximate otherwise, warned)."""
    if a.dim() == 2 and b.dim() == 3:
        rows, K, N = _used(offs, int(a.shape[0])), int(a.shape[1]), int(b.shape[-1])
        outs, total = rows * N, _product(rows * N, K)
    elif a.dim() == 3 and b.dim() == 2:
        M, K = int(a.shape[1]), int(a.shape[2])
        cols = _used(offs, int(b.shape[1]))
        outs, total = M * cols, _product(M * cols, K)
    elif a.dim() == 2 and b.dim() == 2:
        M, N, G = int(a.shape[0]), int(b.shape[1]), int(out.shape[0])
        depth, nonempty = _group_sizes(offs, int(a.shape[1]))
        outs = G * M * N
        total = BOs(add=M * N * (depth - nonempty), mul=M * N * depth)
    else:
        G, M, K, N = int(a.shape[0]), int(a.shape[1]), int(a.shape[2]), int(b.shape[2])
        outs, total = G * M * N, _product(G * M * N, K)
    return total + (BOs(add=outs) if isinstance(bias, torch.Tensor) else BOs())


@register("linear")
def nested_linear(out, x, w, bias=None, **kwargs) -> BOs:
    """``aten.linear`` reaches the engine only for nested tensors (for dense ones it is a composite
    of mm/addmm): each of the numel(out) outputs a dot product of K = in_features (mul K, add K−1;
    + 1 add with a bias)."""
    n, K = numel(out), int(w.shape[-1])
    return _product(n, K) + (BOs(add=n) if isinstance(bias, torch.Tensor) else BOs())
