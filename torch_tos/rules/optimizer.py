"""Optimizer kernels: the multi-tensor ``_foreach_*`` ops and the fused Adam/AdamW/SGD/Adagrad kernels.

Single-tensor optimizers (``foreach=False``) run ordinary element-wise ops (``add_``, ``mul_``,
``lerp_``, ``addcmul_``, ``addcdiv_``, ``sqrt``…), priced by :mod:`.elementwise`. The ``_foreach_``
variant of an element-wise op costs exactly what the op costs, summed over every tensor of its
first list (``alpha``/``value`` ≠ 1 adds one mul per element, as for the single-tensor op); every
``_foreach_X`` without a hand-written rule below is priced by calling the rule of ``aten.X`` on each
tensor of the list (so ``_foreach_floor`` = Σ ``floor``). ``_foreach_norm`` costs a vector norm per
tensor (2-norm: n mul, n−1 add, 1 root); ``_foreach_max`` n−1 compares per tensor;
``_foreach_powsum`` Σ|x|^p per tensor; ``_foreach_mm`` one ``mm`` per pair. Python-scalar
arithmetic of the optimizers (bias corrections from a CPU ``step``) is not an aten op and is not
counted; the fused kernels compute it inside and count it (per tensor).

Fused kernels, per element (``g`` gradient, ``p`` parameter); with AMP's ``grad_scale`` every
kernel first divides g by it (1 div); ``maximize`` negates g as g·(−1) (1 mul):

* ``_fused_sgd_``: weight decay g + wd·p (1 mul, 1 add, when wd ≠ 0); momentum b = μ·b + (1−τ)·g
  (2 mul, 1 add; the first step only copies); nesterov g + μ·b (1 mul, 1 add); p −= lr·g (1 mul,
  1 sub).
* ``_fused_adam_``/``_fused_adamw_``: decay (Adam: g + wd·p, 1 mul 1 add; AdamW: p·(1 − lr·wd),
  1 mul, with 1 − lr·wd once per tensor: 1 mul, 1 sub), m = lerp(m, g, 1−β1) (1 sub, 1 mul,
  1 add), v = β2·v + (1−β2)·g² (3 mul, 1 add), amsgrad max (1 sub), denom = √v/√bc2 + ε (1 root,
  1 div, 1 add), p −= (lr/bc1)·m/denom (1 div, 1 mul, 1 sub); per tensor the bias corrections
  1−β^t twice (2 pow = 2 mul + 4 root, 2 sub), lr/bc1 (1 div), √bc2 (1 root).
* ``_fused_adagrad_``: decay g + wd·p (1 mul, 1 add), s += g·g (1 mul, 1 add), std = √s + ε
  (1 root, 1 add), p −= clr·g/std (1 mul, 1 div, 1 sub); per tensor clr = lr/(1 + (t−1)·decay)
  (1 sub, 1 mul, 1 add, 1 div).
"""

import torch

from .._compat import all_op_names
from ..bos import BOs
from . import activations, elementwise, linalg, memory, reductions  # noqa: F401  (base rules first)
from .registry import RULES, ZERO_OPS, numel, register, register_zero


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


def _amp_and_maximize(grad_scale, maximize) -> BOs:
    """Per element: g / grad_scale (1 div) and g·(−1) for maximize (1 mul)."""
    return BOs(div=1 if grad_scale is not None else 0, mul=1 if maximize else 0)


@register("_fused_sgd_", "_fused_sgd")
def fused_sgd(out, params, grads, momentum_buffers, *args, weight_decay=0.0, momentum=0.0,
              nesterov=False, is_first_step=False, maximize=False, grad_scale=None,
              **kwargs) -> BOs:
    """Per element: decay (1 mul, 1 add), momentum (2 mul, 1 add), nesterov (1 mul, 1 add),
    update (1 mul, 1 sub), AMP unscale (1 div), maximize (1 mul) — see module doc."""
    n = _list_numel(params)
    unit = BOs(mul=1, sub=1) + _amp_and_maximize(grad_scale, maximize)
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
             weight_decay=0.0, amsgrad=False, maximize=False, grad_scale=None, **kwargs) -> BOs:
        n = _list_numel(params)
        unit = BOs(add=3, sub=2, mul=5, div=2, root=1) + _amp_and_maximize(grad_scale, maximize)
        per_tensor = BOs(sub=2, mul=2, div=1, root=5)
        if weight_decay:
            unit += BOs(mul=1) if decoupled else BOs(mul=1, add=1)
            if decoupled:
                per_tensor += BOs(mul=1, sub=1)  # 1 − lr·wd
        if amsgrad:
            unit += BOs(sub=1)
        return unit * n + per_tensor * len(params)

    rule.__doc__ = ("Fused AdamW" if decoupled else "Fused Adam") + \
        ": per element [3, 2, 5, 2, 1] (+decay, +amsgrad, +AMP, +maximize), per tensor [0, 2, 2, 1, 5]" + \
        (" (+[0, 1, 1, 0, 0] for 1 − lr·wd)" if decoupled else "") + "; see module doc."
    rule.unit = "per element [3, 2, 5, 2, 1] + options; per tensor [0, 2, 2, 1, 5]"
    return rule


register("_fused_adam_", "_fused_adam")(_fused_adam(False))
register("_fused_adamw_", "_fused_adamw")(_fused_adam(True))


@register("_fused_adagrad_", "_fused_adagrad")
def fused_adagrad(out, params, grads, state_sums, state_steps, *args, weight_decay=0.0,
                  maximize=False, grad_scale=None, **kwargs) -> BOs:
    """Fused Adagrad: per element [2, 1, 2, 1, 1] (+[1, 0, 1, 0, 0] decay, +AMP, +maximize),
    per tensor [1, 1, 1, 1, 0] for the decayed learning rate; see module doc."""
    n = _list_numel(params)
    unit = BOs(add=2, sub=1, mul=2, div=1, root=1) + _amp_and_maximize(grad_scale, maximize)
    if weight_decay:
        unit += BOs(mul=1, add=1)
    return unit * n + BOs(add=1, sub=1, mul=1, div=1) * len(params)


@register("_foreach_max")
def foreach_max(out, xs, *args, **kwargs) -> BOs:
    """Per tensor of n elements: n−1 compares."""
    return BOs(sub=sum(max(numel(t) - 1, 0) for t in xs))


@register("_foreach_powsum")
def foreach_powsum(out, xs, ord=2, *args, **kwargs) -> BOs:
    """Per tensor of n elements: Σ|x|^p — p = 2: n mul, n−1 add; p = 1: n abs, n−1 add; other p:
    n abs, n pow (exp·log: 1 mul, 2 root), n−1 add."""
    p = float(ord)
    total = BOs()
    for t in xs:
        n = numel(t)
        if p == 2:
            total += BOs(add=n - 1, mul=n)
        elif p == 1:
            total += BOs(add=n - 1, sub=n)
        else:
            total += BOs(add=n - 1, sub=n, mul=n, root=2 * n)
    return total


@register("_foreach_mm")
def foreach_mm(out, xs, ys, *args, **kwargs) -> BOs:
    """One ``mm`` per pair: n·m outputs of length-k dot products each."""
    mm = RULES[torch.ops.aten.mm]
    return sum((mm(o, a, b) for o, a, b in zip(out, xs, ys)), BOs())


def _foreach_from_base(base_rule):
    """Σ over the list of the base op's rule (list arguments taken element by element)."""

    def rule(out, xs, *args, **kwargs) -> BOs:
        total = BOs()
        outs = out if isinstance(out, (list, tuple)) and len(out) == len(xs) else xs
        for i, t in enumerate(xs):
            a = [x[i] if isinstance(x, (list, tuple)) and len(x) == len(xs) else x for x in args]
            total += base_rule(outs[i], t, *a, **kwargs)
        return total

    rule.__doc__ = f"Σ over the tensors of the list of the base op's rule: {base_rule.__doc__ or ''}".strip()
    if hasattr(base_rule, "unit"):
        rule.unit = base_rule.unit
    return rule


def _register_foreach_fallbacks() -> None:
    """``_foreach_X`` / ``_foreach_X_`` without a rule above: Σ of ``aten.X``'s rule."""
    names = {n.split("::")[1].split(".")[0] for n in all_op_names()
             if n.startswith("aten::_foreach_")}
    for name in sorted(names):
        packet = getattr(torch.ops.aten, name, None)
        if packet is None or packet in RULES or packet in ZERO_OPS:
            continue
        base_name = name[len("_foreach_"):]
        candidates = (getattr(torch.ops.aten, n, None)
                      for n in (base_name, base_name.rstrip("_"), base_name + "_"))
        base = next((b for b in candidates if b is not None and (b in RULES or b in ZERO_OPS)), None)
        if base is None:
            continue
        if base in ZERO_OPS:
            register_zero(name)
        elif base in RULES:
            register(packet)(_foreach_from_base(RULES[base]))


_register_foreach_fallbacks()
