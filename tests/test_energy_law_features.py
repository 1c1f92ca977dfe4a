"""energy.features: the counted features of one step (names = runs-CSV columns), op classes."""

import pytest
import torch
from torch import nn

import torch_tos
from torch_tos.counts import Counts
from torch_tos.energy.features import (CLASSES, FEATURE_NAMES, as_counts, check_features, conv_groups,
                                       is_counted_feature, op_class, row_features, step_features)

F32 = torch.float32


def hand_counts() -> Counts:
    c = Counts()
    # one matmul: 6 adds, 8 muls, 16 FLOPs, 100 bytes
    c.add(("fc", "forward", F32, "aten.mm"), (6, 0, 8, 0, 0), flops=16, bytes=100)
    # a view: not a kernel, moves nothing
    c.add(("fc", "forward", F32, "aten.t"), calls=3)
    # dropout's RNG: zero BOs but a kernel (rng), 40 bytes
    c.add(("drop", "forward", F32, "aten.bernoulli_"), bytes=40)
    # an SGD update in bfloat16: 2 muls + 2 adds (class optimizer), 32 bytes
    c.add(("(optimizer)", "optimizer", torch.bfloat16, "aten.add_"), (2, 0, 2, 0, 0), bytes=32)
    # gradient accumulation in backward: 4 adds, 48 bytes
    c.add(("fc", "backward", F32, "aten.add_"), (4, 0, 0, 0, 0), bytes=48)
    return c


def test_step_features_by_hand():
    f = step_features(hand_counts())
    assert list(f) == list(FEATURE_NAMES)
    # float32 costs: add 236, mul 12736.25; bfloat16: add 8-bit adder, mul 8x8 array (priced by table)
    add32, mul32 = 236.0, 12736.25
    bf = torch_tos.tables.DEFAULT_TABLE.costs(torch.bfloat16)
    tos_mm = 6 * add32 + 8 * mul32
    tos_opt = 2 * float(bf[0]) + 2 * float(bf[2]) + 4 * add32
    assert f["tos_matmul"] == tos_mm
    assert f["tos_optimizer"] == pytest.approx(tos_opt, rel=1e-15)
    assert f["tos"] == pytest.approx(tos_mm + tos_opt, rel=1e-15)
    assert f["tos_bfloat16"] == pytest.approx(2 * float(bf[0]) + 2 * float(bf[2]))
    assert f["tos_float32"] == pytest.approx(tos_mm + 4 * add32)
    assert f["flops"] == 16 and f["bos_add"] == 12 and f["bos_mul"] == 10 and f["bos_div"] == 0
    # kernels: mm 1 + bernoulli_ 1 + optimizer add_ 1 + grad add_ 1 = 4 (the 3 views are not kernels)
    assert f["calls"] == 4 and f["calls_matmul"] == 1 and f["calls_rng"] == 1 and f["calls_optimizer"] == 2
    assert f["bytes"] == 100 + 40 + 32 + 48 and f["bytes_rng"] == 40 and f["bytes_optimizer"] == 80
    assert f["tos_rng"] == 0 and f["calls_other"] == 0


def test_row_features_sum_to_step_features():
    c = hand_counts()
    total = {}
    for key, row in c.rows.items():
        for k, v in row_features(key, row).items():
            total[k] = total.get(k, 0.0) + v
    f = step_features(c)
    for k, v in total.items():
        assert f[k] == pytest.approx(v, rel=1e-12), k


def test_op_classes():
    assert op_class("aten.addmm") == "matmul"
    assert op_class("aten.convolution") == "conv"
    assert op_class("aten.convolution_backward", "backward", layer_groups=8) == "dwconv"
    assert op_class("aten.gelu") == "elementwise"
    assert op_class("aten.native_layer_norm") == "norm"
    assert op_class("aten.mul_", "optimizer") == "optimizer"
    assert op_class("aten.add", "backward") == "optimizer"
    assert op_class("aten.add", "forward") == "elementwise"
    assert op_class("aten.bernoulli_") == "rng"
    assert op_class("aten.embedding") == "memory"
    assert op_class("aten.max_pool2d_with_indices") == "other"
    assert set(CLASSES) >= {"matmul", "conv", "dwconv", "elementwise", "norm", "optimizer", "rng", "other"}


def test_depthwise_conv_split_from_model():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4), nn.Conv2d(4, 8, 1))
    assert conv_groups(model) == {"0": 4}
    r = torch_tos.profile(model, torch.randn(2, 4, 6, 6), mode="training",
                          optimizer=torch.optim.SGD(model.parameters(), lr=0.1), device="meta")
    plain, split = step_features(r), step_features(r, model=model)
    assert plain["calls_dwconv"] == 0 and plain["calls_conv"] == 4  # 2 forward + 2 backward
    assert split["calls_dwconv"] == 2 and split["calls_conv"] == 2
    assert split["tos_dwconv"] + split["tos_conv"] == pytest.approx(plain["tos_conv"])
    assert split["tos"] == plain["tos"] == pytest.approx(r.tos)
    assert split["flops"] == r.flops and split["tos_optimizer"] > 0
    with pytest.raises(ValueError, match="not both"):
        step_features(r, model=model, groups={})


def test_as_counts_and_whitelist():
    c = hand_counts()
    assert as_counts(c) is c and as_counts(c.rows) == c
    with pytest.raises(TypeError, match="Counts table or a Report"):
        as_counts(3)
    for name in ("tos", "calls", "bytes", "tos_matmul", "bytes_dwconv", "calls_rng", "tos_float16",
                 "bos_root"):
        assert is_counted_feature(name)
    for name in ("joules", "seconds", "steps", "tos_banana", "width", 3):
        assert not is_counted_feature(name)
    assert check_features("tos") == ("tos",)
    with pytest.raises(ValueError, match="'seconds' is a measured column"):
        check_features(("tos", "seconds"))
    with pytest.raises(ValueError, match="'width' is not a counted feature"):
        check_features(["width"])
    with pytest.raises(ValueError, match="empty"):
        check_features(())


def test_fused_recurrent_layers_are_matmul():
    for op in ("aten.mkldnn_rnn_layer", "aten.mkldnn_rnn_layer_backward", "aten._cudnn_rnn",
               "aten._thnn_fused_lstm_cell"):
        assert op_class(op) == "matmul", op
    # counted on the CPU, nn.LSTM runs the fused oneDNN layer: its TOs are matmul TOs, not "other"
    model = nn.LSTM(8, 16, batch_first=True)
    r = torch_tos.profile(model, torch.randn(2, 5, 8), mode="training", loss_fn=lambda out, _t: out[0].sum(),
                          target=torch.zeros(1), optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                          device="cpu")
    f = step_features(r)
    assert any(k[3] == "aten.mkldnn_rnn_layer" for k in r.counts.rows)  # the CPU's fused kernel
    # the fused layers carry the GEMMs; the rest (loss sum, SGD add_) is a tiny share
    assert f["tos_matmul"] > 0.9 * f["tos"] and f["tos_other"] < 0.1 * f["tos"]
