"""A tiny CNN for tests and the embedded demo (8x8 digits train in seconds on one core)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._common import Normalize, conv_bn


class TinyCNN(nn.Module):
    """Two conv-BN-ReLU stages and a linear head; about 25k parameters, any input size >= 4x4."""

    def __init__(self, num_classes: int, in_channels: int, mean: Sequence[float], std: Sequence[float],
                 width: int = 32, norm: str = "batch") -> None:
        super().__init__()
        self.features = nn.Sequential(
            Normalize(mean, std),
            conv_bn(in_channels, width, norm=norm), nn.ReLU(inplace=True),
            conv_bn(width, 2 * width, norm=norm), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            conv_bn(2 * width, 2 * width, norm=norm), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        )
        self.head = nn.Linear(8 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
