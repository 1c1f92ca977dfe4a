"""``zero_grad()`` between the loss and its backward — ``out = model(x); loss = loss_fn(out, y);
opt.zero_grad(); loss.backward(); opt.step()``, the most common loop — is read from the loop's
code like the loss and the backward (``torch_tos/training/stretchkey.py``): its part of the key is
which of the model's parameters hold a gradient after it. Each loop is counted three ways
(``TOsCounter(cache=True)``, ``cache=False``, an ``Engine``) whose tables must be equal step by
step, row for row (``_three_ways``), and says how many steps skipped the tracer."""

import pytest
import torch
import torch.nn as nn

from test_counter_stretch import X, Y, _three_ways
from torch_tos.training import bytecode

pytestmark = pytest.mark.skipif(not bytecode.SUPPORTED, reason="the loop's code is read on Python 3.11")


def _opt_zero_grad(model, opt, loss_fn, i, state):
    out = model(X)
    loss = loss_fn(out, Y)
    opt.zero_grad()
    loss.backward()
    opt.step()


def _opt_zero_grad_keyword(model, opt, loss_fn, i, state):
    loss = loss_fn(model(X), Y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _opt_zero_grad_positional(model, opt, loss_fn, i, state):
    loss = loss_fn(model(X), Y)
    opt.zero_grad(True)
    loss.backward()
    opt.step()


def _model_zero_grad(model, opt, loss_fn, i, state):
    loss = loss_fn(model(X), Y)
    model.zero_grad()
    loss.backward()
    opt.step()


@pytest.mark.parametrize("body", [_opt_zero_grad, _opt_zero_grad_keyword, _opt_zero_grad_positional, _model_zero_grad])
def test_zero_grad_between_the_loss_and_its_backward_skips_the_tracer_and_stays_exact(body):
    records, skipped = _three_ways(nn.CrossEntropyLoss, body, 5)
    # step 1 is the first with gradients before its forward: another step, counted (and its
    # stretch learned under the tracer); every step after it is a hit that skips the tracer
    assert [r.cache for r in records] == ["miss", "miss", "hit", "hit", "hit"]
    assert skipped == 3


def test_zero_grad_that_keeps_zeroed_gradients_is_traced():
    def body(model, opt, loss_fn, i, state):
        loss = loss_fn(model(X), Y)
        opt.zero_grad(set_to_none=False)  # runs ops (zero_) on the gradients it keeps
        loss.backward()
        opt.step()

    records, skipped = _three_ways(nn.CrossEntropyLoss, body, 5)
    assert skipped == 0 and records[-1].cache == "hit"


def test_a_parameter_left_out_of_the_optimizer_keeps_its_gradient_and_is_seen():
    """From step 2 the last bias is no longer the optimizer's: its ``zero_grad()`` leaves that
    gradient, and the backward adds into it instead of storing a first one."""
    def body(model, opt, loss_fn, i, state):
        if i == 2:
            opt.param_groups[0]["params"].pop()
        loss = loss_fn(model(X), Y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    records, skipped = _three_ways(nn.CrossEntropyLoss, body, 6)
    assert records[2].cache != "hit" and records[5].cache == "hit"
    assert skipped >= 2  # before the change, and again once the new key was learned


def test_another_optimizer_s_zero_grad_drops_only_its_own_gradients():
    def body(model, opt, loss_fn, i, state):
        other = state.setdefault("other", torch.optim.SGD([model[2].weight], lr=0.1))
        loss = loss_fn(model(X), Y)
        other.zero_grad()  # the other parameters' gradients stay: the backward adds into them
        loss.backward()
        opt.step()

    records, skipped = _three_ways(nn.CrossEntropyLoss, body, 5)
    assert skipped == 3 and records[-1].cache == "hit"


class _OwnZeroGrad(torch.optim.SGD):
    def zero_grad(self, set_to_none=True):
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is not None:
                    p.grad.mul_(0.5)  # work of its own


@pytest.mark.parametrize("how", ["a subclass's zero_grad", "an instance's zero_grad", "a submodule's zero_grad"])
def test_zero_grad_that_is_not_the_library_s_is_traced(how):
    def body(model, opt, loss_fn, i, state):
        if how == "a subclass's zero_grad":
            zg = state.setdefault("opt", _OwnZeroGrad(model.parameters(), lr=0.1))
        elif how == "an instance's zero_grad":
            zg = opt
            if "zero_grad" not in opt.__dict__:
                opt.zero_grad = lambda: [p.grad.mul_(0.5) for p in model.parameters() if p.grad is not None]
        else:
            zg = model[0]
        loss = loss_fn(model(X), Y)
        zg.zero_grad()
        loss.backward()
        opt.step()

    records, skipped = _three_ways(nn.CrossEntropyLoss, body, 5)
    assert skipped == 0
