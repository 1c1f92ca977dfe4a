"""The FLOPs baseline: PyTorch's own ``torch.utils.flop_counter`` formulas.

``FLOP_FORMULAS`` is ``flop_counter.flop_registry`` plus the entries of :data:`CUSTOM_MAPPING`,
wrapped exactly as ``FlopCounterMode(custom_mapping=...)`` wraps them, so
``FlopCounterMode(custom_mapping=CUSTOM_MAPPING)`` and torch_tos always agree. ``CUSTOM_MAPPING``
closes gaps of ``FlopCounterMode`` itself (kernels it has no formula for, or a formula that
fails); it reuses PyTorch's formulas rather than re-deriving FLOPs.

:data:`COMPOSITE_MAPPING` keeps the two equal in every grad mode. ``FlopCounterMode`` decomposes
every ``CompositeImplicitAutograd`` op it sees and counts the pieces; torch_tos prices some such ops
whole (a rule of their own). Outside ``torch.inference_mode()`` those ops are decomposed before
any dispatch mode sees them; inside it they reach the engine whole (a ``Linear`` arrives as
``aten.linear``). Their formulas here give the FLOPs of ``FlopCounterMode``'s decomposition, so a
model's FLOPs are the same with and without ``inference_mode`` (tests pin the list of such ops).
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from functools import wraps

import types

import torch
from torch.utils.flop_counter import (FlopCounterMode, bmm_flop, conv_flop_count, flop_registry,
                                      get_shape, mm_flop, sdpa_backward_flop_count,
                                      sdpa_flop_count)

from ._compat import shape_level_formula, tree_map

aten = torch.ops.aten
# the shape-level forms (the registry's decorator wraps them for tensors; the formulas below pass
# shapes, so the wrapper's pytree walk would be pure cost)
mm_flop = shape_level_formula(mm_flop) or mm_flop
bmm_flop = shape_level_formula(bmm_flop) or bmm_flop


def sdpa_flash_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """``_scaled_dot_product_flash_attention_for_cpu``: FlopCounterMode's own SDPA formula
    (QKᵀ and ·V; ``sdpa_flop_count``), as for the CUDA flash kernel (pytorch issue 195460)."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def sdpa_flash_cpu_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args,
                                 out_shape=None, **kwargs) -> int:
    """``…_for_cpu_backward``: FlopCounterMode's ``sdpa_backward_flop_count`` (recomputed QKᵀ,
    dP, dV, dQ, dK)."""
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _rnn_dims(input_shape, w_ih_shape, w_hh_shape):
    tokens = int(input_shape[0]) * int(input_shape[1]) if len(input_shape) == 3 else int(input_shape[0])
    gates, n_in = int(w_ih_shape[0]), int(w_ih_shape[1])
    return tokens, gates, n_in, int(w_hh_shape[1])


def mkldnn_rnn_layer_flop(input_shape, w_ih_shape, w_hh_shape, *args, out_shape=None, **kwargs) -> int:
    """``mkldnn_rnn_layer`` (CPU LSTM): the input and hidden products of every step,
    mm(x[T·B, I], W_ihᵀ) + mm(h[T·B, H], W_hhᵀ) — what the same LSTM decomposes into elsewhere."""
    tokens, gates, n_in, hidden = _rnn_dims(input_shape, w_ih_shape, w_hh_shape)
    return mm_flop((tokens, n_in), (n_in, gates)) + mm_flop((tokens, hidden), (hidden, gates))


def mkldnn_rnn_layer_backward_flop(input_shape, w_ih_shape, w_hh_shape, *args, out_shape=None,
                                   **kwargs) -> int:
    """``mkldnn_rnn_layer_backward``: the four gradient products it computes, dX = dG·W_ih,
    dH = dG·W_hh, dW_ih = dGᵀ·X, dW_hh = dGᵀ·H (every step, first layer and h0 included)."""
    tokens, gates, n_in, hidden = _rnn_dims(input_shape, w_ih_shape, w_hh_shape)
    return (mm_flop((tokens, gates), (gates, n_in)) + mm_flop((tokens, gates), (gates, hidden))
            + mm_flop((gates, tokens), (tokens, n_in)) + mm_flop((gates, tokens), (tokens, hidden)))


def native_mha_flop(query_shape, key_shape, value_shape, embed_dim, num_head, *args, out_shape=None,
                    **kwargs) -> int:
    """``_native_multi_head_attention`` (eval fast path): QKV mm, QKᵀ and ·V bmm, output mm."""
    B, T, E = (int(s) for s in query_shape)
    H = int(num_head)
    d = E // H
    return (mm_flop((B * T, E), (E, 3 * E)) + bmm_flop((B * H, T, d), (B * H, d, T))
            + bmm_flop((B * H, T, T), (B * H, T, d)) + mm_flop((B * T, E), (E, E)))


def transformer_encoder_layer_flop(src_shape, embed_dim, num_heads, qkv_w, qkv_b, proj_w, proj_b,
                                   use_gelu, norm_first, eps, nw1, nb1, nw2, nb2, ffn_w1, *args,
                                   out_shape=None, **kwargs) -> int:
    """``_transformer_encoder_layer_fwd`` (eval fast path): the MHA above + the two FFN mms."""
    B, T, E = (int(s) for s in src_shape)
    F = int(ffn_w1[0])
    return (native_mha_flop(src_shape, src_shape, src_shape, embed_dim, num_heads)
            + mm_flop((B * T, E), (E, F)) + mm_flop((B * T, F), (F, E)))


def addmm_activation_flop(self_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    """``_addmm_activation``: addmm's formula (activations carry no FLOPs in this baseline)."""
    return mm_flop(a_shape, b_shape)


def conv_backward_flop(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation,
                       transposed, _output_padding, groups, output_mask, out_shape=None,
                       **kwargs) -> int:
    """``convolution_backward`` with grouped convolutions counted right: PyTorch 2.13/2.14's
    ``conv_backward_flop`` counts grad_weight over all ``C_in`` (transposed: ``C_out``) channels
    instead of those of one group, ``groups``× too many (a depthwise Conv2d's backward showed 64×
    its forward at 64 channels); fixed upstream in pytorch PR #183405, whose correction this is:
    grad_input = the transposed (or plain) convolution of grad_output, 2·(forward products);
    grad_weight = PyTorch's formula // groups, also 2·(forward products)."""
    def t(shape):
        return [shape[1], shape[0]] + list(shape[2:])

    flops = 0
    if output_mask[0]:
        flops += conv_flop_count(grad_out_shape, w_shape, out_shape[0], not transposed)
    if output_mask[1]:
        if transposed:
            full = conv_flop_count(t(grad_out_shape), t(x_shape), t(out_shape[1]), transposed=False)
        else:
            full = conv_flop_count(t(x_shape), t(grad_out_shape), t(out_shape[1]), transposed=False)
        flops += full // int(groups)
    return flops


def grouped_mm_flop(a, b, offs=None, bias=None, out_dtype=None, *args, out_val=None, **kwargs) -> int:
    """``_grouped_mm`` (MoE expert matmuls; FlopCounterMode has no formula): 2 per product of the
    groups' matmuls, as mm's formula (raw formula: the group offsets are read on real tensors)."""
    from .rules.linalg import grouped_mm

    return 2 * grouped_mm(out_val, a, b, offs).mul


grouped_mm_flop._get_raw = True  # type: ignore[attr-defined]


def slow_conv2d_flop(x_shape, w_shape, _kernel_size, _bias=None, _stride=None, _padding=None, *args,
                     out_shape=None, **kwargs) -> int:
    """``_slow_conv2d_forward`` (and ``thnn_conv2d``, which decomposes into it): a plain
    convolution, FlopCounterMode's ``conv_flop_count``. ``flop_registry`` lists this op under
    ``conv_flop``, whose signature (a ``transposed`` argument) it does not have: the lookup raises
    a ``TypeError`` in torch 2.13/2.14."""
    return conv_flop_count(x_shape, w_shape, out_shape, transposed=False)


def linear_flop(input_shape, weight_shape, _bias=None, *args, out_shape=None, **kwargs) -> int:
    """``aten.linear`` as ``FlopCounterMode`` counts its decomposition: ``addmm`` (2-D input with a
    bias) or ``matmul(input, weightᵀ)``, which folds every leading dimension into one ``mm``:
    2·(rows of the input)·in·out, the bias add uncounted; a 1-D weight (``mv``/``dot``) has no
    formula there, 0."""
    if len(weight_shape) != 2:
        return 0
    rows = 1
    for d in input_shape[:-1]:
        rows *= int(d)
    out, k = (int(d) for d in weight_shape)
    return mm_flop((rows, k), (k, out))


#: aten packet → FLOP formula (FlopCounterMode ``custom_mapping`` convention: shape-level formula)
CUSTOM_MAPPING: dict = {
    aten._scaled_dot_product_flash_attention_for_cpu: sdpa_flash_cpu_flop,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: sdpa_flash_cpu_backward_flop,
    aten.mkldnn_rnn_layer: mkldnn_rnn_layer_flop,
    aten.mkldnn_rnn_layer_backward: mkldnn_rnn_layer_backward_flop,
    aten._native_multi_head_attention: native_mha_flop,
    aten._transformer_encoder_layer_fwd: transformer_encoder_layer_flop,
    aten._addmm_activation: addmm_activation_flop,
    aten.convolution_backward: conv_backward_flop,
    aten._grouped_mm: grouped_mm_flop,
    aten._slow_conv2d_forward: slow_conv2d_flop,
}

#: ``CompositeImplicitAutograd`` ops with a torch_tos rule → the FLOPs of ``FlopCounterMode``'s
#: decomposition (module doc); they reach the engine whole only under ``torch.inference_mode()``.
COMPOSITE_MAPPING: dict = {
    aten.linear: linear_flop,
    aten.thnn_conv2d: slow_conv2d_flop,
}


_LEAVES = frozenset((int, float, bool, str, type(None), torch.dtype, torch.device, torch.layout,
                     torch.memory_format, torch.SymInt, torch.SymFloat, torch.SymBool))


def _shapes(v):
    """``tree_map(get_shape, v)``, FlopCounterMode's argument mapping, without pytree's generic
    walk for the values aten ops take (tensors, numbers, lists and tuples of them); any other
    value goes through ``tree_map`` itself, so the result is the same for every input."""
    if isinstance(v, torch.Tensor):
        return v.shape
    t = type(v)
    if t in _LEAVES:
        return v
    if t is list or t is tuple:
        return t([_shapes(x) for x in v])
    return tree_map(get_shape, v)


def fast_shape_wrapper(f):
    """``flop_counter.shape_wrapper(f)`` with :func:`_shapes` in place of ``tree_map``: the same
    arguments reach ``f`` (the tensors' shapes), at a fraction of the cost per op."""
    @wraps(f)
    def nf(*args, out_val=None, **kwargs):
        return f(*[_shapes(a) for a in args], out_shape=_shapes(out_val),
                 **{k: _shapes(v) for k, v in kwargs.items()})

    return nf


_FAST: dict = {}  # flop_registry entry → its fast form (built once per entry, kept)


def _direct(inner):
    """``inner`` (a shape-level formula of ``torch.utils.flop_counter``) calling the shape-level
    forms of the registered formulas it uses (``addmm_flop`` calls ``mm_flop``, which the registry
    decorator wrapped): the same code, with those names bound to the unwrapped functions. They get
    shapes either way; ``tree_map(get_shape, ·)`` of shapes is the shapes themselves."""
    glb = getattr(inner, "__globals__", None)
    code = getattr(inner, "__code__", None)
    if glb is None or code is None:
        return inner
    direct = {n: shape_level_formula(glb[n]) for n in code.co_names if n in glb}
    direct = {n: f for n, f in direct.items() if f is not None}
    if not direct:
        return inner
    f = types.FunctionType(code, {**glb, **direct}, inner.__name__, inner.__defaults__,
                           inner.__closure__)
    f.__kwdefaults__ = inner.__kwdefaults__
    return wraps(inner)(f)


def _fast(f):
    """A ``flop_registry`` entry as ``FlopCounterMode`` calls it, minus pytree's per-op cost: the
    shape-level formula (:func:`_direct`) behind :func:`fast_shape_wrapper`."""
    hit = _FAST.get(f)
    if hit is None:
        inner = shape_level_formula(f)
        hit = _FAST[f] = f if inner is None else fast_shape_wrapper(_direct(inner))
    return hit


_CUSTOM_FAST = {k: v if getattr(v, "_get_raw", False) else fast_shape_wrapper(v)
                for k, v in {**COMPOSITE_MAPPING, **CUSTOM_MAPPING}.items()}


def flop_formulas(extra: dict | None = None) -> dict:
    """``flop_registry`` + :data:`CUSTOM_MAPPING` + :data:`COMPOSITE_MAPPING` + ``extra``, wrapped
    like ``FlopCounterMode`` does (same formulas and arguments; tensors mapped to shapes by
    :func:`fast_shape_wrapper`)."""
    out = {k: _fast(v) for k, v in flop_registry.items()}
    out.update(_CUSTOM_FAST)
    for k, v in (extra or {}).items():
        out[k] = v if getattr(v, "_get_raw", False) else fast_shape_wrapper(v)
    return out


@contextmanager
def flop_counter(**kwargs):
    """``FlopCounterMode`` set up as torch_tos's FLOPs baseline: :data:`CUSTOM_MAPPING` (plus any
    ``custom_mapping`` given) and the kernel choices every counting Engine makes (on meta, SDPA
    runs the kernel the CPU would pick — see :mod:`torch_tos.kernels`).
    ``with flop_counter() as fc: step(); fc.get_total_flops()`` equals ``profile(...).flops`` for
    the same step."""
    from .kernels import kernel_choices

    kwargs.setdefault("display", False)
    mapping = {**CUSTOM_MAPPING, **kwargs.pop("custom_mapping", {})}
    with ExitStack() as stack:
        stack.enter_context(kernel_choices())
        yield stack.enter_context(FlopCounterMode(custom_mapping=mapping, **kwargs))
