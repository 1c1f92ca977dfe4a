"""TOsCounter's cache is right or not used (issue 12, item 1): in every loop below, each step's
counts with ``cache=True`` equal ``cache=False`` (layer for layer, phase for phase) and an
``Engine`` around the same step (op for op)."""

import warnings

import pytest
import torch
import torch.nn as nn

from torch_tos import TOsCounter
from torch_tos.counter import Engine


def _ffn(width=8):
    return nn.Sequential(nn.Linear(4, width), nn.Sigmoid(), nn.Linear(width, width), nn.Sigmoid(),
                         nn.Linear(width, 3))


def _by_op(rows) -> dict:
    """op -> [add, sub, mul, div, root, calls, flops]; the profiler's record_function markers
    (bookkeeping the counter passes through uncounted) are left out."""
    out = {}
    for (_layer, _phase, _dtype, op), row in rows.items():
        if op.startswith("profiler."):
            continue
        acc = out.setdefault(op, [0] * 7)
        for i in range(7):
            acc[i] += row[i]
    return out


def _run_three(make, body, steps):
    """``body(model, opt, i)`` is step ``i`` of the loop, run on identical copies three ways."""
    per = {}
    for mode in ("cached", "uncached", "engine"):
        torch.manual_seed(0)
        model, opt = make()
        if mode == "engine":
            per[mode] = []
            for i in range(steps):
                with Engine() as engine:
                    body(model, opt, i)
                per[mode].append(dict(engine.counts.rows))
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with TOsCounter(model, opt, cache=mode == "cached") as counter:
                for i in range(steps):
                    body(model, opt, i)
                    if opt is None:
                        counter.step()
        assert len(counter.steps) == steps
        per[mode] = [counter.report(step=i).counts.rows for i in range(steps)]
        per[mode + "_records"] = counter.steps
    for i in range(steps):
        # a partial step too: the cached path's claims are taken over (CounterScope.resume)
        assert per["cached"][i] == per["uncached"][i], f"step {i}: cache=True differs from cache=False"
        assert _by_op(per["cached"][i]) == _by_op(per["engine"][i]), f"step {i}: differs from an Engine"
    return per["cached_records"], per["uncached_records"]


def test_lbfgs_closure_each_step_counted_as_it_ran():
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))

    def make():
        model = _ffn()
        return model, torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=4, history_size=3)

    def body(model, opt, i):
        def closure():
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss
        opt.step(closure)

    cached, uncached = _run_three(make, body, 4)
    tos = [r.tos_exact for r in uncached]
    assert len(set(tos)) > 1  # LBFGS's work grows with its history: the steps really differ
    assert [r.tos_exact for r in cached] == tos
    assert all(r.kind == "training" for r in cached)


def test_inference_forward_with_the_signature_of_a_validation_forward():
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))

    def make():
        return _ffn().eval(), None

    def body(model, opt, i):
        with torch.no_grad():
            out = model(x)
            if i % 2 == 0:
                nn.functional.cross_entropy(out, y)  # validation: a loss on the output
            # odd steps: a pure inference forward, same forward signature

    cached, uncached = _run_three(make, body, 4)
    assert [r.kind for r in cached] == ["validation", "inference"] * 2
    assert "loss" not in cached[1].phases  # no loss TOs that never ran
    assert cached[1].phases == uncached[1].phases and cached[3].cache == "hit"


def test_softmax_metric_on_some_validation_steps():
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))

    def make():
        return _ffn().eval(), None

    def body(model, opt, i):
        with torch.no_grad():
            out = model(x)
            loss = nn.functional.cross_entropy(out, y)
            if i >= 1:  # a metric computed from step 1 on
                acc = (torch.softmax(out, dim=1).argmax(1) == y).float().mean()
                assert 0 <= float(acc) <= 1
            assert loss.item() > 0

    cached, uncached = _run_three(make, body, 4)
    assert cached[3].cache == "hit"
    assert cached[1].phases["loss"].bos != cached[0].phases["loss"].bos
    # step 1 leaves the cache at the metric (counted from there); step 2 reuses the new path
    assert cached[1].recount == "call sequence differs at softmax" and cached[2].cache == "hit"


def test_regularizer_switched_on_at_step_2():
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))

    def make():
        model = _ffn()
        return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def body(model, opt, i):
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        if i >= 2:
            loss = loss + 1e-3 * sum(p.pow(2).sum() for p in model.parameters())
        loss.backward()
        opt.step()

    cached, uncached = _run_three(make, body, 5)
    assert cached[2].tos_exact > cached[1].tos_exact  # the regularizer's work is counted
    # 0 counted; 1 starts with momentum buffers: counted; 2 leaves the cache at the regularizer
    # (exact per layer from there); then reused
    assert [r.cache for r in cached] == ["miss", "miss", "partial", "hit", "hit"]


def test_data_dependent_ops_are_counted_every_step():
    def make():
        model = _ffn()
        return model, torch.optim.SGD(model.parameters(), lr=0.1)

    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(16, 4, generator=g) for _ in range(4)]  # a different number of rows picked

    def body(model, opt, i):
        x = xs[i]
        opt.zero_grad(set_to_none=True)
        out = model(x)
        picked = out[(out[:, 0] > 0).nonzero().flatten()]  # data-dependent shape
        (picked.sum() + out.sum() * 0).backward()
        opt.step()

    cached, _ = _run_three(make, body, 4)
    assert all(r.cache != "hit" for r in cached)  # never reused


def test_a_step_that_calls_backward_on_another_tensor_is_recounted():
    x = torch.randn(8, 4)

    def make():
        model = _ffn()
        return model, torch.optim.SGD(model.parameters(), lr=0.1)

    def body(model, opt, i):
        opt.zero_grad(set_to_none=True)
        out = model(x)
        a, b = out.sum(), out.pow(2).sum()
        (a if i < 2 else b).backward()  # same calls, different root of the backward pass
        opt.step()

    cached, _ = _run_three(make, body, 3)
    assert cached[2].cache != "hit"


def test_grads_accumulated_across_steps_are_seen():
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))

    def make():
        model = _ffn()
        return model, torch.optim.SGD(model.parameters(), lr=0.1)

    def body(model, opt, i):
        if i != 1:  # step 1 accumulates into the gradients of step 0: an add per element
            opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    cached, _ = _run_three(make, body, 4)
    assert cached[1].tos_exact > cached[0].tos_exact and cached[3].cache == "hit"


def test_user_forward_code_is_traced():
    class Gate(nn.Module):  # a user module: its forward is traced, not trusted
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.extra = False

        def forward(self, x):
            out = self.fc(x)
            return torch.tanh(out) if self.extra else out

    x = torch.randn(8, 4)

    def make():
        model = Gate()
        return model, torch.optim.SGD(model.parameters(), lr=0.1)

    def body(model, opt, i):
        model.extra = i >= 2  # a plain attribute, invisible to the forward signature
        opt.zero_grad(set_to_none=True)
        model(x).sum().backward()
        opt.step()

    cached, _ = _run_three(make, body, 5)
    assert [r.cache for r in cached] == ["miss", "hit", "partial", "hit", "hit"]


@pytest.mark.parametrize("cache", [True, False])
def test_kv_cache_decode_steps(cache):
    """Decode steps given a growing key/value cache: each counted as it ran, all ``inference``."""

    class KV:
        def __init__(self):
            self.k = None

        def get_seq_length(self):
            return 0 if self.k is None else self.k.shape[1]

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 8)
            self.head = nn.Linear(8, 10)

        def forward(self, ids, past_key_values=None):
            h = self.emb(ids)
            kv = past_key_values
            kv.k = h if kv.k is None else torch.cat([kv.k, h], dim=1)
            att = torch.softmax(h @ kv.k.transpose(1, 2), dim=-1) @ kv.k
            return self.head(att), kv

    torch.manual_seed(0)
    model = Decoder()
    results = []
    for c in (cache, False):
        kv, ids = KV(), torch.tensor([[1, 2, 3]])
        with TOsCounter(model, cache=c) as counter, torch.no_grad():
            for _ in range(4):  # a greedy decode loop
                logits, kv = model(ids, past_key_values=kv)
                ids = logits[:, -1:].argmax(-1)
        results.append(counter.steps)
    got, ref = results
    assert [r.kind for r in got] == ["inference"] * 4
    assert [r.tos_exact for r in got] == [r.tos_exact for r in ref]
    assert len({r.tos_exact for r in got[1:]}) == 3  # the cache grows: every decode step differs


def test_kv_cache_length_is_in_the_signature():
    from torch_tos.training.signature import value_sig

    class Cache:
        def __init__(self, n):
            self.n = n

        def get_seq_length(self):
            return self.n

    assert value_sig(Cache(3)) != value_sig(Cache(4))
    assert value_sig(Cache(3)) == value_sig(Cache(3))
