"""Pieces shared by the reference architectures."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    """Per-channel standardisation inside the model, so a checkpoint carries its own preprocessing.

    Inputs are float images in [0, 1], NCHW; the statistics are those of the training set.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def conv_bn(c_in: int, c_out: int, *, stride: int = 1) -> nn.Sequential:
    """3x3 convolution without bias (the batch norm that follows has one), then batch norm."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out))
