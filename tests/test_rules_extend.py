"""torch_tos.register_rule: counting rules for a user's own operators, with clear errors."""

from __future__ import annotations

import pytest
import torch

import torch_tos
from torch_tos import BOs, RuleError


@torch.library.custom_op("torch_tos_test::scaled_add", mutates_args=())
def scaled_add(x: torch.Tensor, y: torch.Tensor, a: float) -> torch.Tensor:
    return x + a * y


@scaled_add.register_fake
def _(x, y, a):
    return torch.empty_like(x)


@torch.library.custom_op("torch_tos_test::bad", mutates_args=())
def bad(x: torch.Tensor) -> torch.Tensor:
    return x.clone()


@bad.register_fake
def _(x):
    return torch.empty_like(x)


@pytest.fixture(autouse=True)
def clean():
    yield
    for op in (scaled_add, bad):
        torch_tos.unregister_rule(op)


def bos_of(fn, *args):
    with torch_tos.Engine(flops=False) as engine:
        fn(*args)
    return engine


def test_custom_op_without_a_rule_is_unsupported():
    engine = bos_of(scaled_add, torch.randn(3), torch.randn(3), 2.0)
    assert {k[0] for k in engine.unsupported} == {"torch_tos_test.scaled_add"}


@pytest.mark.parametrize("spelling", ["def", "packet", "string"])
def test_a_user_rule_prices_the_op(spelling):
    op = {"def": scaled_add, "packet": torch.ops.torch_tos_test.scaled_add,
          "string": "torch_tos_test::scaled_add"}[spelling]

    @torch_tos.register_rule(op)
    def rule(out, x, y, a):
        # x + a·y: one mul and one add per element
        return BOs(add=out.numel(), mul=out.numel())

    for device in ("cpu", "meta"):  # meta runs the op's fake kernel
        x = torch.randn(4, device=device)
        engine = bos_of(scaled_add, x, x, 2.0)
        assert engine.bos_by_op() == {"torch_tos_test.scaled_add": BOs(add=4, mul=4)}
        assert not engine.unsupported


def test_tuples_and_dicts_are_accepted():
    torch_tos.register_rule(scaled_add, lambda out, *a: (1, 0, 2, 0, 0))
    assert bos_of(scaled_add, torch.randn(2), torch.randn(2), 1.0).bos_by_op() == {
        "torch_tos_test.scaled_add": BOs(add=1, mul=2)}
    torch_tos.register_rule(scaled_add, lambda out, *a: {"div": 3}, replace=True)
    assert bos_of(scaled_add, torch.randn(2), torch.randn(2), 1.0).bos_by_op() == {
        "torch_tos_test.scaled_add": BOs(div=3)}


def test_a_failing_rule_names_the_op():
    torch_tos.register_rule(bad, lambda out, x: 1 / 0)
    with pytest.raises(RuleError, match=r"rule for torch_tos_test\.bad raised ZeroDivisionError"):
        bos_of(bad, torch.randn(2))


@pytest.mark.parametrize("value", [3, (1, 2), (-1, 0, 0, 0, 0), {"add": -1}, (1.5, 0, 0, 0, 0), {"adds": 1}])
def test_a_wrong_return_names_the_op(value):
    torch_tos.register_rule(bad, lambda out, x: value)
    with pytest.raises(RuleError, match=r"rule for torch_tos_test\.bad returned"):
        bos_of(bad, torch.randn(2))


def test_registration_errors():
    torch_tos.register_rule(bad, lambda out, x: BOs())
    with pytest.raises(ValueError, match="already has a counting rule; pass replace=True"):
        torch_tos.register_rule(bad, lambda out, x: BOs())
    with pytest.raises(ValueError, match="aten.mm already has a counting rule"):
        torch_tos.register_rule(torch.ops.aten.mm, lambda out, a, b: BOs())
    with pytest.raises(ValueError, match="is not an operator; accepted: a torch.library custom op"):
        torch_tos.register_rule("no_such_namespace_x::op", lambda out: BOs())
    with pytest.raises(ValueError, match="the rule must be callable"):
        torch_tos.register_rule(scaled_add, 3)
