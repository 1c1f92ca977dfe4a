"""The paper's Eq. 4 and Eq. 5, and the per-op table of docs/conventions.md §2, counted on real modules."""

import pytest
import torch
import torch.nn as nn

import torch_tos
from torch_tos import BOs


@pytest.mark.parametrize("I,O,batch", [(4, 18, 1), (4, 18, 64), (7, 3, 5), (1, 1, 2), (32, 16, 3)])
@pytest.mark.parametrize("device", [None, "meta"])
def test_eq4_linear_sigmoid(I, O, batch, device):
    # Eq. 4: C_f = [(I+1)O, O, IO, O, O] per instance; ×batch
    model = nn.Sequential(nn.Linear(I, O), nn.Sigmoid())
    report = torch_tos.profile(model, torch.randn(batch, I), device=device)
    assert report.bos == BOs((I + 1) * O, O, I * O, O, O) * batch
    assert report.unsupported == []


def test_eq4_check_value():
    report = torch_tos.profile(nn.Sequential(nn.Linear(4, 18), nn.Sigmoid()), torch.randn(1, 4))
    assert report.tos == 2_249_131.5
    assert report.by_phase()["forward"].tos == 2_249_131.5


@pytest.mark.parametrize("c_in,c_out,k,m,batch", [(3, 32, 3, 6, 1), (1, 4, 5, 3, 2), (2, 3, 1, 4, 3), (4, 2, 7, 2, 1)])
def test_eq5_conv_gelu(c_in, c_out, k, m, batch):
    # Eq. 5: conv c_in→c_out, kernel k, output m×m, GELU:
    # add = m²c_out(1 + c_in k²), sub = m²c_out, mul = m²c_out(2 + c_in k²), div = root = m²c_out
    model = nn.Sequential(nn.Conv2d(c_in, c_out, k), nn.GELU())
    x = torch.randn(batch, c_in, m + k - 1, m + k - 1)  # no padding: output is m×m
    report = torch_tos.profile(model, x, device="meta")
    n = m * m * c_out
    assert report.bos == BOs(n * (1 + c_in * k * k), n, n * (2 + c_in * k * k), n, n) * batch


def test_gelu_tanh_approximation_same_as_paper():
    x = torch.randn(2, 5)
    a = torch_tos.profile(nn.GELU(), x).bos
    b = torch_tos.profile(nn.GELU(approximate="tanh"), x).bos
    assert a == b == BOs(1, 1, 2, 1, 1) * 10


@pytest.mark.parametrize("I,O,batch", [(4, 18, 1), (5, 2, 3)])
def test_bias_free_linear(I, O, batch):
    # K products without a bias: K mul, K-1 add per output
    report = torch_tos.profile(nn.Linear(I, O, bias=False), torch.randn(batch, I))
    assert report.bos == BOs(add=(I - 1) * O, mul=I * O) * batch


@pytest.mark.parametrize("module,per_element", [
    (nn.Sigmoid(), BOs(1, 1, 0, 1, 1)),
    (nn.Tanh(), BOs(1, 1, 1, 1, 1)),
    (nn.ReLU(), BOs(sub=1)),
    (nn.SiLU(), BOs(1, 1, 1, 1, 1)),
    (nn.LeakyReLU(), BOs(sub=1, mul=1)),
])
def test_activation_table(module, per_element):
    report = torch_tos.profile(module, torch.randn(3, 7))
    assert report.bos == per_element * 21


def test_softmax_row():
    # softmax over n: add n-1, sub n (shift) + n-1 (max), div n, root n — per row
    n, rows = 6, 4
    report = torch_tos.profile(nn.Softmax(dim=-1), torch.randn(rows, n))
    assert report.bos == BOs(n - 1, 2 * n - 1, 0, n, n) * rows
    # log-softmax: max n-1, shift n, exp n, sum n-1, log 1, subtract n
    report = torch_tos.profile(nn.LogSoftmax(dim=-1), torch.randn(rows, n))
    assert report.bos == BOs(n - 1, 3 * n - 1, 0, 0, n + 1) * rows


def test_pooling_table():
    x = torch.randn(1, 2, 6, 6)
    # MaxPool k×k: k²-1 compares per output; 2 channels × 3×3 outputs
    assert torch_tos.profile(nn.MaxPool2d(2), x).bos == BOs(sub=3) * 18
    # AvgPool k×k: k²-1 adds and 1 div per output
    assert torch_tos.profile(nn.AvgPool2d(2), x).bos == BOs(add=3, div=1) * 18
    # AdaptiveAvgPool to 1×1: a mean over 36 per channel
    assert torch_tos.profile(nn.AdaptiveAvgPool2d(1), x).bos == BOs(add=35, div=1) * 2


def test_mse_table():
    # MSE over n: n-1 add, n sub, n mul, 1 div
    n = 10
    model = nn.Identity()
    report = torch_tos.profile(model, torch.randn(n), mode="validation", loss_fn=nn.MSELoss(),
                               target=torch.randn(n))
    assert report.by_phase()["loss"].bos == BOs(n - 1, n, n, 1, 0)


def test_mean_and_elementwise():
    x = torch.randn(4, 5)
    class F(nn.Module):
        def forward(self, x):
            return (x.exp() + x.log1p().abs().sqrt() * x.rsqrt() - x / 3).mean()
    # exp root; log1p add+root; abs sub; sqrt root; rsqrt div+root; * mul; + add; / div; - sub
    per = BOs(root=1) + BOs(add=1, root=1) + BOs(sub=1) + BOs(root=1) + BOs(div=1, root=1) \
        + BOs(mul=1) + BOs(add=1) + BOs(div=1) + BOs(sub=1)
    expected = per * 20 + BOs(add=19, div=1)  # mean over 20
    assert torch_tos.profile(F(), x).bos == expected
