"""CTC loss: ``_ctc_loss`` (the forward α recursion) and ``_ctc_loss_backward`` (β, the
α·β accumulation and the gradient), after PyTorch's CPU kernel (LossCTC.cpp).

For a sample with T input steps and a target of S labels there are L = 2S + 1 states (blanks
between and around the labels). Every step t ≥ 1 updates every state s with
``log(e^(a1−m) + e^(a2−m) + e^(a3−m)) + m + log_p``: the kernel always evaluates the three
exponentials (absent terms are −∞), so per state **4 add, 3 sub, 4 root** plus compares: 1 for
the "all −∞" guard, 1 for a2 > m (s ≥ 1), and for s ≥ 2 the label compare target(s−2) ≠ target(s)
and, when they differ (odd s only: a label unlike the previous one), 1 more for a3 > m. The loss is
−log(e^(a−m) + e^(b−m)) − m over the last two states: [1, 5, 0, 0, 3] (m's max and guard included).

Backward: the β recursion costs as the α one; per step and state the α + β sum (1 add) is
log-add-exp'ed into its class's slot (1 compare, 2 sub, 2 exp, 1 add, 1 log, 1 add:
[3, 3, 0, 0, 3]); per step and class of the T·C log-probabilities the gradient
(e^lp − e^(lcab + nll − lp))·g: [1, 2, 1, 0, 2].

Exact on real lengths and targets; when they are only on meta the lengths are taken as the full
T and S and every label as distinct from its predecessor (approximate, warned).
"""

from __future__ import annotations

import torch

from ..bos import BOs
from .registry import register, warn_approximate

STATE = BOs(add=4, sub=3, root=4)
LOSS = BOs(add=1, sub=5, root=3)
ACCUMULATE = BOs(add=3, sub=3, root=3)
GRADIENT = BOs(add=1, sub=2, mul=1, root=2)


def _values(x, n: int, full: int):
    """A lengths argument as a list of n ints (``None`` when only on meta)."""
    if isinstance(x, torch.Tensor):
        if x.device.type == "meta":
            return None
        return [int(v) for v in x.reshape(-1).tolist()]
    if isinstance(x, (list, tuple)):
        return [int(v) for v in x]
    return [int(x)] * n


def _samples(log_probs, targets, input_lengths, target_lengths, op: str):
    """(T_n, S_n, distinct_n) per sample: steps, labels, odd states whose label differs from the
    previous label."""
    batched = log_probs.dim() == 3
    n = int(log_probs.shape[1]) if batched else 1
    T = int(log_probs.shape[0])
    s_full = int(targets.shape[-1]) if targets.dim() > 1 or not batched else int(targets.shape[0])
    ins = _values(input_lengths, n, T)
    outs = _values(target_lengths, n, s_full)
    meta = ins is None or outs is None or targets.device.type == "meta"
    if meta:
        warn_approximate(op, "input and target lengths and the labels are data; meta prices full "
                         "lengths and distinct labels")
        ins = ins or [T] * n
        outs = outs or [s_full] * n
        return [(t, s, max(s - 1, 0)) for t, s in zip(ins, outs)]
    flat = targets.reshape(-1).tolist() if targets.dim() == 1 else None
    result, offset = [], 0
    for i, (t, s) in enumerate(zip(ins, outs)):
        if flat is not None:
            labels = flat[offset:offset + s]
            offset += s
        else:
            labels = targets[i, :s].tolist() if batched else targets[:s].tolist()
        distinct = sum(1 for a, b in zip(labels, labels[1:]) if a != b)
        result.append((t, s, distinct))
    return result


def _recursion(t: int, s: int, distinct: int) -> BOs:
    """One α (or β) recursion over t steps and L = 2s + 1 states."""
    L = 2 * s + 1
    compares = 1 + (2 if L > 1 else 0) + 3 * max(L - 2, 0) + distinct
    return (STATE * L + BOs(sub=compares)) * max(t - 1, 0)


@register("_ctc_loss")
def ctc_loss(out, log_probs, targets, input_lengths, target_lengths, blank=0, zero_infinity=False,
             **kwargs) -> BOs:
    """α recursion: per step ≥ 1 and state [4, 3, 0, 0, 4] + compares; loss [1, 5, 0, 0, 3] per
    sample (see the module docstring)."""
    total = BOs()
    for t, s, distinct in _samples(log_probs, targets, input_lengths, target_lengths, "aten._ctc_loss"):
        total += _recursion(t, s, distinct) + LOSS
    return total


@register("_ctc_loss_backward")
def ctc_loss_backward(out, grad, log_probs, targets, input_lengths, target_lengths, nll, log_alpha,
                      blank=0, zero_infinity=False, **kwargs) -> BOs:
    """β recursion (as α), α·β accumulation [3, 3, 0, 0, 3] per step and state, gradient
    [1, 2, 1, 0, 2] per step and class (see the module docstring)."""
    C = int(log_probs.shape[-1])
    total = BOs()
    for t, s, distinct in _samples(log_probs, targets, input_lengths, target_lengths,
                                   "aten._ctc_loss_backward"):
        total += _recursion(t, s, distinct) + ACCUMULATE * (t * (2 * s + 1)) + GRADIENT * (t * C)
    return total
