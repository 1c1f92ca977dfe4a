"""Issue 18 item 8, the profile side: a forward that writes its own weights is undone, an optimizer
of another model is refused (or warned about), and what is only warned is warned."""

from __future__ import annotations

import threading
import warnings

import pytest
import torch
from torch import nn

import torch_tos
from torch_tos.validation import ForeignParametersWarning
from torch_tos.workspace import Workspace


class Clipping(nn.Module):
    """Clips its weights in forward (as WGAN critics do), through every kind of in-place write."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        with torch.no_grad():
            self.fc.weight[0].zero_()              # a view of a region, written first
            self.fc.weight.clamp_(-0.1, 0.1)       # then the whole tensor, overlapping it
            torch.clamp(self.fc.bias, -0.01, 0.01, out=self.fc.bias)   # an out= argument
            torch._foreach_mul_([self.head.bias], 0.5)                 # a list of written tensors
        self.head.weight.data.mul_(2)              # through .data
        return self.head(self.fc(x))


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("mode", ["inference", "validation", "training"])
def test_a_forward_that_writes_its_weights_is_undone(mode):
    model = Clipping()
    before = snapshot(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1) if mode == "training" else None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # undone, so nothing to warn about
        report = torch_tos.profile(model, torch.randn(3, 4), mode=mode, optimizer=opt)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), mode
    ops = {k[3] for k in report.counts.rows}
    assert {"aten.clamp_", "aten.clamp", "aten.mul_", "aten._foreach_mul_"} <= ops  # the writes are counted


def test_the_step_sees_the_written_values():
    class Zeroes(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))

        def forward(self, x):
            with torch.no_grad():
                self.w.zero_()
            seen.append(self.w.detach().clone())
            return x * self.w

    seen = []
    model = Zeroes()
    torch_tos.profile(model, torch.randn(3))
    assert torch.equal(seen[0], torch.zeros(3)) and torch.equal(model.w.detach(), torch.ones(3))


def test_tied_weights_and_an_eval_mode_buffer_are_restored():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Linear(3, 3, bias=False)
            self.dec = nn.Linear(3, 3, bias=False)
            self.dec.weight = self.enc.weight
            self.register_buffer("calls", torch.zeros(()))

        def forward(self, x):
            self.calls += 1                       # a buffer written in eval mode
            with torch.no_grad():
                self.dec.weight.mul_(-1)          # through the tied name
            return self.dec(self.enc(x))

    model = Tied().eval()
    before = snapshot(model)
    torch_tos.profile(model, torch.randn(2, 3))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_nothing_is_copied_when_nothing_is_written_or_nothing_is_shared():
    model = nn.Linear(3, 2)
    work = Workspace(model, None, torch.randn(2, 3), None, None, mode="inference")
    assert work.write_guard is work._guard  # watching the shared weights …
    engine = torch_tos.Engine()
    engine.write_guard = work.write_guard
    with engine:
        model(torch.randn(2, 3))
    assert work._guard._saved == []   # … without copying any
    work.close()
    on_meta = Workspace(model, None, torch.randn(2, 3), None, None, mode="inference", device="meta")
    assert not on_meta._guard.watching  # nothing with values is shared on meta: no guard at all
    on_meta.close()


def test_a_write_by_another_thread_is_named_not_undone():
    class Racing(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def bump(self):
            with torch.no_grad():
                self.fc.weight.add_(1.0)  # a thread's ops never reach this thread's dispatch modes

        def forward(self, x):
            t = threading.Thread(target=self.bump)
            t.start()
            t.join()
            return self.fc(x)

    model = Racing()
    before = model.fc.weight.detach().clone()
    with pytest.warns(UserWarning, match=r"changed while it ran, not by the step: fc\.weight \(another thread"):
        torch_tos.profile(model, torch.randn(1, 2))
    assert torch.equal(model.fc.weight.detach(), before + 1)  # another thread's write is the user's own


def test_a_model_built_under_inference_mode_profiles():
    with torch.inference_mode():
        model = nn.Linear(5, 3)
        report = torch_tos.profile(model, torch.randn(2, 5))
    assert report.flops == 2 * 2 * 5 * 3


def test_an_optimizer_of_another_model_is_refused():
    model, other = nn.Linear(3, 2), nn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"the optimizer \(SGD\) holds none of the model's parameters — built for "
                                         r"another model\? Build it over this model's"):
        torch_tos.profile(model, torch.randn(2, 3), mode="training", optimizer=torch.optim.SGD(other.parameters(), 0.1))


def test_an_optimizer_that_also_holds_other_parameters_is_warned_about():
    model, other = nn.Linear(3, 2), nn.Linear(3, 2)
    opt = torch.optim.SGD([*model.parameters(), *other.parameters()], lr=0.1)
    with pytest.warns(ForeignParametersWarning, match="also holds 2 parameter") as caught:
        report = torch_tos.profile(model, torch.randn(2, 3), mode="training", optimizer=opt)
    assert caught[0].filename == __file__  # points at the user's call
    alone = torch_tos.profile(model, torch.randn(2, 3), mode="training",
                              optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    assert report.counts.rows == alone.counts.rows  # the foreign parameters' update costs nothing
    loss = nn.Linear(2, 1)  # an optimizer over the model and its loss module's parameters is fine
    with warnings.catch_warnings():
        warnings.simplefilter("error", ForeignParametersWarning)
        torch_tos.profile(model, torch.randn(2, 3), mode="training", loss_fn=lambda out: loss(out).sum(),
                          optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
