"""TOsCounter: per-step counts equal profile(), the cache, phases and step kinds, meters, results."""

import copy
import io
import logging
import warnings

import pytest
import torch
import torch.nn as nn
import torch.optim.optimizer as _optim_mod

from torch.utils._python_dispatch import _get_current_dispatch_mode

import torch_tos
from torch_tos import BOs, TOsCounter
from conftest import ffn


def _strip(stats):
    """Engine stats without the profiler's record_function markers (not counted by TOsCounter),
    and with autograd's zero-cost gradient seed (``aten.ones_like`` run by ``loss.backward()``
    before the autograd engine starts) under one phase: profile() books it under ``backward``
    (it sets the phase around ``loss.backward()``), the counter where it runs (``loss``)."""
    out = {}
    for k, v in stats.items():
        if k[3].startswith("profiler."):
            continue
        if k[3] == "aten.ones_like" and k[0] == "(loss)" and not any(v[:5]) and not v[6]:
            k = (k[0], "(seed)", *k[2:])
        out[k] = v
    return out


def _step(model, opt, loss_fn, x, y):
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    return loss


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn(self.conv(x))))
        return self.head(x.flatten(1))  # functional relu and flatten: ops in the root's own forward


class FakeMeter:
    """The meters' interface: ``with meter.measure() as m: ...; m.joules, m.seconds, m.estimated``."""

    def __init__(self, joules=2.0, seconds=0.5):
        self.joules, self.seconds, self.windows = joules, seconds, 0

    def measure(self):
        meter = self

        class Window:
            def __enter__(self):
                self.joules = self.seconds = None
                self.estimated = True
                return self

            def __exit__(self, *exc):
                meter.windows += 1
                self.joules, self.seconds = meter.joules, meter.seconds
                return False

        return Window()


# -- exact equality with profile() --------------------------------------------------------------

@pytest.mark.parametrize("case", ["ffn-adam", "ffn-sgd-momentum", "cnn-adamw", "ffn-fp16-override"])
def test_each_step_equals_profile(case):
    torch.manual_seed(0)
    dtype = "float16" if case.endswith("override") else None
    if case.startswith("cnn"):
        model, x, y, loss_fn = SmallCNN(), torch.randn(4, 2, 8, 8), torch.randint(0, 3, (4,)), nn.CrossEntropyLoss()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    else:
        model, x, y, loss_fn = ffn(), torch.randn(16, 4), torch.rand(16, 1), nn.MSELoss()
        opt = (torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9) if "sgd" in case
               else torch.optim.Adam(model.parameters(), lr=1e-2))
    expected = []
    with TOsCounter(model, opt, dtype=dtype) as counter:
        for _ in range(4):
            # profile() runs the same step on a copy (grads None, optimizer state as it is now)
            expected.append(torch_tos.profile(model, x, mode="training", loss_fn=loss_fn, target=y,
                                              optimizer=opt, dtype=dtype))
            _step(model, opt, loss_fn, x, y)
    assert len(counter.steps) == 4
    # step 0 counted op by op; step 1 starts with optimizer state (and the first steps of Adam
    # and momentum create it): counted from its start; later steps reuse everything
    assert [r.cache for r in counter.steps] == ["miss", "miss", "hit", "hit"]
    assert counter.steps[1].recount == "optimizer state at the step's start differs from every counted step"
    for rec, prof in zip(counter.steps, expected):
        rep = counter.report(step=rec.index)
        assert _strip(rep.counts.rows) == _strip(prof.counts.rows)
        assert rep.unsupported == prof.unsupported
        no_type = lambda rows: [{k: v for k, v in r.items() if k != "type"} for r in rows]  # noqa: E731
        assert no_type(rep.rows()) == no_type(prof.rows())  # the counter does not know the loss's class
        assert rec.phases == prof.by_phase()
        assert rec.bos == prof.bos and rec.tos_exact == prof.tos_exact and rec.flops == prof.flops
        assert rec.kind == "training"
    total = counter.total
    assert total.bos == sum((p.bos for p in expected), BOs())
    assert total.tos_exact == sum(p.tos_exact for p in expected)
    assert total.flops == sum(p.flops for p in expected) and total.steps == 4
    assert counter.report().tos_exact == total.tos_exact


def test_cache_false_counts_every_step_and_agrees():
    torch.manual_seed(0)
    results = {}
    for cache in (True, False):
        torch.manual_seed(0)
        model = ffn()
        opt = torch.optim.Adam(model.parameters())
        xs = [torch.randn(8, 4) for _ in range(3)] + [torch.randn(5, 4)] + [torch.randn(8, 4)]
        with TOsCounter(model, opt, cache=cache) as counter:
            for x in xs:
                _step(model, opt, nn.MSELoss(), x, torch.rand(len(x), 1))
        results[cache] = counter
    on, off = results[True], results[False]
    assert [r.cache for r in off.steps] == ["miss"] * 5
    assert [r.cache for r in on.steps] == ["miss", "miss", "hit", "miss", "hit"]  # Adam's state; batch 5
    for a, b in zip(on.steps, off.steps):
        assert a.phases == b.phases
    assert on.total == off.total
    assert on.report() == off.report()


def test_signature_changes_recount():
    model = nn.Sequential(*ffn().children(), nn.Dropout(0.1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 4), torch.rand(8, 1)
    with TOsCounter(model, opt) as counter:
        _step(model, opt, nn.MSELoss(), x, y)
        _step(model, opt, nn.MSELoss(), x, y)
        _step(model, opt, nn.MSELoss(), x.double().float().requires_grad_(), y)  # requires_grad
        model[1].eval()                    # a Sigmoid's flag: it never reads it, same work
        _step(model, opt, nn.MSELoss(), x, y)
        model[-1].eval()                   # the Dropout's flag: different work
        _step(model, opt, nn.MSELoss(), x, y)
        model.train()
        model[0].weight.requires_grad_(False)                                    # frozen parameter
        _step(model, opt, nn.MSELoss(), x, y)
        model[0].weight.requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):                        # autocast
            _step(model, opt, nn.MSELoss(), x, y)
        _step(model, opt, nn.MSELoss(), x, y)                                    # back to a known one
    assert [r.cache for r in counter.steps] == ["miss", "hit", "miss", "hit", "miss", "miss", "miss", "hit"]
    assert counter.steps[4].phases["forward"].bos != counter.steps[0].phases["forward"].bos  # no dropout
    frozen = counter.steps[5].phases["backward"].bos
    assert frozen.mul < counter.steps[0].phases["backward"].bos.mul  # no dW for the frozen weight
    assert any(k[2] == torch.bfloat16 for k in counter.report(step=6).counts.rows)


# -- phases, kinds, evaluation --------------------------------------------------------------------

def test_phases_are_inferred():
    model, x, y = ffn(), torch.randn(8, 4), torch.rand(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with TOsCounter(model, opt) as counter:
        _step(model, opt, nn.MSELoss(), x, y)
    rec = counter.steps[0]
    assert list(rec.phases) == ["forward", "loss", "backward", "optimizer"]
    rep = counter.report()
    layers = {(k[0], k[1]) for k in rep.counts.rows}
    assert ("(loss)", "loss") in layers and ("(optimizer)", "optimizer") in layers
    assert ("0", "backward") in layers and ("0", "forward") in layers
    assert rep.layer_type("(optimizer)") == "SGD"


def test_no_grad_evaluation_is_its_own_step():
    torch.manual_seed(0)
    model, x, y = ffn(), torch.randn(8, 4), torch.rand(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.MSELoss()
    with TOsCounter(model, opt) as counter:
        _step(model, opt, loss_fn, x, y)
        model.eval()
        with torch.no_grad():
            for _ in range(2):
                val = loss_fn(model(x), y)          # validation: forward + loss
        with torch.inference_mode():
            model(x)                               # inference: forward only
        model.train()
        _step(model, opt, loss_fn, x, y)
    kinds = [r.kind for r in counter.steps]
    assert kinds == ["training", "validation", "validation", "inference", "training"]
    assert [r.cache for r in counter.steps] == ["miss", "miss", "hit", "miss", "hit"]
    val = counter.steps[1]
    assert list(val.phases) == ["forward", "loss"]
    assert val.phases == torch_tos.profile(model.eval(), x, mode="validation", loss_fn=loss_fn,
                                           target=y).by_phase()
    model.train()
    # training steps are unaffected by the evaluation in between
    assert counter.steps[4].phases == counter.steps[0].phases
    assert counter.report(kind="training").tos_exact == 2 * counter.steps[0].tos_exact
    assert counter.report(kind="validation").tos_exact == 2 * val.tos_exact
    assert counter.report(kind="inference").by_phase().keys() == {"forward"}


def test_no_grad_forward_inside_a_training_step():
    torch.manual_seed(0)
    model, x, y = ffn(), torch.randn(8, 4), torch.rand(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with TOsCounter(model, opt) as counter:
        for _ in range(2):
            opt.zero_grad(set_to_none=True)
            out = model(x)
            with torch.no_grad():
                target = model(x) * 0.5          # e.g. a teacher pass: recorded on its own
            loss = nn.functional.mse_loss(out, target)
            loss.backward()
            opt.step()
    kinds = [(r.kind, r.cache) for r in counter.steps]
    assert kinds == [("inference", "miss"), ("training", "miss"), ("inference", "hit"), ("training", "hit")]
    fwd = torch_tos.profile(model, x).by_phase()
    assert counter.steps[0].phases == fwd
    assert counter.steps[1].phases["forward"] == fwd["forward"]


def test_gradient_accumulation_is_one_step():
    torch.manual_seed(0)
    results = {}
    for cache in (True, False):
        torch.manual_seed(0)
        model = ffn()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        micro = [[torch.randn(4, 4)] * 2, [torch.randn(4, 4)] * 2, [torch.randn(4, 4), torch.randn(3, 4)]]
        with TOsCounter(model, opt, cache=cache) as counter:
            for batches in micro:
                opt.zero_grad(set_to_none=True)
                for xb in batches:
                    (nn.functional.mse_loss(model(xb), torch.zeros(len(xb), 1)) / 2).backward()
                opt.step()
        results[cache] = counter
    on, off = results[True], results[False]
    assert len(on.steps) == 3 and [r.cache for r in on.steps] == ["miss", "hit", "partial"]
    assert [r.phases for r in on.steps] == [r.phases for r in off.steps]
    one = torch_tos.profile(ffn(), torch.randn(4, 4), mode="training", loss_fn=nn.MSELoss(),
                            target=torch.zeros(4, 1))
    assert on.steps[0].phases["forward"].bos == one.by_phase()["forward"].bos * 2


def test_explicit_step_without_optimizer():
    model, x, y = ffn(), torch.randn(8, 4), torch.rand(8, 1)
    with TOsCounter(model) as counter:
        for _ in range(3):
            model.zero_grad(set_to_none=True)
            nn.functional.mse_loss(model(x), y).backward()
            rec = counter.step()
            assert rec is counter.steps[-1]
        assert counter.step() is None  # nothing open: no empty record
    assert [r.cache for r in counter.steps] == ["miss", "hit", "hit"]
    assert list(counter.steps[0].phases) == ["forward", "loss", "backward"]
    assert counter.steps[0].kind == "training"


def test_optimizer_found_without_optimizer_argument():
    model, other = ffn(), ffn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt_other = torch.optim.SGD(other.parameters(), lr=0.1)
    x, y = torch.randn(8, 4), torch.rand(8, 1)
    with TOsCounter(model) as counter:
        _step(model, opt, nn.MSELoss(), x, y)
        _step(other, opt_other, nn.MSELoss(), x, y)   # another model's optimizer: ignored
        _step(model, opt, nn.MSELoss(), x, y)
    assert len(counter.steps) == 2
    assert list(counter.steps[0].phases) == ["forward", "loss", "backward", "optimizer"]
    assert not _optim_mod._global_optimizer_pre_hooks
    assert not _optim_mod._global_optimizer_post_hooks


def test_closure_optimizer_counts_like_plain_step():
    torch.manual_seed(0)
    model, x, y = ffn(), torch.randn(8, 4), torch.rand(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with TOsCounter(model, opt) as counter:
        def closure():
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            return loss
        opt.step(closure)
        opt.step(closure=closure)
        with torch.no_grad():
            model(x)  # after the closure steps: an inference step, nothing booked as optimizer
    expected = torch_tos.profile(model, x, mode="training", loss_fn=nn.MSELoss(), target=y, optimizer=opt)
    assert [r.cache for r in counter.steps] == ["miss", "hit", "miss"]
    assert counter.steps[0].phases == expected.by_phase()
    assert counter.steps[2].kind == "inference" and list(counter.steps[2].phases) == ["forward"]


# -- meter, results, logging ------------------------------------------------------------------------

def test_meter_per_step():
    model, x, y = ffn(), torch.randn(8, 4), torch.rand(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    meter = FakeMeter(joules=2.0, seconds=0.5)
    with TOsCounter(model, opt, meter=meter) as counter:
        for _ in range(3):
            _step(model, opt, nn.MSELoss(), x, y)
    assert meter.windows == 3
    rec = counter.steps[1]
    assert rec.joules == 2.0 and rec.seconds == 0.5 and rec.estimated is True
    assert rec.joules_per_tos == pytest.approx(2.0 / rec.tos)
    assert counter.total.joules == 6.0 and counter.total.seconds == 1.5
    assert counter.total.joules_per_tos == pytest.approx(6.0 / counter.total.tos)
    assert counter.to_dataframe()["joules"].tolist() == [2.0] * 3
    with TOsCounter(model, opt) as plain:
        _step(model, opt, nn.MSELoss(), x, y)
    assert plain.steps[0].joules is None and plain.total.joules is None


def test_dataframe_and_records():
    model, x, y = ffn(), torch.randn(8, 4), torch.rand(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with TOsCounter(model, opt) as counter:
        for _ in range(2):
            _step(model, opt, nn.MSELoss(), x, y)
    df = counter.to_dataframe()
    assert list(df.columns) == torch_tos.training.STEP_COLUMNS
    assert df["step"].tolist() == [0, 1] and df["kind"].tolist() == ["training"] * 2
    rec = counter.steps[0]
    assert df.loc[0, "tos"] == rec.tos and df.loc[0, "flops"] == rec.flops
    assert df.loc[0, "backward_mul"] == rec.phases["backward"].bos.mul
    assert df.loc[0, "forward_tos"] + df.loc[0, "loss_tos"] + df.loc[0, "backward_tos"] + \
        df.loc[0, "optimizer_tos"] == pytest.approx(rec.tos)
    assert "cache='miss'" in repr(rec) and "TOsCounter(Sequential" in repr(counter)


class FakeWriter:
    def __init__(self):
        self.scalars = []

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))


def test_log_to_writer_logger_csv(tmp_path, caplog):
    model, x, y = ffn(), torch.randn(8, 4), torch.rand(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    writer, path = FakeWriter(), tmp_path / "logs" / "tos.csv"
    logger = logging.getLogger("torch_tos.test_counter")
    seen = []
    with caplog.at_level(logging.INFO, logger=logger.name):
        with TOsCounter(model, opt, meter=FakeMeter()) as counter:
            counter.log_to(writer).log_to(logger).log_to(str(path)).log_to(seen.append)
            _step(model, opt, nn.MSELoss(), x, y)
            assert path.read_text().count("\n") == 2  # header + one row, flushed as it goes
            _step(model, opt, nn.MSELoss(), x, y)
    tags = [t for t, _, s in writer.scalars if s == 1]
    assert tags == ["tos/step", "tos/total", "flops/step", "energy/joules", "energy/joules_per_tos"]
    by_tag = {(t, s): v for t, v, s in writer.scalars}
    assert by_tag[("tos/total", 1)] == pytest.approx(counter.total.tos)
    assert by_tag[("flops/step", 0)] == counter.steps[0].flops
    assert len([r for r in caplog.records if "torch_tos step" in r.getMessage()]) == 2
    assert seen == counter.steps
    import pandas as pd
    df = pd.read_csv(path)
    assert df["step"].tolist() == [0, 1] and df["tos"].tolist() == pytest.approx([r.tos for r in counter.steps])
    # a second run appends rows, without a second header
    with TOsCounter(model, opt) as again:
        again.log_to(path)
        _step(model, opt, nn.MSELoss(), x, y)
    assert len(pd.read_csv(path)) == 3
    with pytest.raises(TypeError, match="SummaryWriter"):
        again.log_to(42)


def test_log_to_real_summary_writer(tmp_path):
    tb = pytest.importorskip("torch.utils.tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model, x, y = ffn(), torch.randn(8, 4), torch.rand(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = tb.SummaryWriter(str(tmp_path))
    with TOsCounter(model, opt, meter=FakeMeter()) as counter:
        counter.log_to(writer)
        for _ in range(3):
            _step(model, opt, nn.MSELoss(), x, y)
    writer.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert {"tos/step", "tos/total", "flops/step", "energy/joules", "energy/joules_per_tos"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("tos/step")] == [0, 1, 2]


# -- safety --------------------------------------------------------------------------------------------

def _hook_state(model, opt):
    mods = [(id(m), dict(m._forward_pre_hooks), dict(m._forward_hooks), set(m._forward_hooks_with_kwargs),
             set(m._forward_pre_hooks_with_kwargs), set(m._forward_hooks_always_called),
             dict(m._backward_hooks), sorted(vars(m)), sorted(dict(m.named_buffers(recurse=False))))
            for m in model.modules()]
    return (mods, dict(opt._optimizer_step_pre_hooks), dict(opt._optimizer_step_post_hooks),
            dict(_optim_mod._global_optimizer_pre_hooks),
            dict(_optim_mod._global_optimizer_post_hooks),
            dict(torch.nn.modules.module._global_forward_pre_hooks), sorted(model.state_dict()))


def test_nothing_left_on_the_model_and_same_numerics():
    torch.manual_seed(0)
    model = SmallCNN()
    ref = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters())
    opt_ref = torch.optim.Adam(ref.parameters())
    before = _hook_state(model, opt)
    x, y = torch.randn(4, 2, 8, 8), torch.randint(0, 3, (4,))
    with TOsCounter(model, opt, meter=FakeMeter()) as counter:
        for _ in range(3):
            _step(model, opt, nn.CrossEntropyLoss(), x, y)
        with torch.no_grad():
            model(x)
    for _ in range(3):
        _step(ref, opt_ref, nn.CrossEntropyLoss(), x, y)
    with torch.no_grad():
        ref(x)
    assert _hook_state(model, opt) == before
    for (n, a), b in zip(model.state_dict().items(), ref.state_dict().values()):
        assert torch.equal(a, b), n  # the counter changes no number
    assert len(counter.steps) == 4
    assert not torch_tos.training._ACTIVE


def test_hooks_removed_when_the_loop_raises():
    model, x, y = ffn(), torch.randn(8, 4), torch.rand(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = _hook_state(model, opt)
    with pytest.raises(RuntimeError, match="boom"):
        with TOsCounter(model, opt) as counter:
            _step(model, opt, nn.MSELoss(), x, y)
            model(x)  # a second step is open (from the cache) when the loop raises
            raise RuntimeError("boom")
    assert _hook_state(model, opt) == before
    assert len(counter.steps) == 1  # the unfinished step is dropped
    # raising inside a forward that is being counted (dispatch mode and module hooks active)
    bad = nn.Sequential(nn.Linear(4, 4), nn.Linear(5, 1))
    opt = torch.optim.SGD(bad.parameters(), lr=0.1)
    before = _hook_state(bad, opt)
    with pytest.raises(RuntimeError):
        with TOsCounter(bad, opt):
            bad(x)
    assert _hook_state(bad, opt) == before
    assert _get_current_dispatch_mode() is None
    assert not torch_tos.training._ACTIVE
    # the model trains normally afterwards, and a new counter works
    with TOsCounter(model, opt) as again:
        _step(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.MSELoss(), x, y)
    assert len(again.steps) == 1


def test_nested_counter_is_an_error():
    model = ffn()
    with TOsCounter(model) as counter:
        with pytest.raises(RuntimeError, match="already active"):
            with TOsCounter(model):
                pass
        with pytest.raises(RuntimeError, match="already active"):
            TOsCounter(model[0]).__enter__()      # a submodule of the counted model
        with pytest.raises(RuntimeError, match="already active"):
            TOsCounter(nn.Sequential(model)).__enter__()  # a model containing it
        with pytest.raises(RuntimeError, match="already active"):
            counter.__enter__()
    with TOsCounter(model):  # fine once the first one is done
        pass
    assert not torch_tos.training._ACTIVE


def test_copies_made_inside_are_inert_and_picklable():
    model, x, y = ffn(), torch.randn(8, 4), torch.rand(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with TOsCounter(model, opt) as counter:
        _step(model, opt, nn.MSELoss(), x, y)
        twin = copy.deepcopy(model)
        twin_opt = copy.deepcopy(opt)
        twin(x).sum().backward()
        twin_opt.step()                  # neither the copy's forward nor its optimizer is counted
        buf = io.BytesIO()
        torch.save(model, buf)           # whole-model pickling works while hooks are registered
        p = torch_tos.profile(model, x)  # profile() copies the model too
        _step(model, opt, nn.MSELoss(), x, y)
    assert len(counter.steps) == 2
    assert p.by_phase()["forward"] == counter.steps[0].phases["forward"]


def test_argument_errors():
    with pytest.raises(TypeError, match="nn.Module"):
        TOsCounter(object())
    with pytest.raises(TypeError, match="Optimizer"):
        TOsCounter(ffn(), optimizer="sgd")
    with pytest.raises(TypeError, match="measure"):
        TOsCounter(ffn(), meter=object())
    with pytest.raises(ValueError, match="dtype"):
        TOsCounter(ffn(), dtype="float7")
    counter = TOsCounter(ffn())
    with pytest.raises(RuntimeError, match="active"):
        counter.begin_step(torch.randn(2, 4))
    with pytest.raises(ValueError, match="kind"):
        counter.report(kind="train")


def test_total_all_ranks_without_process_group_is_local():
    model, x, y = ffn(), torch.randn(8, 4), torch.rand(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with TOsCounter(model, opt) as counter:
        _step(model, opt, nn.MSELoss(), x, y)
    assert counter.total_all_ranks() == counter.total


def test_optimizer_cache_follows_hyperparameters():
    model, x, y = ffn(), torch.randn(8, 4), torch.rand(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    with TOsCounter(model, opt) as counter:
        for _ in range(3):
            _step(model, opt, nn.MSELoss(), x, y)
            sched.step()  # a new learning rate every step: same work, no recount
        opt.param_groups[0]["weight_decay"] = 1e-3  # weight decay switched on: more work
        _step(model, opt, nn.MSELoss(), x, y)
    assert [r.cache for r in counter.steps] == ["miss", "hit", "hit", "partial"]
    before, after = counter.steps[2].phases["optimizer"].bos, counter.steps[3].phases["optimizer"].bos
    n = sum(p.numel() for p in model.parameters())
    assert after - before == BOs(add=n, mul=n)  # g + wd * p


def test_unsupported_ops_are_listed_and_warned_once():
    class Odd(nn.Module):
        def forward(self, x):
            return torch.ops.aten._cdist_forward(x, x, 2.0, None).sum(1, keepdim=True)  # no rule

    model, x = Odd(), torch.randn(4, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        known = torch_tos.profile(model, x).unsupported
    if not known:
        pytest.skip("every op of this model has a rule now")
    with pytest.warns(torch_tos.UnsupportedOpWarning) as caught:
        with TOsCounter(model) as counter:
            for _ in range(3):
                with torch.no_grad():
                    model(x)
    assert len([w for w in caught if issubclass(w.category, torch_tos.UnsupportedOpWarning)]) == 1
    assert counter.report(step=0).unsupported == known
    assert counter.report().unsupported[0].calls == 3 * known[0].calls


def test_example_train_with_tos_runs(capsys):
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "train_with_tos.py"
    spec = importlib.util.spec_from_file_location("train_with_tos", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    threads = torch.get_num_threads()
    try:
        counter = example.main(["--epochs", "2"])
    finally:
        torch.set_num_threads(threads)  # the example runs single-threaded, as the paper's runs
    out = capsys.readouterr().out
    assert "energy per TO" in out and out.count("\n    ") >= 2
    assert [r.kind for r in counter.steps].count("validation") == 2
    assert counter.total.joules is not None and counter.total.tos > 0
