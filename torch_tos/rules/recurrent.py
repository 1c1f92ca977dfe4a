"""Recurrent kernels: the CPU oneDNN layer (``mkldnn_rnn_layer``, LSTM) and the CUDA fused cells
(``_thnn_fused_lstm_cell``, ``_thnn_fused_gru_cell``), forward and backward.

nn.RNN, nn.GRU (on CPU) and nn.LSTM (on meta) need no rule of their own: they decompose into
``addmm``/``mm``, ``add_``, ``sigmoid``, ``tanh``, ``mul``… each priced by its own rule. These
rules price a fused kernel as the same reference computation, per token (one batch row at one time
step; N = T·B tokens), with I the input size, H the hidden size and G the gate rows (4H LSTM,
3H GRU, H plain RNN):

**Gate products** (every mode): x·W_ihᵀ + b_ih and h·W_hhᵀ + b_hh — G outputs each, I and H
products: G·(I + H) mul and G·(I + H) add with biases (G·(I + H − 2) without), as two ``addmm``.

**LSTM cell** (per token): gates = ih + hh (G add); i, f, o = σ (3H sigmoids), g = tanh
(H tanh); c' = f·c + i·g (2H mul, H add); h' = o·tanh(c') (H tanh, H mul). So forward per token:
``G(I+H) + G + H`` add (bias) and 3H·σ + 2H·tanh on top of the products — exactly the ops the
decomposed LSTM runs (meta device, CUDA without cuDNN), so meta and CPU agree in the forward.

**LSTM backward** (``mkldnn_rnn_layer_backward``, all gradients computed, as the oneDNN primitive
does): per token and hidden unit dh = dy + dh_next (1 add); do = dh·tanh(c') and dh·o (2 mul);
dc = dc_next + dh·o·(1 − tanh²c') (tanh backward: 1 sub, 2 mul; 1 add); df, di, dg and
dc_prev = dc·(c, g, i, f) (4 mul); the gate activations' backward (3 sigmoid, 1 tanh: 1 sub, 2 mul
each) → per token [2H, 5H, 16H, 0, 0] (the two accumulating adds only where a next-step gradient
exists: not on the last processed step unless grad_hy / grad_cy are given); then dx = dG·W_ih
(I outputs of G products) and
dh_prev = dG·W_hh (H outputs of G products), and over all N tokens dW_ih = dGᵀ·X (G·I outputs of
N products), dW_hh = dGᵀ·H (G·H outputs of N products) and, with biases, db = Σ dG (G outputs,
N−1 add; the same gradient serves b_ih and b_hh). **Approximate** where the kernel's internals are
not public (it is priced as this reference); on meta, autograd of the decomposed LSTM skips what is
not needed (dx of the first layer, dh/dc of the zero initial state), so meta and CPU backward
counts differ by those terms (and by the second bias gradient autograd forms for b_hh, which the
oneDNN layer returns as a copy of b_ih's). With every input requiring grad the two agree except for
that bias sum.

**GRU cell** (reference and ``_thnn_fused_gru_cell``): r = σ(i_r + h_r), z = σ(i_z + h_z),
n = tanh(i_n + r·h_n), h' = n + z·(h − n): per hidden unit [4, 1, 2, 0, 0] + 2σ + tanh (fused
cell: + the four bias adds b_ir+b_hr, b_iz+b_hz, b_in, b_hn when given: [6, 0, 0, 0, 0]).
Backward (``_thnn_fused_gru_cell_backward``, the CUDA kernel's formulas): dz = g·(h − n)·(1−z)·z,
dh = g·z, dn = g·(1−z)·(1−n²), dh_n = dn·r, dr = dn·h_n·(1−r)·r → [0, 5, 11, 0, 0] per hidden unit,
+ the bias gradients Σ over the batch (3H·(B−1) add each) when ``has_bias``.

**Fused LSTM cell** (``_thnn_fused_lstm_cell``, CUDA): gates = ig + hg (+ b_i + b_h): 1 add per
gate element (3 with biases), then the cell as above. Backward
(``_thnn_fused_lstm_cell_backward_impl``): tanh(c') recomputed (tanh), do = g_h·tanh c' (1 mul),
dc = g_h·o·(1 − tanh²) + g_c (3 mul, 1 sub, 1 add), 4 products, σ'/tanh' (3·[0, 1, 2] + [0, 1, 2])
→ tanh + [1, 5, 16, 0, 0] per hidden unit (no g_c: one add less), + bias gradient Σ over the batch
(G·(B−1) add) with ``has_bias``.

**Plain RNN** (``mkldnn_rnn_layer`` modes 0/1, should oneDNN run them): h' = act(ih + hh) (H add,
tanh or ReLU); backward dh = dy + dh_next (1 add), act' (tanh: [0, 1, 2]; ReLU: 1 compare).
"""

from __future__ import annotations

import torch

from .._compat import disable_current_modes
from ..bos import BOs
from . import activations  # noqa: F401  (sigmoid/tanh units)
from .registry import RULES, register

aten = torch.ops.aten

#: oneDNN / cuDNN RNN modes
RNN_RELU, RNN_TANH, LSTM, GRU = 0, 1, 2, 3
_GATES = {RNN_RELU: 1, RNN_TANH: 1, LSTM: 4, GRU: 3}


_UNITS: dict = {}


def _unit(op) -> BOs:
    """BOs of an element-wise op's rule on one element."""
    if op not in _UNITS:
        with disable_current_modes():
            one = torch.empty(1, device="meta")
        _UNITS[op] = RULES[op](one, one)
    return _UNITS[op]


def sigmoid_unit() -> BOs:
    return _unit(aten.sigmoid)


def tanh_unit() -> BOs:
    return _unit(aten.tanh)


def gate_products(I: int, H: int, G: int, bias: bool) -> BOs:
    """Per token: x·W_ihᵀ (+b_ih) and h·W_hhᵀ (+b_hh), G outputs each."""
    return BOs(add=G * (I + H - (0 if bias else 2)), mul=G * (I + H))


def cell_forward(mode: int, H: int) -> BOs:
    """Per token, everything after the two gate products (see the module docstring)."""
    if mode == LSTM:
        return BOs(add=4 * H + H, mul=3 * H) + sigmoid_unit() * (3 * H) + tanh_unit() * (2 * H)
    if mode == GRU:
        return BOs(add=4 * H, sub=H, mul=2 * H) + sigmoid_unit() * (2 * H) + tanh_unit() * H
    act = tanh_unit() if mode == RNN_TANH else BOs(sub=1)
    return BOs(add=H) + act * H


def cell_backward(mode: int, H: int) -> BOs:
    """Per token, the element-wise part of the backward without the accumulations of the
    gradients arriving from the next step (see :func:`layer_backward`)."""
    if mode == LSTM:
        return BOs(sub=5 * H, mul=16 * H)
    if mode == GRU:
        return BOs(add=H, sub=5 * H, mul=11 * H)
    return BOs(sub=1, mul=2) * H if mode == RNN_TANH else BOs(sub=H)


def layer_forward(mode: int, T: int, B: int, I: int, H: int, bias: bool) -> BOs:
    """One direction of one layer over T steps of B rows."""
    G = _GATES[mode] * H
    return (gate_products(I, H, G, bias) + cell_forward(mode, H)) * (T * B)


def layer_backward(mode: int, T: int, B: int, I: int, H: int, bias: bool, grad_output: bool = True,
                   grad_hy: bool = False, grad_cy: bool = False) -> BOs:
    """One direction of one layer: element-wise backward, dX, dH_prev per token; dW_ih, dW_hh
    (and db) over all N = T·B tokens. dh = dy + dh_next is an add on the steps that receive both
    (all but the last processed step, unless ``grad_hy`` is given; none without ``grad_output``);
    LSTM's dc = dc_next + … likewise with ``grad_cy``."""
    G = _GATES[mode] * H
    N = T * B
    per_token = cell_backward(mode, H) + BOs(add=(I + H) * (G - 1), mul=(I + H) * G)
    weights = BOs(add=G * (I + H) * (N - 1), mul=G * (I + H) * N)
    bias_grad = BOs(add=G * (N - 1) * (2 if mode == GRU else 1)) if bias else BOs()
    dh_adds = B * H * (T - 1 + int(grad_hy)) if grad_output else 0
    dc_adds = B * H * (T - 1 + int(grad_cy)) if mode == LSTM else 0
    return per_token * N + weights + bias_grad + BOs(add=dh_adds + dc_adds)


def _tbi(x) -> tuple[int, int, int]:
    """(T, B, I) of an RNN layer input (batch order does not change the token count)."""
    if x.dim() == 2:
        return int(x.shape[0]), 1, int(x.shape[1])
    return int(x.shape[0]), int(x.shape[1]), int(x.shape[2])


@register("mkldnn_rnn_layer")
def mkldnn_rnn_layer(out, x, w_ih, w_hh, b_ih, b_hh, hx, cx, reverse, batch_sizes, mode,
                     hidden_size, num_layers, has_biases, *args, **kwargs) -> BOs:
    """CPU oneDNN RNN layer (LSTM), one direction: per token the gate products
    [G(I+H), 0, G(I+H), 0, 0] (bias-free: 2G fewer add) + the cell (LSTM: [5H, 0, 3H, 0, 0] +
    3H σ + 2H tanh); see the module docstring."""
    T, B, I = _tbi(x)
    return layer_forward(int(mode), T, B, I, int(hidden_size), bool(has_biases))


mkldnn_rnn_layer.unit = "per token: G(I+H) add/mul for the gate products + the cell (LSTM: [5H, 0, 3H, 0, 0] + 3H·σ + 2H·tanh)"


@register("mkldnn_rnn_layer_backward")
def mkldnn_rnn_layer_backward(out, x, w_ih, w_hh, b_ih, b_hh, hx, cx, output, hy, cy, grad_output,
                              grad_hy, grad_cy, reverse, mode, hidden_size, num_layers, has_biases,
                              *args, **kwargs) -> BOs:
    """CPU oneDNN RNN layer backward (approximate: priced as the reference backward with every
    gradient computed): per token the cell backward (LSTM [2H, 5H, 16H, 0, 0]), dX and dH_prev;
    over all tokens dW_ih, dW_hh, db; see the module docstring."""
    T, B, I = _tbi(x)
    return layer_backward(int(mode), T, B, I, int(hidden_size), bool(has_biases),
                          grad_output is not None, grad_hy is not None, grad_cy is not None)


mkldnn_rnn_layer_backward.unit = "per token: cell backward (LSTM [2H, 5H, 16H, 0, 0]) + (I+H)·[G−1, 0, G, 0, 0]; per weight element N products; db: N−1 add per gate"


def _bias_adds(input_bias, hidden_bias) -> int:
    return int(input_bias is not None) + int(hidden_bias is not None)


@register("_thnn_fused_lstm_cell")
def fused_lstm_cell(out, input_gates, hidden_gates, cx, input_bias=None, hidden_bias=None,
                    **kwargs) -> BOs:
    """CUDA fused LSTM cell, per batch row: 1 add per gate element (+1 per bias given), then per
    hidden unit [1, 0, 3, 0, 0] + 3 σ + 2 tanh (c' = f·c + i·g, h' = o·tanh c')."""
    B, G = int(input_gates.shape[0]), int(input_gates.shape[1])
    H = G // 4
    gates = BOs(add=G * (1 + _bias_adds(input_bias, hidden_bias)))
    return (gates + cell_forward(LSTM, H) - BOs(add=G)) * B


@register("_thnn_fused_lstm_cell_backward_impl", "_thnn_fused_lstm_cell_backward")
def fused_lstm_cell_backward(out, grad_hy, grad_cy, cx, cy, workspace, has_bias, **kwargs) -> BOs:
    """CUDA fused LSTM cell backward, per hidden unit tanh + [1, 5, 16, 0, 0] (no grad_cy: one
    add less); bias gradient Σ over the batch with has_bias."""
    B, H = int(cx.shape[0]), int(cx.shape[1])
    per = tanh_unit() + BOs(add=1 if grad_cy is not None else 0, sub=5, mul=16)
    total = per * (B * H)
    if has_bias:
        total += BOs(add=4 * H * (B - 1))
    return total


@register("_thnn_fused_gru_cell")
def fused_gru_cell(out, input_gates, hidden_gates, hx, input_bias=None, hidden_bias=None,
                   **kwargs) -> BOs:
    """CUDA fused GRU cell, per hidden unit [4, 1, 2, 0, 0] + 2σ + tanh (+[6, 0, 0, 0, 0] with
    both biases, 3 adds per bias)."""
    B, H = int(hx.shape[0]), int(hx.shape[1])
    return (cell_forward(GRU, H) + BOs(add=3 * H * _bias_adds(input_bias, hidden_bias))) * B


@register("_thnn_fused_gru_cell_backward")
def fused_gru_cell_backward(out, grad_hy, workspace, has_bias, **kwargs) -> BOs:
    """CUDA fused GRU cell backward, per hidden unit [0, 5, 11, 0, 0]; bias gradients Σ over the
    batch (2 × 3H·(B−1) add) with has_bias."""
    B, H = int(grad_hy.shape[0]), int(grad_hy.shape[1])
    total = BOs(sub=5, mul=11) * (B * H)
    if has_bias:
        total += BOs(add=2 * 3 * H * (B - 1))
    return total
