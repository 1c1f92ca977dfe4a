import os

import pytest
import torch

os.environ.setdefault("TORCH_TOS_TEST", "1")
torch.manual_seed(0)


def ffn(width: int = 8, act=torch.nn.Sigmoid, bias: bool = True) -> torch.nn.Sequential:
    """The paper's FFN: 4 → w → w → w → 1 with three activations."""
    nn = torch.nn
    return nn.Sequential(nn.Linear(4, width, bias=bias), act(), nn.Linear(width, width, bias=bias), act(),
                         nn.Linear(width, width, bias=bias), act(), nn.Linear(width, 1, bias=bias))


@pytest.fixture
def paper_ffn():
    return ffn
