"""The paper's two model families (Table IV) with their data.

- ``ffn``: Banknote (4 inputs, 1 output, 1372 rows, bundled) → ``depth`` hidden layers (paper: 3)
  of width ``width`` (paper: 4-18) with an activation after each (paper: sigmoid, tanh, GELU) →
  ``Linear(width, 1)``; MSE loss on the class label, SGD, batch 64.
- ``cnn``: ``depth`` conv layers (paper: 2-10) of 32 channels, stride 1, no padding; the kernel
  of layer i (1-based) is 3 for i ≤ 6 and 4, 5, 6, 7 for i = 7, 8, 9, 10 (Table IV: "layer 2-6: 3,
  layer 7-10: 4,5,6,7"); GELU after each; a linear head ``Linear(32·h·w, 1)``; MSE loss on a
  regression target; SGD, batch 64. Data: synthetic images and targets from a fixed seed
  (the paper's 300 drone images are not public). Default images are 32×32 so a sweep finishes
  in minutes on a laptop CPU; ``image_size=256, n_images=300`` is the paper's setting.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import ACTIVATIONS, Config, Family, check_activation, check_ints, positive_int

CNN_CHANNELS = 32
CNN_MAX_DEPTH = 10


def cnn_kernel(layer: int) -> int:
    """Kernel size of conv layer ``layer`` (1-based), paper Table IV."""
    return 3 if layer <= 6 else layer - 3


class FFN(Family):
    name = "ffn"
    default_widths = tuple(range(4, 19))
    default_depths = (3,)
    default_activations = ("sigmoid", "tanh", "gelu")
    default_epochs = 10
    paper = {"epochs": 2000, "repeats": 50, "trim": 5}

    def configs(self, widths=None, depths=None, activations=None):
        widths = check_ints("widths", widths or self.default_widths, 1, 4096)
        depths = check_ints("depths (hidden layers)", depths or self.default_depths, 1, 64)
        acts = [check_activation(a) for a in dict.fromkeys(activations or self.default_activations)]
        return [Config(self.name, w, d, a) for a in acts for d in depths for w in widths]

    def build(self, config):
        act = ACTIVATIONS[config.activation]
        layers, n_in = [], 4
        for _ in range(config.depth):
            layers += [nn.Linear(n_in, config.width), act()]
            n_in = config.width
        layers.append(nn.Linear(n_in, 1))
        return nn.Sequential(*layers)

    def data(self, config=None):
        from ...data import load_banknote

        X, y = load_banknote()
        order = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))  # fixed shuffle
        return torch.from_numpy(X)[order], torch.from_numpy(y)[order]

    def describe(self):
        return f"ffn: Banknote 4 → hidden layers → 1, MSE, SGD, batch {self.batch_size}"


class CNN(Family):
    name = "cnn"
    default_depths = tuple(range(2, 11))
    default_activations = ("gelu",)
    default_epochs = 1
    default_lr = 1e-4
    paper = {"epochs": 25, "repeats": 50, "trim": 5, "image_size": 256, "n_images": 300}

    def __init__(self, batch_size: int = 64, image_size: int = 32, n_images: int = 128, **options):
        super().__init__(batch_size, **options)
        self.image_size = positive_int("image_size", image_size)
        self.n_images = positive_int("n_images", n_images)

    def configs(self, widths=None, depths=None, activations=None):
        if widths:
            raise ValueError("the cnn family has no width (32 channels, paper Table IV); use --depths")
        depths = check_ints("depths (conv layers)", depths or self.default_depths, 1, CNN_MAX_DEPTH)
        acts = [check_activation(a) for a in dict.fromkeys(activations or self.default_activations)]
        shrink = sum(cnn_kernel(i) - 1 for i in range(1, max(depths) + 1))
        if self.image_size <= shrink:
            raise ValueError(f"image_size {self.image_size} is too small for {max(depths)} unpadded conv "
                             f"layers (they remove {shrink} pixels); use at least {shrink + 1}")
        return [Config(self.name, None, d, a, self.image_size) for a in acts for d in depths]

    def build(self, config):
        act = ACTIVATIONS[config.activation]
        layers, c, size = [], 3, self.image_size
        for i in range(1, config.depth + 1):
            k = cnn_kernel(i)
            layers += [nn.Conv2d(c, CNN_CHANNELS, k), act()]
            c, size = CNN_CHANNELS, size - (k - 1)
        layers += [nn.Flatten(), nn.Linear(CNN_CHANNELS * size * size, 1)]
        return nn.Sequential(*layers)

    def data(self, config=None):
        g = torch.Generator().manual_seed(0)
        X = torch.randn(self.n_images, 3, self.image_size, self.image_size, generator=g)
        y = torch.randn(self.n_images, 1, generator=g)
        return X, y

    def describe(self):
        return (f"cnn: {self.n_images} synthetic {self.image_size}×{self.image_size}×3 images, 32-channel "
                f"convs, linear head, MSE, SGD, batch {self.batch_size}")


