"""Work per call in the counts (Counts.work): histograms by hand, the cap, every table operation,
and the op attributes recorded at count time (torch_tos.opattrs)."""

from fractions import Fraction

import pytest
import torch
from torch import nn

import torch_tos
from torch_tos.counter import Engine
from torch_tos.counts import CALLS, FLOPS, BYTES, WORK_BINS, Counts, cap_bins

F32 = torch.float32


def _totals_match(counts: Counts) -> bool:
    for key, row in counts.rows.items():
        h = counts.work_of(key)
        if sum(h.values()) != row[CALLS] or sum(n * b[0] for b, n in h.items()) != row[FLOPS] or \
                sum(n * (b[1] + b[2]) for b, n in h.items()) != row[BYTES]:
            return False
    return True


def test_two_shapes_in_one_row_keep_their_own_work():
    a, b, c = torch.randn(2, 3), torch.randn(3, 4), torch.randn(5, 3)
    with Engine() as e:
        torch.mm(a, b)   # 2×3 @ 3×4: 2·2·3·4 = 48 FLOPs; reads (6 + 12)·4 = 72 B, writes 8·4 = 32 B
        torch.mm(a, b)
        torch.mm(c, b)   # 5×3 @ 3×4: 120 FLOPs; reads (15 + 12)·4 = 108 B, writes 20·4 = 80 B
    (key, hist), = e.counts.work.items()
    assert key == ("", "forward", F32, "aten.mm")
    assert hist == {(48, 72, 32, None): 2, (120, 108, 80, None): 1}
    row = e.counts.rows[key]
    assert row[CALLS] == 3 and row[FLOPS] == 2 * 48 + 120 and row[BYTES] == 2 * 104 + 188


def test_cap_merges_nearest_bins_and_keeps_exact_totals():
    hist = {(f, 10 * f, f, None): 1 for f in range(1, WORK_BINS + 2)}  # one bin too many
    total = sum(b[0] for b in hist)
    cap_bins(hist)
    assert len(hist) == WORK_BINS
    assert sum(hist.values()) == WORK_BINS + 1
    assert sum(n * b[0] for b, n in hist.items()) == total
    # the two nearest in log work are the two largest: 32 and 33 merged into their mean, 65/2
    assert (Fraction(65, 2), 325, Fraction(65, 2), None) in hist


def test_cap_prefers_bins_of_equal_attributes():
    hist = {(100, 100, 100, ("a",)): 1, (101, 101, 101, ("b",)): 1, (1000, 1000, 1000, ("a",)): 3}
    cap_bins(hist, cap=2)
    assert hist == {(101, 101, 101, ("b",)): 1, (775, 775, 775, ("a",)): 4}


def test_table_operations_carry_the_work():
    k1, k2 = ("a", "forward", F32, "aten.mm"), ("b", "backward", torch.float64, "aten.mm")
    c = Counts()
    c.add(k1, (1, 0, 2, 0, 0), calls=2, flops=20, bytes=12, work={(10, 4, 2, None): 2})
    c.add(k2, (1, 0, 1, 0, 0), calls=1, flops=6, bytes=3)  # no histogram: one bin, the mean, all bytes read
    assert c.work_of(k2) == {(6, 3, 0, None): 1}
    assert c.scaled(3).work[k1] == {(10, 4, 2, None): 6}
    merged = c.copy().merge(c, 2)
    assert merged.work[k1] == {(10, 4, 2, None): 6} and merged.rows[k1][CALLS] == 6
    assert c.where(phases=["forward"]).work == {k1: {(10, 4, 2, None): 2}}
    re = c.retyped(torch.float16)
    assert re.work[("a", "forward", torch.float16, "aten.mm")] == {(10, 4, 2, None): 2}
    assert c.group_work("op") == {("aten.mm",): {(10, 4, 2, None): 2, (6, 3, 0, None): 1}}
    other = c.copy()
    other.work[k1] = {(10, 5, 1, None): 2}  # same totals, other split
    assert other != c and c.copy() == c
    cp = c.copy()
    cp.add(k1, calls=1, flops=10, bytes=6, work={(10, 4, 2, None): 1})
    assert c.work[k1] == {(10, 4, 2, None): 2}  # copies do not share histograms
    assert _totals_match(c) and _totals_match(merged) and _totals_match(re)


def test_profile_rows_totals_equal_their_histograms():
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16, 4))
    r = torch_tos.profile(m, torch.randn(2, 3, 4, 4), mode="training", optimizer=torch.optim.Adam(m.parameters()),
                          device="meta")
    assert r.counts.work and _totals_match(r.counts)


def test_conv_attributes_kind_taps_stride_positions_backend():
    torch.set_num_threads(1)
    convs = nn.ModuleDict({"dense": nn.Conv2d(16, 16, 3, stride=2, padding=1),
                           "dw": nn.Conv2d(16, 16, 5, padding=2, groups=16),
                           "grouped": nn.Conv2d(16, 32, 1, groups=4)})

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = convs

        def forward(self, x):
            return self.c["dense"](x).sum() + self.c["dw"](x).sum() + self.c["grouped"](x).sum()

    for device in ("cpu", "meta"):
        r = torch_tos.profile(Net(), torch.randn(8, 16, 8, 8), mode="training", device=device)
        attrs = {k[0]: b[3] for k, h in r.counts.work.items() if k[3] == "aten.convolution" for b in h}
        backs = {k[0]: b[3] for k, h in r.counts.work.items() if k[3] == "aten.convolution_backward" for b in h}
        assert attrs["c.dense"][:3] == ("dense", 9, 2) and attrs["c.dense"][4] == 16     # 4×4 output
        assert attrs["c.dw"][:3] == ("depthwise", 25, 1) and attrs["c.dw"][4] == 64      # 8×8 output
        assert attrs["c.grouped"][:3] == ("grouped", 1, 1)
        assert backs == attrs  # the backward names the same kernel
        x, w = torch.empty(8, 16, 8, 8), torch.empty(16, 16, 3, 3)
        expected = torch._C._select_conv_backend(x, w, None, [2, 2], [1, 1], [1, 1], False, [0, 0], 1, None).name
        assert attrs["c.dense"][3] == expected


def test_batch_norm_and_recurrent_attributes():
    m = nn.Sequential(nn.Conv2d(3, 6, 1), nn.BatchNorm2d(6))
    r = torch_tos.profile(m, torch.randn(4, 3, 5, 7), mode="training", device="meta")
    by_op = {k[3]: b[3] for k, h in r.counts.work.items() for b in h}
    assert by_op["aten.native_batch_norm"] == (6, 35, True) == by_op["aten.native_batch_norm_backward"]
    r = torch_tos.profile(m.eval(), torch.randn(4, 3, 5, 7), mode="inference", device="meta")
    bn = [b[3] for k, h in r.counts.work.items() if "batch_norm" in k[3] for b in h]
    assert bn == [(6, 35, False)]
    lstm = nn.LSTM(4, 8, batch_first=True)
    for mode, train in (("training", True), ("inference", False)):
        lstm.train(train)  # the layer's own flag, not the grad mode, decides the kernel
        r = torch_tos.profile(lstm, torch.randn(2, 3, 4), mode=mode)
        attrs = [b[3] for k, h in r.counts.work.items() if k[3] == "aten.mkldnn_rnn_layer" for b in h]
        assert attrs and all(a[1] is train and a[0] > 0 for a in attrs)


def test_norm_and_foreach_attributes():
    m = nn.Sequential(nn.Linear(8, 12), nn.LayerNorm(12), nn.Unflatten(1, (3, 4)), nn.GroupNorm(3, 3))
    opt = torch.optim.SGD(m.parameters(), lr=0.1, foreach=True)
    r = torch_tos.profile(m, torch.randn(5, 8), mode="training", optimizer=opt, device="meta")
    by_op = {k[3]: b[3] for k, h in r.counts.work.items() for b in h}
    assert by_op["aten.native_layer_norm"] == (5, 12, True)     # 5 rows of 12 normalised
    assert by_op["aten.native_group_norm"] == (5 * 3, 4, True)  # batch × groups, planes of 4
    assert by_op["aten._foreach_add_"] == (6,)              # 6 parameters in one call


def test_training_counter_steps_carry_the_work():
    m = nn.Linear(4, 3)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    with torch_tos.TOsCounter(m, opt) as counter:
        for _ in range(3):
            opt.zero_grad()
            m(torch.randn(2, 4)).sum().backward()
            opt.step()
    counts = counter.report().counts
    assert counts.work and _totals_match(counts)
    mm = {b: n for k, h in counts.work.items() if k[3] == "aten.addmm" for b, n in h.items()}
    assert sum(mm.values()) == 3
