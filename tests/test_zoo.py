"""The torchvision classification zoo: every model of ``torchvision.models.list_models(module=
torchvision.models)`` profiled for one training step (forward, CrossEntropyLoss, backward, Adam) on
the meta device must hit zero unsupported ops, and its FLOPs must equal ``FlopCounterMode``'s for
the same step. A sample of small models is also run on real tensors: counts identical to meta.

Input sizes: the crop size of each model's default weights (``weights.transforms().crop_size``):
224 for most, 299 inception_v3, 240–600 efficientnet_b1–b7, 384/480 efficientnet_v2, 384
regnet_y_128gf, 256 swin_v2; the ViTs' default constructors fix image_size=224.
"""

from __future__ import annotations

import contextlib
import warnings

import pytest
import torch
import torch.nn as nn
import torchvision
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import get_model, get_model_weights

import torch_tos
from torch_tos.copying import working_copy
from torch_tos.flops import CUSTOM_MAPPING
from torch_tos.kernels import kernel_choices
from torch_tos.flops import flop_counter

ZOO = torchvision.models.list_models(module=torchvision.models)
BATCH = 2
# the heaviest third (> ~5 s each for profile + FlopCounterMode on a loaded 2-core VM); CI runs
# them too, ``-m "not slow"`` skips them locally
SLOW = {"densenet121", "densenet161", "densenet169", "densenet201", "efficientnet_b3",
        "efficientnet_b4", "efficientnet_b5", "efficientnet_b6", "efficientnet_b7",
        "efficientnet_v2_l", "efficientnet_v2_m", "efficientnet_v2_s", "inception_v3", "maxvit_t",
        "regnet_x_32gf", "regnet_y_128gf", "regnet_y_16gf", "regnet_y_1_6gf", "regnet_y_32gf",
        "regnet_y_3_2gf", "resnet101", "resnet152", "resnext101_32x8d", "resnext101_64x4d",
        "swin_b", "swin_s", "swin_v2_b", "swin_v2_s", "vit_h_14", "vit_l_16", "vit_l_32",
        "wide_resnet101_2"}


def input_size(name: str) -> int:
    """Usual input side of a zoo model (its default weights' crop size; ViTs are fixed at 224)."""
    if name.startswith("vit_"):
        return 224
    try:
        return int(get_model_weights(name).DEFAULT.transforms().crop_size[0])
    except Exception:  # pragma: no cover - models without weights
        return 224


def build(name: str) -> nn.Module:
    """Default constructor on the meta device (regnet computes its widths with real tensors, so it
    is built on CPU; profile(device="meta") copies it to meta either way)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.device("meta"):
                model = get_model(name)
        except (NotImplementedError, RuntimeError):
            model = get_model(name)
    return model.train()


class LogitsCE(nn.Module):
    """CrossEntropyLoss on the logits; googlenet/inception_v3 return namedtuples in training."""

    def __init__(self):
        super().__init__()
        self.ce = nn.CrossEntropyLoss()

    def forward(self, output, target):
        return self.ce(getattr(output, "logits", output), target)


def batch(name: str, device="meta", size: int | None = None):
    s = size or input_size(name)
    x = torch.empty(BATCH, 3, s, s, device=device) if device == "meta" else torch.randn(BATCH, 3, s, s)
    y = torch.zeros(BATCH, dtype=torch.long, device=device)
    return x, y


def flop_counter_step(model, x, y, loss_fn) -> int:
    """The same training step under FlopCounterMode alone (PyTorch's formulas, plus the
    ``custom_mapping`` torch_tos passes for kernels FlopCounterMode has none for), with the kernel
    choices a counting Engine makes on meta (e.g. SDPA runs the CPU's flash kernel)."""
    opt = torch.optim.Adam(model.parameters())
    with contextlib.ExitStack() as stack:
        stack.enter_context(kernel_choices())
        with FlopCounterMode(display=False, custom_mapping=CUSTOM_MAPPING) as fc:
            loss_fn(model(x), y).backward()
            opt.step()
    for p in model.parameters():
        p.grad = None
    return fc.get_total_flops()


def _params(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


@pytest.mark.parametrize("name", _params(ZOO))
def test_zoo_training_step(name):
    model = build(name)
    x, y = batch(name)
    report = torch_tos.profile(model, x, mode="training", loss_fn=LogitsCE(), target=y,
                               optimizer=torch.optim.Adam(model.parameters()), device="meta")
    missing = sorted({(u.op, u.phase) for u in report.unsupported})
    assert not missing, f"{name}: unsupported ops {missing}"
    assert report.bos.total > 0 and set(report.phases) == {"forward", "loss", "backward", "optimizer"}
    # FLOPs baseline: FlopCounterMode on the same meta model and step
    # (profile never touches ``model``; regnet, built on CPU, is counted on a meta copy)
    model_meta = model if next(model.parameters()).is_meta else working_copy(model, "meta")
    assert report.flops == flop_counter_step(model_meta, x, y, LogitsCE())


REAL_SAMPLE = ["resnet18", "mobilenet_v3_small", "squeezenet1_1", "shufflenet_v2_x0_5",
               "efficientnet_b0"]


@pytest.mark.parametrize("name", REAL_SAMPLE)
def test_zoo_real_equals_meta(name):
    torch.manual_seed(0)
    model = get_model(name).train()
    x, y = torch.randn(BATCH, 3, 64, 64), torch.randint(0, 10, (BATCH,))
    kw = dict(mode="training", loss_fn=LogitsCE(), target=y)
    real = torch_tos.profile(model, x, optimizer=torch.optim.Adam(model.parameters()), **kw)
    meta = torch_tos.profile(model, x, optimizer=torch.optim.Adam(model.parameters()), device="meta", **kw)
    assert not real.unsupported and not meta.unsupported
    assert real.bos == meta.bos and real.flops == meta.flops
    assert real.to_dataframe().drop(columns="tos").equals(meta.to_dataframe().drop(columns="tos"))
    assert real.tos_exact == meta.tos_exact
