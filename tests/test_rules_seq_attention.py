"""Golden tests for torch_tos/rules/attention.py: CPU flash attention forward/backward (plain,
masked, causal, several blocks), the CUDA SDPA rules (approximate, shape only), the fused MHA and
transformer-encoder fast paths, masked softmax, and the meta device taking the CPU's SDPA kernel.

Shapes: B batch, H heads, L query length, S key length, D = Dv head dim. ``B(add, sub, mul, div,
root)`` is the BO vector (the helper is named ``B`` too; batch sizes are spelled out).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import torch_tos
from test_rules_seq_helpers import B, aten, meta, op_bos, rule_bos
from torch_tos.rules import RULES
from torch_tos.kernels import SDP_FLASH, SDP_MATH, cpu_sdp_backend
from torch_tos.rules.attention import flash_cpu_backward, flash_cpu_forward, gpu_attention, native_mha_bos


def qkv(b=1, h=1, L=2, S=3, d=2, grad=True):
    q = torch.randn(b, h, L, d, requires_grad=grad)
    k = torch.randn(b, h, S, d, requires_grad=grad)
    v = torch.randn(b, h, S, d, requires_grad=grad)
    return q, k, v


def sdpa_step(**kw):
    def step(q, k, v, *mask):
        out = F.scaled_dot_product_attention(q, k, v, *mask, **kw)
        out.backward(torch.ones_like(out))
    return step


# Forward, L = 2 query rows, S = 3 keys, D = Dv = 2, one key block (nb = 1). Per query row:
#   QKᵀ: 3 dots of 2 → 6 mul, 3 add; scale: 3 mul;
#   block max (2 compares) + running max (1) + "all −∞" guard (1) → 4 sub;
#   exp(x − max): 3 sub, 3 root; their sum: 2 add;
#   rescale e = exp(m_old − m): 1 sub, 1 root; l = l_blk + e·l_old: 1 mul, 1 add;
#   P·V: 2 outputs × (3 mul, 2 add) → 6 mul, 4 add (first block: no accumulate);
#   end: 2 guards (2 sub), 1/l (1 div), out·(1/l) (2 mul), lse = m + log l (1 add, 1 root)
#   → row [11, 10, 18, 1, 5]; 2 rows → [22, 20, 36, 2, 10].
FWD_2x3 = B(22, 20, 36, 2, 10)
# Backward, same shapes: T = 2·3 = 6 score entries in one tile (qb = 2, kb = 3):
#   per row dsum = Σ dO·O: 2 mul, 1 add → 2 rows [2, 0, 4];
#   per entry: scale·QKᵀ (2 mul + 1 alpha mul, 1 add), P = exp(s − lse) (1 sub, 1 root),
#   dP = dO·Vᵀ (2 mul, 1 add), dS = P·(dP − dsum) (1 sub, 1 mul) → [2, 2, 6, 0, 1] × 6;
#   dV += Pᵀ·dO: 3·2 outputs × (2 mul, 2 add incl. accumulate) → [12, 0, 12];
#   dQ += scale·dS·K: 2·2 outputs × (3 mul + 1 alpha mul, 3 add) → [12, 0, 16];
#   dK += scale·dSᵀ·Q: 3·2 outputs × (2 mul + 1 alpha mul, 2 add) → [12, 0, 18]
#   → [50, 12, 86, 0, 6].
BWD_2x3 = B(50, 12, 86, 0, 6)


def test_flash_cpu_forward_and_backward_golden():
    counted = op_bos(sdpa_step(), *qkv())
    assert counted["_scaled_dot_product_flash_attention_for_cpu"] == FWD_2x3
    assert counted["_scaled_dot_product_flash_attention_for_cpu_backward"] == BWD_2x3
    # the closed forms in the module docstring give the same numbers
    assert flash_cpu_forward(1, 1, 2, 3, 2, 2) == FWD_2x3
    assert flash_cpu_backward(1, 1, 2, 3, 2, 2) == BWD_2x3


def test_flash_cpu_batch_heads_scale_linearly():
    counted = op_bos(sdpa_step(), *qkv(b=2, h=3))
    assert counted["_scaled_dot_product_flash_attention_for_cpu"] == FWD_2x3 * 6
    assert counted["_scaled_dot_product_flash_attention_for_cpu_backward"] == BWD_2x3 * 6


def test_flash_cpu_with_float_and_bool_masks():
    # an attention mask adds one add per computed score (fused scale-add): +3 per row forward;
    # backward: the fused scale-add with scale 1 is 1 mul + 1 add per entry (+[6, 0, 6])
    fwd, bwd = FWD_2x3 + B(6), BWD_2x3 + B(6, 0, 6)
    counted = op_bos(sdpa_step(), *qkv(), torch.zeros(2, 3))
    assert counted["_scaled_dot_product_flash_attention_for_cpu"] == fwd
    assert counted["_scaled_dot_product_flash_attention_for_cpu_backward"] == bwd
    # a bool mask is first turned into 0/−∞ by a `where` outside the kernel (1 compare per mask
    # element: 6), then the kernel sees a float mask
    counted = op_bos(sdpa_step(), *qkv(), torch.ones(2, 3, dtype=torch.bool))
    assert counted["_scaled_dot_product_flash_attention_for_cpu"] == fwd
    assert counted["where"] == B(0, 6)


def test_causal_small_computes_the_whole_square():
    """L = S = 3 < 32: one query block whose key range (m + qb = 3) covers all keys, so the
    kernel computes the masked upper triangle too (then fills it with −∞): counted."""
    counted = op_bos(sdpa_step(is_causal=True), *qkv(L=3, S=3))
    assert counted["_scaled_dot_product_flash_attention_for_cpu"] == flash_cpu_forward(1, 1, 3, 3, 2, 2)
    assert counted["_scaled_dot_product_flash_attention_for_cpu"] == op_bos(sdpa_step(), *qkv(L=3, S=3))[
        "_scaled_dot_product_flash_attention_for_cpu"]
    # per row K = 3, nb = 1: [3·4 − 2 + 1, 2·3 + 4, 3·5 + 3, 1, 3 + 2] = [11, 10, 18, 1, 5]; 3 rows
    assert flash_cpu_forward(1, 1, 3, 3, 2, 2, causal=True) == B(33, 30, 54, 3, 15)


def test_causal_long_sequence_skips_key_blocks():
    """L = S = 1024 (q blocks of 256, key blocks of 512), D = Dv = 1, shape only (rule on meta).

    Query block m (256 rows) visits keys up to min(m + 256, 1024): m = 0 and 256 → one key block
    of 512 (K = 512, nb = 1); m = 512 and 768 → two blocks (K = 1024, nb = 2). Without causal every
    block sees K = 1024, nb = 2. Per row: add K(D+Dv) − Dv + 1, sub 2K + 2nb + 2,
    mul K(D+Dv+1) + nb(Dv+1), div 1, root K + nb + 1.
    """
    def row(K, nb):
        return B(2 * K, 2 * K + 2 * nb + 2, 3 * K + 2 * nb, 1, K + nb + 1)

    causal = (row(512, 1) * 2 + row(1024, 2) * 2) * 256
    full = row(1024, 2) * 1024
    q = meta(1, 1, 1024, 1)
    assert rule_bos(aten._scaled_dot_product_flash_attention_for_cpu, q, q, q, 0.0, True) == causal
    assert rule_bos(aten._scaled_dot_product_flash_attention_for_cpu, q, q, q, 0.0, False) == full
    # computed score entries (root = K + nb + 1 per row, so Σ K = root − Σ (nb + 1)):
    # 256·(512 + 512 + 1024 + 1024) = 786432 of the 1048576 — more than the 524800 of the exact
    # triangle: the masked part inside visited blocks is computed and counted
    assert causal.root - (512 * 2 + 512 * 3) == 786432
    # backward tiles: same key ranges; T = 256·(512·2 + 1024·2) entries
    bwd = rule_bos(aten._scaled_dot_product_flash_attention_for_cpu_backward, q, q, q, q, q,
                   meta(1, 1, 1024), 0.0, True)
    assert bwd.root == 256 * (512 * 2 + 1024 * 2)


def test_flash_cpu_several_key_blocks():
    """S = 600 > 512: two key blocks (512 + 88), L = 2 rows, D = 2: per row K = 600, nb = 2 →
    [600·4 − 2 + 1, 1200 + 4 + 2, 600·5 + 2·3, 1, 600 + 3]; the second block rescales the output
    (2 mul) and accumulates P·V (2 add) — both inside the formula."""
    row = B(2399, 1206, 3006, 1, 603)
    counted = op_bos(sdpa_step(), *qkv(L=2, S=600), meta=True)
    assert counted["_scaled_dot_product_flash_attention_for_cpu"] == row * 2


def test_gpu_sdpa_rules_are_shape_only_approximations():
    q, k, v = meta(1, 1, 2, 2), meta(1, 1, 3, 2), meta(1, 1, 3, 2)
    # one block per row: the CPU count for S ≤ 512
    assert rule_bos(aten._scaled_dot_product_flash_attention, q, k, v) == FWD_2x3
    assert rule_bos(aten._scaled_dot_product_efficient_attention, q, k, v, None, False) == FWD_2x3
    assert rule_bos(aten._scaled_dot_product_cudnn_attention, q, k, v, None, False) == FWD_2x3
    # causal L = S = 3: rows see 1, 2, 3 keys (K = 6): [6·4 − 3·1, 12 + 12, 6·5 + 3·3, 3, 6 + 6]
    q3 = meta(1, 1, 3, 2)
    assert gpu_attention(1, 1, 3, 3, 2, 2, causal=True) == B(21, 24, 39, 3, 12)
    assert rule_bos(aten._scaled_dot_product_flash_attention, q3, q3, q3, 0.0, True) == B(21, 24, 39, 3, 12)
    # backward: T = 6 entries, one tile: the CPU tile formula with qb = 2, kb = 3
    o, lse = meta(1, 1, 2, 2), meta(1, 1, 2)
    assert rule_bos(aten._scaled_dot_product_flash_attention_backward, o, q, k, v, o, lse, None, None,
                    2, 3, 0.0, False, None, None) == BWD_2x3
    # dropout adds one compare and one mul per score entry (forward and backward)
    assert rule_bos(aten._scaled_dot_product_efficient_attention, q, k, v, None, False, 0.1) == \
        FWD_2x3 + B(0, 6, 6)


# -- fused fast paths -------------------------------------------------------------------------

# native MHA, batch 1, T = 2 tokens, E = 4, H = 2 (d = 2; PyTorch takes the fast path only for an
# even head count), no mask:
#   qkv = x·Wᵀ (no bias): 2 tokens × 12 outputs × (3 add, 4 mul) → [72, 0, 96]
#   + bias on q, k, v (24 add), q·1/√d (8 mul) → [24, 0, 8]
#   QKᵀ: 2 heads × 2 × 2 scores × (1 add, 2 mul) → [8, 0, 16]
#   softmax over 2 for 4 rows: per row add 1, sub 3, div 2, root 2 → [4, 12, 0, 8, 8]
#   ·V: 8 outputs × (1 add, 2 mul) → [8, 0, 16]
#   out proj with bias: 2 tokens × 4 outputs × (4 add, 4 mul) → [32, 0, 32]
#   → [148, 12, 168, 8, 8]; need_weights: mean over 2 heads of 2×2 weights: 4 add, 4 div.
MHA_1x2x4 = B(148, 12, 168, 8, 8)


def test_native_mha_golden():
    assert native_mha_bos(1, 2, 4, 2) == MHA_1x2x4
    assert native_mha_bos(1, 2, 4, 2, need_weights=True) == MHA_1x2x4 + B(4, 0, 0, 4, 0)
    mha = nn.MultiheadAttention(4, 2, batch_first=True).eval()
    x = torch.randn(1, 2, 4)
    with torch.no_grad():
        counted = op_bos(lambda m, x: m(x, x, x, need_weights=False), mha, x, meta=False)
        assert counted == {"_native_multi_head_attention": MHA_1x2x4}
        counted = op_bos(lambda m, x: m(x, x, x), mha, x, meta=False)
        assert counted == {"_native_multi_head_attention": MHA_1x2x4 + B(4, 0, 0, 4, 0)}


def test_transformer_encoder_layer_fast_path_golden():
    """batch 1, T = 2, E = 4, H = 2, FFN 3, ReLU, post-norm, eval + no_grad on CPU:
    MHA [148, 12, 168, 8, 8]; residual adds 2 × 8 = 16 add; FFN1 addmm 6 outputs × (4 add, 4 mul)
    + ReLU 6 compares → [24, 6, 24]; FFN2 addmm 8 outputs × (3 add, 3 mul) → [24, 0, 24];
    and the two layer norms, priced by the layer-norm rule (rows of 4)."""
    layer = nn.TransformerEncoderLayer(4, 2, 3, batch_first=True).eval()
    x = torch.randn(1, 2, 4)
    with torch.no_grad():
        counted = op_bos(lambda m, x: m(x), layer, x, meta=False)
    ln = RULES[aten.native_layer_norm](None, meta(1, 2, 4), [4], meta(4), meta(4), 1e-5)
    assert counted == {"_transformer_encoder_layer_fwd":
                       MHA_1x2x4 + B(16) + B(24, 6, 24) + B(24, 0, 24) + ln * 2}


def test_masked_softmax_and_transform_bias_rescale():
    # _masked_softmax over rows of 3 (2 rows): full-row softmax: add 2, sub 5, div 3, root 3 per row
    assert rule_bos(aten._masked_softmax, meta(2, 3), meta(2, 3, dtype=torch.bool), -1) == B(4, 10, 0, 6, 6)
    # backward y·(g − Σ g·y): per row add 2, sub 3, mul 6
    assert rule_bos(aten._masked_softmax_backward, meta(2, 3), meta(2, 3), meta(2, 3, dtype=torch.bool), -1) \
        == B(4, 6, 12)
    # qkv (1, 2, 6): 12 bias adds, 4 q rescale muls
    assert rule_bos(aten._transform_bias_rescale_qkv, meta(1, 2, 6), meta(6), 1) == B(12, 0, 4)


def test_fast_path_with_padding_mask_has_no_unsupported_ops():
    layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, norm_first=True,
                                       activation="gelu").eval()
    x = torch.randn(2, 5, 8)
    mask = torch.tensor([[False] * 5, [False] * 4 + [True]])
    with torch.no_grad():
        report = torch_tos.profile(layer, (x,), mode="inference")
        report_mask = torch_tos.profile(layer, {"src": x, "src_key_padding_mask": mask}, mode="inference")
    assert not report.unsupported and not report_mask.unsupported
    assert report.bos.total > 0


# -- meta takes the CPU's kernel --------------------------------------------------------------

def test_cpu_backend_choice_mirrors_pytorch():
    q = meta(2, 2, 5, 4)
    assert cpu_sdp_backend(q, q, q) == SDP_FLASH
    assert cpu_sdp_backend(q, q, q, dropout_p=0.1) == SDP_MATH      # CPU flash has no dropout
    assert cpu_sdp_backend(q, meta(2, 2, 5, 3), meta(2, 2, 5, 3)) == SDP_MATH  # head dims differ
    strided = meta(2, 2, 4, 5).transpose(-1, -2)                       # last-dim stride 5
    assert cpu_sdp_backend(strided, q, q) == SDP_MATH


@pytest.mark.parametrize("kw,mask", [({}, None), ({"is_causal": True}, None), ({}, "bool"),
                                     ({}, "float"), ({"dropout_p": 0.3}, None), ({"scale": 0.2}, None)])
def test_sdpa_meta_equals_cpu(kw, mask):
    q, k, v = qkv(b=2, h=2, L=5, S=5, d=4)
    args = [q, k, v]
    if mask == "bool":
        args.append(torch.ones(5, 5, dtype=torch.bool).tril())
    elif mask == "float":
        args.append(torch.zeros(5, 5))
    counted = op_bos(sdpa_step(**kw), *args)  # op_bos asserts meta == CPU
    key = "_scaled_dot_product_flash_attention_for_cpu"
    assert (key in counted) == ("dropout_p" not in kw)  # dropout → the math path on both devices


def test_sdpa_three_d_and_gqa_on_meta():
    # 3-D inputs are unsqueezed to 4-D for the CPU kernel; grouped K/V heads are read per q head
    q3, k3, v3 = torch.randn(2, 3, 2, requires_grad=True), torch.randn(2, 4, 2), torch.randn(2, 4, 2)
    counted = op_bos(sdpa_step(), q3, k3, v3)          # meta == CPU whichever kernel the CPU takes
    if cpu_sdp_backend(q3, k3, v3) == SDP_FLASH:        # torch ≥ 2.14 takes flash for 3-D inputs
        assert counted["_scaled_dot_product_flash_attention_for_cpu"] == flash_cpu_forward(1, 2, 3, 4, 2, 2)
    else:                                               # torch 2.13: the math path
        assert "bmm" in counted
    q, k, v = torch.randn(1, 4, 3, 2), torch.randn(1, 2, 5, 2), torch.randn(1, 2, 5, 2)
    counted = op_bos(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True), q, k, v)
    assert counted["_scaled_dot_product_flash_attention_for_cpu"] == flash_cpu_forward(1, 4, 3, 5, 2, 2)


class Spy(TorchDispatchMode):
    """Records the aten ops that reach the dispatch mode (this thread only)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


def meta_sdpa_ops() -> list[str]:
    q = meta(1, 1, 2, 2)
    with Spy() as spy:
        F.scaled_dot_product_attention(q, q, q)
    return spy.seen


FLASH = "aten._scaled_dot_product_flash_attention_for_cpu.default"


def test_kernel_choice_survives_interleaved_contexts():
    from torch_tos.kernels import kernel_choices

    stock = meta_sdpa_ops()
    assert FLASH not in stock                          # meta alone takes the math path
    a, b = kernel_choices(), kernel_choices()
    a.__enter__()
    b.__enter__()
    a.__exit__(None, None, None)                       # the first one closes first
    assert FLASH in meta_sdpa_ops()
    b.__exit__(None, None, None)
    assert meta_sdpa_ops() == stock


def test_kernel_choice_is_scoped_to_the_engine():
    original = F.scaled_dot_product_attention
    stock = meta_sdpa_ops()
    q = meta(1, 1, 2, 2)
    with torch_tos.Engine(flops=False) as engine:
        assert F.scaled_dot_product_attention is original  # nothing of PyTorch is swapped
        F.scaled_dot_product_attention(q, q, q)
    ops = {k[3] for k in engine.counts.rows}
    assert "aten._scaled_dot_product_flash_attention_for_cpu" in ops
    # outside an engine, meta keeps PyTorch's own (math) path
    assert meta_sdpa_ops() == stock and any("bmm" in s for s in stock)


def test_other_threads_get_stock_pytorch_while_an_engine_is_open():
    import threading

    stock_meta, x = meta_sdpa_ops(), torch.randn(1, 1, 3, 2)
    stock_cpu = F.scaled_dot_product_attention(x, x, x)
    seen = {}

    def other_thread():
        seen["meta"] = meta_sdpa_ops()
        seen["cpu"] = F.scaled_dot_product_attention(x, x, x)
        xm = torch.empty(4, device="meta", requires_grad=True)    # mish backward: decomposed
        with Spy() as spy:
            F.mish(xm).sum().backward()
        seen["mish"] = spy.seen

    with torch_tos.Engine(flops=False) as engine:
        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
        xm = torch.empty(4, device="meta", requires_grad=True)
        F.mish(xm).sum().backward()
        F.scaled_dot_product_attention(*(meta(1, 1, 2, 2),) * 3)
    assert seen["meta"] == stock_meta and FLASH not in seen["meta"]
    assert torch.equal(seen["cpu"], stock_cpu)
    assert "aten.mish_backward.default" not in seen["mish"] and "aten.tanh.default" in seen["mish"]
    ops = {k[3] for k in engine.counts.rows}                  # the engine's own thread: CPU kernels
    assert {"aten.mish_backward", "aten._scaled_dot_product_flash_attention_for_cpu"} <= ops
    assert not any("bmm" in op for op in ops)            # the other thread's ops are not counted


def test_sdpa_mask_that_requires_grad_takes_the_math_path_on_meta_as_on_cpu():
    # timm beit / maxvit: a learned relative-position bias passed as attn_mask. The CPU selector
    # rejects flash for a mask that needs a gradient (flash has no mask gradient), so both devices
    # take the math path; the meta stand-ins keep requires_grad, so meta no longer picks flash and
    # crashes in backward ("not differentiable with respect to argument attn_mask").
    q, k, v = qkv(b=1, h=2, L=5, S=5, d=4)
    mask = torch.zeros(5, 5, requires_grad=True)
    assert cpu_sdp_backend(q, k, v, mask) == SDP_MATH
    assert cpu_sdp_backend(q, k, v, mask.detach()) == SDP_FLASH
    counted = op_bos(sdpa_step(), q, k, v, mask)        # op_bos asserts meta == CPU
    assert "_scaled_dot_product_flash_attention_for_cpu" not in counted
    # math path bmms per head (L = S = 5, d = 4; a dot of n: n mul, n−1 add): forward QKᵀ
    # 25 dots of 4 (100 mul, 75 add), P·V 20 dots of 5 (100, 80); backward dP = dO·Vᵀ (100, 75),
    # dV = Pᵀ·dO (100, 80), dQ = dS·K (100, 80), dK = dSᵀ·Q (100, 80) → 600 mul, 470 add; 2 heads
    assert counted["bmm"] == B(add=940, mul=1200)
