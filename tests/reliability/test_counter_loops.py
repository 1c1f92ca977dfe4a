"""Exact per-layer counts in ordinary training loops (issue 18, item 5).

Every loop shape below runs three times on identical models: inside ``TOsCounter(cache=True)``,
inside ``TOsCounter(cache=False)``, and under a plain ``Engine(model=...)`` that counts exactly
the span the counter calls a step (from the model's first forward to the end of
``optimizer.step()``; its optimizer phase set by the optimizer's own step hooks). Each step's
table must be equal row for row — layer, phase, dtype, op — in all three, and bookkeeping
(``zero_grad()`` with either ``set_to_none``, ``optimizer.step()``, ``GradScaler``, gradient
clipping, accumulation) must never leave a cached step part-way when its work is the same."""

import warnings

import pytest
import torch
import torch.nn as nn

from torch_tos import TOsCounter
from torch_tos.counter import Engine


def _net():
    return nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 3))


class _Block(nn.Module):  # a user module: its forward is traced, not trusted
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.fc(x)) * 2)


def _rows(counts) -> dict:
    """Rows without the profiler's record_function markers (bookkeeping the counter lets
    through uncounted)."""
    return {k: list(v) for k, v in counts.rows.items() if not k[3].startswith("profiler.")}


class _Reference:
    """``Engine(model=...)`` around what the counter calls a step: counting from the model's
    first forward until ``optimizer.step()`` returns, the optimizer phase inside that step (not
    inside its closure)."""

    def __init__(self, model, opt):
        self.engine = Engine(model=model)
        self.engine.paused = True
        self.handles = [model.register_forward_pre_hook(self._open, prepend=True),
                        opt.register_step_pre_hook(self._opt_pre),
                        opt.register_step_post_hook(self._opt_post)]

    def _open(self, *_):
        self.engine.paused = False

    def _opt_pre(self, opt, args, kwargs):
        engine = self.engine
        engine.paused = False
        engine.in_optimizer = True
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)  # args[0] is opt
        if closure is None:
            return None

        def phased():  # the closure's forward, loss and backward are not the optimizer's
            engine.in_optimizer = False
            try:
                return closure()
            finally:
                engine.in_optimizer = True

        return args[:1], {**kwargs, "closure": phased}

    def _opt_post(self, *_):
        self.engine.in_optimizer = False
        self.engine.paused = True

    def run(self, body, *args):
        self.engine.reset()
        with self.engine:
            body(*args)
        self.engine.paused = True
        return _rows(self.engine.counts)

    def close(self):
        for h in self.handles:
            h.remove()


def _three_ways(make, body, steps):
    """Per-step rows of ``body(model, opt, i, state)`` counted three ways (see module doc);
    returns the cached counter's records."""
    out = {}
    for mode in ("cached", "uncached", "engine"):
        torch.manual_seed(0)
        model, opt = make()
        state: dict = {}
        if mode == "engine":
            ref = _Reference(model, opt)
            out[mode] = [ref.run(body, model, opt, i, state) for i in range(steps)]
            ref.close()
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with TOsCounter(model, opt, cache=mode == "cached") as counter:
                for i in range(steps):
                    body(model, opt, i, state)
        assert len(counter.steps) == steps, [r.kind for r in counter.steps]
        out[mode] = [_rows(counter.report(step=i).counts) for i in range(steps)]
        out[mode + "_records"] = counter.steps
    for i in range(steps):
        assert out["uncached"][i] == out["engine"][i], f"step {i}: cache=False differs from an Engine"
        assert out["cached"][i] == out["engine"][i], \
            f"step {i} ({out['cached_records'][i].cache}): cache=True differs from an Engine"
    return out["cached_records"]


X, Y = torch.randn(16, 4), torch.randint(0, 3, (16,))


def _sgd(model_fn=_net, **kw):
    def make():
        model = model_fn()
        return model, torch.optim.SGD(model.parameters(), lr=0.1, **kw)
    return make


def _adam(model_fn=_net):
    def make():
        model = model_fn()
        return model, torch.optim.Adam(model.parameters(), lr=1e-3)
    return make


@pytest.mark.parametrize("set_to_none", [True, False])
@pytest.mark.parametrize("make", [_sgd(), _adam(), _sgd(_Block, momentum=0.9)], ids=["sgd", "adam", "block-momentum"])
def test_zero_grad_between_loss_and_backward(make, set_to_none):
    """``loss = ...; opt.zero_grad(); loss.backward(); opt.step()`` — the gradients of the last
    step are dropped inside this one."""

    def body(model, opt, i, state):
        loss = nn.functional.cross_entropy(model(X), Y)
        opt.zero_grad(set_to_none=set_to_none)
        loss.backward()
        opt.step()

    records = _three_ways(make, body, 4)
    assert [r.cache for r in records] == ["miss", "miss", "hit", "hit"]
    assert records[1].recount == "parameter gradients at the step's start differ from every counted step"


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad_first(set_to_none):
    def body(model, opt, i, state):
        opt.zero_grad(set_to_none=set_to_none)
        nn.functional.cross_entropy(model(X), Y).backward()
        opt.step()

    records = _three_ways(_adam(), body, 4)
    # the second step starts with Adam's state (and, without set_to_none, zeroed gradients)
    assert [r.cache for r in records] == ["miss", "miss", "hit", "hit"]


def test_module_zero_grad_inside_the_step():
    def body(model, opt, i, state):
        out = model(X)
        model.zero_grad()
        nn.functional.cross_entropy(out, Y).backward()
        opt.step()

    records = _three_ways(_sgd(), body, 4)
    assert [r.cache for r in records] == ["miss", "miss", "hit", "hit"]


def test_gradient_accumulation():
    def body(model, opt, i, state):
        for k in range(3):
            (nn.functional.cross_entropy(model(X[4 * k:4 * k + 8]), Y[4 * k:4 * k + 8]) / 3).backward()
        opt.step()
        opt.zero_grad()

    records = _three_ways(_adam(), body, 4)
    assert [r.cache for r in records] == ["miss", "miss", "hit", "hit"]


def test_accumulation_whose_last_micro_batch_is_smaller():
    """The step leaves the cache at its last forward (a new signature): counted from there."""

    def body(model, opt, i, state):
        opt.zero_grad()
        for xb, yb in ((X[:8], Y[:8]), (X[8:16], Y[8:16]) if i < 2 else (X[8:13], Y[8:13])):
            nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()

    records = _three_ways(_sgd(_Block), body, 4)
    assert [r.cache for r in records] == ["miss", "hit", "partial", "hit"]
    assert records[2].recount == "forward sequence differs"


def test_amp_with_grad_scaler():
    def body(model, opt, i, state):
        scaler = state.setdefault("scaler", torch.amp.GradScaler("cpu"))
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(model(X), Y)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()

    records = _three_ways(_sgd(), body, 4)
    # the scaler creates its scale and growth tensors in its first step only: the second step
    # leaves the cache there and is counted from that point, still exactly per layer
    assert records[1].cache == "partial" and records[1].recount.startswith("call sequence differs")
    assert [r.cache for r in records[2:]] == ["hit", "hit"]


def test_lightning_style_closure():
    """Lightning's automatic optimisation: ``opt.step(closure)``, the closure running the
    training step, ``zero_grad()`` and ``backward()``."""

    def body(model, opt, i, state):
        def closure():
            loss = nn.functional.cross_entropy(model(X), Y)
            opt.zero_grad()
            loss.backward()
            return loss
        opt.step(closure)

    def make():
        model = _net()
        return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    records = _three_ways(make, body, 4)
    assert [r.cache for r in records] == ["miss", "miss", "hit", "hit"]


def test_a_step_that_leaves_the_cache_after_the_forward_is_exact_per_layer():
    """A regularizer switched on at step 2: the step leaves the cache after the forward and the
    loss; its backward is still booked per layer, as an Engine books it."""

    def body(model, opt, i, state):
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(X), Y)
        if i >= 2:
            loss = loss + 1e-3 * sum(p.pow(2).sum() for p in model.parameters())
        loss.backward()
        opt.step()

    records = _three_ways(_sgd(_Block), body, 5)
    assert [r.cache for r in records] == ["miss", "hit", "partial", "hit", "hit"]
    assert {k[0] for k in records[2].summary.counts.rows if k[1] == "backward"} >= {"fc", "head"}


def test_a_step_that_leaves_the_cache_inside_the_root_forward():
    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 8)
            self.head = nn.Linear(8, 3)
            self.extra = False

        def forward(self, x):
            h = self.fc(x)
            if self.extra:  # a plain attribute, invisible to the forward signature
                h = torch.tanh(h)
            return self.head(h)

    def body(model, opt, i, state):
        model.extra = i >= 2
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(X), Y).backward()
        opt.step()

    records = _three_ways(_sgd(Gate), body, 5)
    assert [r.cache for r in records] == ["miss", "hit", "partial", "hit", "hit"]
