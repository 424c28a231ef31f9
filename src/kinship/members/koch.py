"""Koch et al. (2015) siamese convolutional network, as a torch backbone trained from scratch.

"Siamese Neural Networks for One-shot Image Recognition" (ICML deep learning workshop), Fig. 4:
conv 64@10x10 → maxpool → 128@7x7 → maxpool → 128@4x4 → maxpool → 256@4x4 → flatten → FC-4096
sigmoid. The paper's input is 105 px (flatten 256×6×6 = 9216). At any other size the last conv map
is globally average-pooled instead, so the FC input is 256·width. Pools use `ceil_mode`, which is
identical at 105 px (every pooled map has an even side there) and lowers the minimum input to 58 px.

The backbone returns the FC-4096 features; the pair head (built elsewhere) compares two of them, and
Koch's weighted-L1 head is its `|x1−x2|` setting.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from kinship.members.base import check_image_batch

PAPER_INPUT_SIZE = 105
CONV_LAYERS = ((64, 10), (128, 7), (128, 4), (256, 4))  # (output channels, square kernel), stride 1
POOL_AFTER = (True, True, True, False)  # 2x2 max-pool, stride 2, after each conv but the last
FC_UNITS = 4096
CONV_WEIGHT_STD = 1e-2  # paper §3.2 "Weight initialization"
FC_WEIGHT_STD = 2e-1
BIAS_MEAN = 0.5
BIAS_STD = 1e-2


def scaled(units: int, width: float) -> int:
    """A layer's width after the `width` multiplier (at least one unit)."""
    return max(1, round(units * width))


def feature_map_size(input_size: int) -> int:
    """Side of the last conv map for a square input (≤ 0 when the input is too small)."""
    size = input_size
    for (_, kernel), pool in zip(CONV_LAYERS, POOL_AFTER, strict=True):
        size = size - kernel + 1
        if pool:
            size = math.ceil(size / 2) if size > 0 else size
    return size


def min_input_size() -> int:
    """The smallest square input (px) whose last conv map is at least 1×1 (58)."""
    size = 1
    while feature_map_size(size) < 1:
        size += 1
    return size


def preprocess(images: np.ndarray) -> np.ndarray:
    """uint8 RGB images (N, H, W, 3) → float32 in [0, 1], NCHW."""
    check_image_batch(images, "Koch preprocess")
    out = images.transpose(0, 3, 1, 2).astype(np.float32, order="C")
    out /= 255.0
    return out


def _check_config(input_size: int, width: float, in_channels: int) -> None:
    if not isinstance(input_size, int) or input_size < min_input_size():
        raise ValueError(
            f"Koch input_size must be an int ≥ {min_input_size()} px, got {input_size!r}"
        )
    if not (isinstance(width, int | float) and math.isfinite(width) and width > 0):
        raise ValueError(f"Koch width must be a positive number, got {width!r}")
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"Koch in_channels must be a positive int, got {in_channels!r}")


class KochBackbone(nn.Module):
    """Koch et al. (2015) conv net: images (N, C, S, S) in [0, 1] → features (N, out_features)."""

    def __init__(
        self, input_size: int = PAPER_INPUT_SIZE, width: float = 1.0, in_channels: int = 3
    ):
        super().__init__()
        _check_config(input_size, width, in_channels)
        self.input_size = input_size
        self.width = float(width)
        self.in_channels = in_channels
        self.features = self._conv_stack()
        channels = scaled(CONV_LAYERS[-1][0], width)
        if input_size == PAPER_INPUT_SIZE:
            self.pool = nn.Flatten()
            fc_in = channels * feature_map_size(input_size) ** 2
        else:
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
            fc_in = channels
        self.out_features = scaled(FC_UNITS, width)
        self.fc = nn.Linear(fc_in, self.out_features)
        self.reset_parameters()

    def _conv_stack(self) -> nn.Sequential:
        layers: list[nn.Module] = []
        channels = self.in_channels
        for (units, kernel), pool in zip(CONV_LAYERS, POOL_AFTER, strict=True):
            out = scaled(units, self.width)
            layers += [nn.Conv2d(channels, out, kernel), nn.ReLU(inplace=True)]
            if pool:
                layers.append(nn.MaxPool2d(2, stride=2, ceil_mode=True))
            channels = out
        return nn.Sequential(*layers)

    @property
    def config(self) -> dict:
        """The arguments that rebuild this backbone (store them with every checkpoint)."""
        return {"input_size": self.input_size, "width": self.width, "in_channels": self.in_channels}

    def reset_parameters(self, seed: int | None = None) -> None:
        """Paper init: weights N(0, 0.01) in convs and N(0, 0.2) in the FC; biases N(0.5, 0.01)."""
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                std = FC_WEIGHT_STD if isinstance(module, nn.Linear) else CONV_WEIGHT_STD
                nn.init.normal_(module.weight, 0.0, std, generator=generator)
                nn.init.normal_(module.bias, BIAS_MEAN, BIAS_STD, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.in_channels, self.input_size, self.input_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            want = ", ".join(map(str, expected))
            raise ValueError(f"KochBackbone expects input (N, {want}), got {tuple(x.shape)}")
        return torch.sigmoid(self.fc(self.pool(self.features(x))))
