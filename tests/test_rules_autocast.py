"""Meta under torch.autocast("cpu", dtype=bfloat16) prices every op in the dtype the CPU runs it
in (torch_tos/kernels.py applies the CPU autocast cast policy to meta tensors)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import torch_tos
from torch_tos import kernels


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 6)
        self.w = nn.Parameter(torch.randn(6, 6))

    def forward(self, x):
        h = F.adaptive_avg_pool2d(torch.relu(self.bn(self.conv(x))), 1).flatten(1)
        h = self.fc(h)
        return torch.softmax(h @ self.w, -1) + torch.bmm(h[None], self.w[None])[0]


def per_op_dtype(report) -> dict:
    rows = {}
    for (_layer, phase, dtype, op), row in report.counts.rows.items():
        if op in ("aten._to_copy",):      # the meta run moves the targets to meta itself
            continue
        key = (phase, str(dtype), op)
        rows[key] = [a + b for a, b in zip(rows.get(key, [0] * 5), row[:5])]
    return {k: v for k, v in rows.items() if any(v)}


@pytest.mark.parametrize("mode", ["inference", "training"])
def test_meta_equals_cpu_under_autocast(mode):
    torch.manual_seed(0)
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([1, 4])
    reports = {}
    for device in ("cpu", "meta"):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            reports[device] = torch_tos.profile(
                Net(), (x,), mode=mode, device=device,
                loss_fn=lambda out: F.cross_entropy(out, y.to(out.device)))
    cpu, meta = reports["cpu"], reports["meta"]
    assert per_op_dtype(meta) == per_op_dtype(cpu)
    assert meta.tos == cpu.tos
    # the lower-precision ops run in bfloat16, the loss in float32 (CPU autocast's lists)
    dtypes = {(op, d) for _p, d, op in per_op_dtype(cpu)}
    assert ("aten.convolution", "torch.bfloat16") in dtypes and ("aten.addmm", "torch.bfloat16") in dtypes
    assert ("aten.bmm", "torch.bfloat16") in dtypes and ("aten.mm", "torch.bfloat16") in dtypes
    if mode == "training":
        assert ("aten.nll_loss_forward", "torch.float32") in dtypes


def test_without_autocast_meta_stays_float32():
    with torch_tos.Engine(flops=False) as engine:
        torch.mm(torch.empty(2, 3, device="meta"), torch.empty(3, 4, device="meta"))
    assert {str(k[2]) for k in engine.counts.rows} == {"torch.float32"}


def _probe_args(func):
    """Tiny CPU float32 arguments for each policy function (one of each kind)."""
    F_, T = torch.nn.functional, torch.Tensor
    x2, x3, x4 = torch.randn(2, 3), torch.randn(1, 2, 3), torch.randn(1, 2, 4, 4)
    table = {
        F_.linear: (x2, torch.randn(4, 3)), F_.conv1d: (x3, torch.randn(2, 2, 1)),
        F_.conv2d: (x4, torch.randn(2, 2, 1, 1)), torch.matmul: (x2, x2.t()), T.__matmul__: (x2, x2.t()),
        torch.mm: (x2, x2.t()), torch.bmm: (x3, x3.transpose(1, 2)),
        torch.addmm: (torch.randn(2, 2), x2, x2.t()), F_.prelu: (x2, torch.randn(1)),
        F_.mse_loss: (x2, x2), F_.cross_entropy: (x2, torch.tensor([0, 1])), torch.prod: (x2,),
        F_.l1_loss: (x2, x2), F_.binary_cross_entropy_with_logits: (x2, x2.sigmoid()),
        torch.cdist: (x2, x2),
    }
    return table.get(func)


def test_the_policy_table_matches_the_cpu():
    # each listed function on CPU under autocast: "lower" ones return bfloat16 from float32 inputs,
    # "fp32" ones return float32 from bfloat16 inputs — the table must say what the CPU does
    policy = kernels._policy()
    checked = 0
    for func, kind in policy.items():
        args = _probe_args(func)
        if args is None:
            continue
        if kind == "fp32":
            args = tuple(a.to(torch.bfloat16) if a.is_floating_point() else a for a in args)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = func(*args)
        assert out.dtype == (torch.bfloat16 if kind == "lower" else torch.float32), func
        checked += 1
    assert checked == 15
