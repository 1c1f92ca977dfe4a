"""The loop's code read from its frame instead of traced (issue 18, item 6): a cached step skips
the tracer over ``loss = loss_fn(model(x), y); loss.backward(); opt.step()`` only while the code
and its values show the same calls as a counted step, and every change is still seen.

Each loop runs three times on identical models — ``TOsCounter(cache=True)``,
``TOsCounter(cache=False)`` and an ``Engine(model=...)`` around what the counter calls a step —
and every step's table must be equal row for row (layer, phase, dtype, op)."""

import sys
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from torch.nn.modules.module import register_module_forward_hook
from torch.optim.optimizer import register_optimizer_step_pre_hook

from torch_tos import TOsCounter
from torch_tos.counter import Engine
from torch_tos.training import bytecode
from torch_tos.training.stretch import StretchWatch

pytestmark = pytest.mark.skipif(not bytecode.SUPPORTED, reason="the loop's code is read on Python 3.11")

X, Y = torch.randn(16, 4), torch.randint(0, 3, (16,))
YF = torch.rand(16, 3)


def _net():
    return nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 3))


def _rows(counts) -> dict:
    return {k: list(v) for k, v in counts.rows.items() if not k[3].startswith("profiler.")}


class Reference:
    """``Engine(model=...)`` from the model's first forward to the end of ``optimizer.step()``
    (the optimizer phase set by the optimizer's own step hooks); one table per step."""

    def __init__(self, model, opt):
        self.engine = Engine(model=model)
        self.engine.paused = True
        self.steps: list = []
        self.handles = [model.register_forward_pre_hook(self._open, prepend=True),
                        opt.register_step_pre_hook(self._opt_pre),
                        opt.register_step_post_hook(self._opt_post)]

    def _open(self, *_):
        self.engine.paused = False

    def _opt_pre(self, *_):
        self.engine.paused = False
        self.engine.in_optimizer = True

    def _opt_post(self, *_):
        self.engine.in_optimizer = False
        self.engine.paused = True
        self.steps.append(_rows(self.engine.counts))
        self.engine.reset()

    def __enter__(self):
        self.engine.__enter__()
        return self

    def __exit__(self, *exc):
        self.engine.__exit__(*exc)
        for h in self.handles:
            h.remove()
        return False


def _three_ways(make_loss, body, steps, lr=0.1, cleanup=None):
    """``body(model, opt, loss_fn, i, state)`` run three ways (module doc), ``cleanup(state)``
    after each; returns the cached counter's records and how many of its steps skipped the
    tracer."""
    out = {}
    for mode in ("cached", "uncached", "engine"):
        torch.manual_seed(0)
        model = _net()
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        loss_fn, state = make_loss(), {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if mode == "engine":
                    with Reference(model, opt) as ref:
                        for i in range(steps):
                            body(model, opt, loss_fn, i, state)
                    out[mode] = ref.steps
                    continue
                with TOsCounter(model, opt, cache=mode == "cached") as counter:
                    for i in range(steps):
                        body(model, opt, loss_fn, i, state)
            finally:
                if cleanup is not None:
                    cleanup(state)
        out[mode] = [_rows(counter.report(step=i).counts) for i in range(steps)]
        out[mode + "_records"] = counter.steps
        out[mode + "_skipped"] = counter._tracker.stretch.skipped
    for i in range(steps):
        assert out["cached"][i] == out["uncached"][i], f"step {i}: cache=True differs from cache=False"
        assert out["cached"][i] == out["engine"][i], f"step {i}: differs from an Engine"
    assert out["uncached_skipped"] == 0
    return out["cached_records"], out["cached_skipped"]


def _step(model, opt, loss_fn, i, state):
    opt.zero_grad()
    loss = loss_fn(model(X), Y)
    loss.backward()
    opt.step()


def test_a_straight_loop_skips_the_tracer_and_stays_exact():
    records, skipped = _three_ways(nn.CrossEntropyLoss, _step, 5)
    assert [r.cache for r in records] == ["miss", "hit", "hit", "hit", "hit"]
    assert skipped == 4  # every step after the counted one


def _change_at_2(change):
    def body(model, opt, loss_fn, i, state):
        if i == 2:
            change(model, opt, loss_fn, state)
        loss_fn = state.get("loss_fn", loss_fn)
        target = state.get("target", Y)
        opt.zero_grad()
        loss = loss_fn(model(X), target)
        loss.backward()
        opt.step()
    return body


def _work_before_the_step(*_):
    torch.ones(3).sum()  # the loop's code, run before the counter's pre-hook


_CHANGES = {
    "reduction": lambda m, o, f, s: setattr(f, "reduction", "sum"),
    "label smoothing": lambda m, o, f, s: setattr(f, "label_smoothing", 0.1),
    "class weights": lambda m, o, f, s: setattr(f, "weight", torch.rand(3)),
    "another loss": lambda m, o, f, s: s.update(loss_fn=nn.MultiLabelSoftMarginLoss(), target=YF),
    "target dtype": lambda m, o, f, s: s.update(target=YF),  # class indices -> probabilities
    "hook on the loss": lambda m, o, f, s: f.register_forward_hook(lambda mod, a, out: out * 2),
    "pre-hook on the loss": lambda m, o, f, s: f.register_forward_pre_hook(lambda mod, a: (a[0] + 1, a[1])),
    "global optimizer pre-hook": lambda m, o, f, s: s.update(
        handle=register_optimizer_step_pre_hook(_work_before_the_step)),
    "momentum": lambda m, o, f, s: o.param_groups[0].update(momentum=0.9),
    # runs after the counter's own pre-hook, where the loop's values are read
    "a model pre-hook changing the loss": lambda m, o, f, s: s.update(
        handle=m.register_forward_pre_hook(lambda mod, a: setattr(f, "reduction", "sum"))),
    "a model forward hook changing the loss": lambda m, o, f, s: s.update(
        handle=m.register_forward_hook(lambda mod, a, out: setattr(f, "reduction", "sum"))),
    "global module hook": lambda m, o, f, s: s.update(handle=register_module_forward_hook(
        lambda mod, a, out: out * 2 if isinstance(mod, nn.CrossEntropyLoss) else None)),
    "the instance's forward": lambda m, o, f, s: setattr(f, "forward", _doubled(f.forward)),
    # what Module.compile() sets: the instance's compiled call replaces _call_impl
    "a compiled call": lambda m, o, f, s: setattr(f, "_compiled_call_impl", _doubled(f._call_impl)),
    "the class's forward": lambda m, o, f, s: _replace(s, nn.CrossEntropyLoss, "forward",
                                                       _doubled(nn.CrossEntropyLoss.forward)),
}


def _doubled(fn):
    return lambda *a, **k: fn(*a, **k) * 2


def _replace(state, owner, name, value):
    """``owner.name = value`` until the test's cleanup."""
    old = owner.__dict__[name]
    setattr(owner, name, value)
    state["handle"] = type("Restore", (), {"remove": lambda self: setattr(owner, name, old)})()


@pytest.mark.parametrize("change", list(_CHANGES))
def test_every_change_of_the_loop_code_s_values_is_seen(change):
    def cleanup(state):
        if "handle" in state:
            state.pop("handle").remove()

    records, skipped = _three_ways(nn.CrossEntropyLoss, _change_at_2(_CHANGES[change]), 6, cleanup=cleanup)
    assert records[2].cache != "hit", records[2]  # seen: counted from where it differs
    assert records[0].cache == "miss" and records[1].cache == "hit"
    assert skipped >= 1  # step 1 skipped the tracer before the change


def test_functional_loss_with_a_keyword_value_changed():
    def body(model, opt, loss_fn, i, state):
        smoothing = 0.0 if i < 2 else 0.2
        opt.zero_grad()
        F.cross_entropy(model(X), Y, label_smoothing=smoothing).backward()
        opt.step()

    records, skipped = _three_ways(lambda: None, body, 5)
    assert [r.cache for r in records] == ["miss", "hit", "partial", "hit", "hit"]
    assert skipped == 3 and records[2].recount == "call sequence differs at cross_entropy"


def test_code_that_is_not_straight_is_traced():
    def body(model, opt, loss_fn, i, state):
        opt.zero_grad()
        loss = loss_fn(model(X), Y) * (2 if i >= 2 else 1)  # an operator: it runs code
        loss.backward()
        opt.step()

    records, skipped = _three_ways(nn.CrossEntropyLoss, body, 4)
    assert skipped == 0 and records[2].cache == "partial"


def test_a_target_that_requires_grad_keeps_the_tracer_on():
    """The backward would reach the target's own graph, which the key does not describe."""
    def make():
        return nn.MSELoss()

    def body(model, opt, loss_fn, i, state):
        target = torch.rand(16, 3, requires_grad=True) * 1  # a fresh leaf: its grad is stored
        opt.zero_grad()
        loss = loss_fn(model(X), target)
        loss.backward()
        opt.step()

    records, skipped = _three_ways(make, body, 3)
    assert skipped == 0 and [r.cache for r in records] == ["miss", "hit", "hit"]


def test_under_a_trace_function_the_loop_is_traced():
    previous = sys.gettrace()
    sys.settrace(lambda *a: None)  # a debugger or coverage: its code is not read
    try:
        records, skipped = _three_ways(nn.CrossEntropyLoss, _step, 3)
    finally:
        sys.settrace(previous)
    assert skipped == 0 and [r.cache for r in records] == ["miss", "hit", "hit"]


def _counter_run(loop, steps=4):
    torch.manual_seed(0)
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loop(model, opt, steps)
    return model, opt


def test_an_exception_a_handler_could_catch_keeps_the_tracer_on():
    """The step runs in a helper; the loop catches what the loss raises and computes something
    in its handler. A skipped stretch would not see that handler: the code is traced."""
    bad = torch.full((16,), 7)  # a class index out of range: cross_entropy raises
    seen = {}

    def loop(model, opt, steps):
        loss_fn = nn.CrossEntropyLoss()
        with TOsCounter(model, opt) as counter:
            for i in range(steps):
                try:
                    _step_with(model, opt, loss_fn, bad if i == 2 else Y)
                except (IndexError, RuntimeError):
                    torch.ones(3).sum()  # work the counter must see
        seen["skipped"] = counter._tracker.stretch.skipped

    _counter_run(loop)
    assert seen["skipped"] == 0


def _step_with(model, opt, loss_fn, target):
    opt.zero_grad()
    loss = loss_fn(model(X), target)
    loss.backward()
    opt.step()


def test_an_exception_leaving_the_counter_drops_the_step():
    bad = torch.full((16,), 7)
    seen = {}

    def loop(model, opt, steps):
        loss_fn = nn.CrossEntropyLoss()
        with pytest.raises((IndexError, RuntimeError)):
            with TOsCounter(model, opt) as counter:
                for i in range(steps):
                    _step_with(model, opt, loss_fn, bad if i == 3 else Y)
        seen["counter"] = counter

    _counter_run(loop, 5)
    counter = seen["counter"]
    assert [r.cache for r in counter.steps] == ["miss", "hit", "hit"]  # step 3 dropped
    assert counter._tracker.stretch.skipped == 3  # step 3 too: the exception reached the counter


def test_a_forward_while_an_exception_unwinds_drops_the_step_with_a_warning():
    """A ``finally`` on the way up re-raises (so the stretch may be skipped) but calls the model
    first: the skipped step did not run as read; it is dropped, with a warning."""
    bad = torch.full((16,), 7)

    def outer(model, opt, loss_fn, target):
        try:
            _step_with(model, opt, loss_fn, target)
        finally:  # (no `with` here: a handler nested in it could swallow, and nothing is read)
            torch.set_grad_enabled(False)
            model(X)
            torch.set_grad_enabled(True)

    torch.manual_seed(0)
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    with pytest.warns(RuntimeWarning, match="the step is dropped"):
        with pytest.raises((IndexError, RuntimeError)):
            with TOsCounter(model, opt) as counter:
                for i in range(4):
                    outer(model, opt, loss_fn, bad if i == 3 else Y)
    kinds = [(r.kind, r.cache) for r in counter.steps]
    assert kinds[:6] == [("training", "miss"), ("inference", "miss"), ("training", "hit"),
                         ("inference", "hit"), ("training", "hit"), ("inference", "hit")]
    assert counter._tracker.stretch.skipped == 3


def test_a_step_resumed_inside_a_try_from_a_generator_is_traced():
    """The same call site, reached from a generator that is resumed once outside and once
    inside a ``try``: the callers differ, so the answer for one is not reused for the other."""
    torch.manual_seed(0)
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()

    def steps():
        while True:
            _step_with(model, opt, loss_fn, Y)
            yield

    gen = steps()
    with TOsCounter(model, opt) as counter:
        watch = counter._tracker.stretch
        next(gen)  # counted
        next(gen)
        assert watch.skipped == 1
        try:
            next(gen)
        except ValueError:  # pragma: no cover - never raised; makes the resume catchable
            pass
        assert watch.skipped == 1  # a ValueError in the stretch would be caught: traced
        next(gen)
        assert watch.skipped == 2
    assert [r.cache for r in counter.steps] == ["miss", "hit", "hit", "hit"]


def test_a_module_level_loop_is_read_and_its_namespace_kept():
    torch.manual_seed(0)
    ns = {"model": _net(), "loss_fn": nn.CrossEntropyLoss(), "X": X, "Y": Y, "TOsCounter": TOsCounter}
    ns["opt"] = torch.optim.SGD(ns["model"].parameters(), lr=0.1)
    code = ("with TOsCounter(model, opt) as counter:\n"
            "    for i in range(4):\n"
            "        opt.zero_grad()\n"
            "        loss = loss_fn(model(X), Y)\n"
            "        loss.backward()\n"
            "        opt.step()\n")
    exec(compile(code, "<training script>", "exec"), ns)
    counter = ns["counter"]
    assert counter._tracker.stretch.skipped == 3
    assert {"model", "opt", "loss_fn", "loss", "i", "counter"} <= set(ns)  # the globals are intact


# -- the bytecode reader ------------------------------------------------------------------------
def _site(fn, call_index=0):
    """(code, offset) of the ``call_index``-th CALL instruction of ``fn``."""
    calls = [i.offset for i in bytecode._instructions(fn.__code__)[0] if i.opname == "CALL"]
    return fn.__code__, calls[call_index]


def test_read_stretch_finds_the_calls_up_to_step():
    def loop(model, opt, loss_fn, x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    s = bytecode.read_stretch(*_site(loop, 1))  # the model's call (after zero_grad)
    assert s is not None and s.model == ("local", "model") and s.optimizer == ("local", "opt")
    assert s.calls == ((("local", "loss_fn"), (bytecode.OUTPUT, ("local", "y")), ()),
                       (("method", ("result", 0), "backward"), (), ()))


@pytest.mark.parametrize("src", [
    "loss = loss_fn(model(x), y) * 2\n    loss.backward()\n    opt.step()",
    "loss = loss_fn(model(x), y[0])\n    loss.backward()\n    opt.step()",
    "loss = loss_fn(model(x), y)\n    if loss:\n        loss.backward()\n    opt.step()",
    "loss = loss_fn(model(x), y)\n    with ctx:\n        loss.backward()\n    opt.step()",
    "loss = loss_fn(model(x), y)\n    print(f'{loss}')\n    opt.step()",
    "loss = loss_fn(model(x), y)\n    loss.backward()\n    return loss",
])
def test_read_stretch_refuses_code_that_runs_code_of_its_own(src):
    ns: dict = {}
    exec(f"def loop(model, opt, loss_fn, x, y, ctx):\n    {src}\n", ns)
    assert bytecode.read_stretch(*_site(ns["loop"])) is None


def _outcomes(src, stop_with=False):
    ns: dict = {}
    exec(src, ns)
    code = ns["f"].__code__
    ins = bytecode._instructions(code)[0]
    call = next(i.offset for i in ins if i.opname == "CALL" and
                any(j.argval == "g" and j.offset < i.offset for j in ins))
    stop = None
    if stop_with:
        w = next(i.offset for i in ins if i.opname == "BEFORE_WITH")
        stop = bytecode.with_handler(code, w)
        assert stop is not None
    return bytecode.exception_outcomes(code, call, stop)


@pytest.mark.parametrize("src, caught", [
    ("def f(g):\n  if g:\n    pass\n  g()\n", False),
    ("def f(g):\n  try:\n    pass\n    g()\n  except ValueError:\n    pass\n", True),
    ("def f(g):\n  try:\n    pass\n    g()\n  finally:\n    print(1)\n", False),
    ("def f(g):\n  try:\n    pass\n    g()\n  finally:\n    return 1\n", True),
    ("def f(g):\n  try:\n    pass\n    g()\n  except ValueError:\n    raise\n", False),
    ("def f(g, c):\n  with c:\n    pass\n    g()\n", True),  # __exit__ may return True
    ("def f(g):\n  for i in range(3):\n    try:\n      g()\n    except Exception:\n      continue\n", True),
    ("def f(g):\n  while True:\n    try:\n      g()\n    except Exception:\n      pass\n", True),
])
def test_exception_outcomes(src, caught):
    """What a frame's handlers do with an exception raised at the call on line 4 (or the
    call of ``g``): ``"caught"`` where some path may swallow it, else it leaves the frame."""
    out = _outcomes(src)
    assert ("caught" in out) is caught
    assert caught or out == {"out"}


def test_the_counter_s_own_with_block_stops_an_exception():
    assert set(_outcomes("def f(g, c):\n  with c:\n    pass\n    g()\n", stop_with=True)) == {"stopped"}


def test_nothing_is_read_with_cache_off_or_for_an_untrusted_model():
    class Mine(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(x)

    for model, cache in ((_net(), False), (Mine(), True)):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with TOsCounter(model, opt, cache=cache) as counter:
            for _ in range(3):
                _step_with(model, opt, nn.CrossEntropyLoss(), Y)
        assert counter._tracker.stretch.skipped == 0
        assert isinstance(counter._tracker.stretch, StretchWatch)




def _same_work(fn):
    return lambda *a, **k: fn(*a, **k)


@pytest.mark.parametrize("owner, name", [(F, "cross_entropy"), (nn.Module, "_call_impl")])
def test_library_code_replaced_is_not_read_as_the_library(owner, name):
    """A loss module's call runs ``Module._call_impl`` and the ``F`` loss its forward names:
    replaced (here by a wrapper doing the same work), the call is no longer known library code and
    the stretch is traced."""
    def loop(model, opt, steps):
        state = {}
        try:
            with TOsCounter(model, opt) as counter:
                for i in range(steps):
                    if i == 2:
                        _replace(state, owner, name, _same_work(owner.__dict__[name]))
                    _step_with(model, opt, loss_fn, Y)
                    skipped.append(counter._tracker.stretch.skipped)
        finally:
            if "handle" in state:
                state["handle"].remove()

    loss_fn, skipped = nn.CrossEntropyLoss(), []
    _counter_run(loop, steps=4)
    assert skipped == [0, 1, 1, 1]


@pytest.mark.parametrize("how", ["another Python", "unreadable code"])
def test_code_that_cannot_be_read_is_traced(monkeypatch, how):
    """Where the loop's code cannot be read (a Python whose bytecode the reader does not know, or
    a reader failing on it) the tracer watches the loop: same counts, nothing raised."""
    from torch_tos.training import stretch

    def fail(*_):
        raise IndexError("an instruction the reader does not know")

    if how == "another Python":
        monkeypatch.setattr(stretch, "_ENABLED", False)
    else:
        monkeypatch.setattr(bytecode, "_read", fail)
        monkeypatch.setattr(bytecode, "_STRETCHES", {})
    records, skipped = _three_ways(nn.CrossEntropyLoss, _step, 3)
    assert skipped == 0 and [r.cache for r in records] == ["miss", "hit", "hit"]


@pytest.mark.slow
def test_a_compiled_step_function_is_traced_and_counted_as_eager():
    """``torch.compile`` of the whole step: dynamo runs the loop's code from functions of its own
    making (resumed after the counter's hooks break the graph), which are not read; the counts
    equal an uncached counter's of the eager loop."""
    torch.manual_seed(0)
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()

    @torch.compile(backend="eager")
    def train_step(x, y):
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with TOsCounter(model, opt, cache=False) as ref:
            for _ in range(2):
                _step_with(model, opt, loss_fn, Y)
        with TOsCounter(model, opt) as counter:
            for _ in range(4):
                opt.zero_grad()
                train_step(X, Y)
    assert counter._tracker.stretch.skipped == 0
    assert [r.phases for r in counter.steps[1:]] == [ref.steps[1].phases] * 3
