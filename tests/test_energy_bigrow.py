"""energy.efficiency: the big-row features (``bytes_<c>_big``: GEMM-like rows moving ≥ 8 MiB per
call; ``tos_<c>_lowai_big``: those also below 32 FLOP/B), derived by hand on meta-device layers, and
the law that uses them ("+kernel efficiency, big rows", the previous default; the current one:
test_energy_rnn.py), recovered when planted."""

import torch
from torch import nn

import torch_tos
from energy_checks import assert_rows_add_up
from torch_tos.counts import Counts
from torch_tos.energy.efficiency import BIG_ROW, EFFICIENCY_FEATURES, RIDGE, big_names
from torch_tos.energy.evaluate import (BIGROW_LAW, CANDIDATES, DEFAULT_FEATURES, DEFAULT_LAW, DEPTHWISE_LAW,
                                       STEP_LAW, default_laws)
from torch_tos.energy.features import FEATURE_NAMES, check_features, step_features, unit

F32 = torch.float32


def test_big_names_at_their_edges():
    assert BIG_ROW == 8 * 2**20 == 8_388_608
    # exactly 8 MiB in one call is big; one byte less is not; 2 calls moving 8 MiB in all are not
    assert big_names("conv", 10, BIG_ROW, 1) == ("bytes_conv_big", "tos_conv_lowai_big")
    assert big_names("conv", 10, BIG_ROW - 1, 1) == (None, None)
    assert big_names("conv", 10, BIG_ROW, 2) == (None, None)
    # at the ridge (32 FLOP/B) it is big but not weight-streaming; one FLOP less it is
    assert big_names("matmul", RIDGE * BIG_ROW, BIG_ROW, 1) == ("bytes_matmul_big", None)
    assert big_names("matmul", RIDGE * BIG_ROW - 1, BIG_ROW, 1) == ("bytes_matmul_big", "tos_matmul_lowai_big")
    # non-GEMM classes and zero-FLOP rows never count, however big
    assert big_names("elementwise", 10, 2**30, 1) == (None, None)
    assert big_names("dwconv", 0, 2**30, 1) == (None, None)


def test_rows_by_hand():
    c = Counts()
    # matmul row: 7 adds + 7 muls, 10⁸ FLOPs, 2²⁴ = 16,777,216 bytes in one call → 5.96 FLOP/B:
    # big (≥ 8 MiB) and below the ridge
    c.add(("fc", "forward", F32, "aten.mm"), (7, 0, 7, 0, 0), flops=10**8, bytes=2**24)
    # conv row: 3 adds, 10¹⁰ FLOPs, 2²⁴ bytes → 596 FLOP/B: big, not below the ridge
    c.add(("c", "forward", F32, "aten.convolution"), (3, 0, 0, 0, 0), flops=10**10, bytes=2**24)
    # conv row of 2 calls moving 2²⁴ bytes in all: 8 MiB per call, big
    c.add(("d", "backward", F32, "aten.convolution_backward"), (1, 0, 0, 0, 0), calls=2, flops=10**10,
          bytes=2**24)
    f = step_features(c)
    assert f["bytes_matmul_big"] == 2**24 and f["tos_matmul_lowai_big"] == 7 * 236 + 7 * 12736.25 == 90_805.75
    assert f["bytes_conv_big"] == 2 * 2**24 and f["tos_conv_lowai_big"] == 0
    assert f["bytes_dwconv_big"] == f["tos_dwconv_lowai_big"] == 0
    assert_rows_add_up(c, f)


def test_layers_by_hand_on_meta():
    # Linear(2048, 2048, no bias) at batch 32: mm FLOPs = 2·32·2048·2048 = 268,435,456; bytes =
    # input 32·2048·4 = 262,144 + weight 2048·2048·4 = 16,777,216 + output 262,144 = 17,301,504
    # (≥ 8,388,608: big) → 15.5 FLOP/B (< 32): weight-streaming
    fc = nn.Linear(2048, 2048, bias=False)
    r = torch_tos.profile(fc, torch.randn(32, 2048, device="meta"), device="meta")
    mm = [row for key, row in r.counts.rows.items() if row[6] > 0]
    assert len(mm) == 1 and mm[0][6] == 268_435_456 and mm[0][7] == 17_301_504
    f = step_features(r, model=fc)
    assert f["bytes_matmul_big"] == 17_301_504 and f["tos_matmul_lowai_big"] == f["tos_matmul"] > 0
    # at batch 512: FLOPs 2·512·2048² = 4,294,967,296; bytes 4,194,304 + 16,777,216 + 4,194,304 =
    # 25,165,824 → 170.7 FLOP/B: big, compute-bound (not weight-streaming)
    f = step_features(torch_tos.profile(fc, torch.randn(512, 2048, device="meta"), device="meta"), model=fc)
    assert f["bytes_matmul_big"] == 25_165_824 and f["tos_matmul_lowai_big"] == 0
    # Conv2d(512, 512, 3×3, no bias) on 8×512×2×2: FLOPs 2·8·(2·2)·512·512·9 = 150,994,944; bytes =
    # input 8·512·4·4 = 65,536 + weight 512·512·9·4 = 9,437,184 + output 65,536 = 9,568,256 (big)
    conv = nn.Conv2d(512, 512, 3, padding=1, bias=False)
    f = step_features(torch_tos.profile(conv, torch.randn(8, 512, 2, 2, device="meta"), device="meta"),
                      model=conv)
    assert f["bytes_conv_big"] == 9_568_256 == f["bytes_conv_lowai"] and f["tos_conv_lowai_big"] == f["tos_conv"]
    # 256 channels: weight 2,359,296 + 32,768 + 32,768 = 2,424,832 bytes < 8 MiB: not big
    conv = nn.Conv2d(256, 256, 3, padding=1, bias=False)
    f = step_features(torch_tos.profile(conv, torch.randn(8, 256, 2, 2, device="meta"), device="meta"),
                      model=conv)
    assert f["bytes_conv_big"] == 0 and f["tos_conv_lowai_big"] == 0 and f["bytes_conv"] == 2_424_832


def test_whitelist_units_and_csv_columns():
    names = ("bytes_matmul_big", "bytes_conv_big", "bytes_dwconv_big", "tos_matmul_lowai_big",
             "tos_conv_lowai_big", "tos_dwconv_lowai_big")
    assert set(names) <= set(EFFICIENCY_FEATURES) <= set(FEATURE_NAMES)
    assert check_features(names) == names
    assert unit("bytes_conv_big") == ("B", "big-row conv bytes")
    assert unit("tos_matmul_lowai_big") == ("TO", "weight-streaming matmul TOs")


def test_big_row_law_is_still_a_candidate():
    assert CANDIDATES["+kernel efficiency, big rows"] == BIGROW_LAW and DEFAULT_FEATURES[:len(BIGROW_LAW)] == BIGROW_LAW
    assert BIGROW_LAW == STEP_LAW + (
        "bytes_conv_lowai", "tos_matmul_small", "calls_norm", "bytes_large", "tos_dwconv_slow", "tos_matmul",
        "bytes_conv_big", "tos_matmul_lowai_big")
    # it is still shown next to the default
    assert {"+kernel efficiency, depthwise path", "+kernel efficiency, big rows", DEFAULT_LAW} <= set(default_laws())
    assert CANDIDATES["+kernel efficiency, depthwise path"] == DEPTHWISE_LAW
