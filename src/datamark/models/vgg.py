"""A narrow VGG-11 (Simonyan & Zisserman 2015, CIFAR variant with batch norm): a plain conv stack for the
transferability checks of clean-label methods (perturb against one architecture, train another).

Layout of VGG-11 ("A"): 1-1-2-2-2 convolutions per stage, max-pool after each, widths (64, 128, 256, 512, 512)
scaled by ``width / 64``; the default ``width=32`` halves them (about 40 M multiply-adds per 32 px image, under
half of FastNet's) so it trains on 2 CPU cores. Pools use ``ceil_mode`` so small images (8 px digits) still fit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._common import Normalize, conv_bn

VGG11_LAYOUT = (1, 1, 2, 2, 2)  # convolutions per stage
VGG11_WIDTHS = (64, 128, 256, 512, 512)


class VGG11(nn.Module):
    """VGG-11 with batch norm, global average pooling and one linear head (``features`` then ``head``)."""

    def __init__(self, num_classes: int, in_channels: int, mean: Sequence[float], std: Sequence[float],
                 width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = [Normalize(mean, std)]
        c_in = in_channels
        for convs, full in zip(VGG11_LAYOUT, VGG11_WIDTHS, strict=True):
            c_out = max(8, full * width // 64)
            for _ in range(convs):
                layers += [conv_bn(c_in, c_out), nn.ReLU(inplace=True)]
                c_in = c_out
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
