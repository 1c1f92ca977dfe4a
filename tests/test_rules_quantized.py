"""Quantized tensors and quantized::* kernels (torch_tos/rules/quantized.py), priced in the
integer ALU of their storage format; reports of quantized models render."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.ao.nn.quantized as nnq

import torch_tos
from test_rules_seq_helpers import B
from torch_tos.tables import DEFAULT_TABLE


class QLinear(torch.nn.Module):
    """quantize → quantized Linear(4 → 3) → dequantize."""

    def __init__(self):
        super().__init__()
        self.fc = nnq.Linear(4, 3)

    def forward(self, x):
        q = torch.quantize_per_tensor(x, 0.1, 128, torch.quint8)
        return self.fc(q).dequantize()


@pytest.fixture
def model():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # PyTorch's deprecation notice for quantized dtypes
        yield QLinear().eval()


def test_quantized_linear_by_hand(model):
    x = torch.randn(2, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch_tos.Engine(flops=False) as engine, torch.no_grad():
            model(x)
    got = {op: B(*b) for op, b in engine.bos_by_op().items()}
    # quantize 8 inputs: x·(1/s) + z, round, clamp → [1, 2, 1] each
    assert got["aten.quantize_per_tensor"] == B(add=8, sub=16, mul=8)
    # 6 outputs, K = 4: 4 mul + 3 add (integer GEMM), zero-point correction (1 mul, 1 sub),
    # bias (1 add), requantize (1 mul, 1 add, 2 sub) → [5, 3, 6] each
    assert got["quantized.linear"] == B(add=30, sub=18, mul=36)
    # dequantize 6 outputs: (q − z)·s → [0, 1, 1] each
    assert got["aten.dequantize"] == B(sub=6, mul=6)
    assert not engine.unsupported


def test_quantized_reports_render(model):
    x = torch.randn(2, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = torch_tos.profile(model, (x,), mode="inference")
    text = str(report)
    assert "quint8" in text or report.tos > 0
    phases = report.by_phase()
    # the quantized linear is priced in quint8 (an 8-bit integer ALU): add = ADDER(8) = 76 TOs,
    # mul = MULT(8) = 90000·64/4096 = 1406.25
    add, sub, mul, _, _ = DEFAULT_TABLE.costs(torch.quint8)
    assert (add, mul) == (76, 1406.25)
    linear_tos = (30 + 18) * 76 + 36 * 1406.25
    assert report.tos >= linear_tos
    assert phases["forward"].tos == report.tos
