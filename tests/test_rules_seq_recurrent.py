"""Golden tests for torch_tos/rules/recurrent.py: the CPU oneDNN LSTM layer (forward exact and
equal to the decomposed LSTM that meta runs; backward the reference with every gradient), and the
CUDA fused LSTM/GRU cells (shape only). ``B(add, sub, mul, div, root)``; σ and tanh are the
activation rules' units (sigmoid [1, 1, 0, 1, 1], tanh [1, 1, 1, 1, 1]).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import torch_tos
from test_rules_seq_helpers import B, aten, meta, op_bos, rule_bos, unit
from torch_tos.rules.recurrent import GRU, LSTM, RNN_TANH, layer_backward, layer_forward

SIG, TANH = unit(aten.sigmoid), unit(aten.tanh)


def test_units_are_the_papers():
    assert SIG == B(1, 1, 0, 1, 1) and TANH == B(1, 1, 1, 1, 1)


# LSTM, T = 2 steps, batch 1, I = 1, H = 1 (G = 4 gate rows), biases. Per token:
#   gate products x·W_ihᵀ + b_ih and h·W_hhᵀ + b_hh: 4 outputs × (1 + 1 products, 1 + 1 adds incl.
#   bias) → [8, 0, 8]; gates = ih + hh: 4 add; c' = f·c + i·g: 2 mul, 1 add; h' = o·tanh c': 1 mul;
#   3 σ + 2 tanh → [5, 0, 3] + 3·[1,1,0,1,1] + 2·[1,1,1,1,1] = [10, 5, 5, 5, 5]
#   ⇒ per token [18, 5, 13, 5, 5]; 2 tokens → [36, 10, 26, 10, 10].
LSTM_FWD = B(36, 10, 26, 10, 10)
# Backward (grad of the output sequence only; no grad_hy/grad_cy), N = 2 tokens:
#   per token: cell backward [0, 5, 16] (do, dh·o, tanh', 4 products, 3 σ' + 1 tanh');
#   dx = dG·W_ih: 1 output of 4 products (3 add, 4 mul); dh_prev = dG·W_hh: same → [6, 0, 8]
#   ⇒ per token [6, 5, 24] × 2 = [12, 10, 48];
#   dW_ih, dW_hh: 4 + 4 outputs of N = 2 products (1 add, 2 mul) → [8, 0, 16];
#   db = Σ dG over 2 tokens: 4 add; dh = dy + dh_next and dc = dc_next + …: one step each has a
#   next-step gradient → 1 + 1 add  ⇒ [26, 10, 64, 0, 0].
LSTM_BWD = B(26, 10, 64, 0, 0)


class Seq(nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        return self.rnn(x)[0]


def _lstm_step(m, x):
    y = m(x)
    y.backward(torch.ones_like(y))


def test_mkldnn_lstm_layer_golden():
    torch.manual_seed(0)
    lstm = Seq(nn.LSTM(1, 1))
    counted = op_bos(_lstm_step, lstm, torch.randn(2, 1, 1), meta=False)
    assert counted["mkldnn_rnn_layer"] == LSTM_FWD
    assert counted["mkldnn_rnn_layer_backward"] == LSTM_BWD
    assert layer_forward(LSTM, 2, 1, 1, 1, True) == LSTM_FWD
    assert layer_backward(LSTM, 2, 1, 1, 1, True) == LSTM_BWD


def test_mkldnn_lstm_forward_equals_the_decomposed_lstm_on_meta():
    """Multi-layer, bidirectional, batch-first: CPU runs one mkldnn_rnn_layer per layer and
    direction, meta the per-step decomposition; the forward counts agree exactly."""
    model = Seq(nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True))
    x = torch.randn(2, 5, 3)
    real = torch_tos.profile(model, x, mode="inference", device="cpu")
    fake = torch_tos.profile(model, x, mode="inference", device="meta")
    assert real.bos == fake.bos and real.flops == fake.flops and not real.unsupported
    # layer 0: T·B = 10 tokens, I = 3; layer 1: I = 2·4 (both directions); 2 directions each
    assert real.by_op().set_index("op").loc["aten.mkldnn_rnn_layer", "calls"] == 4
    expected = (layer_forward(LSTM, 5, 2, 3, 4, True) + layer_forward(LSTM, 5, 2, 8, 4, True)) * 2
    assert tuple(real.bos) == tuple(expected)


class WithState(nn.Module):
    """An LSTM whose input and initial state need gradients: autograd of the decomposed LSTM then
    computes every gradient the oneDNN backward computes."""

    def __init__(self, bias):
        super().__init__()
        self.rnn = nn.LSTM(3, 4, bias=bias)
        self.h0 = nn.Parameter(torch.randn(1, 2, 4))
        self.c0 = nn.Parameter(torch.randn(1, 2, 4))

    def forward(self, x):
        return self.rnn(x, (self.h0, self.c0))[0]


@pytest.mark.parametrize("bias", [False, True])
def test_mkldnn_lstm_backward_against_autograd_of_the_decomposition(bias):
    model, x = WithState(bias), torch.randn(5, 2, 3, requires_grad=True)
    real = torch_tos.profile(model, x, mode="training", device="cpu").by_phase()["backward"].bos
    fake = torch_tos.profile(model, x, mode="training", device="meta").by_phase()["backward"].bos
    # identical, except that autograd sums the bias gradient twice (b_ih and b_hh: G·(N−1) adds
    # each) where the oneDNN layer returns one sum for both: G = 16, N = 10 tokens
    assert fake - real == (B(16 * 9) if bias else B())


def test_fused_cuda_cells_rules():
    # LSTM cell, batch 1, H = 1 (G = 4), both biases: gate sums 4 × 3 add; cell [1, 0, 3] + 3σ + 2tanh
    g, c = meta(1, 4), meta(1, 1)
    assert rule_bos(aten._thnn_fused_lstm_cell, g, g, c, meta(4), meta(4)) == \
        B(12) + B(1, 0, 3) + SIG * 3 + TANH * 2
    # backward, batch 1, H = 1, with grad_cy, bias: tanh(c') + [1, 5, 16] (+ bias Σ over 1 row: 0 add)
    assert rule_bos(aten._thnn_fused_lstm_cell_backward_impl, c, c, c, c, meta(1, 4), True) == \
        TANH + B(1, 5, 16)
    # GRU cell, batch 1, H = 1, both biases: [4, 1, 2] + 2σ + tanh + 6 bias adds
    g3, h = meta(1, 3), meta(1, 1)
    assert rule_bos(aten._thnn_fused_gru_cell, g3, g3, h, meta(3), meta(3)) == B(10, 1, 2) + SIG * 2 + TANH
    # backward, batch 2, H = 1: [0, 5, 11] per unit × 2; bias gradients 2 × 3·(2−1) add
    assert rule_bos(aten._thnn_fused_gru_cell_backward, meta(2, 1), meta(2, 5), True) == B(6, 10, 22)


def test_gru_and_rnn_reference_formulas():
    # GRU, per token (I = 1, H = 1, G = 3, bias): products [6, 0, 6]; cell [4, 1, 2] + 2σ + tanh
    assert layer_forward(GRU, 1, 1, 1, 1, True) == B(6) + B(0, 0, 6) + B(4, 1, 2) + SIG * 2 + TANH
    # tanh RNN, per token (I = 1, H = 1, bias): products [2, 0, 2]; h' = tanh(ih + hh): 1 add + tanh
    assert layer_forward(RNN_TANH, 1, 1, 1, 1, True) == B(3, 0, 2) + TANH


@pytest.mark.parametrize("rnn", [nn.GRU(3, 4, num_layers=2, bidirectional=True),
                                 nn.RNN(3, 4, num_layers=2, bidirectional=True, batch_first=True),
                                 nn.RNN(3, 4, nonlinearity="relu")], ids=["gru", "rnn-tanh", "rnn-relu"])
def test_gru_rnn_decompose_identically_on_cpu_and_meta(rnn):
    model, x = Seq(rnn), torch.randn(5, 2, 3)
    real = torch_tos.profile(model, x, mode="training", device="cpu")
    fake = torch_tos.profile(model, x, mode="training", device="meta")
    assert not real.unsupported and real.bos == fake.bos and real.flops == fake.flops
