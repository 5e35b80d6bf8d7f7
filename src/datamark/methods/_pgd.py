"""Batched untargeted L-infinity PGD (Madry et al. 2018) on uint8 images: the perturbation of clean-label methods.

Each image moves, within an ``eps``-ball around itself and inside [0, 1], in the direction that *raises* the
cross-entropy of its own (true) label under a base model. Why untargeted: a clean-label watermark needs the
model to find the image hard to classify from its natural features, so it leans on the trigger instead
(Turner et al. 2019; Tang et al. 2023). The result is rounded to uint8 and re-clipped to the ball, so
rounding never leaves it: ``|x' - x| <= floor(255 * eps)`` per pixel.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._progress import progress_bar
from ..exceptions import ParameterError
from ..modalities.image import to_tensor


@dataclass(frozen=True)
class PGDStats:
    """What one PGD run cost: images, seconds and throughput (for the key and the benchmark)."""

    images: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("inf")


def check_budget(name: str, value: float, owner: str) -> None:
    """Refuse a pixel-scale budget outside [0, 1] (a value like 16 is almost always 16/255 meant)."""
    if not (isinstance(value, (int, float)) and 0.0 <= float(value) <= 1.0):
        raise ParameterError(f"The '{name}' parameter of {owner} must be in [0, 1] (pixel scale, 16/255 = 0.0627); "
                             f"got {value!r}. Divide a 0..255 budget by 255.")


@contextlib.contextmanager
def frozen_eval(model: nn.Module) -> Iterator[nn.Module]:
    """The model in eval mode with frozen parameters; its mode and ``requires_grad`` flags restored afterwards."""
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)
        model.train(was_training)


def _attack_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, step_size: float, steps: int,
                  gen: torch.Generator) -> torch.Tensor:
    """PGD on one float NCHW batch in [0, 1]; returns the perturbed batch (float, inside the ball and [0, 1])."""
    lower, upper = (x - eps).clamp_(0.0, 1.0), (x + eps).clamp_(0.0, 1.0)
    noise = torch.rand(x.shape, generator=gen, dtype=x.dtype) * (2 * eps) - eps  # uniform random start
    adv = torch.minimum(torch.maximum(x + noise, lower), upper)
    with torch.enable_grad():
        for _ in range(steps):
            adv.requires_grad_(True)
            loss = F.cross_entropy(model(adv).float(), y)
            (grad,) = torch.autograd.grad(loss, adv)
            adv = torch.minimum(torch.maximum(adv.detach() + step_size * grad.sign(), lower), upper)
    return adv.detach()


def pgd_perturb(model: nn.Module, images: np.ndarray, labels: np.ndarray, *, eps: float, step_size: float,
                steps: int, seed: int, batch_size: int = 256, progress: bool = False, owner: str = "PGD"
                ) -> tuple[np.ndarray, PGDStats]:
    """Untargeted L-inf PGD on uint8 NHWC ``images`` against ``model`` (float NCHW in [0, 1] -> logits).

    Maximises the cross-entropy of ``labels`` with ``steps`` signed-gradient steps of ``step_size`` from a
    uniform random start in the ``eps``-ball, drawn from a local generator seeded with ``seed`` (derive it from
    the key's secret with :func:`datamark._rng.torch_seed`). Returns uint8 images with
    ``|x' - x| <= floor(255 * eps)`` and the run's cost.
    """
    check_budget("eps", eps, owner)
    check_budget("step_size", step_size, owner)
    if int(steps) < 0 or int(batch_size) < 1:
        raise ParameterError(f"The 'steps' and 'batch_size' of {owner}'s PGD must be >= 0 and >= 1; got {steps} "
                             f"and {batch_size}.")
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ParameterError(f"PGD of {owner} needs uint8 N x H x W x C images; got {images.dtype} of shape "
                             f"{images.shape}.")
    out = np.empty_like(images)
    gen = torch.Generator().manual_seed(int(seed) % (2 ** 63))
    radius = math.floor(255.0 * float(eps) + 1e-6)  # the ball in whole pixel levels, so rounding cannot leave it
    start = time.perf_counter()
    with frozen_eval(model), progress_bar(f"PGD ({owner})", len(images), enabled=progress, unit="img") as bar:
        for lo in range(0, len(images), batch_size):
            chunk = images[lo:lo + batch_size]
            y = torch.as_tensor(np.asarray(labels[lo:lo + batch_size]), dtype=torch.long)
            adv = _attack_batch(model, to_tensor(chunk), y, eps=float(eps), step_size=float(step_size),
                                steps=int(steps), gen=gen)
            rounded = np.rint(adv.permute(0, 2, 3, 1).numpy() * 255.0).astype(np.int16)
            base = chunk.astype(np.int16)
            out[lo:lo + len(chunk)] = np.clip(np.clip(rounded, base - radius, base + radius), 0, 255).astype(np.uint8)
            bar.advance(len(chunk))
    return out, PGDStats(len(images), time.perf_counter() - start)
