"""profile() leaves the user's state alone (issue 12 items 2, 6, 8): random streams, unpicklable
attributes, another thread counting the same model."""

import threading

import pytest
import torch
from torch import nn

import torch_tos
from torch_tos.bos import BOs
from torch_tos.copying import working_copy


def test_users_next_random_numbers_unchanged_with_train_mode_dropout():
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5)).train()
    x = torch.randn(4, 8)
    torch.manual_seed(123)
    expected = torch.rand(3)
    for mode in ("inference", "training"):
        torch.manual_seed(123)
        torch_tos.profile(model, x, mode=mode)
        assert torch.equal(torch.rand(3), expected), mode


def test_a_generator_among_the_inputs_is_restored():
    class Noisy(nn.Module):
        def forward(self, x, generator):
            return x + torch.rand(x.shape, generator=generator)

    g = torch.Generator().manual_seed(7)
    expected = torch.rand(3, generator=torch.Generator().manual_seed(7))
    torch_tos.profile(Noisy(), {"x": torch.randn(3), "generator": g})
    assert torch.equal(torch.rand(3, generator=g), expected)


def test_rng_restored_when_the_model_raises():
    class Boom(nn.Module):
        def forward(self, x):
            torch.rand(5)
            raise RuntimeError("boom")

    x = torch.randn(2)
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    with pytest.raises(RuntimeError, match="boom"):
        torch_tos.profile(Boom(), x)
    assert torch.equal(torch.rand(2), expected)


def test_unpicklable_attribute_profiles_on_meta_and_cpu():
    class Locked(nn.Module):
        def __init__(self):
            super().__init__()
            self.lock = threading.Lock()
            self.lin = nn.Linear(3, 2)

        def forward(self, x):
            with self.lock:
                return self.lin(x)

    model = Locked()
    for device in ("meta", None):
        # Linear 3->2 with bias on 4 samples: 4*2 outputs x (3 products, 2 accumulations + bias)
        assert torch_tos.profile(model, torch.randn(4, 3), device=device).bos == BOs(add=24, mul=24)
    assert working_copy(model, "meta").lock is model.lock


@pytest.mark.filterwarnings("ignore:torch_tos.profile. tensors it shares")  # the loop's own steps
def test_profile_in_a_thread_while_the_counter_counts_the_same_model():
    model = nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 4), torch.rand(16, 1)
    expected = torch_tos.profile(model, x, mode="training", optimizer=opt)
    results, errors = [], []

    def other():
        try:
            for _ in range(10):
                results.append(torch_tos.profile(model, x, mode="training", optimizer=opt))
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    with torch_tos.TOsCounter(model, opt, cache=False) as counter:
        t = threading.Thread(target=other)
        t.start()
        for _ in range(10):
            opt.zero_grad(set_to_none=True)
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
        t.join()
    assert not errors and len(results) == 10
    assert all(r == expected for r in results)  # exact, every trial
    steps = counter.steps
    assert len(steps) == 10 and all(set(s.phases) >= {"forward", "backward", "optimizer"} for s in steps)
    assert len({s.tos_exact for s in steps}) == 1
