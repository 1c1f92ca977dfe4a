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


def _used(offs, full: int, op: str) -> int:
    """Rows / columns / depth a grouped matmul covers: the last group offset (real tensors), else
    the full extent (meta: the offsets' values are unknown — warned)."""
    if offs is None:
        return full
    if offs.device.type == "meta":
        from .registry import warn_approximate

        warn_approximate(op, "the group offsets are data; meta assumes the groups cover the whole "
                         "extent")
        return full
    return int(offs[-1]) if offs.numel() else 0


@register("_grouped_mm")
def grouped_mm(out, a, b, offs=None, bias=None, out_dtype=None, **kwargs) -> BOs:
    """Grouped GEMM (Mixture-of-Experts expert matmuls): every output covered by a group is a dot
    product of K (mul K, add K−1; + 1 add with a bias). a [M, K] × b [G, K, N] with offsets along
    M: the first offs[−1] rows; a [G, M, K] × b [K, N] with offsets along N: the first offs[−1]
    columns; a [M, K] × b [K, N] with offsets along K (out [G, M, N]): group g sums its K_g
    terms (K_g mul, K_g − 1 add per output; an empty group costs nothing); 3-D × 3-D: a batched
    matmul. Offsets are read on real tensors; on meta the groups are assumed to cover everything
    (approximate, warned)."""
    o = out
    if a.dim() == 2 and b.dim() == 3:
        rows, K, N = _used(offs, int(a.shape[0]), "aten._grouped_mm"), int(a.shape[1]), int(b.shape[-1])
        outs, total = rows * N, _product(rows * N, K)
    elif a.dim() == 3 and b.dim() == 2:
        M, K = int(a.shape[1]), int(a.shape[2])
        cols = _used(offs, int(b.shape[1]), "aten._grouped_mm")
        outs, total = M * cols, _product(M * cols, K)
    elif a.dim() == 2 and b.dim() == 2:
        M, N, G = int(a.shape[0]), int(b.shape[1]), int(o.shape[0])
        if offs is None or offs.device.type == "meta":
            depth = _used(offs, int(a.shape[1]), "aten._grouped_mm")
            sizes = [depth // G] * G
        else:
            ends = [int(v) for v in offs.tolist()]
            sizes = [e - s for s, e in zip([0] + ends[:-1], ends)]
        outs = G * M * N
        total = BOs(add=M * N * sum(max(k - 1, 0) for k in sizes), mul=M * N * sum(sizes))
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
