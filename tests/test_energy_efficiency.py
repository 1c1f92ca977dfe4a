"""energy.efficiency: the kernel-efficiency features (memory-bound GEMM bytes, small-kernel TOs,
large-row bytes), derived by hand on tiny models and rows, and recovered by the law's fit."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import torch_tos
from torch_tos.counts import Counts
from torch_tos.energy import EnergyModel
from torch_tos.energy.efficiency import EFFICIENCY_FEATURES, LARGE_ROW, RIDGE, SMALL_KERNEL, efficiency_names
from torch_tos.energy.evaluate import DEFAULT_FEATURES, EFFICIENCY_LAW, STEP_LAW
from torch_tos.energy.features import FEATURE_NAMES, check_features, row_features, step_features, unit

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
    total = {}
    for key, row in c.rows.items():
        for k, v in row_features(key, row).items():
            total[k] = total.get(k, 0.0) + v
    for name in EFFICIENCY_FEATURES:
        assert total.get(name, 0.0) == pytest.approx(f[name], rel=1e-12), name


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


def test_default_law_is_the_efficiency_law():
    # pinned deliberately: changing the default law must change this test
    assert DEFAULT_FEATURES == EFFICIENCY_LAW == STEP_LAW + (
        "bytes_conv_lowai", "tos_conv_small", "tos_matmul_small", "calls_norm", "bytes_matmul_lowai", "bytes_large")


def test_recovers_planted_efficiency_law_within_one_percent():
    rng = np.random.default_rng(3)
    feats = DEFAULT_FEATURES
    scale = {"tos": 1e12, "bytes": 1e8, "bytes_elementwise": 1e7, "calls_conv": 50, "calls_matmul": 50,
             "bytes_conv_lowai": 1e7, "tos_conv_small": 1e9, "tos_matmul_small": 1e9, "calls_norm": 30,
             "bytes_matmul_lowai": 1e7, "bytes_large": 1e8}
    coef = {"tos": 8e-15, "bytes": 4e-10, "bytes_elementwise": 1e-9, "calls_conv": 2e-3, "calls_matmul": 1e-4,
            "bytes_conv_lowai": 3e-9, "tos_conv_small": 3e-12, "tos_matmul_small": 6e-14, "calls_norm": 1.5e-3,
            "bytes_matmul_lowai": 2e-9, "bytes_large": 5e-9}
    rows = []
    for i in range(60):
        x = {f: rng.uniform(0.05, 1.0) * scale[f] for f in feats}
        steps = int(rng.choice([10, 40, 160]))
        e = steps * (1e-3 + sum(coef[f] * x[f] for f in feats)) + 0.05
        rows.append({"family": "abcd"[i % 4], "width": i, "steps": steps, "joules": e, **x})
    law = EnergyModel(features=feats).fit(pd.DataFrame(rows))
    np.testing.assert_allclose(law.coef_, [coef[f] for f in feats], rtol=0.01)
    assert law.e_step_ == pytest.approx(1e-3, rel=0.01) and law.e_run_ == pytest.approx(0.05, rel=0.01)
    assert "J/B · low-intensity conv bytes" in str(law) and "J/TO · small-kernel conv TOs" in str(law)
