"""energy.efficiency: the kernel-efficiency features (memory-bound GEMM bytes, small-kernel TOs,
large-row bytes, slow-path depthwise backward TOs), derived by hand on tiny models and rows, and
recovered by the law's fit."""

import pytest
import torch
from torch import nn

import torch_tos
from energy_checks import assert_rows_add_up
from torch_tos.counts import Counts
from torch_tos.energy.efficiency import (EFFICIENCY_FEATURES, FAST_DW_TAPS, LARGE_ROW, RIDGE, SMALL_KERNEL,
                                         dwconv_slow, efficiency_names)
from torch_tos.energy.evaluate import DEPTHWISE_LAW, EFFICIENCY_LAW, STEP_LAW
from torch_tos.energy.features import (FEATURE_NAMES, ConvLayer, check_features, conv_groups, conv_layers,
                                       row_features, step_features, unit)

F32 = torch.float32


def test_thresholds_by_hand_at_their_edges():
    # intensity exactly at the ridge (32 FLOP/B) is not memory-bound; one FLOP less is
    assert efficiency_names("conv", 32 * 1000, 1000, 1)[0] is None
    assert efficiency_names("conv", 32 * 1000 - 1, 1000, 1)[0] == "bytes_conv_lowai"
    # 10⁶ FLOPs per call is not small; two calls of 999,999 FLOPs each are
    assert efficiency_names("matmul", 10**6, 1, 1)[1] is None
    assert efficiency_names("matmul", 2 * (10**6 - 1), 1, 2)[1] == "tos_matmul_small"
    # 32 MiB per call is large, for any class; 2 calls moving 32 MiB in all are not
    assert efficiency_names("memory", 0, 2**25, 1) == (None, None, True)
    assert efficiency_names("memory", 0, 2**25, 2) == (None, None, False)
    # non-GEMM classes and zero-FLOP rows get no intensity or size split
    assert efficiency_names("elementwise", 10, 1000, 1)[:2] == (None, None)
    assert efficiency_names("dwconv", 0, 1000, 1)[:2] == (None, None)
    assert (RIDGE, SMALL_KERNEL, LARGE_ROW) == (32, 10**6, 2**25)


def test_rows_by_hand():
    c = Counts()
    # conv row: 100 adds + 100 muls, 4,000 FLOPs over 2 calls, 1,000 bytes → 4 FLOP/B (< 32) and
    # 2,000 FLOPs per call (< 10⁶): memory-bound AND small
    c.add(("c", "forward", F32, "aten.convolution"), (100, 0, 100, 0, 0), calls=2, flops=4000, bytes=1000)
    # matmul row: 10⁸ FLOPs, 10⁶ bytes → 100 FLOP/B, one call: neither
    c.add(("fc", "forward", F32, "aten.mm"), (7, 0, 7, 0, 0), flops=10**8, bytes=10**6)
    # embedding gradient: 2**26 bytes in one call (64 MiB ≥ 32 MiB): large
    c.add(("emb", "backward", F32, "aten.embedding_dense_backward"), bytes=2**26)
    f = step_features(c)
    tos_conv = 100 * 236.0 + 100 * 12736.25  # float32 add 236 TOs, mul 12,736.25 TOs
    assert f["tos_conv"] == tos_conv
    assert f["bytes_conv_lowai"] == 1000 and f["tos_conv_small"] == tos_conv
    assert f["bytes_matmul_lowai"] == 0 and f["tos_matmul_small"] == 0
    assert f["bytes_large"] == 2**26
    assert f["bytes_dwconv_lowai"] == f["tos_dwconv_small"] == 0
    # the split is of extra terms: the totals still hold every row
    assert f["bytes"] == 1000 + 10**6 + 2**26
    # row_features gives the same values row by row
    assert_rows_add_up(c, f)


def test_tiny_model_by_hand():
    model = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(256, 256))
    x = torch.randn(256, 64, 2, 2)
    r = torch_tos.profile(model, x, device="meta")
    f = step_features(r, model=model)
    # conv: N=256, 64→64 channels, 3×3, 2×2 output: FLOPs = 2·256·4·64·64·9 = 75,497,472 (≥ 10⁶:
    # not small); bytes = input 256·64·4·4 B = 262,144 + weight 64·64·9·4 = 147,456 + output
    # 262,144 = 671,744 → 112.4 FLOP/B (≥ 32: not memory-bound)
    conv = [row for key, row in r.counts.rows.items() if key[3] == "aten.convolution"]
    assert len(conv) == 1 and conv[0][6] == 75_497_472 and conv[0][7] == 671_744
    assert f["bytes_conv_lowai"] == 0 and f["tos_conv_small"] == 0
    # linear: addmm of 256×256 inputs and a 256×256 weight: FLOPs = 2·256³ = 33,554,432; bytes =
    # bias 1,024 + input 262,144 + weight 262,144 + output 262,144 = 787,456 → 42.6 FLOP/B: neither
    mm = [row for key, row in r.counts.rows.items() if key[3] == "aten.addmm"]
    assert len(mm) == 1 and mm[0][6] == 33_554_432 and mm[0][7] == 787_456
    assert f["bytes_matmul_lowai"] == 0 and f["tos_matmul_small"] == 0
    # the same layers on a batch of 1: conv FLOPs 294,912 (< 10⁶: small), bytes 1,024 + 147,456 +
    # 1,024 = 149,504 → 1.97 FLOP/B (memory-bound); linear FLOPs 131,072 (small), bytes 1,024 +
    # 1,024 + 262,144 + 1,024 = 265,216 → 0.49 FLOP/B (memory-bound)
    r1 = torch_tos.profile(model, x[:1], device="meta")
    f1 = step_features(r1, model=model)
    assert f1["bytes_conv_lowai"] == 149_504 and f1["tos_conv_small"] == f1["tos_conv"] > 0
    assert f1["bytes_matmul_lowai"] == 265_216 and f1["tos_matmul_small"] == f1["tos_matmul"] > 0
    assert f1["bytes_large"] == 0
    # a 131,072 × 64 embedding (32 MiB of weights) read once: its row moves ≥ 32 MiB
    emb = nn.Embedding(131_072, 64)
    fe = step_features(torch_tos.profile(emb, torch.zeros(1, 4, dtype=torch.long), device="meta"))
    assert fe["bytes_large"] == fe["bytes_memory"] >= 2**25


def test_whitelist_units_and_csv_columns():
    assert set(EFFICIENCY_FEATURES) <= set(FEATURE_NAMES)
    assert check_features(EFFICIENCY_FEATURES) == EFFICIENCY_FEATURES
    assert unit("bytes_conv_lowai") == ("B", "low-intensity conv bytes")
    assert unit("tos_matmul_small") == ("TO", "small-kernel matmul TOs")
    assert unit("bytes_large") == ("B", "large-row bytes")
    with pytest.raises(ValueError, match="bytes_large"):  # the error lists what is accepted
        check_features(("bytes_huge",))


def test_dwconv_slow_at_its_edges():
    # a 3×3 (9 taps) stride-1 depthwise backward has the fast path; 5×5 or stride 2 do not
    assert FAST_DW_TAPS == 9
    assert not dwconv_slow("dwconv", "backward", 9, 1)
    assert dwconv_slow("dwconv", "backward", 10, 1) and dwconv_slow("dwconv", "backward", 25, 1)
    assert dwconv_slow("dwconv", "backward", 9, 2)
    # forward rows, dense convs and layers of unknown kernel never count
    assert not dwconv_slow("dwconv", "forward", 25, 2)
    assert not dwconv_slow("conv", "backward", 25, 2)
    assert not dwconv_slow("dwconv", "backward", None, None)


def test_dwconv_slow_tiny_model_by_hand():
    # three depthwise convs (8 channels, groups 8, no bias) on 2×8×8×8: 3×3 s1, 5×5 s1, 3×3 s2
    model = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
                          nn.Conv2d(8, 8, 5, padding=2, groups=8, bias=False),
                          nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False))
    assert conv_layers(model) == {"0": ConvLayer(8, 9, 1), "1": ConvLayer(8, 25, 1), "2": ConvLayer(8, 9, 2)}
    r = torch_tos.profile(model, torch.randn(2, 8, 8, 8), mode="training", target=torch.randn(2, 8, 4, 4),
                          loss_fn=nn.MSELoss(), device="meta")
    bwd = {k[0]: row for k, row in r.counts.rows.items() if k[3] == "aten.convolution_backward"}
    # products per pass = N·C·H_out·W_out·taps: layer 1: 2·8·8·8·25 = 25,600; layer 2: 2·8·4·4·9 =
    # 2,304; layer 0: 2·8·8·8·9 = 9,216. Backward muls: grad_input + grad_weight = 2 × products for
    # layers 1 and 2; layer 0's input needs no gradient: grad_weight only
    assert bwd["1"][2] == 51_200 and bwd["2"][2] == 4_608 and bwd["0"][2] == 9_216
    f = step_features(r, model=model)
    # slow path = the backward rows of layers 1 (5×5) and 2 (stride 2), float32: add 236 TOs, mul
    # 12,736.25 TOs; their adds are the rule's (grad_weight: products − weights; grad_input: the
    # products landing in the input)
    adds = bwd["1"][0] + bwd["2"][0]
    assert adds == 46_016
    assert f["tos_dwconv_slow"] == 236 * 46_016 + 12_736.25 * 55_808 == 721_644_416
    assert f["tos_dwconv"] > f["tos_dwconv_slow"]  # forward rows and layer 0 are dwconv, not slow
    # the same by rows; a plain groups map (no kernel, no stride) gives no slow-path TOs
    by_rows = sum(row_features(k, row, groups=conv_layers(model)).get("tos_dwconv_slow", 0.0)
                  for k, row in r.counts.rows.items())
    assert by_rows == 721_644_416
    g = step_features(r, groups=conv_groups(model))
    assert g["tos_dwconv_slow"] == 0 and g["tos_dwconv"] == f["tos_dwconv"]
    assert unit("tos_dwconv_slow") == ("TO", "slow-path depthwise backward TOs")


def test_previous_laws_are_pinned():
    # the previous defaults (the current one is pinned in test_energy_bigrow.py)
    assert EFFICIENCY_LAW == STEP_LAW + (
        "bytes_conv_lowai", "tos_conv_small", "tos_matmul_small", "calls_norm", "bytes_matmul_lowai", "bytes_large")
    assert DEPTHWISE_LAW == STEP_LAW + (
        "bytes_conv_lowai", "tos_matmul_small", "calls_norm", "bytes_matmul_lowai", "bytes_large", "tos_dwconv_slow")
