"""TOsCounter in real loops (issue 12, items 3, 4/6, 6; issue 10): threads, result files, bounded
memory, torch.compile."""

import threading
import warnings

import pandas as pd
import pytest
import torch
import torch.nn as nn

import torch_tos
from torch_tos import _compat
from torch_tos import TOsCounter


def _ffn():
    return nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 8), nn.Sigmoid(), nn.Linear(8, 1))


def _step(model, opt, x, y):
    opt.zero_grad(set_to_none=True)
    nn.functional.mse_loss(model(x), y).backward()
    opt.step()


# -- threads ------------------------------------------------------------------------------------

def test_profile_in_another_thread_books_nothing_here():
    x, y = torch.randn(8, 4), torch.rand(8, 1)
    torch.manual_seed(0)
    model = _ffn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with TOsCounter(model, opt, cache=False) as ref:  # the exact counts of one step
        _step(model, opt, x, y)
    expected = ref.steps[0].phases
    # the other thread profiles inference: a training profile would race with the optimizer's
    # in-place updates of the same parameters (an autograd error of the loop, not of counting)
    profiled = torch_tos.profile(model, x)
    for trial in range(10):
        for cache in (True, False):
            stop, errors, reports = threading.Event(), [], []

            def other():
                try:
                    while not stop.is_set():
                        reports.append(torch_tos.profile(model, x))
                except Exception as e:  # pragma: no cover - reported below
                    errors.append(e)

            t = threading.Thread(target=other)
            with TOsCounter(model, opt, cache=cache) as counter:
                t.start()
                for _ in range(6):
                    _step(model, opt, x, y)
                stop.set()
                t.join()
            assert not errors
            assert reports, "the other thread profiled nothing"
            assert [r.phases for r in counter.steps] == [expected] * 6, f"trial {trial}, cache={cache}"
            assert all(r.by_phase() == profiled.by_phase() for r in reports)


def test_hooks_do_nothing_when_called_from_another_thread():
    model = _ffn()
    x = torch.randn(2, 4)
    with TOsCounter(model) as counter:
        t = threading.Thread(target=lambda: model(x))  # the same model, called in another thread
        t.start()
        t.join()
        assert counter._tracker.step is None
    assert counter.steps == []


# -- log_to(csv) --------------------------------------------------------------------------------

def test_log_to_csv_repairs_a_torn_last_line(tmp_path):
    path = tmp_path / "steps.csv"
    model, x, y = _ffn(), torch.randn(8, 4), torch.rand(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with TOsCounter(model, opt) as counter:
        counter.log_to(path)
        _step(model, opt, x, y)
    with open(path, "a") as f:  # a run killed while writing its row
        f.write("1,training,hit,,12,3")
    with pytest.warns(RuntimeWarning, match="incomplete last line"):
        again = TOsCounter(model, opt).log_to(path)
    with again:
        _step(model, opt, x, y)
    df = pd.read_csv(path)
    assert len(df) == 2 and df["step"].tolist() == [0, 0]


def test_log_to_csv_checks_the_path_at_once(tmp_path):
    counter = TOsCounter(_ffn())
    with pytest.raises(ValueError, match="is a directory"):
        counter.log_to(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="cannot write"):
        counter.log_to(blocker / "steps.csv")  # a file where a folder is needed
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a step log"):
        counter.log_to(other)
    nul = tmp_path / "nul.csv"
    nul.write_text(",".join(torch_tos.training.STEP_COLUMNS) + "\n\x00\x00\x00\n")
    with pytest.warns(RuntimeWarning, match="NUL"):
        counter.log_to(nul)


# -- bounded memory -----------------------------------------------------------------------------

@pytest.mark.parametrize("cache", [True, False])
def test_memory_is_per_kind_not_per_step(cache):
    model, opt = _ffn(), None
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    xs = [torch.randn(8, 4), torch.randn(5, 4)]  # two kinds of step
    with TOsCounter(model, opt, cache=cache, history=10) as counter:
        for i in range(60):
            x = xs[i % 2]
            _step(model, opt, x, torch.rand(len(x), 1))
    records = counter._records
    assert len(counter.steps) == 10 and counter.steps[-1].index == 59
    assert len(records.uses) == 2  # one summary per kind of step
    assert counter.total.steps == 60
    assert counter.total.tos_exact == 30 * (counter.steps[-1].tos_exact + counter.steps[-2].tos_exact)
    assert counter.report().tos_exact == counter.total.tos_exact
    with pytest.raises(IndexError, match="history=None"):
        counter.report(step=3)
    assert counter.report(step=-1).tos_exact == counter.steps[-1].tos_exact


def test_history_none_keeps_every_record():
    model, x, y = _ffn(), torch.randn(8, 4), torch.rand(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with TOsCounter(model, opt, history=None) as counter:
        for _ in range(30):
            _step(model, opt, x, y)
    assert [r.index for r in counter.steps] == list(range(30))
    with pytest.raises(ValueError, match="history"):
        TOsCounter(model, history=0)


# -- torch.compile ------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(not _compat.COMPILED_CALLS_COUNTED,
                    reason="this torch lacks dynamo's dispatch-key snapshot API (torch_tos._compat)")
@pytest.mark.parametrize("cache", [True, False])
def test_ops_around_a_compiled_model_are_counted(cache):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(5, 4), torch.randint(0, 3, (5,))
    with TOsCounter(model, opt, cache=False) as ref:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with TOsCounter(model, opt, cache=cache) as counter:
            compiled = torch.compile(model)  # inside the loop
            for _ in range(3):
                opt.zero_grad()
                nn.functional.cross_entropy(compiled(x), y).backward()
                opt.step()
    want = ref.steps[0].phases
    for rec in counter.steps:  # _log_softmax, right after the compiled forward, is not lost
        assert rec.phases["forward"] == want["forward"] and rec.phases["loss"] == want["loss"]
        assert any(k.op == "aten._log_softmax" for k, _ in counter.report(step=rec.index).counts)
    # (a step that runs the compiled backward graph is counted as that graph's ops, which may
    # decompose differently from eager autograd: its backward is what really ran)
