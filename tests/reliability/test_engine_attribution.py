"""Where the engine books work: shared modules, checkpoint recompute, re-entry, torch.cond."""

import pytest
import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

import torch_tos
from torch_tos import BOs
from torch_tos.hops import UpperBoundWarning


class SharingInner(nn.Module):
    def __init__(self, submod):
        super().__init__()
        self.submod = submod

    def forward(self, x):
        return self.submod(x)


class SharedModuleNet(nn.Module):
    """fvcore's shared-module test model: one Linear(10, 10) reached as submod1.submod and
    submod2.submod, one Linear(10, 1) under two names of the same parent."""

    def __init__(self):
        super().__init__()
        inner = nn.Linear(10, 10)
        self.submod1, self.submod2 = SharingInner(inner), SharingInner(inner)
        multiname = nn.Linear(10, 1)
        self.multiname1 = multiname
        self.multiname2 = multiname

    def forward(self, x):
        x = self.submod1(x) + self.submod2(x)
        return self.multiname1(x) + self.multiname2(x)


def test_shared_submodule_booked_under_the_name_it_was_reached_through():
    r = torch_tos.profile(SharedModuleNet(), torch.randn(1, 10))
    m = r.by_module()
    # one call of Linear(10, 10) on 1×10: 10 outputs × (10 mul, 9 adds + 1 bias add) = 100 / 100
    assert m["submod1.submod"] == m["submod2.submod"] == BOs(add=100, mul=100)  # fvcore: 100 and 100
    assert m["submod1"] == m["submod1.submod"]
    # aliases under one parent: the first name gets both calls of Linear(10, 1): 2 × (10 mul, 10 add)
    assert m["multiname1"] == BOs(add=20, mul=20) and "multiname2" not in m
    # the whole model adds x1 + x2 (10 adds) and the two Linear(10, 1) outputs (1 add)
    assert m[""] == BOs(add=100 + 100 + 20 + 10 + 1, mul=220)
    t = torch_tos.profile(SharedModuleNet(), torch.randn(1, 10), mode="training")
    bw = t.by_module(phases=("backward",))
    # each call's weight gradient: 10×10 outputs of 1 product (batch 1); the input needs none
    assert bw["submod1.submod"].mul == bw["submod2.submod"].mul == 100


class WithUnused(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.act, self.unused = nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)

    def forward(self, x):
        return self.act(self.fc(x))


def test_uncalled_modules_and_params():
    r = torch_tos.profile(WithUnused(), torch.randn(2, 4))
    assert r.uncalled_modules() == {"unused"}
    # Linear(4, 3): 12 weights + 3 biases; Linear(3, 2): 6 + 2; the model: 15 + 8
    assert r.params == {"": 23, "fc": 15, "act": 0, "unused": 8}
    assert torch_tos.profile(SharedModuleNet(), torch.randn(1, 10)).params["submod1"] == 110


class Inner(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.sigmoid(self.fc(x))


class Checkpointed(nn.Module):
    def __init__(self, reentrant: bool):
        super().__init__()
        self.a, self.blk, self.reentrant = nn.Linear(4, 4), Inner(), reentrant

    def forward(self, x):
        return checkpoint(self.blk, self.a(x), use_reentrant=self.reentrant)


@pytest.mark.parametrize("reentrant", [False, True])
def test_checkpoint_recompute_booked_under_the_module_that_reran(reentrant):
    r = torch_tos.profile(Checkpointed(reentrant), torch.randn(2, 4), mode="training")
    f32 = torch.float32
    # the recompute re-runs blk.fc's addmm (2×4 outputs: 4 mul, 3 + 1 adds) and blk's sigmoid
    # (8 elements × [1, 1, 0, 1, 1]) in the backward phase, under the modules that ran them
    rows = r.counts.rows
    assert rows[("blk.fc", "backward", f32, "aten.addmm (recompute)")][:6] == [32, 0, 32, 0, 0, 1]
    assert rows[("blk", "backward", f32, "aten.sigmoid (recompute)")][:6] == [8, 8, 0, 8, 8, 1]
    ops = r.by_op().set_index("op")
    assert ops.loc["aten.addmm (recompute)", "recompute"] and not ops.loc["aten.addmm", "recompute"]
    # blk.fc's own backward: grad input 2×4 outputs of 4 products (3 adds), grad weight 4×4 of 2
    # (1 add), grad bias 4 sums of 2 (1 add): add 24 + 16 + 4, mul 32 + 32; plus the recompute
    assert r.by_module(phases=("backward",))["blk.fc"] == BOs(add=44 + 32, mul=64 + 32)
    assert r.by_module(phases=("forward",))["blk.fc"] == BOs(add=32, mul=32)  # the first run


def test_engine_reentry_accumulates_and_nesting_is_an_error():
    x = torch.randn(3)
    engine = torch_tos.Engine()
    with engine:
        torch.sigmoid(x)
    with engine:  # counts accumulate over with-blocks (FlopCounterMode restarts; see Engine)
        torch.sigmoid(x)
    assert engine.bos_by_op() == {"aten.sigmoid": BOs(6, 6, 0, 6, 6)}
    with engine:
        with pytest.raises(RuntimeError, match="already counting"):
            engine.__enter__()
    engine.reset()
    with engine:
        torch.sigmoid(x)
    assert engine.bos_by_op() == {"aten.sigmoid": BOs(3, 3, 0, 3, 3)}


def _cond(x):
    return torch.cond(x.sum() > 0, lambda x: x @ x, lambda x: torch.sigmoid(x), (x,))


def test_torch_cond_counts_the_branch_that_runs():
    # sum of 16 (15 adds), the comparison (1 sub), then one branch
    mm = BOs(add=16 * 3, mul=16 * 4)           # 4×4 @ 4×4: 16 outputs of 4 products
    sig = BOs(16, 16, 0, 16, 16)               # 16 sigmoids
    with torch_tos.Engine() as engine:
        _cond(torch.ones(4, 4))
    assert engine.bos_by_op() == {"aten.sum": BOs(add=15), "aten.gt": BOs(sub=1), "aten.mm": mm}
    with torch_tos.Engine() as engine:
        _cond(-torch.ones(4, 4))
    assert engine.bos_by_op()["aten.sigmoid"] == sig and "aten.mm" not in engine.bos_by_op()
    # on meta the predicate has no value: both branches, each row's larger count (an upper bound)
    with pytest.warns(UpperBoundWarning, match="upper bound"):
        with torch_tos.Engine() as engine:
            _cond(torch.empty(4, 4, device="meta"))
    assert engine.bos_by_op()["aten.mm"] == mm and engine.bos_by_op()["aten.sigmoid"] == sig


def test_scope_subclasses_wrap_the_hooks():
    """Subclasses (the training counter's thread-bound scope) wrap the hooks via _pre/_post."""
    calls = []

    class Wrapped(torch_tos.attribution.ModuleScope):
        def _pre(self, name):
            inner = super()._pre(name)
            return lambda *a: (calls.append(("pre", name)), inner(*a))[1]

        def _post(self, name):
            inner = super()._post(name)
            return lambda *a: (calls.append(("post", name)), inner(*a))[1]

    model = SharedModuleNet()
    with Wrapped(model) as scope:
        model(torch.randn(1, 10))
    # the shared Linear(10, 10) is hooked once (first name) and called twice; the stack unwound
    assert calls.count(("pre", "submod1.submod")) == 2 and calls.count(("post", "multiname1")) == 2
    assert scope.stack == [] and ("pre", "submod2.submod") not in calls
