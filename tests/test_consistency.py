"""Consistency of reports: per-layer rows add up to the totals, a shared module is counted per call
and attributed once by name, meta counts equal real counts, and profiling twice is reproducible."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import torch_tos
from torch_tos import BOs


class VisionBlock(nn.Module):
    """A small CNN touching most vision rule families: conv, batch/group/layer norm, activations,
    pooling, upsampling, squeeze-excitation, channel shuffle, stochastic depth, layer scale."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Hardswish())
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.gn = nn.GroupNorm(2, 8)
        self.se = torchvision.ops.SqueezeExcitation(8, 4)
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear")
        self.drop = torchvision.ops.StochasticDepth(0.2, "row")
        self.scale = nn.Parameter(torch.full((8, 1, 1), 1e-2))
        self.inorm = nn.InstanceNorm2d(8, affine=True)
        self.act = nn.Mish()
        self.ln = nn.LayerNorm(8)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = self.stem(x)
        y = self.se(self.gn(F.silu(self.dw(x))))
        x = x + self.drop(self.scale * F.channel_shuffle(y, 2))
        x = self.up(self.pool(self.act(self.inorm(x))))
        x = F.adaptive_avg_pool2d(F.elu(x), 1).flatten(1)
        return self.head(self.ln(x))


def _train(model, x, y, device=None, optimizer="adam"):
    opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)(model.parameters(), lr=0.1)
    return torch_tos.profile(model, x, mode="training", loss_fn=nn.CrossEntropyLoss(), target=y,
                             optimizer=opt, device=device)


@pytest.fixture
def vision_case():
    torch.manual_seed(0)
    return VisionBlock(), torch.randn(2, 3, 8, 8), torch.randint(0, 5, (2,))


def _row_sum(rows, keep=lambda r: True):
    bos, tos, flops = [0] * 5, 0.0, 0
    for r in rows:
        if keep(r):
            for i, k in enumerate(("add", "sub", "mul", "div", "root")):
                bos[i] += r[k]
            tos += r["tos"]
            flops += r["flops"]
    return BOs(*bos), tos, flops


def test_rows_sum_to_totals(vision_case):
    report = _train(*vision_case)
    assert not report.unsupported
    rows = report.rows()
    bos, tos, flops = _row_sum(rows)
    assert bos == report.bos and flops == report.flops
    assert math.isclose(tos, report.tos, rel_tol=1e-12)
    for phase, total in report.by_phase().items():
        b, t, f = _row_sum(rows, lambda r, p=phase: r["phase"] == p)
        assert (b, f) == (total.bos, total.flops) and math.isclose(t, total.tos, rel_tol=1e-12)
    # the DataFrame, the per-op view and the fvcore-style module view agree too
    df = report.to_dataframe()
    assert BOs(*(int(df[k].sum()) for k in ("add", "sub", "mul", "div", "root"))) == report.bos
    ops = report.by_op()
    assert BOs(*(int(ops[k].sum()) for k in ("add", "sub", "mul", "div", "root"))) == report.bos
    assert int(ops["flops"].sum()) == report.flops
    modules = report.by_module()
    layers = sum((b for name, b in modules.items() if name.startswith("(")), BOs())
    assert modules[""] + layers == report.bos  # "" is the model, "(loss)"/"(optimizer)" beside it
    assert modules["stem"] == modules["stem.0"] + modules["stem.1"] + modules["stem.2"]


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Linear(4, 4)
        self.alias = self.block  # the same module under a second name
        self.out = nn.Linear(4, 1)

    def forward(self, x):
        return self.out(torch.relu(self.block(torch.relu(self.block(x)))))


class Once(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Linear(4, 4)

    def forward(self, x):
        return self.block(x)


def test_shared_module_counted_per_call_attributed_once():
    x = torch.randn(3, 4)
    shared = torch_tos.profile(Shared(), x, mode="training")
    once = torch_tos.profile(Once(), x, mode="training")
    layers = {r["layer"] for r in shared.rows()}
    assert "block" in layers and "alias" not in layers  # attributed once, under its first name
    fwd = lambda rep: rep.by_module(phases=("forward",))["block"]
    bwd = lambda rep: rep.by_module(phases=("backward",))["block"]
    assert fwd(shared) == fwd(once) * 2  # two calls, both counted
    # backward of the two calls also lands on "block": two weight/bias gradients + two input
    # gradients (the first call's input is the model input, which needs none)
    assert bwd(shared).mul > bwd(once).mul
    ops = shared.by_op().set_index("op")
    assert ops.loc["aten.addmm", "calls"] == 3  # block twice, out once


def test_meta_equals_real(vision_case):
    model, x, y = vision_case
    real = _train(model, x, y)
    meta = _train(model, x, y, device="meta")
    assert not real.unsupported and not meta.unsupported
    assert real.bos == meta.bos and real.flops == meta.flops and real.tos_exact == meta.tos_exact
    assert real.rows() == meta.rows()


def test_meta_equals_real_inference_and_eval():
    torch.manual_seed(0)
    model = VisionBlock().eval()
    x = torch.randn(2, 3, 8, 8)
    real = torch_tos.profile(model, x)
    meta = torch_tos.profile(model, x, device="meta")
    assert real.rows() == meta.rows() and not real.unsupported


def test_profiling_twice_is_identical(vision_case):
    model, x, y = vision_case
    first, second = _train(model, x, y), _train(model, x, y)
    assert first.to_dict() == second.to_dict()
    assert first.tos_exact == second.tos_exact and isinstance(first.tos_exact, Fraction)
    # and the model, its parameters and the input are untouched by profiling
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _train(model, x, y)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
