"""Helpers shared by the sequence-half golden tests (test_rules_seq_*.py).

``op_bos(fn, *args)`` runs ``fn`` under a counting Engine on CPU (real kernels) and, unless told
otherwise, on meta copies of the arguments, asserts both count the same, and returns the BOs per
aten op. ``rule_bos(op, *args)`` calls a registered rule directly (shape-only, no kernel run) —
for kernels this machine does not run (CUDA) or shapes too big to compute.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from torch_tos import BOs
from torch_tos.counter import Engine
from torch_tos.rules import RULES

B = BOs
aten = torch.ops.aten


def _to(obj, device):
    if isinstance(obj, torch.Tensor):
        t = obj.detach().to(device)
        return t.requires_grad_(obj.requires_grad) if obj.is_floating_point() else t
    if isinstance(obj, nn.Module):
        return copy.deepcopy(obj).to(device)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(o, device) for o in obj)
    return obj


def run(fn, args, device, phases=None) -> dict[str, BOs]:
    """BOs per aten op (zero-cost ops dropped) of ``fn(*args)`` on ``device``."""
    args = [_to(a, device) for a in args]
    engine = Engine(flops=False)
    with engine:
        fn(*args)
    assert not engine.unsupported, f"unsupported on {device}: {engine.unsupported}"
    return {op.removeprefix("aten."): b for op, b in engine.bos_by_op(phases).items()}


def op_bos(fn, *args, meta: bool = True, phases=None) -> dict[str, BOs]:
    torch.manual_seed(0)
    real = run(fn, args, "cpu", phases)
    if meta:
        torch.manual_seed(0)
        assert run(fn, args, "meta", phases) == real
    return real


def meta(*shape, dtype=torch.float32):
    return torch.empty(*shape, device="meta", dtype=dtype)


def rule_bos(op, *args, out=None, **kwargs) -> BOs:
    """The registered rule of ``op`` called directly on (meta) arguments."""
    return RULES[op](out, *args, **kwargs)


def unit(op) -> BOs:
    """BOs of another family's element-wise rule on one element (used where a composite of this
    half prices e.g. a GELU inside a fused kernel)."""
    one = meta(1)
    return RULES[op](one, one)


def test_helpers_agree_on_a_trivial_op():
    # one mm of 2×3 @ 3×4: 8 outputs × (3 mul, 2 add)
    assert op_bos(torch.mm, torch.randn(2, 3), torch.randn(3, 4)) == {"mm": B(16, 0, 24, 0, 0)}
