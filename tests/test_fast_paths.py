"""The cheaper per-call and per-op paths of profile() give exactly what the slower ones gave.

- FLOP formulas (torch_tos.flops): the engine calls flop_registry's shape-level formulas behind
  its own tensor→shape mapping; every value equals FlopCounterMode's wrapped formula.
- module_params (torch_tos.attribution): one bottom-up pass unless something is shared.
- ScopeHooks (torch_tos._compat): hooks entered straight into the hook dicts, removed without a
  trace, with register_forward_hook's with_kwargs / always_call behaviour.
"""

import collections

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode, flop_registry, get_shape

from torch_tos._compat import ScopeHooks, shape_level_formula, tree_map
from torch_tos.attribution import ModuleScope, module_params
from torch_tos.counter import Engine
from torch_tos.flops import CUSTOM_MAPPING, _shapes, flop_formulas

aten = torch.ops.aten


def test_shapes_is_tree_map_get_shape():
    t = torch.zeros(2, 3)
    Pair = collections.namedtuple("Pair", "a b")
    for v in (t, 3, None, [t, [t, 1.5]], (t, (2, t)), {"x": t, "y": [t]}, Pair(t, 1),
              torch.Size([2, 3]), torch.return_types.max((t, t)), collections.OrderedDict(a=t)):
        got, want = _shapes(v), tree_map(get_shape, v)
        assert got == want and type(got) is type(want)


def _cases():
    a, b, c = torch.randn(4, 5), torch.randn(5, 6), torch.randn(6)
    x, y = torch.randn(3, 4, 5), torch.randn(3, 5, 2)
    img, w = torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3)
    conv_args = (img, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1)
    out = aten.convolution.default(*conv_args)
    return [
        (aten.mm, (a, b), {}, a @ b),
        (aten.addmm, (c, a, b), {}, torch.addmm(c, a, b)),  # calls the wrapped mm_flop inside
        (aten.bmm, (x, y), {}, torch.bmm(x, y)),
        (aten.baddbmm, (torch.randn(3, 4, 2), x, y), {}, torch.baddbmm(torch.randn(3, 4, 2), x, y)),
        (aten.convolution, conv_args, {}, out),
        (aten.convolution_backward, (out, img, w, [4], [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                                     [True, True, True]), {},
         aten.convolution_backward.default(out, img, w, [4], [1, 1], [1, 1], [1, 1], False, [0, 0],
                                           1, [True, True, True])),
    ]


@pytest.mark.parametrize("case", range(6))
def test_fast_formulas_equal_flop_counter_modes(case):
    packet, args, kwargs, out = _cases()[case]
    ours = flop_formulas()[packet](*args, **kwargs, out_val=out)
    mapping = FlopCounterMode(display=False, custom_mapping=CUSTOM_MAPPING).flop_registry
    assert ours == mapping[packet](*args, **kwargs, out_val=out) > 0


def test_every_registry_formula_is_unwrapped_or_kept():
    fast = flop_formulas()
    for packet, f in flop_registry.items():
        if packet in CUSTOM_MAPPING:  # torch_tos's own formula replaces torch's
            continue
        if shape_level_formula(f) is None:
            assert fast[packet] is f  # raw formulas: as they are
        else:
            assert fast[packet] is not f and fast[packet].__wrapped__.__code__ is \
                shape_level_formula(f).__code__  # same code, pytree-free argument mapping


def test_engine_flops_equal_flop_counter_mode_on_a_linear_conv_model():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    x = torch.randn(2, 3, 8, 8)
    with FlopCounterMode(display=False, custom_mapping=CUSTOM_MAPPING) as fc:
        model(x).sum().backward()
    with Engine() as e:
        model(x).sum().backward()
    # conv 2·(2·4·6·6)·27, linear fwd 2·2·144·5 and its two backward mms, conv backward (weight
    # and input gradients): all as FlopCounterMode counts them
    assert e.report().flops == fc.get_total_flops() > 0


def _naive_params(model):
    return {n: sum(p.numel() for p in m.parameters())
            for n, m in model.named_modules(remove_duplicate=False)}


def test_module_params_one_pass_equals_the_walk():
    plain = nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.Linear(4, 2), nn.ReLU()), nn.BatchNorm1d(2))
    tied = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
    tied[1].weight = tied[0].weight                        # a parameter reachable twice
    block = nn.Linear(2, 2)
    shared = nn.Sequential(block, nn.Sequential(block))    # a module reachable twice
    for model in (plain, tied, shared):
        assert module_params(model) == _naive_params(model)
    assert module_params(plain)[""] == 3 * 4 + 4 + 4 * 2 + 2 + 2 + 2  # 32
    assert module_params(tied)[""] == 40                    # the tied 10×4 weight once
    assert module_params(shared)["1"] == 6


def test_module_params_follows_an_overridden_parameters():
    class Hidden(nn.Linear):
        def parameters(self, recurse=True):  # a wrapper that exposes only the weight
            yield self.weight

    model = nn.Sequential(Hidden(3, 2))
    # the override counts for its own module (6: the weight); the root's parameters() walks the
    # submodules' _parameters (3·2 weight + 2 bias = 8)
    assert module_params(model) == _naive_params(model) == {"": 8, "0": 6}


def _hook_state(m):
    return [(n, list(getattr(m, n).items())) for n in
            ("_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_forward_hooks",
             "_forward_hooks_with_kwargs", "_forward_hooks_always_called")]


def test_scope_hooks_run_like_registered_ones_and_leave_no_trace():
    m = nn.Linear(2, 2)
    m.register_forward_hook(lambda *a: None)  # the user's own, before ours
    before = _hook_state(m)
    seen = []
    h = ScopeHooks(m, lambda mod, args, kwargs: seen.append(("pre", kwargs)),
                   lambda mod, args, kwargs, out: seen.append(("post", kwargs)))
    m(torch.randn(1, 2))
    assert seen == [("pre", {}), ("post", {})]               # with_kwargs: kwargs passed
    m.register_forward_pre_hook(lambda *a: seen.append("user pre"))  # after ours: runs after
    m(torch.randn(1, 2))
    assert seen[2:5] == [("pre", {}), "user pre", ("post", {})]
    h.remove()
    h.remove()  # twice: nothing more to remove
    assert [(n, v) for n, v in _hook_state(m) if n != "_forward_pre_hooks"] == \
        [(n, v) for n, v in before if n != "_forward_pre_hooks"]
    assert len(m._forward_pre_hooks) == 1                    # the user's later pre-hook only


def test_scope_hooks_post_runs_when_forward_raises_and_root_pre_can_be_left_out():
    class Boom(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    m = Boom()
    seen = []
    h = ScopeHooks(m, None, lambda *a: seen.append("post"))
    with pytest.raises(RuntimeError, match="boom"):
        m(torch.randn(1))
    assert seen == ["post"] and not m._forward_pre_hooks      # always_call; no pre-hook entered
    h.remove()
    assert not m._forward_hooks and not m._forward_hooks_always_called


def test_module_scope_detach_restores_the_users_hook_dicts():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    model[0].register_forward_pre_hook(lambda *a: None, with_kwargs=True)
    before = [_hook_state(m) for m in model.modules()]
    with ModuleScope(model) as scope:
        model(torch.randn(1, 2))
        assert scope.called == {id(m) for m in model.modules()}
    assert [_hook_state(m) for m in model.modules()] == before
