"""Exact per-layer counts in ordinary training loops (issue 18, item 5).

Every loop shape below runs three times on identical models: inside ``TOsCounter(cache=True)``,
inside ``TOsCounter(cache=False)``, and under a plain ``Engine(model=...)`` that counts exactly
the span the counter calls a step (from the model's first forward to the end of
``optimizer.step()``; its optimizer phase set by the optimizer's own step hooks). Each step's
table must be equal row for row — layer, phase, dtype, op — in all three, and bookkeeping
(``zero_grad()`` with either ``set_to_none``, ``optimizer.step()``, ``GradScaler``, gradient
clipping, accumulation) must never leave a cached step part-way when its work is the same."""

import contextlib
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


class Reference:
    """``Engine(model=...)`` around what the counter calls a step: counting from the model's
    first forward until ``optimizer.step()`` returns, the optimizer phase inside that step (not
    inside its closure); each step's rows are appended to :attr:`steps` when it ends. Works
    around any loop (a Trainer's too): ``with Reference(model, opt): ...``."""

    def __init__(self, model, opt):
        self.engine = Engine(model=model)
        self.engine.paused = True
        self.steps: list = []
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
        engine = self.engine
        engine.in_optimizer = False
        engine.paused = True
        self.steps.append(_rows(engine.counts))
        engine.reset()

    def __enter__(self):
        self.engine.__enter__()
        return self

    def __exit__(self, *exc):
        self.engine.__exit__(*exc)
        for h in self.handles:
            h.remove()
        return False


def assert_steps_equal(records, counted, reference):
    """Every step's rows: the counter's (``counted``) equal the reference Engine's."""
    assert len(counted) == len(reference), (len(counted), len(reference))
    for i, (got, want) in enumerate(zip(counted, reference)):
        assert got == want, f"step {i} ({records[i].cache}, {records[i].recount}) differs from an Engine"


def _three_ways(make, body, steps):
    """Per-step rows of ``body(model, opt, i, state)`` counted three ways (see module doc);
    returns the cached counter's records."""
    out = {}
    for mode in ("cached", "uncached", "engine"):
        torch.manual_seed(0)
        model, opt = make()
        state: dict = {}
        if mode == "engine":
            with Reference(model, opt) as ref:
                for i in range(steps):
                    body(model, opt, i, state)
            out[mode] = ref.steps
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with TOsCounter(model, opt, cache=mode == "cached") as counter:
                for i in range(steps):
                    body(model, opt, i, state)
        assert len(counter.steps) == steps, [r.kind for r in counter.steps]
        out[mode] = [_rows(counter.report(step=i).counts) for i in range(steps)]
        out[mode + "_records"] = counter.steps
    assert_steps_equal(out["uncached_records"], out["uncached"], out["engine"])
    assert_steps_equal(out["cached_records"], out["cached"], out["engine"])
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


def test_a_gradient_dropped_inside_the_step_is_seen():
    """No zero_grad(): gradients accumulate across steps, except that step 2 drops one between
    its forward and its backward (a setter the cache does not key, but the backward's key reads
    the gradients again after it)."""

    def body(model, opt, i, state):
        out = model(X)
        if i == 2:
            model[0].weight.grad = None  # storing a first gradient is not an accumulation
        nn.functional.cross_entropy(out, Y).backward()
        opt.step()

    records = _three_ways(_sgd(), body, 4)
    assert [r.cache for r in records] == ["miss", "miss", "partial", "hit"]


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


def _trainer_rows(counter) -> tuple[list, list]:
    records = [r for r in counter.steps if r.kind == "training"]
    return records, [_rows(counter.report(step=r.index).counts) for r in records]


def test_hugging_face_trainer(tmp_path):
    """The Trainer's own loop (gradient clipping, accumulation over 2 batches,
    ``model.zero_grad()`` after the step, the scheduler): every step equal to an Engine around
    it."""
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from transformers import Trainer, TrainingArguments

    from torch_tos.integrations.transformers import TOsTrainerCallback, build_from_config

    config = dict(num_hidden_layers=1, hidden_size=16, intermediate_size=32, num_attention_heads=2,
                  num_key_value_heads=1, vocab_size=50, use_cache=False)

    def run(callbacks, wrap):
        torch.manual_seed(0)
        model, make_inputs = build_from_config("llama", config, "cpu")
        batch = make_inputs(batch_size=2, seq_len=6)
        data = [{k: v[i % 2] for k, v in batch.items()} for i in range(8)]
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        args = TrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=2,
                                 gradient_accumulation_steps=2, max_grad_norm=1.0,
                                 report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True,
                                 dataloader_num_workers=0, logging_steps=100)
        trainer = Trainer(model=model, args=args, train_dataset=data, optimizers=(opt, None),
                          callbacks=callbacks)
        with wrap(model, opt) as ref:
            trainer.train()
        return ref

    tos = TOsTrainerCallback(log=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run([tos], lambda m, o: contextlib.nullcontext())
        ref = run([], Reference)
    records, counted = _trainer_rows(tos.counter)
    assert [r.cache for r in records] == ["miss", "miss", "hit"]  # AdamW's state from step 1 on
    assert_steps_equal(records, counted, ref.steps)


def test_lightning_trainer():
    """Lightning's automatic optimisation (the closure runs the training step, ``zero_grad()``
    and ``backward()`` inside ``optimizer.step()``): every step equal to an Engine around it."""
    L = pytest.importorskip("lightning.pytorch")
    from torch_tos.integrations.lightning import TOsCallback

    class Net(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = _net()

        def training_step(self, batch, batch_idx):
            return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    class WithReference(L.Callback):
        def on_train_start(self, trainer, module):
            self.ref = Reference(module, trainer.optimizers[0]).__enter__()

        def on_train_end(self, trainer, module):
            self.ref.__exit__(None, None, None)

    def fit(callback):
        torch.manual_seed(0)
        data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=4)
        trainer = L.Trainer(max_epochs=1, logger=False, callbacks=[callback], accelerator="cpu",
                            devices=1, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False)
        trainer.fit(Net(), data)

    tos, ref = TOsCallback(log=False), WithReference()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(tos)
        fit(ref)
    records, counted = _trainer_rows(tos.counter)
    assert [r.cache for r in records] == ["miss", "miss", "hit", "hit"]
    assert_steps_equal(records, counted, ref.ref.steps)
