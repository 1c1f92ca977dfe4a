"""Issue 12 item 8, the small items: each promise kept, each refusal one clear error."""

import dataclasses
import pickle

import pytest
import torch
from torch import nn

import torch_tos
from torch_tos import BOs


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(add=-1), ValueError, "cannot be negative"),
    (dict(mul=1.5), TypeError, "must be an integer, got float 1.5"),
    (dict(div=True), TypeError, "must be an integer, got True"),
])
def test_bos_refuses_what_is_not_a_count(kwargs, error, message):
    with pytest.raises(error, match=message):
        BOs(**kwargs)


def test_bos_differences_below_zero_are_refused_and_counts_still_travel():
    with pytest.raises(ValueError, match="cannot be negative"):
        BOs(add=1) - BOs(add=2)
    b = BOs(add=torch.tensor(3), mul=2)           # integer tensors / numpy ints are counts
    assert b == BOs(3, 0, 2, 0, 0) and type(b.add) is int
    assert pickle.loads(pickle.dumps(b)) == b


@dataclasses.dataclass
class _Out:
    logits: torch.Tensor
    note: str = "x"


class _DataclassModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return _Out(self.fc(x))


def test_a_dataclass_output_gets_the_surrogate_loss():
    # Linear(3 -> 2) on 2 samples: forward 2·2·3 = 12 mul, 12 add (bias folded: 2·2·(3-1) + 4);
    # the surrogate sum over 4 logits is 3 adds. The same model returning the tensor itself
    # must count exactly the same.
    class Plain(_DataclassModel):
        def forward(self, x):
            return self.fc(x)

    x = torch.randn(2, 3)
    torch.manual_seed(0)
    a = torch_tos.profile(_DataclassModel(), x, mode="training")
    torch.manual_seed(0)
    b = torch_tos.profile(Plain(), x, mode="training")
    assert a.bos == b.bos and a.by_phase()["loss"].bos == BOs(add=3)


def test_a_loss_class_instead_of_an_instance_is_one_clear_error():
    with pytest.raises(TypeError, match=r"got the class MSELoss; pass MSELoss\(\) instead"):
        torch_tos.profile(nn.Linear(3, 1), torch.randn(2, 3), mode="training", loss_fn=nn.MSELoss)
