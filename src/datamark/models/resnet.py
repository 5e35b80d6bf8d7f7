"""CIFAR-style ResNet-18 (He et al. 2016, 3x3 stem, no max-pool), the model of the DVBW and UBW papers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ._common import Normalize, conv_bn


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv_bn(c_in, c_out, stride=stride)
        self.conv2 = conv_bn(c_out, c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv1(x))
        return F.relu(self.conv2(out) + self.shortcut(x))


class ResNet18(nn.Module):
    """Four stages of two basic blocks, widths 64-512; 11.2 M parameters for 10 classes."""

    def __init__(self, num_classes: int, in_channels: int, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        layers: list[nn.Module] = [Normalize(mean, std), conv_bn(in_channels, 64), nn.ReLU(inplace=True)]
        c_in = 64
        for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(c_in, width, stride), BasicBlock(width, width, 1)]
            c_in = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ResNet20(nn.Module):
    """The CIFAR ResNet of He et al. 2016 (Sec. 4.2): three stages of ``(depth - 2) / 6`` basic blocks, widths
    (16, 32, 64) x ``width / 16``; ResNet-20 has 0.27 M parameters and about 41 M multiply-adds per 32 px image,
    small enough for 2 CPU cores. Used, with VGG-11 and FastNet, for clean-label transferability."""

    def __init__(self, num_classes: int, in_channels: int, mean: Sequence[float], std: Sequence[float],
                 depth: int = 20, width: int = 16) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"ResNet depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, ...); got {depth}.")
        blocks = (depth - 2) // 6
        layers: list[nn.Module] = [Normalize(mean, std), conv_bn(in_channels, width), nn.ReLU(inplace=True)]
        c_in = width
        for c_out, stride in ((width, 1), (2 * width, 2), (4 * width, 2)):
            for i in range(blocks):
                layers.append(BasicBlock(c_in, c_out, stride if i == 0 else 1))
                c_in = c_out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
