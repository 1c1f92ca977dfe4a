"""User extensions are validated once, where they are given: profile(), TOsCounter() or Engine()
build one :class:`~torch_tos.extensions.Extensions`; the engines they make receive it as
``extensions=``. Every user rule (operator or module class) is called and checked through
:func:`torch_tos.rules.extend.call_rule`."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import torch_tos
from torch_tos import BOs, extensions
from torch_tos.rules.extend import RuleError, call_rule


@pytest.fixture
def built(monkeypatch):
    made = []
    real = extensions.Extensions.__init__

    def counting(self, ignore=None, module_rules=None):
        made.append((ignore, module_rules))
        real(self, ignore, module_rules)

    monkeypatch.setattr(extensions.Extensions, "__init__", counting)
    return made


def _rules():
    return {nn.Linear: lambda m, a, o: BOs(add=o.numel())}


def test_profile_validates_once(built):
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    torch_tos.profile(model, torch.randn(2, 4), module_rules=_rules(), ignore=["aten.relu"])
    given = [b for b in built if b != (None, None)]  # translated() starts from an empty one
    assert len(given) == 1


def test_the_counter_validates_once_over_its_resets(built):
    model = nn.Sequential(nn.Linear(4, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    counter = torch_tos.TOsCounter(model, opt, module_rules=_rules())
    for _ in range(2):
        with counter:
            model(torch.randn(2, 4)).sum().backward()
            opt.step()
    assert len(built) == 1
    assert counter.steps[0].phases["forward"].bos == BOs(add=8)


def test_an_engine_takes_extensions_or_their_arguments_not_both():
    ext = extensions.Extensions(ignore=["aten.add"])
    with pytest.raises(ValueError, match="extensions= or module_rules=/ignore=, not both"):
        torch_tos.Engine(extensions=ext, ignore=["aten.mul"])
    with torch_tos.Engine(extensions=ext) as engine:
        torch.ones(3) + torch.ones(3)
        torch.ones(3) * torch.ones(3)
    assert engine.bos_by_op() == {"aten.mul": BOs(mul=3)}


def test_a_module_rule_may_return_a_dict_as_an_operator_rule_may():
    model = nn.Sequential(nn.Linear(4, 4))
    r = torch_tos.profile(model, torch.randn(2, 4), module_rules={nn.Linear: lambda m, a, o: {"add": 3}})
    assert r.bos == BOs(add=3)


@pytest.mark.parametrize("value, match", [
    (BOs(mul=2), None), ((1, 2, 3, 4, 5), None), ({"div": 1}, None),
    (3, r"^the rule returned 3; expected BOs\(add, sub, mul, div, root\), 5 non-negative integers, or a dict"),
    ((1, 2, 3, 4, -5), "every count must be a non-negative integer"),
    ({"adds": 1}, "expected BOs"), ((1.5, 0, 0, 0, 0), "non-negative integer"),
])
def test_call_rule_checks_every_return_value(value, match):
    if match is None:
        assert isinstance(call_rule(lambda: value, (), "the rule"), BOs)
    else:
        with pytest.raises(RuleError, match=match):
            call_rule(lambda: value, (), "the rule")


def test_call_rule_names_the_rule_that_raised():
    with pytest.raises(RuleError, match=r"^the rule failed: ZeroDivisionError") as info:
        call_rule(lambda x: x / 0, (1,), "the rule", failed="failed:")
    assert isinstance(info.value.__cause__, ZeroDivisionError)
