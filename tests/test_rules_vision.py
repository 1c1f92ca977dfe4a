"""Golden tests: convolution, pooling, normalisation, resampling, scatter/index and memory rules.

Every expected count is derived by hand in the comment above it, from the decomposition in the
rule's docstring, on a tiny shape; the op really runs under the counting Engine on CPU and on meta
(the two must agree) and the per-op BOs are compared. ``B(add, sub, mul, div, root)``.
"""

from __future__ import annotations


import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_tos import BOs

B = BOs


# -- helper (also used by test_rules_vision_elementwise.py): the golden-test runner of the
# sequence-rule tests, BOs per aten op of fn(*args) on a device
from test_rules_seq_helpers import _to, run as _run  # noqa: E402,F401


def op_bos(fn, *args, meta: bool = True) -> dict[str, BOs]:
    """BOs per aten op (``"convolution"`` → BOs, zero-cost ops dropped) of ``fn(*args)``, run on
    CPU; with ``meta`` the same call on meta copies of the arguments must count the same. Tensors
    and modules among ``args`` are copied to each device; ``fn`` may call ``.backward()``."""
    torch.manual_seed(0)
    real = _run(fn, args, "cpu")
    if meta:
        torch.manual_seed(0)
        assert _run(fn, args, "meta") == real
    return real


def step(m, x, *rest):
    """Forward, then backward of a ones gradient."""
    y = m(x, *rest)
    y = y[0] if isinstance(y, tuple) else y
    y.backward(torch.ones_like(y))


def leaf(*shape):
    return torch.randn(*shape, requires_grad=True)


# -- convolution --------------------------------------------------------------------------------

def test_conv2d_bias_forward_backward():
    # Conv2d(2→3, k=3, pad=1) on 1×2×4×4: 48 outputs, K = 2·9 = 18 products each.
    # forward: mul 48·18 = 864; add 48·17 accumulations + 48 bias = 864
    # backward: grad_input mul 864; adds only for products landing inside the input (padding
    #   crops the rest): per dim the (grad_out position, tap) pairs landing on input positions
    #   0..3 are 2, 3, 3, 2 → L = 10, R = 4 receiving → N·C_in·(C_out·L² − R²) = 2·(3·100 − 16)
    #   = 568; grad_weight mul 864, add 864 − numel(w)=54 → 810; grad_bias add 48 − 3 = 45
    got = op_bos(step, nn.Conv2d(2, 3, 3, padding=1), leaf(1, 2, 4, 4))
    assert got["convolution"] == B(add=864, mul=864)
    assert got["convolution_backward"] == B(add=568 + 810 + 45, mul=2 * 864)


def test_conv2d_grouped_strided_no_bias():
    # Conv2d(4→4, k=3, stride 2, groups 2, no bias) on 2×4×5×5: out 2×4×2×2 = 32, K = 2·9 = 18
    # forward: mul 576, add 576 − 32 = 544. backward (no bias): grad_input 576 mul,
    #   576 − 200 = 376 add; grad_weight 576 mul, 576 − 72 = 504 add
    got = op_bos(step, nn.Conv2d(4, 4, 3, stride=2, groups=2, bias=False), leaf(2, 4, 5, 5))
    assert got["convolution"] == B(add=544, mul=576)
    assert got["convolution_backward"] == B(add=376 + 504, mul=1152)


def test_conv_transpose2d():
    # ConvTranspose2d(2→3, k=2, stride 2) on 1×2×3×3: products = numel(x)·(3·2·2) = 18·12 = 216;
    # 108 outputs, each gets 2 products: adds 216 − 108 + 108 (bias) = 216
    # backward: grad_input 216 mul, 216 − 18 add; grad_weight 216 mul, 216 − 24 add;
    #   grad_bias 108 − 3 add
    got = op_bos(step, nn.ConvTranspose2d(2, 3, 2, stride=2), leaf(1, 2, 3, 3))
    assert got["convolution"] == B(add=216, mul=216)
    assert got["convolution_backward"] == B(add=198 + 192 + 105, mul=432)


def test_conv1d_no_input_grad():
    # Conv1d(2→2, k=3) on 1×2×5 (input needs no grad): out 1×2×3 = 6, K = 6
    # forward: mul 36, add 30 + 6 = 36; backward: only grad_weight (36 mul, 36 − 12 add)
    #   and grad_bias (6 − 2 add)
    x = torch.randn(1, 2, 5)
    got = op_bos(step, nn.Conv1d(2, 2, 3), x)
    assert got["convolution"] == B(add=36, mul=36)
    assert got["convolution_backward"] == B(add=24 + 4, mul=36)


# -- pooling ------------------------------------------------------------------------------------

def test_max_pool():
    # MaxPool2d(2) on 1×2×4×4: 8 outputs, 4-tap windows: 3 compares each → sub 24
    # backward: each output gradient added into its arg-max: add 8
    got = op_bos(step, nn.MaxPool2d(2), leaf(1, 2, 4, 4))
    assert got["max_pool2d_with_indices"] == B(sub=24)
    assert got["max_pool2d_with_indices_backward"] == B(add=8)


def test_avg_pool():
    # AvgPool2d(2) on 1×2×4×4: 8 outputs: 3 adds + 1 div each → add 24, div 8
    # backward: 1 div per output gradient, 4 adds (one per window element) → div 8, add 32
    got = op_bos(step, nn.AvgPool2d(2), leaf(1, 2, 4, 4))
    assert got["avg_pool2d"] == B(add=24, div=8)
    assert got["avg_pool2d_backward"] == B(add=32, div=8)


def test_avg_pool3d_padding_counted_at_full_window():
    # AvgPool3d(2, padding=1) on 1×1×2×2×2: out 1×1×2×2×2 = 8, windows of 8 taps (padding
    # taps included by convention): add 8·7 = 56, div 8; backward: div 8, add 8·8 = 64
    got = op_bos(step, nn.AvgPool3d(2, padding=1), leaf(1, 1, 2, 2, 2))
    assert got["avg_pool3d"] == B(add=56, div=8)
    assert got["avg_pool3d_backward"] == B(add=64, div=8)


def test_adaptive_avg_pool_windows():
    # AdaptiveAvgPool2d((2, 3)) on 1×1×5×7. Output i along I→O covers [⌊iI/O⌋, ⌈(i+1)I/O⌉):
    # H 5→2: [0,3) [2,5) → 3+3 = 6; W 7→3: [0,3) [2,5) [4,7) → 3+3+3 = 9; window sum 6·9 = 54
    # forward: add 54 − 6 outputs = 48, div 6; backward: add 54, div 6
    got = op_bos(step, nn.AdaptiveAvgPool2d((2, 3)), leaf(1, 1, 5, 7))
    assert got["_adaptive_avg_pool2d"] == B(add=48, div=6)
    assert got["_adaptive_avg_pool2d_backward"] == B(add=54, div=6)


def test_adaptive_avg_pool_uneven_windows():
    # AdaptiveAvgPool1d(3) on 1×1×4 (runs as 2-d with H = 1): W 4→3: [0,2) [1,3) [2,4) → 6;
    # add 6 − 3 = 3, div 3
    got = op_bos(lambda x: F.adaptive_avg_pool1d(x, 3), torch.randn(1, 1, 4))
    assert got["_adaptive_avg_pool2d"] == B(add=3, div=3)


def test_adaptive_avg_pool_to_one_is_a_mean():
    # AdaptiveAvgPool2d(1) on 1×2×3×3 runs mean over the 9 pixels: add 2·8 = 16, div 2
    # backward (autograd's mean_backward): g expanded to 1×2×3×3, then ÷9: div 18
    got = op_bos(step, nn.AdaptiveAvgPool2d(1), leaf(1, 2, 3, 3))
    assert got["mean"] == B(add=16, div=2)
    assert got["div"] == B(div=18)


def test_adaptive_max_pool():
    # AdaptiveMaxPool2d((2, 3)) on 1×1×5×7: windows as above, 54 taps over 6 outputs:
    # sub 54 − 6 = 48; backward: add 6
    got = op_bos(step, nn.AdaptiveMaxPool2d((2, 3)), leaf(1, 1, 5, 7))
    assert got["adaptive_max_pool2d"] == B(sub=48)
    assert got["adaptive_max_pool2d_backward"] == B(add=6)


def test_fractional_max_pool():
    # FractionalMaxPool2d(2, output_size=2) on 1×1×5×5: 4 outputs × 3 compares = 12 sub;
    # intervals (one plane): per dim α (1 sub, 1 div) → sub 2, div 2; per output coordinate
    # (2 + 2 = 4) 1 add, 2 mul, 1 sub → add 4, mul 8, sub 4. backward: add 4
    got = op_bos(step, nn.FractionalMaxPool2d(2, output_size=2), leaf(1, 1, 5, 5))
    assert got["fractional_max_pool2d"] == B(add=4, sub=12 + 2 + 4, mul=8, div=2)
    assert got["fractional_max_pool2d_backward"] == B(add=4)


# -- normalisation ------------------------------------------------------------------------------

def test_layer_norm():
    # LayerNorm(4) on 2×4: 2 rows of n = 4. STATS(4) = [2n−1, n, n, 3, 1] = [7, 4, 4, 3, 1]
    # forward: 2·STATS = [14, 8, 8, 6, 2]; y = d·rstd: 8 mul; ·w: 8 mul; +b: 8 add
    # → [22, 8, 24, 6, 2]
    # backward: x̂ = (x−mean)·rstd: 8 sub, 8 mul; g·w: 8 mul; per row Σg, Σg·x̂: 4 mul, 6 add;
    #   rstd/n: 1 div → ×2: 8 mul, 12 add, 2 div; (n·g − Σg − x̂·Σgx̂)·rstd/n: 24 mul, 16 sub;
    #   grad_weight Σ_rows g·x̂: 8 mul, 8 − 4 add; grad_bias: 8 − 4 add
    #   → add 12 + 4 + 4 = 20, sub 8 + 16 = 24, mul 8+8+8+24+8 = 56, div 2
    got = op_bos(step, nn.LayerNorm(4), leaf(2, 4))
    assert got["native_layer_norm"] == B(22, 8, 24, 6, 2)
    assert got["native_layer_norm_backward"] == B(20, 24, 56, 2, 0)


def test_layer_norm_without_bias_or_affine():
    # LayerNorm(4, bias=False): forward [14, 8, 8, 6, 2] + 8 mul (d·rstd) + 8 mul (·w)
    # backward: no grad_bias → add 16, sub 24, mul 56, div 2
    got = op_bos(step, nn.LayerNorm(4, bias=False), leaf(2, 4))
    assert got["native_layer_norm"] == B(14, 8, 24, 6, 2)
    assert got["native_layer_norm_backward"] == B(16, 24, 56, 2, 0)
    # no affine at all: forward [14, 8, 16, 6, 2]; backward: x̂ (8 sub, 8 mul), per row
    # (8 mul, 12 add, 2 div), combine (24 mul, 16 sub) → [12, 24, 40, 2, 0]
    got = op_bos(step, nn.LayerNorm(4, elementwise_affine=False), leaf(2, 4))
    assert got["native_layer_norm"] == B(14, 8, 16, 6, 2)
    assert got["native_layer_norm_backward"] == B(12, 24, 40, 2, 0)


def test_group_norm():
    # GroupNorm(2, 4) on 2×4×3×3: N·G = 4 groups of n = 2·9 = 18; 72 elements
    # forward: 4·STATS(18) = 4·[35, 18, 18, 3, 1] = [140, 72, 72, 12, 4]; ·rstd 72 mul;
    #   affine 72 mul, 72 add → [212, 72, 216, 12, 4]
    # backward: x̂ 72 sub, 72 mul; g·w 72 mul; per group 18 mul, 34 add, 1 div → 72 mul, 136 add,
    #   4 div; combine 216 mul, 144 sub; grad_w 72 mul, 72 − 4 add; grad_b 72 − 4 add
    #   → add 136 + 68 + 68 = 272, sub 216, mul 72+72+72+216+72 = 504, div 4
    got = op_bos(step, nn.GroupNorm(2, 4), leaf(2, 4, 3, 3))
    assert got["native_group_norm"] == B(212, 72, 216, 12, 4)
    assert got["native_group_norm_backward"] == B(272, 216, 504, 4, 0)


def test_batch_norm_training():
    # BatchNorm2d(3) training on 2×3×2×2: per channel M = 8: 3·STATS(8) = 3·[15, 8, 8, 3, 1]
    #   = [45, 24, 24, 9, 3]; fold α = rstd·w, β = b − mean·α: 3·(2 mul, 1 sub);
    #   y = x·α + β: 24 mul, 24 add; running mean (2 mul, 1 add) and var (3 mul, 1 div, 1 add)
    #   per channel → add 45+24+3+3 = 75, sub 24+3 = 27, mul 24+6+24+6+9 = 69, div 9+3 = 12, root 3
    # backward: per channel Σg (7 add), Σ(x−mean)g (8 sub, 8 mul, 7 add) → add 42, sub 24, mul 24;
    #   grad_input per channel 3 mul, 2 div (9 mul, 6 div), per element 3 sub, 2 mul (72 sub,
    #   48 mul); grad_weight 1 mul per channel (3) → [42, 96, 84, 6, 0]
    got = op_bos(step, nn.BatchNorm2d(3), leaf(2, 3, 2, 2))
    assert got["native_batch_norm"] == B(75, 27, 69, 12, 3)
    assert got["native_batch_norm_backward"] == B(42, 96, 84, 6, 0)


def test_batch_norm_eval():
    # eval: rstd from the running variance: 3·(1 add, 1 div, 1 root); fold 3·(2 mul, 1 sub);
    #   y = x·α + β: 24 mul, 24 add → [27, 3, 30, 3, 3]
    # backward (grad_weight wanted, so the two sums run): add 42, sub 24, mul 24; grad_input in
    #   eval: per channel rstd (1 add, 1 div, 1 root) and w·rstd (1 mul), per element 1 mul (24);
    #   grad_weight 3 mul → [45, 24, 54, 3, 3]
    got = op_bos(step, nn.BatchNorm2d(3).eval(), leaf(2, 3, 2, 2))
    assert got["native_batch_norm"] == B(27, 3, 30, 3, 3)
    assert got["native_batch_norm_backward"] == B(45, 24, 54, 3, 3)


def test_instance_norm_runs_as_batch_norm():
    # InstanceNorm2d(3) on 2×3×2×2 = batch norm in training over 1×6×2×2: 6 channels of M = 4:
    #   6·STATS(4) = 6·[7, 4, 4, 3, 1] = [42, 24, 24, 18, 6]; fold 6·(2 mul, 1 sub);
    #   apply 24 mul, 24 add; no running stats → [66, 30, 60, 18, 6]
    # backward: sums per channel 6·(6 add, 4 sub, 4 mul) = [36, 24, 24]; grad_input 6·(3 mul, 2 div)
    #   + 24·(3 sub, 2 mul) → add 36, sub 24 + 72 = 96, mul 24 + 18 + 48 = 90, div 12
    #   (the rule prices grad_weight's 1 mul per channel only when the mask asks: here it does not)
    got = op_bos(step, nn.InstanceNorm2d(3), leaf(2, 3, 2, 2))
    assert got["native_batch_norm"] == B(66, 30, 60, 18, 6)
    assert got["native_batch_norm_backward"] == B(36, 96, 90, 12, 0)


# -- resampling ---------------------------------------------------------------------------------

def test_upsample_nearest():
    # nearest ×2 on 1×2×2×3 → 1×2×4×6: a gather, 0 BOs; backward: each of the 48 output
    # gradients added into its source: add 48
    got = op_bos(step, lambda x: F.interpolate(x, scale_factor=2, mode="nearest"), leaf(1, 2, 2, 3))
    assert "upsample_nearest2d" not in got
    assert got["upsample_nearest2d_backward"] == B(add=48)
    got = op_bos(step, lambda x: F.interpolate(x, size=(3, 4), mode="nearest-exact"), leaf(1, 1, 2, 3))
    assert got["_upsample_nearest_exact2d_backward"] == B(add=12)
    got = op_bos(step, lambda x: F.interpolate(x, scale_factor=2, mode="nearest"), leaf(1, 1, 3))
    assert got["upsample_nearest1d_backward"] == B(add=6)


def test_upsample_bilinear():
    # bilinear ×2 on 1×1×2×3 → 1×1×4×6, E = 24: per output 6 mul, 3 add → 144 mul, 72 add;
    # weights for the 4 + 6 output coordinates of the two resized dims, W_lin = [1, 6, 1, 0, 0]
    #   (s·(i+½) − ½, clamp at 0, λ₁ = src − ⌊src⌋ clamped to [0, 1], λ₀ = 1 − λ₁)
    #   → [10, 60, 10, 0, 0]; total [82, 60, 154, 0, 0]
    # backward: per output gradient 4 taps of λh·λw·g: 8 mul, 4 add → 192 mul, 96 add; + weights
    #   → [106, 60, 202, 0, 0]
    got = op_bos(step, lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"), leaf(1, 1, 2, 3))
    assert got["upsample_bilinear2d"] == B(82, 60, 154, 0, 0)
    assert got["upsample_bilinear2d_backward"] == B(106, 60, 202, 0, 0)


def test_upsample_bilinear_align_corners_one_dim_kept():
    # bilinear align_corners, 1×2×2×3 → 1×2×2×5 (height kept): E = 20: 120 mul, 60 add;
    # weights only for the 5 width coordinates, W = [0, 4, 1, 0, 0] → [0, 20, 5]
    got = op_bos(step, lambda x: F.interpolate(x, size=(2, 5), mode="bilinear", align_corners=True),
                 leaf(1, 2, 2, 3))
    assert got["upsample_bilinear2d"] == B(60, 20, 125, 0, 0)
    # backward: 20 gradients × (8 mul, 4 add) + the same weights
    assert got["upsample_bilinear2d_backward"] == B(80, 20, 165, 0, 0)


def test_upsample_linear_and_trilinear():
    # linear ×2, 1×2×3 → 1×2×6, E = 12: 2 mul, 1 add each → [12, 0, 24]; weights 6·[1, 6, 1]
    # backward: 12·(2 mul, 2 add) + weights
    got = op_bos(step, lambda x: F.interpolate(x, scale_factor=2, mode="linear"), leaf(1, 2, 3))
    assert got["upsample_linear1d"] == B(12 + 6, 36, 24 + 6, 0, 0)
    assert got["upsample_linear1d_backward"] == B(24 + 6, 36, 24 + 6, 0, 0)
    # trilinear ×2, 1×1×2×2×2 → 4×4×4, E = 64: 14 mul, 7 add each → 896 mul, 448 add;
    # weights 12 coordinates · [1, 6, 1]; backward: 64·(24 mul, 8 add) + weights
    got = op_bos(step, lambda x: F.interpolate(x, scale_factor=2, mode="trilinear"), leaf(1, 1, 2, 2, 2))
    assert got["upsample_trilinear3d"] == B(448 + 12, 72, 896 + 12, 0, 0)
    assert got["upsample_trilinear3d_backward"] == B(512 + 12, 72, 1536 + 12, 0, 0)


def test_upsample_bicubic():
    # bicubic ×2, 1×1×2×3 → 1×1×4×6, E = 24: 20 mul, 15 add each → 480 mul, 360 add;
    # Keys weights for all 4 + 6 coordinates, W_cub = [7, 11, 13, 0, 0] → [70, 110, 130]
    # backward: 16 taps of g·wy·wx per output gradient: 32 mul, 16 add → 768 mul, 384 add
    got = op_bos(step, lambda x: F.interpolate(x, scale_factor=2, mode="bicubic"), leaf(1, 1, 2, 3))
    assert got["upsample_bicubic2d"] == B(430, 110, 610, 0, 0)
    assert got["upsample_bicubic2d_backward"] == B(454, 110, 898, 0, 0)


def test_upsample_bilinear_antialias():
    # antialiased bilinear 1×1×4×6 → 1×1×2×3. Width pass 6→3: scale 2, support 2, centres 1, 3, 5:
    #   xmin/xsize (0, 3), (1, 4), (3, 3) → 10 taps; output 1×1×4×3: mul 4·10 = 40,
    #   add 4·(10 − 3) = 28; weights 3 coordinates·[3, 1, 1] + 10 taps·[2, 4, 1, 1, 0]
    # Height pass 4→2: centres 1, 3: (0, 3), (1, 3) → 6 taps; output 1×1×2×3: mul 3·6 = 18,
    #   add 3·(6 − 2) = 12; weights 2·[3, 1, 1] + 6·[2, 4, 1, 1, 0]
    # → add 28+9+20 + 12+6+12 = 87, sub 3+40 + 2+24 = 69, mul 40+3+10 + 18+2+6 = 79, div 16
    got = op_bos(lambda x: F.interpolate(x, size=(2, 3), mode="bilinear", antialias=True),
                 torch.randn(1, 1, 4, 6))
    assert got["_upsample_bilinear2d_aa"] == B(87, 69, 79, 16, 0)


def test_affine_grid():
    # affine_grid θ 1×2×3 for a 1×1×2×2 output: 4 locations × 2 coordinates, each a dot of
    # length 3 with θ: 3 mul, 2 add → 8·[2, 0, 3] = [16, 0, 24]
    got = op_bos(lambda t: F.affine_grid(t, [1, 1, 2, 2], align_corners=False),
                 torch.eye(2, 3).unsqueeze(0))
    assert got["affine_grid_generator"] == B(add=16, mul=24)


def test_grid_sample_bilinear():
    # grid_sample bilinear, zeros padding, align_corners=False: input 1×2×3×3, grid 1×2×2×2
    # (4 locations): unnormalise each of 2 coordinates (1 add, 1 mul, 1 div, 1 sub) → 8·[1, 1, 1, 1];
    # 4 corner weights of 2 distances (2 sub, 1 mul) per location → [0, 32, 16]; per channel
    # 4 mul, 3 add → 8 channel-locations·[3, 0, 4]  (approximate rule: this checks its formula)
    got = op_bos(lambda x, g: F.grid_sample(x, g, align_corners=False),
                 torch.randn(1, 2, 3, 3), torch.rand(1, 2, 2, 2) * 2 - 1)
    assert got["grid_sampler_2d"] == B(8 + 24, 8 + 32, 8 + 16 + 32, 8, 0)


# -- scatter / index / memory -------------------------------------------------------------------

def test_index_backward_accumulates():
    # x[:, idx] with idx = [0, 1, 1] on 2×4: backward index_put(accumulate) of the 2×3 gradient
    # into zeros: 6 adds (index 1 receives two)
    idx = torch.tensor([0, 1, 1])
    got = op_bos(step, lambda x, i: x[:, i], leaf(2, 4), idx)
    assert got["index_put"] == B(add=6)


def test_index_select_gather_backward():
    # index_select(1, [0, 2]) on 2×4: backward index_add of the 2×2 gradient: add 4
    got = op_bos(step, lambda x, i: x.index_select(1, i), leaf(2, 4), torch.tensor([0, 2]))
    assert got["index_add"] == B(add=4)
    # gather(1, idx 2×3) on 2×4: backward scatter_add of 6 gradients: add 6
    got = op_bos(step, lambda x, i: x.gather(1, i), leaf(2, 4), torch.zeros(2, 3, dtype=torch.long))
    assert got["scatter_add"] == B(add=6)


@pytest.mark.filterwarnings("ignore:The reduce argument of torch.scatter")
def test_scatter_reductions():
    idx = torch.tensor([[0, 1, 0]])
    src = torch.ones(1, 3)
    # scatter without reduce is a write; reduce='add' 3 adds, 'multiply' 3 muls
    got = op_bos(lambda s, i: (torch.zeros(1, 2).scatter(1, i, s),
                               torch.zeros(1, 2).scatter(1, i, s, reduce="add"),
                               torch.ones(1, 2).scatter(1, i, s, reduce="multiply")), src, idx)
    assert got["scatter"] == B(add=3, mul=3)
    # scatter_reduce: sum 3 add; amax 3 compares; mean 3 add + 1 div per output (2)
    got = op_bos(lambda s, i: (torch.zeros(1, 2).scatter_reduce(1, i, s, "sum"),
                               torch.zeros(1, 2).scatter_reduce(1, i, s, "amax"),
                               torch.zeros(1, 2).scatter_reduce(1, i, s, "mean")), src, idx)
    assert got["scatter_reduce"] == B(add=6, sub=3, div=2)


def test_fold_unfold():
    # F.fold of 1×4×4 columns (C = 1, k = 2, L = 2×2 blocks) into 3×3: all 16 column entries land
    # inside the image: add 16. F.unfold (im2col) is a copy; its backward is col2im: add 16.
    got = op_bos(lambda c: F.fold(c, (3, 3), 2), torch.randn(1, 4, 4))
    assert got == {"col2im": B(add=16)}
    got = op_bos(step, lambda x: F.unfold(x, 2), leaf(1, 1, 3, 3))
    assert got == {"col2im": B(add=16)}
    # padding 1: blocks per dim (3 + 2 − 1 − 1) + 1 = 4; pairs (block b, tap k) with 0 ≤ b − 1 + k < 3:
    # b=0: k=1; b=1: both; b=2: both; b=3: k=0 → 6 per dim → 36 adds per plane
    got = op_bos(lambda c: F.fold(c, (3, 3), 2, padding=1), torch.randn(1, 4, 16))
    assert got == {"col2im": B(add=36)}


def test_tensor_unfold_backward_and_pad_backward():
    # x.unfold(1, 2, 1) on 2×4 → 2×3×2: backward adds the 12 window gradients back: add 12
    got = op_bos(step, lambda x: x.unfold(1, 2, 1), leaf(2, 4))
    assert got["unfold_backward"] == B(add=12)
    # reflect / replicate padding (1, 1) of 1×1×4 → 1×1×6: backward adds the 6 gradients
    got = op_bos(step, lambda x: F.pad(x, (1, 1), mode="reflect"), leaf(1, 1, 4))
    assert got["reflection_pad1d_backward"] == B(add=6)
    got = op_bos(step, lambda x: F.pad(x, (1, 1, 1, 1), mode="replicate"), leaf(1, 1, 2, 2))
    assert got["replication_pad2d_backward"] == B(add=16)


def test_views_selects_and_masks_count_zero():
    # select / slice / diagonal / tril / cat / permute / roll / channel_shuffle / pixel_shuffle and
    # their backwards move data only. The only arithmetic is autograd summing the 7 gradients
    # that reach x: 6 adds of 16 elements = 96
    def fn(x):
        y = torch.cat([x[:, 0].flatten(1), x[:, 1:3].flatten(1), x.diagonal(0, 2, 3).flatten(1),
                       x.tril().flatten(1), x.roll(1, 2).permute(0, 2, 3, 1).flatten(1),
                       F.channel_shuffle(x, 2).flatten(1), F.pixel_shuffle(x, 2).flatten(1)], 1)
        y.backward(torch.ones_like(y))
    got = op_bos(fn, leaf(1, 4, 2, 2))
    assert got == {"add": B(add=96)}


# -- every rule of these families accepts its ops' schemas -------------------------------------

VISION_FAMILIES = {"conv", "pooling", "norms", "activations", "elementwise", "reductions", "memory",
                   "indexing", "interpolate"}


def test_rule_signatures_bind_every_overload_schema():
    """Each rule can be called with every overload's arguments as the dispatcher passes them
    (positional, keyword-only as keywords), with all of them and with the required ones only."""
    import inspect

    from torch_tos.rules import RULES

    bad, checked = [], 0
    for op, rule in RULES.items():
        if getattr(rule, "__module__", "").rsplit(".", 1)[-1] not in VISION_FAMILIES:
            continue
        overloads = [op] if isinstance(op, torch._ops.OpOverload) else \
            [getattr(op, name) for name in op.overloads()]
        sig = inspect.signature(rule)
        for ov in overloads:
            args = ov._schema.arguments
            if any(a.is_out for a in args):
                continue
            pos = [a.name for a in args if not a.kwarg_only]
            kw = [a.name for a in args if a.kwarg_only]
            pos_req = [a.name for a in args if not a.kwarg_only and not a.has_default_value()]
            kw_req = [a.name for a in args if a.kwarg_only and not a.has_default_value()]
            for p, k in ((pos, kw), (pos_req, kw_req)):
                checked += 1
                try:
                    sig.bind(None, *p, **{name: name for name in k})
                except TypeError as exc:
                    bad.append(f"{ov}: {exc}")
    assert checked > 400 and not bad, bad
