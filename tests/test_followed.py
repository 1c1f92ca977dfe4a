"""The one place torch_tos sets attributes on a user's object: an engine's own ``step``/``backward``
followed while a counter is active (torch_tos.integrations.followed; DeepSpeed's engine uses it).
A fake engine with a step adapter of its own, so that no DeepSpeed is needed: the attributes are
put back exactly (normal exit, an exception, the user's own instance attribute, a replacement the
user made meanwhile), answer as the engine's methods, are never copied or pickled, and act only in
the counter's thread."""

from __future__ import annotations

import copy
import inspect
import pickle
import threading

import pytest
import torch
import torch.nn as nn

from torch_tos import TOsCounter
from torch_tos.bos import BOs
from torch_tos.integrations.followed import FollowedMethod, FollowedMethods
from torch_tos.training.adapters import register_step_adapter, unregister_step_adapter


class Engine(nn.Module):
    """An engine that owns its update, as DeepSpeed's does (no optimizer hooks are needed)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.module = nn.Linear(3, 2)
        self.optimizer = torch.optim.SGD(self.module.parameters(), lr=0.1)

    def forward(self, x):
        return self.module(x)

    def backward(self, loss):
        """The engine's backward of ``loss``."""
        loss.backward()

    def step(self, lr_kwargs=None):
        """The engine's update."""
        self.optimizer.step()
        self.optimizer.zero_grad()


class Adapter:
    def claims(self, model) -> bool:
        return isinstance(model, Engine)

    def check_optimizer(self, engine, optimizer):
        return optimizer

    def describe(self, engine) -> str:
        return "SGD in Engine"

    def step_state(self, engine):
        return engine.optimizer

    def attach(self, engine, marks) -> FollowedMethods:
        def step(obj, call, *args, **kwargs):
            marks.optimizer_begin()
            out = call(*args, **kwargs)
            marks.optimizer_end()
            return out

        def backward(obj, call, *args, **kwargs):
            with marks.backward():
                return call(*args, **kwargs)

        return FollowedMethods(engine, {"step": step, "backward": backward})


@pytest.fixture(autouse=True)
def adapter():
    register_step_adapter("test-engine", Adapter())
    yield
    unregister_step_adapter("test-engine")


def _loop(engine, steps=2):
    for _ in range(steps):
        engine.backward(engine(torch.ones(4, 3)).sum())
        engine.step()


def _own(engine) -> dict:
    return dict(vars(engine))


def _same(before: dict, after: dict) -> bool:
    return before.keys() == after.keys() and all(after[k] is v for k, v in before.items())


def test_steps_close_at_the_engines_step_and_the_engine_is_left_as_it_was():
    engine = Engine()
    before = _own(engine)
    with TOsCounter(engine, cache=False) as counter:
        assert isinstance(vars(engine)["step"], FollowedMethod)
        _loop(engine)
    assert _same(before, _own(engine))
    assert [r.kind for r in counter.steps] == ["training", "training"]
    rep = counter.report(step=1)
    assert rep.metadata["optimizer"] == "SGD in Engine"
    # SGD over the 8 parameters: p ← p + (−lr)·g, one mul and one add per element
    assert rep.by_phase()["optimizer"].bos == BOs(add=8, mul=8)
    # everything engine.backward() runs is backward work: the Linear's dW = gᵀx (6 outputs of 4
    # products: 24 mul, 18 add) and db (2 sums of 4: 6 add); the input needs no gradient
    assert rep.by_phase()["backward"].bos == BOs(add=24, mul=24)


def test_put_back_when_the_loop_raises():
    engine = Engine()
    before = _own(engine)
    with pytest.raises(RuntimeError, match="the loop failed"):
        with TOsCounter(engine):
            _loop(engine, 1)
            engine(torch.ones(4, 3))
            raise RuntimeError("the loop failed")
    assert _same(before, _own(engine))


def test_the_users_own_instance_attribute_is_called_and_put_back():
    engine = Engine()
    calls = []

    def own_step(lr_kwargs=None):
        calls.append(lr_kwargs)
        Engine.step(engine)

    engine.step = own_step
    before = _own(engine)
    with TOsCounter(engine) as counter:
        _loop(engine, 1)
    assert calls == [None] and len(counter.steps) == 1  # followed, through the user's own step
    assert _same(before, _own(engine))


def test_a_replacement_the_user_made_while_counting_is_left():
    engine = Engine()
    with TOsCounter(engine):
        inner = engine.step
        engine.step = lambda *a, **k: inner(*a, **k)  # e.g. a library wrapping the engine's step
        replaced = engine.step
        _loop(engine, 1)
    assert vars(engine)["step"] is replaced and "backward" not in vars(engine)
    replaced()  # the stand-in it wraps only calls through now


def test_the_stand_in_answers_as_the_engines_method():
    engine = Engine()
    bound = Engine.step.__get__(engine)
    with TOsCounter(engine):
        step = engine.step
        assert step.__name__ == "step" and step.__qualname__ == "Engine.step"
        assert step.__doc__ == Engine.step.__doc__
        assert step.__self__ is engine and step.__func__ is Engine.step
        assert inspect.signature(step) == inspect.signature(bound)
        assert repr(step) == repr(bound)


def test_copies_and_pickles_get_their_own_methods():
    engine = Engine()
    with TOsCounter(engine, cache=False) as counter:
        for other in (copy.deepcopy(engine), pickle.loads(pickle.dumps(engine))):
            own = vars(other)["step"]
            assert own.__self__ is other and own.__func__ is Engine.step
            _loop(other, 1)  # the copy's loop: the counter of the original sees none of it
        assert len(counter.steps) == 0


def test_another_threads_calls_only_call_through():
    engine = Engine()
    with TOsCounter(engine, cache=False) as counter:
        _loop(engine, 1)
        worker = threading.Thread(target=_loop, args=(engine, 1))
        worker.start()
        worker.join()
        assert len(counter.steps) == 1


def test_a_second_counter_is_refused_and_changes_nothing():
    engine = Engine()
    before = _own(engine)
    with TOsCounter(engine) as counter:
        during = _own(engine)
        for other in (engine, engine.module):  # the engine again, or the model it wraps
            with pytest.raises(RuntimeError, match="already active"):
                with TOsCounter(other):
                    pass
            assert _same(during, _own(engine))
        _loop(engine, 1)
    assert _same(before, _own(engine)) and len(counter.steps) == 1
