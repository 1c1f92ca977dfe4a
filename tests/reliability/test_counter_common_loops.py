"""Common loops whose code from the model's call to ``optimizer.step()`` is read from their frame
(``torch_tos/training/stretch.py``), so that their cached steps skip the tracer:

* ``zero_grad()`` between the loss and its backward — ``out = model(x); loss = loss_fn(out, y);
  opt.zero_grad(); loss.backward(); opt.step()``, the most common loop — is read like the loss and
  the backward (``stretchkey.py``): its part of the key is which of the model's parameters hold a
  gradient after it;
* an LR scheduler, which sets a wrapper of the class's ``step`` as the optimizer's instance
  ``step`` (``_compat_nn.lr_scheduler_step``).

Each loop is counted three ways
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


def _with_scheduler(make):
    def body(model, opt, loss_fn, i, state):
        sched = state.get("sched")
        if sched is None:
            sched = state["sched"] = make(opt)
        opt.zero_grad()
        loss = loss_fn(model(X), Y)
        loss.backward()
        opt.step()
        sched.step()
    return body


_HITS = ["miss"] + ["hit"] * 5


@pytest.mark.parametrize("make, expected, n_skipped", [
    (lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=100), _HITS, 5),
    (lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5), _HITS, 5),
    (lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.5, total_steps=10, cycle_momentum=False), _HITS, 5),
    # the learning rate reaches 0 at step 3 (the optimizer then updates nothing: other work), is
    # seen there, and is a hit again once that step was counted
    (lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=3), ["miss", "hit", "hit", "partial", "hit", "hit"], 5),
    # momentum switched on by the scheduler at its first step: momentum buffers from step 1 on
    (lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.5, total_steps=10), ["miss", "miss", "hit", "hit", "hit", "hit"], 4),
], ids=["cosine", "step", "one-cycle", "cosine reaching zero", "one-cycle momentum"])
def test_an_lr_scheduler_s_wrapped_step_skips_the_tracer_and_stays_exact(make, expected, n_skipped):
    records, skipped = _three_ways(nn.CrossEntropyLoss, _with_scheduler(make), 6)
    assert [r.cache for r in records] == expected
    assert skipped == n_skipped


def test_another_instance_step_is_traced():
    def body(model, opt, loss_fn, i, state):
        if "step" not in opt.__dict__:
            step = type(opt).step
            opt.step = lambda: (step(opt), [p.grad.mul_(2) for p in model.parameters()])  # work of its own
        opt.zero_grad()
        loss_fn(model(X), Y).backward()
        opt.step()

    records, skipped = _three_ways(nn.CrossEntropyLoss, body, 4)
    assert skipped == 0


def test_an_lr_scheduler_wrapper_is_recognised_only_around_its_own_optimizer_s_class_step():
    from torch_tos._compat import lr_scheduler_step

    model = nn.Linear(2, 2)
    a, b = torch.optim.SGD(model.parameters(), lr=0.1), torch.optim.SGD(model.parameters(), lr=0.1)
    assert not lr_scheduler_step(a)  # no instance step
    torch.optim.lr_scheduler.StepLR(a, step_size=1)
    assert lr_scheduler_step(a)
    b.step = a.step  # a's wrapper calls a's step, not b's
    assert not lr_scheduler_step(b)
    c = torch.optim.Adam(model.parameters())
    c.step = a.step  # and SGD's class step, not Adam's
    assert not lr_scheduler_step(c)


def _clip_positional(model, opt, loss_fn, i, state):
    opt.zero_grad()
    loss = loss_fn(model(X), Y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


def _clip_infinity_norm(model, opt, loss_fn, i, state):
    opt.zero_grad()
    loss = loss_fn(model(X), Y)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=0.5, norm_type="inf")
    opt.step()
    state["norm"] = norm


def _clip_no_foreach(model, opt, loss_fn, i, state):
    loss = loss_fn(model(X), Y)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5, error_if_nonfinite=True, foreach=False)
    opt.step()


@pytest.mark.parametrize("body", [_clip_positional, _clip_infinity_norm, _clip_no_foreach])
def test_clip_grad_norm_of_the_model_s_parameters_skips_the_tracer_and_stays_exact(body):
    records, skipped = _three_ways(nn.CrossEntropyLoss, body, 5)
    if body is _clip_no_foreach:  # zero_grad() after the forward: step 1 is another step
        assert [r.cache for r in records] == ["miss", "miss", "hit", "hit", "hit"] and skipped == 3
    else:
        assert [r.cache for r in records] == ["miss"] + ["hit"] * 4 and skipped == 4


def test_a_changed_clipping_value_is_seen_and_exact():
    def body(model, opt, loss_fn, i, state):
        norm = 1.0 if i < 3 else "inf" if i == 3 else 2.0
        opt.zero_grad()
        loss = loss_fn(model(X), Y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5, norm)
        opt.step()

    records, skipped = _three_ways(nn.CrossEntropyLoss, body, 6)
    assert records[3].cache != "hit" and skipped >= 3


def _clip_a_submodule(model, opt, loss_fn, i, state):
    opt.zero_grad()
    first = model[0]
    loss = loss_fn(model(X), Y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(first.parameters(), 0.5)
    opt.step()


def _clip_a_list(model, opt, loss_fn, i, state):
    opt.zero_grad()
    params = state.setdefault("params", list(model.parameters()))
    loss = loss_fn(model(X), Y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 0.5)
    opt.step()


@pytest.mark.parametrize("body", [_clip_a_submodule, _clip_a_list, "helper replaced"])
def test_other_clipping_is_traced(body, monkeypatch):
    if body == "helper replaced":
        import torch.nn.utils.clip_grad as cg

        real, calls = cg._clip_grads_with_norm_, []

        def clip_and_more(parameters, max_norm, total_norm, foreach=None):  # more work every call
            calls.append(1)
            real(parameters, max_norm, total_norm, foreach)
            total_norm.add_(torch.ones(len(calls)).sum())

        monkeypatch.setattr(cg, "_clip_grads_with_norm_", clip_and_more)

        def body(model, opt, loss_fn, i, state):
            if i == 0:
                calls.clear()  # each of the three ways from the start
            opt.zero_grad()
            loss = loss_fn(model(X), Y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            opt.step()

    records, skipped = _three_ways(nn.CrossEntropyLoss, body, 5)
    assert skipped == 0
