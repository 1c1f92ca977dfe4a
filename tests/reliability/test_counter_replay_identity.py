"""A replayed step sees the loop's values by identity (issue 18, item 6: the counter's cost):
``torch_tos/training/replaykey.py`` tells that the stretch's full key would be equal again from
the very same objects (model, optimizer, functional losses), a loss module's state read without
building its key, and the arguments' signatures. Each loop below repeats one step until it is
replayed by identity, then changes one thing that identity alone could miss or that must still
be seen, and is counted three ways (``TOsCounter(cache=True)``, ``cache=False``, an ``Engine``)
whose tables must be equal step by step, row for row (``_three_ways``)."""

import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from test_counter_replay import CHANGE_AT, STEPS, X, Y, _cleanup, _net, _replayed_then_seen, _three_ways
from torch_tos import TOsCounter
from torch_tos.training import bytecode

pytestmark = pytest.mark.skipif(not bytecode.SUPPORTED, reason="the loop's code is read on Python 3.11")

YF = torch.rand(16, 3)


def _loop(make_loss=nn.CrossEntropyLoss, target=Y, change=None):
    def body(model, opt, loss_fn, i, state):
        if i == CHANGE_AT and change is not None:
            change(model, opt, state)
        loss_fn = state.setdefault("loss_fn", make_loss())
        y = state.get("target", target)
        opt.zero_grad()
        loss = loss_fn(model(X), y)
        loss.backward()
        opt.step()
    return body


def test_a_repeated_step_is_seen_by_identity():
    counter, before = _three_ways(_loop())
    r = counter._tracker.replay
    assert [s.cache for s in counter.steps] == ["miss"] + ["hit"] * (STEPS - 1) and before == 1
    # the first replayed step reads the key in full and keeps its objects; the later ones compare
    assert r.replayed == STEPS - 3 and r.identical == STEPS - 4


def _new_str(s):
    return "".join(list(s))  # an equal string, another object


_STILL_THE_SAME_WORK = {
    # identity differs, the full key is equal: still replayed
    "an equal reduction made anew": lambda m, o, s: setattr(s["loss_fn"], "reduction", _new_str("mean")),
    "another loss module in the same state": lambda m, o, s: s.update(loss_fn=nn.CrossEntropyLoss()),
    "another target of the same signature": lambda m, o, s: s.update(target=Y.clone()),
    # MSELoss/CrossEntropyLoss's forward reads its own attributes, not this one: the same key
    "an attribute of no meaning to the loss": lambda m, o, s: setattr(s["loss_fn"], "extra", 1),
}


@pytest.mark.parametrize("change", list(_STILL_THE_SAME_WORK))
def test_equal_values_in_new_objects_are_still_replayed(change):
    counter, before = _three_ways(_loop(change=_STILL_THE_SAME_WORK[change]))
    assert [s.cache for s in counter.steps] == ["miss"] + ["hit"] * (STEPS - 1) and before == 1
    assert counter._tracker.replay.replayed == STEPS - 3


_SEEN = {
    # equal by ==, but not the same key: a tensor, a numpy scalar
    "a tensor equal to a float attribute": (nn.HuberLoss, YF, lambda m, o, s: setattr(
        s["loss_fn"], "delta", torch.tensor(1.0))),
    "a numpy scalar equal to a float attribute": (nn.HuberLoss, YF, lambda m, o, s: setattr(
        s["loss_fn"], "delta", np.float64(1.0))),
    "a buffer set on the loss": (nn.CrossEntropyLoss, Y, lambda m, o, s: setattr(
        s["loss_fn"], "weight", torch.ones(3))),
    "the loss's class replaced": (nn.MSELoss, YF, lambda m, o, s: setattr(
        s["loss_fn"], "__class__", nn.L1Loss)),
    "a backward hook on the loss": (nn.MSELoss, YF, lambda m, o, s: s.update(
        handle=s["loss_fn"].register_full_backward_hook(lambda *a: None))),
    "a forward hook on the model": (nn.MSELoss, YF, lambda m, o, s: s.update(
        handle=m.register_forward_hook(lambda *a: None))),
    "the optimizer's step wrapped on the instance": (nn.MSELoss, YF, lambda m, o, s: setattr(
        o, "step", o.step)),
}


@pytest.mark.parametrize("change", list(_SEEN))
def test_a_change_identity_alone_could_miss_is_seen(change):
    make_loss, target, body = _SEEN[change]
    counter, before = _three_ways(_loop(make_loss, target, body), cleanup=_cleanup)
    caches = [s.cache for s in counter.steps]
    assert caches[:CHANGE_AT] == ["miss", "hit", "hit", "hit"] and before == 1, caches
    assert counter._tracker.replay.replayed == 1  # nothing replayed from the change on


def test_a_functional_loss_swapped_is_seen():
    def body(model, opt, loss_fn, i, state):
        fn = F.mse_loss if i < CHANGE_AT else F.l1_loss
        opt.zero_grad()
        loss = fn(model(X), YF)
        loss.backward()
        opt.step()

    counter, before = _three_ways(body)
    _replayed_then_seen(counter, before)
    assert counter._tracker.replay.identical == 0  # step 3 took the objects, step 4 differs


def test_a_trace_function_set_mid_loop_is_seen():
    previous = sys.gettrace()

    def body(model, opt, loss_fn, i, state):
        if i == CHANGE_AT:
            sys.settrace(lambda *a: None)  # a debugger attached: its code runs in the stretch
        opt.zero_grad()
        loss = loss_fn(model(X), Y)
        loss.backward()
        opt.step()

    try:
        counter, before = _three_ways(body, cleanup=lambda state: sys.settrace(previous))
    finally:
        sys.settrace(previous)
    caches = [s.cache for s in counter.steps]
    assert caches[:CHANGE_AT] == ["miss", "hit", "hit", "hit"] and before == 1
    assert counter._tracker.replay.replayed == 1


def test_an_optimizer_followed_without_being_given_is_seen_weakly():
    """``TOsCounter(model)`` follows the model's optimizer without holding it: the replay keeps
    a weak reference, and the same counts as ``cache=False``."""
    out = {}
    for cache in (True, False):
        torch.manual_seed(0)
        model = _net()
        opt, loss_fn = torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss()
        with TOsCounter(model, cache=cache, history=None) as counter:
            for _ in range(STEPS):
                opt.zero_grad()
                loss = loss_fn(model(X), Y)
                loss.backward()
                opt.step()
            if cache:
                same = counter._tracker.replay.same
                assert same.weak and same.opt() is opt
        out[cache] = counter
    replay = out[True]._tracker.replay
    assert replay.replayed >= 3 and replay.identical == replay.replayed - 1 and replay.same is None
    assert [r.to_dict() for r in out[True].steps] == [
        dict(r.to_dict(), cache=c.cache, recount=c.recount) for r, c in zip(out[False].steps, out[True].steps)]


def test_counts_of_replayed_steps_are_added_when_read():
    """Replayed steps are counted when ``n``, ``uses`` and the running TOs are read: a sink added
    mid-loop gets the running TOs a step-by-step sum gives, to the last bit."""
    got = {}
    for cache in (True, False):
        torch.manual_seed(0)
        model = _net()
        opt, loss_fn, seen = torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), []
        with TOsCounter(model, opt, cache=cache) as counter:
            for i in range(40):
                if i == 30:
                    counter.log_to(lambda rec, *a: seen.append(counter._records.running_tos))
                opt.zero_grad()
                loss = loss_fn(model(X), Y)
                loss.backward()
                opt.step()
                if i == 20:
                    assert counter._records.n == 21 and counter.total.steps == 21
        got[cache] = (seen, counter._records.n, counter.total, dict(counter._records.uses).values())
    assert got[True][0] == got[False][0] and len(got[True][0]) == 10
    assert got[True][1:3] == got[False][1:3] and list(got[True][3]) == list(got[False][3]) == [40]


def test_weight_decay_turned_on_is_seen():
    """The optimizer's hyperparameters are compared at its step: a replayed forward, then the
    optimizer's step counted from where it differs."""
    counter, before = _three_ways(_loop(change=lambda m, o, s: o.param_groups[0].update(weight_decay=0.01)))
    _replayed_then_seen(counter, before)
    assert counter.steps[CHANGE_AT].cache == "partial"


_MODULE_LEVEL_LOOP = """
with TOsCounter(model, opt, cache=cache, history=None) as counter:
    for i in range(7):
        if i == 5:
            loss_fn.reduction = "sum"
        opt.zero_grad()
        loss = loss_fn(model(X), Y)
        loss.backward()
        opt.step()
"""


def test_a_loop_at_module_level_is_seen_by_identity():
    """A script's own loop (its names are globals, read from the frame's namespaces): seen by
    identity, and a loss attribute changed mid-loop is still seen."""
    out = {}
    for cache in (True, False):
        torch.manual_seed(0)
        model = _net()
        scope = dict(TOsCounter=TOsCounter, model=model, opt=torch.optim.SGD(model.parameters(), lr=0.1),
                     loss_fn=nn.CrossEntropyLoss(), X=X, Y=Y, cache=cache)
        exec(compile(_MODULE_LEVEL_LOOP, "<script>", "exec"), scope)
        out[cache] = scope["counter"]
    replay = out[True]._tracker.replay
    assert replay.replayed == 2 and replay.identical == 1  # steps 3 and 4 replayed, 4 by identity
    assert [r.cache for r in out[True].steps] == ["miss", "hit", "hit", "hit", "hit", "partial", "hit"]
    assert [r.to_dict() for r in out[True].steps] == [
        dict(r.to_dict(), cache=c.cache, recount=c.recount) for r, c in zip(out[False].steps, out[True].steps)]


@pytest.mark.parametrize("where", ["target", "target as a keyword"])
def test_a_target_that_requires_grad_accumulates_its_gradient_from_the_second_step(where):
    # the backward reaches the target (a leaf made trainable by the loop): the first step stores its
    # gradient, every later one adds into it (an add per element the cache must not skip)
    def body(model, opt, loss_fn, i, state):
        target = state.setdefault("target", YF.clone().requires_grad_())  # one per way of counting
        opt.zero_grad()
        out = model(X).softmax(-1)
        loss = F.mse_loss(out, target) if where == "target" else F.mse_loss(out, target=target)
        loss.backward()
        opt.step()

    counter, _ = _three_ways(body)
    first, second, third = (s.tos for s in counter.steps[:3])
    assert second > first and third == second
