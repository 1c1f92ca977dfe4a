"""First and steady steps: the optimizer's first step creates its state, later ones update it; the
user's optimizer is never stepped; runs compose exactly; where counts are taken."""

import pytest
import torch
from torch import nn

from torch_tos.counts import CALLS
from torch_tos.energy.stepcount import count_steps, counting_device, steady_optimizer_counts


def _ops(counts, phase="optimizer") -> dict:
    out = {}
    for k, row in counts.rows.items():
        if k[1] == phase:
            out[k[3]] = out.get(k[3], 0) + row[CALLS]
    return out


def test_sgd_momentum_first_step_copies_later_steps_update_in_place():
    m = nn.Linear(4, 3)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    sc = count_steps(m, torch.randn(5, 4), optimizer=opt)
    first, steady = _ops(sc.first.counts), _ops(sc.steady.counts)
    assert first["aten.clone"] == 2 and "aten.clone" not in steady     # momentum buffers created
    assert steady["aten.mul_"] == 2 and steady["aten.add_"] == 4        # buf·0.9 + grad; param − lr·buf
    assert len(opt.state) == 0 and m.weight.grad is None                 # nothing of the user's touched
    assert _ops(sc.first.counts, "forward") == _ops(sc.steady.counts, "forward")


def test_adam_steady_step_creates_no_state_and_runs_compose():
    m = nn.Linear(4, 3)
    opt = torch.optim.Adam(m.parameters())
    sc = count_steps(m, torch.randn(5, 4), optimizer=opt)
    assert _ops(sc.first.counts)["aten.zeros_like"] == 4 and "aten.zeros_like" not in _ops(sc.steady.counts)
    run = sc.run(7)
    expected = sc.first.counts.copy().merge(sc.steady.counts, 6)
    assert run == expected
    assert sc.run(1) == sc.first.counts


def test_an_optimizer_with_state_starts_steady():
    m = nn.Linear(4, 3)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    m(torch.randn(2, 4)).sum().backward()
    opt.step()
    sc = count_steps(m, torch.randn(5, 4), optimizer=opt)
    assert _ops(sc.first.counts) == _ops(sc.steady.counts)
    assert steady_optimizer_counts(opt).rows.keys() == sc.steady.counts.where(phases=["optimizer"]).rows.keys()


def test_inference_counts_one_forward():
    m = nn.Linear(4, 3)
    sc = count_steps(m, torch.randn(5, 4), mode="inference", optimizer=torch.optim.SGD(m.parameters(), lr=0.1))
    assert sc.first is sc.steady and set(sc.first.counts.phases) == {"forward"}


def test_where_counts_are_taken():
    lstm = nn.LSTM(4, 8)
    assert counting_device(lstm, "training") == "cpu"
    assert counting_device(lstm, "training", inputs=(torch.empty(2, 3, 4, device="meta"),)) == "meta"
    enc = nn.TransformerEncoderLayer(16, 2, batch_first=True)
    assert counting_device(enc, "training") == "meta"
    assert counting_device(enc.eval(), "inference") == "cpu"   # the fused fast path runs on real devices
    assert counting_device(nn.Linear(2, 2), "inference") == "meta"
    assert counting_device(nn.Linear(2, 2), device="cuda:1") == "cuda:1"
    sc = count_steps(enc.eval(), torch.randn(2, 5, 16), mode="inference")
    assert sc.device == "cpu" and "aten._native_multi_head_attention" in _ops(sc.first.counts, "forward")
