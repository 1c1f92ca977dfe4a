"""The engine/report extension API: module-class rules, ignore=, params, uncalled modules,
by_module_and_op, Engine(model=...)."""

import pytest
import torch
import torch.nn as nn

import torch_tos
from torch_tos import BOs
from torch_tos.extensions import RuleError

F32 = torch.float32


class MyBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.sigmoid(self.fc(x))


class Net(nn.Module):
    def __init__(self, block=MyBlock):
        super().__init__()
        self.block, self.head = block(), nn.Linear(4, 1)

    def forward(self, x):
        return self.head(self.block(x))


def per_element(module, args, output):
    return BOs(mul=output.numel())  # the user's price: one multiply per output element


def test_module_rule_replaces_the_forward_of_its_class():
    r = torch_tos.profile(Net(), torch.randn(2, 4), mode="training",
                          module_rules={MyBlock: per_element})
    rows = r.counts.rows
    # the rule: 2×4 outputs → 8 mul, booked once under the module, as op module:MyBlock; it reads
    # x (8 floats) and writes 8 floats: 64 bytes
    assert rows[("block", "forward", F32, "module:MyBlock")] == [0, 0, 8, 0, 0, 1, 0, 64]
    assert not any(k[0].startswith("block") and k[1] == "forward" and k[3] != "module:MyBlock"
                   for k in rows)  # the addmm and sigmoid inside are not counted
    # backward is still counted op by op: sigmoid_backward on 8 (1 sub, 2 mul each); block.fc's
    # weight gradient 4×4 outputs of 2 products (1 add) and bias gradient 4 sums of 2 (x needs
    # no gradient)
    assert r.by_module(phases=("backward",))["block"] == BOs(sub=8, mul=16) + BOs(add=16 + 4, mul=32)
    # head.forward unchanged: 2×1 outputs of 4 products, 3 + 1 adds
    assert r.by_module(phases=("forward",))["head"] == BOs(add=8, mul=8)


def test_module_rule_applies_to_subclasses_and_outer_rules_win():
    class Sub(MyBlock):
        pass

    r = torch_tos.profile(Net(Sub), torch.randn(2, 4), module_rules={MyBlock: per_element,
                                                                      nn.Linear: lambda m, a, o: BOs()})
    fwd = r.by_op().set_index("op")
    assert fwd.loc["module:Sub", "mul"] == 8  # nearest class in the MRO: MyBlock's rule
    assert fwd.loc["module:Linear", "calls"] == 1  # only head: block.fc is inside a ruled module


@pytest.mark.parametrize("rule, match", [
    (lambda m, a, o: 3, r"module rule .* for MyBlock \(layer 'block'\) returned 3; expected BOs"),
    (lambda m, a, o: (1, 2, 3), r"returned \(1, 2, 3\)"),
    (lambda m, a, o: (1, 2, 3, 4, -5), r"non-negative"),
    (lambda m, a, o: 1 / 0, r"for MyBlock \(layer 'block'\) failed: ZeroDivisionError"),
])
def test_a_bad_module_rule_is_a_clear_error(rule, match):
    with pytest.raises(RuleError, match=match):
        torch_tos.profile(Net(), torch.randn(2, 4), module_rules={MyBlock: rule})


def test_bad_extension_arguments():
    with pytest.raises(TypeError, match="nn.Module class mapped to a function"):
        torch_tos.profile(Net(), torch.randn(2, 4), module_rules={"MyBlock": per_element})
    with pytest.raises(ValueError, match="unknown op 'aten.no_such_op'"):
        torch_tos.profile(Net(), torch.randn(2, 4), ignore=["aten.no_such_op"])
    with pytest.raises(TypeError, match="cannot ignore 3"):
        torch_tos.profile(Net(), torch.randn(2, 4), ignore=[3])
    with pytest.raises(ValueError, match="not a submodule"):
        torch_tos.profile(Net(), torch.randn(2, 4), ignore=[nn.Linear(1, 1)])
    with pytest.raises(ValueError, match="need a model"):
        torch_tos.Engine(ignore=[nn.ReLU])


def test_ignore_ops_and_modules():
    model, x = Net(), torch.randn(2, 4)
    full = torch_tos.profile(model, x, mode="training")
    for how in (torch.ops.aten.sigmoid, torch.ops.aten.sigmoid.default, "aten.sigmoid"):
        r = torch_tos.profile(model, x, mode="training", ignore=[how])
        assert "aten.sigmoid" not in set(r.by_op().op) and not r.unsupported
        assert r.bos == full.bos - BOs(8, 8, 0, 8, 8)  # 8 sigmoids of [1, 1, 0, 1, 1]
    # a module instance (of the user's model) or class: nothing of it, in any phase
    for how in (model.block, MyBlock):
        r = torch_tos.profile(model, x, mode="training", ignore=[how])
        assert not any(k[0].startswith("block") for k in r.counts.rows)
        assert r.bos == full.bos - full.by_module()["block"]


def test_by_module_and_op():
    r = torch_tos.profile(Net(), torch.randn(2, 4))
    view = r.by_module_and_op()
    # block.fc: addmm 2×4 outputs (4 mul, 3 + 1 add); block: sigmoid on 8; inclusive upwards
    assert view["block.fc"]["aten.addmm"] == BOs(add=8 * 4, mul=8 * 4)
    assert view["block"]["aten.sigmoid"] == BOs(8, 8, 0, 8, 8)
    assert view["block"]["aten.addmm"] == view["block.fc"]["aten.addmm"]
    assert view[""]["aten.addmm"] == BOs(add=32 + 8, mul=32 + 8)  # + head: 2×1 outputs of 4
    assert sum(view[""].values(), BOs()) == r.bos


def test_engine_with_a_model_attributes_arbitrary_code():
    model = Net()
    x = torch.randn(2, 4)
    with torch_tos.Engine(model=model) as engine:
        y = model(x)          # any code: the model's modules are attributed
        z = torch.sigmoid(y)  # outside the model's forward: inferred as the loss phase
    r = engine.report()
    assert r.by_module()["block.fc"] == BOs(add=32, mul=32)
    assert r.counts.rows[("(loss)", "loss", F32, "aten.sigmoid")][:5] == [2, 2, 0, 2, 2]
    assert r.params["block"] == 20 and r.uncalled_modules() == set()
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())  # removed
    assert z.shape == (2, 1)
    with pytest.raises(ValueError, match="scope= or model="):
        torch_tos.Engine(torch_tos.attribution.ModuleScope(model), model=model)


def test_tos_counter_takes_the_same_rules_and_ignores():
    model, x = Net(), torch.randn(2, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    expected = torch_tos.profile(model, x, mode="training", optimizer=opt,
                                 module_rules={MyBlock: per_element}, ignore=["aten.sigmoid_backward"])
    with torch_tos.TOsCounter(model, opt, module_rules={MyBlock: per_element},
                              ignore=["aten.sigmoid_backward"]) as counter:
        for _ in range(2):  # the second step comes from the cache
            model(x).sum().backward()
            opt.step()
            opt.zero_grad()
    def model_rows(report):  # the model's layers (the loss and optimizer are booked differently)
        return {k: v for k, v in report.counts.rows.items() if not k[0].startswith("(")}

    for step in (0, 1):
        rep = counter.report(step=step)
        assert model_rows(rep) == model_rows(expected)
        assert ("block", "forward", F32, "module:MyBlock") in rep.counts.rows
        assert not any(k[3] == "aten.sigmoid_backward" for k in rep.counts.rows)
    assert rep.params == expected.params
    with pytest.raises(TypeError, match="cannot ignore"):
        torch_tos.TOsCounter(model, ignore=[1.5])
