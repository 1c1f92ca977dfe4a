"""A step that repeats the last one is replayed (issue 18, item 6: the counter's cost): the values
the step tracker decides on are compared with the remembered path's keys instead of walking the
cache (``torch_tos/training/replay.py``). Every change a replayed step relies on must still be
seen: each loop below repeats one step until the path is remembered and replayed, then changes
one thing, and runs three times on identical models — ``TOsCounter(cache=True)``,
``TOsCounter(cache=False)`` and an ``Engine(model=...)`` around what the counter calls a step —
whose tables must be equal step by step, row for row (layer, phase, dtype, op)."""

import warnings

import pytest
import torch
import torch.nn as nn

from test_counter_loops import Reference, _rows, assert_steps_equal
from test_counter_stretch import _CHANGES
from torch_tos import TOsCounter
from torch_tos.training import bytecode

pytestmark = pytest.mark.skipif(not bytecode.SUPPORTED, reason="the loop's code is read on Python 3.11")

X, Y = torch.randn(16, 4), torch.randint(0, 3, (16,))
CHANGE_AT, STEPS = 4, 7


def _net():
    return nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Dropout(0.0), nn.Linear(8, 3))


def _sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.1)


def _three_ways(body, steps=STEPS, make_opt=_sgd, cleanup=None, **counter_kw):
    """``body(model, opt, loss_fn, i, state)`` counted three ways (module doc); returns the cached
    counter (its records kept) and how many steps it replayed before step ``CHANGE_AT``."""
    out = {}
    for mode in ("cached", "uncached", "engine"):
        torch.manual_seed(0)
        model = _net()
        opt = make_opt(model)
        loss_fn, state = nn.CrossEntropyLoss(), {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if mode == "engine":
                    with Reference(model, opt) as ref:
                        for i in range(steps):
                            body(model, opt, loss_fn, i, state)
                    out[mode] = ref.steps
                    continue
                with TOsCounter(model, opt, cache=mode == "cached", history=None, **counter_kw) as counter:
                    for i in range(steps):
                        if i == CHANGE_AT:
                            out[mode + "_before"] = counter._tracker.replay.replayed
                        body(model, opt, loss_fn, i, state)
            finally:
                if cleanup is not None:
                    cleanup(state)
        out[mode] = [_rows(counter.report(step=i).counts) for i in range(len(counter.steps))]
        out[mode + "_counter"] = counter
    cached = out["cached_counter"]
    assert_steps_equal(cached.steps, out["cached"], out["engine"])
    assert_steps_equal(out["uncached_counter"].steps, out["uncached"], out["engine"])
    assert out["uncached_before"] == 0
    assert [r.to_dict() for r in cached.steps] == [
        dict(r.to_dict(), cache=c.cache, recount=c.recount)
        for r, c in zip(out["uncached_counter"].steps, cached.steps)]
    return cached, out["cached_before"]


def _change_at(change):
    def body(model, opt, loss_fn, i, state):
        if i == CHANGE_AT:
            change(model, opt, loss_fn, state)
        loss_fn = state.get("loss_fn", loss_fn)
        x, target = state.get("x", X), state.get("target", Y)
        opt.zero_grad()
        loss = loss_fn(model(x), target)
        loss.backward()
        opt.step()
    return body


def _cleanup(state):
    if "handle" in state:
        state.pop("handle").remove()


def _replayed_then_seen(counter, before, hit=False):
    """Steps 2 and 3 were replayed (step 1 took the path through the cache, step 2 took it again
    and it is remembered from then on), and the change at ``CHANGE_AT`` was seen: counted from
    where it differs, or (``hit``) a different path of the cache whose work is the same."""
    caches = [r.cache for r in counter.steps]
    assert caches[:CHANGE_AT] == ["miss", "hit", "hit", "hit"] and before == 1, (caches, before)
    if not hit:
        assert caches[CHANGE_AT] != "hit", counter.steps[CHANGE_AT]


def test_a_repeated_step_is_replayed():
    counter, before = _three_ways(_change_at(lambda *a: None))
    assert [r.cache for r in counter.steps] == ["miss"] + ["hit"] * (STEPS - 1)
    assert before == 1 and counter._tracker.replay.replayed == STEPS - 3


@pytest.mark.parametrize("change", list(_CHANGES))
def test_every_change_of_the_loop_code_s_values_is_seen_after_a_replay(change):
    counter, before = _three_ways(_change_at(_CHANGES[change]), cleanup=_cleanup)
    _replayed_then_seen(counter, before)


def _freeze(model, *_):
    model[0].weight.requires_grad_(False)


def _to_double(model, opt, loss_fn, state):
    model.double()
    state["x"] = X.double()


_INPUTS_AND_PARAMETERS = {
    "a smaller batch": lambda m, o, f, s: s.update(x=X[:8], target=Y[:8]),
    "an input that requires grad": lambda m, o, f, s: s.update(x=X.clone().requires_grad_()),
    "parameters and input in float64": _to_double,
    "a frozen parameter": _freeze,
    "eval mode of a flag-reading module": lambda m, o, f, s: m[2].eval(),
    "no zero_grad (gradients accumulate)": lambda m, o, f, s: setattr(o, "zero_grad", lambda **k: None),
    "a parameter's gradient dropped after its accumulation": lambda m, o, f, s: s.update(
        handle=m[3].bias.register_post_accumulate_grad_hook(lambda p: setattr(p, "grad", None))),
    "a learning rate of zero": lambda m, o, f, s: o.param_groups[0].update(lr=0.0),
    "a new param group": lambda m, o, f, s: o.add_param_group(
        {"params": [nn.Parameter(torch.zeros(3))], "lr": 0.5}),
    "a model pre-hook": lambda m, o, f, s: s.update(handle=m.register_forward_pre_hook(lambda *a: None)),
    # runs after the counter's own step pre-hook: the step's work is the same, still replayed
    "an optimizer step pre-hook": lambda m, o, f, s: s.update(
        handle=o.register_step_pre_hook(lambda *a: None)),
}


@pytest.mark.parametrize("change", list(_INPUTS_AND_PARAMETERS))
def test_every_change_of_inputs_parameters_and_optimizer_is_seen_after_a_replay(change):
    counter, before = _three_ways(_change_at(_INPUTS_AND_PARAMETERS[change]), cleanup=_cleanup)
    _replayed_then_seen(counter, before, hit=change in ("an optimizer step pre-hook", "a model pre-hook"))
    if change == "a model pre-hook":  # the same work, seen by the tracer: a hit, not replayed
        assert counter._tracker.replay.replayed == 1
    if change == "an optimizer step pre-hook":
        assert counter._tracker.replay.replayed == STEPS - 3


def test_a_learning_rate_schedule_is_replayed():
    """A new learning rate of the same class (not 0, 1 or -1) is the same work: still replayed."""
    def body(model, opt, loss_fn, i, state):
        opt.param_groups[0]["lr"] = 0.1 / (i + 1)
        opt.zero_grad()
        loss = loss_fn(model(X), Y)
        loss.backward()
        opt.step()

    counter, before = _three_ways(body)
    assert [r.cache for r in counter.steps] == ["miss"] + ["hit"] * (STEPS - 1)
    assert counter._tracker.replay.replayed == STEPS - 3


def test_another_loss_branch_is_seen():
    """The loop's other branch: another call site of the model, another stretch."""
    def body(model, opt, loss_fn, i, state):
        opt.zero_grad()
        if i < CHANGE_AT:
            loss = loss_fn(model(X), Y)
            loss.backward()
            opt.step()
        else:
            loss = nn.functional.mse_loss(model(X), torch.zeros(16, 3))
            loss.backward()
            opt.step()

    counter, before = _three_ways(body)
    _replayed_then_seen(counter, before)


def _closure(model, opt, loss_fn):
    def closure():
        opt.zero_grad()
        loss = loss_fn(model(X), Y)
        loss.backward()
        return loss
    return closure


def test_a_closure_is_seen():
    def body(model, opt, loss_fn, i, state):
        closure = _closure(model, opt, loss_fn)
        if i < CHANGE_AT:
            closure()
            opt.step()
        else:
            opt.step(closure)

    counter, before = _three_ways(body)
    assert [r.cache for r in counter.steps][:CHANGE_AT] == ["miss", "hit", "hit", "hit"] and before == 0


def test_a_step_function_with_a_closure_is_exact():
    def body(model, opt, loss_fn, i, state):
        opt.step(_closure(model, opt, loss_fn))

    counter, _ = _three_ways(body)
    assert counter._tracker.replay.replayed == 0


def test_gradient_accumulation_over_micro_batches_is_exact():
    def body(model, opt, loss_fn, i, state):
        opt.zero_grad()
        for k in range(2):
            loss = loss_fn(model(X[8 * k:8 * k + 8]), Y[8 * k:8 * k + 8])
            loss.backward()
        opt.step()

    counter, _ = _three_ways(body)
    assert counter._tracker.replay.replayed == 0  # two forwards per step: not a repeated stretch


def test_a_grad_scaler_skipping_a_step_is_seen():
    """``GradScaler.step`` skips ``optimizer.step()`` when the gradients hold an inf: from then on
    the loop's code runs through the scaler (not a loss the stretch reads)."""
    def body(model, opt, loss_fn, i, state):
        scaler = state.setdefault("scaler", torch.amp.GradScaler("cpu", init_scale=2.0 ** 10))
        opt.zero_grad()
        if i < CHANGE_AT:
            loss = loss_fn(model(X), Y)
            loss.backward()
            opt.step()
            return
        out = model(X)
        loss = loss_fn(out, Y) * (float("inf") if i == CHANGE_AT + 1 else 1.0)
        scaler.scale(loss).backward()
        scaler.step(opt)  # skipped at CHANGE_AT + 1: the step closes at the next forward
        scaler.update()

    counter, before = _three_ways(body, steps=STEPS + 1)
    assert before == 1 and len(counter.steps) == STEPS  # the skipped step's work is in the next


def test_alternating_steps_are_not_remembered():
    """Two kinds of step in turn: each is a cache hit, none repeats the last, so nothing is
    compared in vain."""
    def body(model, opt, loss_fn, i, state):
        x, y = (X, Y) if i % 2 else (X[:8], Y[:8])
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    counter, _ = _three_ways(body)
    assert counter._tracker.replay.replayed == 0


def test_records_of_replayed_steps_are_built_when_read():
    """Replayed hits are recorded as a run and built when read: the same records, indices and
    totals as steps recorded one by one, within ``history``."""
    def loop(history, sink=None):
        torch.manual_seed(0)
        model = _net()
        opt, loss_fn = _sgd(model), nn.CrossEntropyLoss()
        with TOsCounter(model, opt, history=history) as counter:
            if sink is not None:
                counter.log_to(sink)
            for i in range(9):
                x, y = (X[:8], Y[:8]) if i == 6 else (X, Y)
                opt.zero_grad()
                loss = loss_fn(model(x), y)
                loss.backward()
                opt.step()
        return counter

    logged = []
    full, short, sunk = loop(None), loop(3), loop(None, sink=lambda rec: logged.append(rec.index))
    assert full._tracker.replay.replayed > 0 and sunk._tracker.replay.replayed > 0
    assert [r.index for r in full.steps] == list(range(9)) and logged == list(range(9))
    assert [r.to_dict() for r in short.steps] == [r.to_dict() for r in full.steps[-3:]]
    assert [r.to_dict() for r in sunk.steps] == [r.to_dict() for r in full.steps]
    assert full.total == short.total == sunk.total and full.total.steps == 9
    assert full.to_dataframe().equals(sunk.to_dataframe())


def test_a_replayed_step_is_metered():
    class Meter:
        def measure(self):
            class Window:
                joules, seconds, estimated = 2.0, 0.5, False

                def __enter__(self):
                    return self

                def __exit__(self, *exc):
                    return False
            return Window()

    torch.manual_seed(0)
    model = _net()
    opt, loss_fn = _sgd(model), nn.CrossEntropyLoss()
    with TOsCounter(model, opt, meter=Meter()) as counter:
        for i in range(6):
            opt.zero_grad()
            loss = loss_fn(model(X), Y)
            loss.backward()
            opt.step()
    assert counter._tracker.replay.replayed == 3
    assert [r.joules for r in counter.steps] == [2.0] * 6 and counter.total.joules == 12.0


def test_an_input_leaf_that_requires_grad_is_keyed_by_its_gradient():
    """The backward stores the input's gradient in the first step and adds into it in the next
    ones: two kinds of step, each counted as it runs."""
    def body(model, opt, loss_fn, i, state):
        x = state.setdefault("x", X.clone().requires_grad_())
        opt.zero_grad()
        loss = loss_fn(model(x), Y)
        loss.backward()
        opt.step()

    counter, _ = _three_ways(body, steps=5)
    assert [r.cache for r in counter.steps] == ["miss", "miss", "hit", "hit", "hit"]
    assert counter.steps[1].recount == "forward signature not seen"
