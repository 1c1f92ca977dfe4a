"""Attention kernels: scaled dot-product attention (SDPA), the fused multi-head-attention and
transformer-encoder fast paths, masked softmax; forward and backward.

Notation: B batch, H query heads, L query length, S key/value length, D head dim of q and k, Dv
head dim of v. Counts are per (batch, head) unless said, then multiplied by B·H (the kernels loop
over query heads; grouped-query K/V heads are read, not copied).

**Where each kernel comes from.** ``F.scaled_dot_product_attention`` is a composite: on CPU it runs
``_scaled_dot_product_flash_attention_for_cpu`` whenever the flash kernel accepts the inputs
(no dropout, 4-D (3-D is unsqueezed), equal head dims, last-dim stride 1, float/double/bf16/fp16)
and otherwise the *math* path, which decomposes into ops priced by their own rules (scale q and
k by √scale: ``mul``; QKᵀ: ``bmm``; mask: ``add``; ``_safe_softmax``; dropout; ·V: ``bmm``).
The meta device has no kernel choice of its own (it always takes the math path), so while a
counting :class:`~torch_tos.counter.Engine` is open the engine layer routes SDPA on meta tensors
to the kernel the CPU would pick (:mod:`torch_tos.kernels`, asking PyTorch's own CPU selector on
stand-in tensors): meta counts are CPU counts. On CUDA the flash / memory-efficient / cuDNN kernels run;
their rules (``_scaled_dot_product_{flash,efficient,cudnn}_attention``) are **approximate**
(see :func:`gpu_attention`).

**CPU flash attention, forward** (``_scaled_dot_product_flash_attention_for_cpu``, PyTorch's
FlashAttentionKernel.cpp). Queries are split in blocks of ``q_split`` rows (32, 64 for L ≥ 192,
256 for L ≥ 768) and keys in blocks of ``kv_split`` = 512. For each query row and each key block
of ``kb`` keys the kernel computes (online softmax):

* QKᵀ: kb dot products of length D (kb·D mul, kb·(D−1) add);
* scale: kb mul; an attention mask (float, or bool converted to 0/−∞ by a ``where`` op outside
  the kernel): kb add;
* block max and running max: kb compares (kb−1 + 1); the "row all −∞" guard: 1 compare;
* exp(x − max) and its sum: kb sub, kb root, kb−1 add;
* rescale factor e = exp(m_old − m_new): 1 sub, 1 root; running sum l = l_blk + e·l_old: 1 mul,
  1 add; accumulated output rescaled by e from the second block on: Dv mul;
* P·V accumulated into the output: Dv dot products of length kb (Dv·kb mul, Dv·(kb−1) add; from
  the second block on +Dv add);

and per query row at the end: two guards (max = −∞, sum = 0: 2 compares), 1/l (1 div), output
·(1/l) (Dv mul), logsumexp m + log l (1 add, 1 root). So a row that sees K keys in nb blocks
costs ``add = K(D+Dv+[mask]) − Dv + 1, sub = 2K + 2nb + 2, mul = K(D+Dv+1) + nb(Dv+1),
div = 1, root = K + nb + 1``.

**Causal** (``is_causal=True``): query block [m, m+qb) visits key blocks up to key m+qb−1 only,
so key blocks wholly above the diagonal are skipped and **not counted**; inside the blocks it
visits, the masked upper-triangle entries *are* computed (QKᵀ, scale, exp of −∞ …) and then
discarded, and **are counted** — exactly what the kernel executes. (For L, S ≤ 512 and L < 192,
one key block covers every row: the whole L×S square is computed and counted.)

**CPU flash attention, backward** (``…_for_cpu_backward``): per query row, dsum = Σ dO·O
(Dv mul, Dv−1 add); then for every (query block × key block) tile it recomputes the scores and
probabilities and back-propagates; per computed score entry (T = number of entries):
scale·QKᵀ (D+1 mul, D−1 add), mask (·1 + mask: 1 mul, 1 add — the kernel's fused scale-add with
scale 1), P = exp(s − lse) (1 sub, 1 root), dP = dO·Vᵀ (Dv mul, Dv−1 add), dS = P·(dP − dsum)
(1 sub, 1 mul); and the three accumulating products dV += Pᵀ·dO (qb mul, qb add per dV element of
the tile), dQ += scale·dS·K (kb+1 mul, kb add per dQ element), dK += scale·dSᵀ·Q (qb+1 mul,
qb add per dK element). Causal tiling as in the forward. Dropout is not supported by this kernel.

**Dropout inside attention.** The CPU flash kernel has no dropout, so with ``dropout_p > 0`` (a
training-mode nn.MultiheadAttention / TransformerLayer with dropout) SDPA takes the math path on CPU
and meta alike, where the dropout is PyTorch's composite on the attention weights — a ``bernoulli_``
mask (1 compare per weight), its ``div_`` by 1−p and the ``mul`` applying it, each priced by its own
rule — and its backward the matching ``mul``.
The CUDA kernels fuse it (approximate: one compare and one mul per score entry, each way).

**Fused fast paths (CPU, eval + no_grad).** ``_native_multi_head_attention``: QKV projection
without bias (mm: 3E outputs per token, E−1 add + E mul each); ``_transform_bias_rescale_qkv``
(q: +bias, ·1/√d; k, v: +bias); QKᵀ (bmm); softmax (or ``_masked_softmax``); ·V (bmm); output
projection with bias (addmm); with ``need_weights`` the head average Σ_h / H (H−1 add per
weight, 1 div). ``_transformer_encoder_layer_fwd``: [layer norm], the MHA above, residual add,
[layer norm], FFN ``_addmm_activation`` (ReLU or GELU) + addmm, residual add, [layer norm]. The
meta device never takes these fast paths (PyTorch gates them on cpu/cuda tensors): it runs the
layers' ordinary ops instead, so eval/no-grad counts of nn.Transformer* on meta and on CPU differ
by what the two paths really execute.

**Masked softmax** (``_masked_softmax``): priced as a softmax over the full row (masked entries
skip max/exp/scale in the kernel, which depends on the mask's values: **approximate**, an upper
bound); backward as the softmax backward.
"""

from __future__ import annotations

import math
import torch

from ..bos import BOs
from . import activations, linalg, norms  # noqa: F401  (rules composed below must exist first)
from .._compat import disable_current_modes
from .registry import RULES, numel, register

aten = torch.ops.aten

KV_SPLIT = 512


def q_split(q_len: int) -> int:
    """Query block size of the CPU flash kernels for a query length (FlashAttentionKernel.cpp)."""
    return 256 if q_len >= 768 else 64 if q_len >= 192 else 32


def _tiles(L: int, S: int, causal: bool):
    """(qb, [kb, …]) per query block: the key blocks the CPU flash kernels visit."""
    qs, ks = min(q_split(L), L), min(KV_SPLIT, S)
    for m in range(0, L, qs):
        qb = min(qs, L - m)
        keys = min(m + qb, S) if causal else S
        yield qb, [min(ks, S - n) for n in range(0, keys, ks)]


def flash_cpu_forward(B: int, H: int, L: int, S: int, D: int, Dv: int, causal: bool = False,
                      mask: bool = False) -> BOs:
    """BOs of ``_scaled_dot_product_flash_attention_for_cpu`` (see the module docstring)."""
    total = BOs()
    for qb, blocks in _tiles(L, S, causal):
        K, nb = sum(blocks), len(blocks)
        row = BOs(add=K * (D + Dv + int(mask)) - Dv + 1, sub=2 * K + 2 * nb + 2,
                  mul=K * (D + Dv + 1) + nb * (Dv + 1), div=1, root=K + nb + 1)
        total += row * qb
    return total * (B * H)


def flash_cpu_backward(B: int, H: int, L: int, S: int, D: int, Dv: int, causal: bool = False,
                       mask: bool = False) -> BOs:
    """BOs of ``_scaled_dot_product_flash_attention_for_cpu_backward`` (see the module docstring)."""
    T = 0          # score entries computed
    edges = 0      # Σ over tiles of (qb + kb): the alpha-scaled dQ/dK outputs
    for qb, blocks in _tiles(L, S, causal):
        for kb in blocks:
            T += qb * kb
            edges += qb + kb
    mk = int(mask)
    per_head = BOs(add=T * (3 * D + 2 * Dv - 2 + mk) + L * (Dv - 1), sub=2 * T,
                   mul=T * (3 * D + 2 * Dv + 2 + mk) + D * edges + L * Dv, root=T)
    return per_head * (B * H)


def _dims(q, k, v):
    """(B, H, L, S, D, Dv) of 4-D (B, H, L, D) attention inputs (3-D: B = 1)."""
    if q.dim() == 3:
        q, k, v = q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0)
    B = math.prod(int(s) for s in q.shape[:-3]) if q.dim() > 4 else int(q.shape[0])
    return B, int(q.shape[-3]), int(q.shape[-2]), int(k.shape[-2]), int(q.shape[-1]), int(v.shape[-1])


def _has_mask(mask) -> bool:
    return isinstance(mask, torch.Tensor) and mask.numel() > 0


@register("_scaled_dot_product_flash_attention_for_cpu")
def sdpa_flash_cpu(out, q, k, v, dropout_p=0.0, is_causal=False, *, attn_mask=None, scale=None,
                   **kwargs) -> BOs:
    """CPU flash attention forward, exact: per query row seeing K keys in nb key blocks,
    add K(D+Dv+[mask])−Dv+1, sub 2K+2nb+2, mul K(D+Dv+1)+nb(Dv+1), div 1, root K+nb+1 —
    QKᵀ, scale, online softmax (block max, exp, sum, rescale), ·V, 1/l, logsumexp. Causal: key
    blocks above the diagonal skipped; masked entries inside visited blocks computed and counted."""
    return flash_cpu_forward(*_dims(q, k, v), bool(is_causal), _has_mask(attn_mask))


sdpa_flash_cpu.unit = "per query row of K keys in nb blocks: [K(D+Dv+m)−Dv+1, 2K+2nb+2, K(D+Dv+1)+nb(Dv+1), 1, K+nb+1]"


@register("_scaled_dot_product_flash_attention_for_cpu_backward")
def sdpa_flash_cpu_backward(out, grad_out, q, k, v, o, lse, dropout_p=0.0, is_causal=False, *,
                            attn_mask=None, scale=None, **kwargs) -> BOs:
    """CPU flash attention backward, exact: per computed score entry recompute scale·QKᵀ,
    P = exp(s − lse), dP = dO·Vᵀ, dS = P(dP − dsum); accumulate dV, dQ, dK; per row dsum = Σ dO·O
    (see the module docstring for the per-entry counts)."""
    return flash_cpu_backward(*_dims(q, k, v), bool(is_causal), _has_mask(attn_mask))


sdpa_flash_cpu_backward.unit = ("per score entry [3D+2Dv−2+m, 2, 3D+2Dv+2+m, 0, 1], "
                                "+D mul per tile row/column, +[Dv−1, 0, Dv, 0, 0] per query row")


# -- CUDA kernels (approximate) --------------------------------------------------------------

def _gpu_keys(L: int, S: int, causal: bool) -> int:
    """Score entries a GPU kernel computes: all L·S, or the causal lower triangle (top-left)."""
    if not causal:
        return L * S
    return sum(min(i + 1, S) for i in range(L))


def gpu_attention(B, H, L, S, D, Dv, causal=False, mask=False, dropout=False) -> BOs:
    """Approximate forward of the CUDA flash / memory-efficient / cuDNN kernels: the CPU flash
    per-row count with every row's keys in one block (the GPU kernels' tile sizes depend on the
    architecture, so their per-tile rescales are not counted); causal: only the lower triangle
    (the GPU kernels skip masked tiles; the partially masked tiles on the diagonal are not
    counted); dropout: one compare and one mul per score entry."""
    K = _gpu_keys(L, S, causal)
    rows = L
    total = BOs(add=K * (D + Dv + int(mask)) + rows * (1 - Dv), sub=2 * K + 4 * rows,
                mul=K * (D + Dv + 1) + rows * (Dv + 1), div=rows, root=K + 2 * rows)
    if dropout:
        total += BOs(sub=K, mul=K)
    return total * (B * H)


def gpu_attention_backward(B, H, L, S, D, Dv, causal=False, mask=False, dropout=False) -> BOs:
    """Approximate backward of the CUDA kernels: the CPU flash backward per score entry with one
    tile per head (dQ/dK scale applied once per output); dropout: one compare and one mul per
    score entry."""
    T = _gpu_keys(L, S, causal)
    mk = int(mask)
    total = BOs(add=T * (3 * D + 2 * Dv - 2 + mk) + L * (Dv - 1), sub=2 * T,
                mul=T * (3 * D + 2 * Dv + 2 + mk) + D * (L + S) + L * Dv, root=T)
    if dropout:
        total += BOs(sub=T, mul=T)
    return total * (B * H)


@register("_scaled_dot_product_flash_attention")
def sdpa_gpu_flash(out, q, k, v, dropout_p=0.0, is_causal=False, *args, **kwargs) -> BOs:
    """CUDA flash attention forward — approximate: per query row of K keys, one block,
    [K(D+Dv)−Dv+1, 2K+4, K(D+Dv+1)+Dv+1, 1, K+2] (causal: K = keys up to the diagonal;
    dropout: +1 sub, +1 mul per score)."""
    return gpu_attention(*_dims(q, k, v), bool(is_causal), False, bool(dropout_p))


@register("_scaled_dot_product_cudnn_attention")
def sdpa_cudnn(out, q, k, v, attn_bias=None, compute_log_sumexp=False, dropout_p=0.0,
               is_causal=False, *args, **kwargs) -> BOs:
    """cuDNN attention forward — approximate: as the CUDA flash forward, + K add with a bias."""
    return gpu_attention(*_dims(q, k, v), bool(is_causal), _has_mask(attn_bias), bool(dropout_p))


@register("_scaled_dot_product_efficient_attention")
def sdpa_efficient(out, q, k, v, attn_bias=None, compute_log_sumexp=False, dropout_p=0.0,
                   is_causal=False, *, scale=None, **kwargs) -> BOs:
    """CUDA memory-efficient attention forward — approximate: as the CUDA flash forward, + K add
    with a bias."""
    return gpu_attention(*_dims(q, k, v), bool(is_causal), _has_mask(attn_bias), bool(dropout_p))


@register("_scaled_dot_product_flash_attention_backward")
def sdpa_gpu_flash_backward(out, grad_out, q, k, v, o, lse, cum_q, cum_k, max_q, max_k,
                            dropout_p=0.0, is_causal=False, *args, **kwargs) -> BOs:
    """CUDA flash attention backward — approximate: per score entry [3D+2Dv−2, 2, 3D+2Dv+2, 0, 1],
    + D(L+S) mul, + L·[Dv−1, 0, Dv, 0, 0] per head (one tile per head)."""
    return gpu_attention_backward(*_dims(q, k, v), bool(is_causal), False, bool(dropout_p))


@register("_scaled_dot_product_efficient_attention_backward")
def sdpa_efficient_backward(out, grad_out, q, k, v, attn_bias, o, lse, seed, offset, dropout_p,
                            grad_input_mask=None, is_causal=False, *args, **kwargs) -> BOs:
    """CUDA memory-efficient attention backward — approximate: as the CUDA flash backward, + 1 add
    and 1 mul per score entry with a bias."""
    return gpu_attention_backward(*_dims(q, k, v), bool(is_causal), _has_mask(attn_bias),
                                  bool(dropout_p))


@register("_scaled_dot_product_cudnn_attention_backward")
def sdpa_cudnn_backward(out, grad_out, q, k, v, o, lse, seed, offset, attn_bias, cum_q, cum_k,
                        max_q, max_k, dropout_p=0.0, is_causal=False, *args, **kwargs) -> BOs:
    """cuDNN attention backward — approximate: as the CUDA flash backward, + 1 add and 1 mul per
    score entry with a bias."""
    return gpu_attention_backward(*_dims(q, k, v), bool(is_causal), _has_mask(attn_bias),
                                  bool(dropout_p))


# -- masked softmax and the fused fast paths ---------------------------------------------------

def _softmax_rows(x, dim) -> BOs:
    return RULES[aten._softmax](None, x, -1 if dim is None else dim, False)


@register("_masked_softmax")
def masked_softmax(out, x, mask, dim=None, mask_type=None, **kwargs) -> BOs:
    """Approximate: a full softmax over each row of n (add n−1, sub 2n−1, div n, root n); the
    kernel skips masked entries, which only the mask's values tell."""
    return _softmax_rows(x, dim)


@register("_masked_softmax_backward")
def masked_softmax_backward(out, grad, y, mask, dim=None, **kwargs) -> BOs:
    """Approximate: the softmax backward y·(g − Σ g·y) over full rows (add n−1, sub n, mul 2n)."""
    return RULES[aten._softmax_backward_data](None, grad, y, -1 if dim is None else dim, y.dtype)


@register("_transform_bias_rescale_qkv")
def transform_bias_rescale_qkv(out, qkv, qkv_bias, num_heads, **kwargs) -> BOs:
    """qkv[B, T, 3E]: q = (q + b_q)/√d as (q + b_q)·(1/√d), k + b_k, v + b_v → one add per element,
    one mul per q element."""
    n = numel(qkv)
    return BOs(add=n, mul=n // 3)


def native_mha_bos(B: int, T: int, E: int, H: int, mask: bool = False, need_weights: bool = False,
                   average: bool = True) -> BOs:
    """BOs of the CPU ``_native_multi_head_attention`` on [B, T, E] (self- or cross-attention
    alike: the projections cost the same). Masked softmax priced as a full softmax."""
    d = E // H
    tokens = B * T
    total = BOs(add=tokens * 3 * E * (E - 1), mul=tokens * 3 * E * E)        # qkv = x·Wᵀ (no bias)
    total += BOs(add=tokens * 3 * E, mul=tokens * E)                          # + bias, q·1/√d
    total += BOs(add=B * H * T * T * (d - 1), mul=B * H * T * T * d)          # QKᵀ
    total += BOs(add=B * H * T * (T - 1), sub=B * H * T * (2 * T - 1),        # softmax over T
                 div=B * H * T * T, root=B * H * T * T)
    total += BOs(add=B * H * T * d * (T - 1), mul=B * H * T * d * T)          # ·V
    total += BOs(add=tokens * E * E, mul=tokens * E * E)                      # out proj + bias
    if need_weights and average:
        total += BOs(add=B * T * T * (H - 1), div=B * T * T)                  # mean over heads
    return total


def _btE(x):
    return int(x.shape[0]), int(x.shape[1]), int(x.shape[2])


@register("_native_multi_head_attention")
def native_multi_head_attention(out, query, key, value, embed_dim, num_head, qkv_weight, qkv_bias,
                                proj_weight, proj_bias, mask=None, need_weights=True,
                                average_attn_weights=True, mask_type=None, **kwargs) -> BOs:
    """CPU fast path of nn.MultiheadAttention: QKV mm, bias + rescale, QKᵀ, softmax, ·V, output
    addmm (+ head average with need_weights); see the module docstring."""
    B, T, E = _btE(query)
    return native_mha_bos(B, T, int(embed_dim), int(num_head), mask is not None,
                          bool(need_weights), bool(average_attn_weights))


def _meta(*shape):
    """A meta tensor of ``shape`` (for composing other rules; created outside any counting mode)."""
    with disable_current_modes():
        return torch.empty(shape, device="meta")


def _layer_norm(x, w, b) -> BOs:
    return RULES[aten.native_layer_norm](None, x, [int(x.shape[-1])], w, b, 1e-5)


@register("_transformer_encoder_layer_fwd")
def transformer_encoder_layer_fwd(out, src, embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight,
                                  proj_bias, use_gelu, norm_first, eps, norm_weight_1, norm_bias_1,
                                  norm_weight_2, norm_bias_2, ffn_weight_1, ffn_bias_1,
                                  ffn_weight_2, ffn_bias_2, mask=None, mask_type=None,
                                  **kwargs) -> BOs:
    """CPU fast path of nn.TransformerEncoderLayer: 2 layer norms, the native MHA, 2 residual
    adds, FFN addmm + ReLU/GELU + addmm (see the module docstring)."""
    B, T, E = _btE(src)
    F = int(ffn_weight_1.shape[0])
    n = numel(src)
    total = native_mha_bos(B, T, E, int(num_heads), mask is not None, False)
    total += _layer_norm(src, norm_weight_1, norm_bias_1) + _layer_norm(src, norm_weight_2, norm_bias_2)
    total += BOs(add=2 * n)                                                   # residuals
    total += RULES[aten._addmm_activation](_meta(B * T, F), ffn_bias_1, _meta(B * T, E),
                                           _meta(E, F), use_gelu=bool(use_gelu))  # FFN 1 + act
    total += BOs(add=B * T * E * F, mul=B * T * E * F)                       # FFN 2
    return total
