"""Optimizer kernels: the multi-tensor ``_foreach_*`` ops and the fused Adam/AdamW/SGD kernels.

Single-tensor optimizers (``foreach=False``) run ordinary element-wise ops (``add_``, ``mul_``,
``lerp_``, ``addcmul_``, ``addcdiv_``, ``sqrt``…), priced by :mod:`.elementwise`. The ``_foreach_``
variant of an element-wise op costs exactly what the op costs, summed over every tensor of its
first list (``alpha``/``value`` ≠ 1 adds one mul per element, as for the single-tensor op).
``_foreach_norm`` costs a 2-norm per tensor (n mul, n−1 add, 1 root).

Fused kernels, per element (``g`` gradient, ``p`` parameter):

* ``_fused_sgd_``: weight decay g + wd·p (1 mul, 1 add, when wd ≠ 0); momentum b = μ·b + (1−τ)·g
  (2 mul, 1 add; the first step only copies); nesterov g + μ·b (1 mul, 1 add); p −= lr·g (1 mul,
  1 sub).
* ``_fused_adam_``/``_fused_adamw_``: decay (Adam: g + wd·p, 1 mul 1 add; AdamW: p·(1 − lr·wd),
  1 mul), m = lerp(m, g, 1−β1) (1 sub, 1 mul, 1 add), v = β2·v + (1−β2)·g² (3 mul, 1 add),
  amsgrad max (1 sub), denom = √v/√bc2 + ε (1 root, 1 div, 1 add), p −= (lr/bc1)·m/denom (1 div,
  1 mul, 1 sub); per tensor the bias corrections 1−β^t twice (2 pow = 2 mul + 4 root, 2 sub),
  lr/bc1 (1 div), √bc2 (1 root).
"""

import torch

from ..bos import BOs
from . import activations, elementwise, reductions  # noqa: F401  (base rules must exist first)
from .registry import RULES, numel, register


def _list_numel(xs) -> int:
    if isinstance(xs, torch.Tensor):
        return numel(xs)
    return sum(numel(t) for t in xs)


def _foreach_per_element(unit: BOs, scaled_by: str | None = None, scalar_pos: int = 1):
    """A foreach rule: ``unit`` per element of the first list; +1 mul when ``scaled_by`` ≠ 1."""

    def rule(out, xs, *args, **kwargs) -> BOs:
        n = _list_numel(xs)
        total = unit * n
        if scaled_by is not None:
            s = kwargs.get(scaled_by, args[scalar_pos] if len(args) > scalar_pos else 1)
            if isinstance(s, (list, tuple)):
                if any(v != 1 for v in s):
                    total += BOs(mul=n)
            elif isinstance(s, torch.Tensor) or s != 1:
                total += BOs(mul=n)
        return total

    rule.__doc__ = f"Per element of the first tensor list: {unit}" + (
        f" (+1 mul when {scaled_by} ≠ 1)." if scaled_by else ".")
    return rule


_ADD, _SUB, _MUL, _DIV = BOs(add=1), BOs(sub=1), BOs(mul=1), BOs(div=1)

for base in ("add", "sub"):
    for suffix in ("", "_"):
        register(f"_foreach_{base}{suffix}")(
            _foreach_per_element(_ADD if base == "add" else _SUB, scaled_by="alpha", scalar_pos=1))
for suffix in ("", "_"):
    register(f"_foreach_mul{suffix}")(_foreach_per_element(_MUL))
    register(f"_foreach_div{suffix}")(_foreach_per_element(_DIV))
    register(f"_foreach_addcmul{suffix}")(
        _foreach_per_element(BOs(add=1, mul=1), scaled_by="value", scalar_pos=2))
    register(f"_foreach_addcdiv{suffix}")(
        _foreach_per_element(BOs(add=1, div=1), scaled_by="value", scalar_pos=2))
    register(f"_foreach_lerp{suffix}")(_foreach_per_element(BOs(add=1, sub=1, mul=1)))
    register(f"_foreach_sqrt{suffix}", f"_foreach_exp{suffix}", f"_foreach_log{suffix}",
             f"_foreach_sin{suffix}", f"_foreach_cos{suffix}", f"_foreach_erf{suffix}")(
        _foreach_per_element(BOs(root=1)))
    register(f"_foreach_rsqrt{suffix}")(_foreach_per_element(BOs(div=1, root=1)))
    register(f"_foreach_reciprocal{suffix}")(_foreach_per_element(_DIV))
    register(f"_foreach_neg{suffix}", f"_foreach_abs{suffix}", f"_foreach_sign{suffix}",
             f"_foreach_maximum{suffix}", f"_foreach_minimum{suffix}",
             f"_foreach_clamp_min{suffix}", f"_foreach_clamp_max{suffix}")(_foreach_per_element(_SUB))
    register(f"_foreach_sigmoid{suffix}")(_foreach_per_element(BOs(add=1, sub=1, div=1, root=1)))
    register(f"_foreach_tanh{suffix}")(_foreach_per_element(BOs(add=1, sub=1, mul=1, div=1, root=1)))
    register(f"_foreach_log1p{suffix}", f"_foreach_expm1{suffix}")(_foreach_per_element(BOs(add=1, root=1)))


@register("_foreach_pow", "_foreach_pow_")
def foreach_pow(out, xs, exponent, *args, **kwargs) -> BOs:
    """Per tensor: as ``pow`` (repeated squaring / root / exp·log, see :mod:`.elementwise`)."""
    if isinstance(xs, (int, float)):  # Scalar ** TensorList
        n = _list_numel(exponent)
        return BOs(mul=n, root=2 * n)
    exps = exponent if isinstance(exponent, (list, tuple)) else [exponent] * len(xs)
    return sum((elementwise.pow_exponent_bos(numel(t), e) for t, e in zip(xs, exps)), BOs())


@register("_foreach_norm")
def foreach_norm(out, xs, ord=2, *args, **kwargs) -> BOs:
    """Per tensor of n elements: the vector norm of order ``ord`` (2-norm: n mul, n−1 add, 1 root)."""
    vector_norm = RULES[torch.ops.aten.linalg_vector_norm]
    return sum((vector_norm(None, t, ord) for t in xs), BOs())


register("_foreach_zero_", "_foreach_copy_", "_foreach_copy")(
    lambda out, *a, **k: BOs())


@register("_fused_sgd_", "_fused_sgd")
def fused_sgd(out, params, grads, momentum_buffers, *args, weight_decay=0.0, momentum=0.0,
              nesterov=False, is_first_step=False, **kwargs) -> BOs:
    """Per element: decay (1 mul, 1 add), momentum (2 mul, 1 add), nesterov (1 mul, 1 add),
    update (1 mul, 1 sub) — see module doc."""
    n = _list_numel(params)
    unit = BOs(mul=1, sub=1)
    if weight_decay:
        unit += BOs(mul=1, add=1)
    if momentum:
        if not is_first_step:
            unit += BOs(mul=2, add=1)
        if nesterov:
            unit += BOs(mul=1, add=1)
    return unit * n


def _fused_adam(decoupled: bool):
    def rule(out, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, *args,
             weight_decay=0.0, amsgrad=False, **kwargs) -> BOs:
        n = _list_numel(params)
        unit = BOs(add=3, sub=2, mul=5, div=2, root=1)
        if weight_decay:
            unit += BOs(mul=1) if decoupled else BOs(mul=1, add=1)
        if amsgrad:
            unit += BOs(sub=1)
        per_tensor = BOs(sub=2, mul=2, div=1, root=5)
        return unit * n + per_tensor * len(params)

    rule.__doc__ = ("Fused AdamW" if decoupled else "Fused Adam") + \
        ": per element [3, 2, 5, 2, 1] (+decay, +amsgrad), per tensor [0, 2, 2, 1, 5]; see module doc."
    return rule


register("_fused_adam_", "_fused_adam")(_fused_adam(False))
register("_fused_adamw_", "_fused_adamw")(_fused_adam(True))
