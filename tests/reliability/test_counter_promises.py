"""TOsCounter's small promises (issue 18, item 8): threads, integral numbers of any type, each
kind of step under its own TensorBoard tags, whole-line appends to a shared CSV log."""

import multiprocessing as mp
import threading

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

import torch_tos
from torch_tos import TOsCounter
from torch_tos.training.records import STEP_COLUMNS


def _net():
    return nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 1))


X, Y = torch.randn(16, 4), torch.rand(16, 1)


def _train(model, opt, steps):
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.mse_loss(model(X), Y).backward()
        opt.step()


def _in_thread(fn, *args):
    out = []

    def run():
        try:
            out.append(fn(*args))
        except Exception as e:  # noqa: BLE001 - handed back to the test
            out.append(e)

    t = threading.Thread(target=run, name="worker")
    t.start()
    t.join()
    return out[0]


# -- threads ---------------------------------------------------------------------------------------

def test_a_counter_entered_in_another_thread_counts_that_thread():
    torch.manual_seed(0)
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    counter = TOsCounter(model, opt)  # made here, used in the worker

    def loop():
        with counter:
            _train(model, opt, 3)
        return counter

    got = _in_thread(loop)
    assert [r.cache for r in got.steps] == ["miss", "hit", "hit"]
    other = _net()
    ref = torch_tos.profile(other, X, mode="training", loss_fn=nn.MSELoss(), target=Y,
                            optimizer=torch.optim.SGD(other.parameters(), lr=0.1))
    assert got.steps[0].phases["forward"] == ref.by_phase()["forward"]


def test_two_threads_with_their_own_models_count_independently():
    results = {}

    def loop(k, steps):
        torch.manual_seed(0)
        model = _net()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with TOsCounter(model, opt) as counter:
            _train(model, opt, steps)
        results[k] = counter.total

    threads = [threading.Thread(target=loop, args=(k, 20 + 10 * k)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[0].steps == 20 and results[1].steps == 30
    assert results[1].tos_exact * 2 == results[0].tos_exact * 3  # same work per step, nothing mixed


def test_entering_from_a_second_thread_says_which_thread_holds_the_counter():
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with TOsCounter(model, opt) as counter:
        err = _in_thread(counter.__enter__)  # the same counter
        assert isinstance(err, RuntimeError)
        assert "already active in thread 'MainThread'" in str(err) and "nested" not in str(err)
        err = _in_thread(TOsCounter(model, opt).__enter__)  # another counter on the same model
        assert isinstance(err, RuntimeError)
        assert "on this model (Sequential) in thread 'MainThread'" in str(err)
        assert "other threads are not counted" in str(err)
        # the model run from the worker meanwhile is not booked here
        _in_thread(_train, model, opt, 2)
        _train(model, opt, 1)
    assert counter.total.steps == 1
    with pytest.raises(RuntimeError, match="cannot be nested"):
        with counter:
            counter.__enter__()


# -- integral numbers of any type ------------------------------------------------------------------

def test_numpy_integers_are_accepted_wherever_a_count_is():
    model = _net()
    counter = TOsCounter(model, history=np.int64(5))
    assert counter.history == 5 and type(counter.history) is int
    with counter:
        for _ in range(3):
            model(X)
            counter.step()
    assert counter.report(step=np.int64(1)).tos_exact == counter.steps[1].tos_exact
    assert counter.report(step=np.int32(-1)).tos_exact == counter.steps[-1].tos_exact
    for bad in (2.5, True, "3", 0):
        with pytest.raises(ValueError, match="history must be a positive integer"):
            TOsCounter(model, history=bad)
    with pytest.raises(TypeError, match="step index"):
        counter.report(step=1.0)


def test_law_predict_takes_numpy_steps():
    from torch_tos.energy.costmodel import _check_steps

    assert _check_steps(np.int64(5)) == 5 and type(_check_steps(np.int64(5))) is int
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        _check_steps(0.5)


# -- TensorBoard: each kind of step under its own tags ----------------------------------------------

class _Writer:
    def __init__(self):
        self.scalars = []

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))


class _Meter:
    def measure(self):
        class Window:
            joules, seconds, estimated = 2.0, 0.5, True

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

        return Window()


def test_log_to_summary_writer_keeps_inference_and_validation_apart():
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = _Writer()
    with TOsCounter(model, opt, meter=_Meter()) as counter:
        counter.log_to(writer)
        _train(model, opt, 1)                                # step 0: training
        with torch.no_grad():
            nn.functional.mse_loss(model(X), Y)              # step 1: validation
            model(X)                                         # step 2: inference
        counter.step()
    assert [r.kind for r in counter.steps] == ["training", "validation", "inference"]
    tags = {s: sorted(t for t, _, i in writer.scalars if i == s) for s in range(3)}
    assert tags[0] == sorted(["tos/step", "tos/total", "flops/step", "energy/joules", "energy/joules_per_tos"])
    assert tags[1] == sorted(["tos/validation_step", "tos/total", "flops/validation_step",
                              "energy/validation_joules"])
    assert tags[2] == sorted(["tos/inference_step", "tos/total", "flops/inference_step",
                              "energy/inference_joules"])
    values = {(t, i): v for t, v, i in writer.scalars}
    assert values["tos/inference_step", 2] == counter.steps[2].tos
    assert values["tos/total", 2] == pytest.approx(counter.total.tos)


# -- CSV: whole lines from concurrent writers --------------------------------------------------------

def _append_rows(path, seed, steps):
    torch.manual_seed(seed)
    model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(seed + 1)])  # distinct rows per writer
    with TOsCounter(model) as counter:
        counter.log_to(path)
        for _ in range(steps):
            model(X)
            counter.step()


def test_two_processes_appending_to_one_csv_never_tear_a_row(tmp_path):
    path = tmp_path / "steps.csv"
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    procs = [ctx.Process(target=_append_rows, args=(str(path), k, 200)) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(STEP_COLUMNS) and lines.count(lines[0]) == 1  # one header
    df = pd.read_csv(path)
    assert len(df) == 400 and sorted(df["step"].value_counts().unique()) == [2]
    assert df["tos"].nunique() == 2  # each row whole: one of the two writers' values
