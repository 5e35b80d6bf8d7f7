"""Pieces shared by the reference architectures."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from .._rng import isolated_torch_rng


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


def check_train_config(config) -> None:
    """The checks every batch-norm trainer's configuration shares (audio, graphs): one-line ParameterErrors naming
    the configuration class, the fields and the values received."""
    from ..exceptions import ParameterError

    name = type(config).__name__
    if config.epochs < 1 or config.batch_size < 2:
        raise ParameterError(f"{name} needs epochs >= 1 and batch_size >= 2 (batch norm); got {config.epochs} and "
                             f"{config.batch_size}.")
    if config.lr <= 0 or config.weight_decay < 0 or not 0 <= config.warmup_frac < 1 \
            or not 0 <= config.label_smoothing < 1:
        raise ParameterError(f"{name} needs lr > 0, weight_decay >= 0, warmup_frac and label_smoothing in [0, 1); got "
                             f"{config.lr}, {config.weight_decay}, {config.warmup_frac} and {config.label_smoothing}.")


def train_epochs(model: nn.Module, n: int, config, device: torch.device,
                 batch_loss: Callable[[torch.Tensor, torch.Generator], torch.Tensor], *, progress: bool = False,
                 min_batch: int = 2) -> nn.Module:
    """The loop the batch-norm trainers (audio, graphs) share, around their own ``batch_loss(idx, gen)`` (one
    batch's loss; ``idx`` the batch's rows as a CPU int64 tensor, ``gen`` the run's seeded generator).

    AdamW with the warm-up-then-linear-decay schedule of ``config``; a seeded shuffle per epoch; batches smaller
    than ``min_batch`` skipped (batch norm cannot train on one example); a progress bar showing each epoch's mean
    loss. Returns the model on the CPU, in eval mode.
    """
    from .._progress import progress_bar
    from .text_train import _lr_at

    total = math.ceil(n / config.batch_size) * config.epochs
    model = model.to(device).train()  # before the optimizer sees the parameters
    optimizer = adamw(model, config.lr, config.weight_decay)
    step = 0
    with progress_bar("train", total, enabled=progress, unit="step") as bar, \
            seeded_training(config.seed, device) as gen:
        for epoch in range(config.epochs):
            order = torch.randperm(n, generator=gen)
            running, seen = 0.0, 0
            for start in range(0, n, config.batch_size):
                idx = order[start:start + config.batch_size]
                lr = _lr_at(config, step, total)
                step += 1
                bar.advance()
                if len(idx) < min_batch:
                    continue
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss = batch_loss(idx, gen)
                optimizer_step(optimizer, loss)
                running = running + loss.detach() * len(idx)  # no per-step sync on a GPU
                seen += len(idx)
            bar.status(f"epoch {epoch + 1}/{config.epochs} loss {float(running) / max(seen, 1):.3f}")
    return model.cpu().eval()


#: The normalisation layers an image architecture with a ``norm`` parameter can be built with.
NORMS = ("batch", "group")


def norm2d(kind: str, channels: int) -> nn.Module:
    """Batch norm (the default), or group norm of 8 groups (fewer where ``channels`` does not split into 8): it
    normalises each image on its own, which per-example gradients (DP-SGD, :mod:`~datamark.models.private`)
    need, where batch norm mixes the examples of a batch."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(channels, 8), channels)
    from ..exceptions import ParameterError
    raise ParameterError(f"Unknown norm '{kind}'; choose one of {', '.join(NORMS)}.")


def conv_bn(c_in: int, c_out: int, *, stride: int = 1, norm: str = "batch") -> nn.Sequential:
    """3x3 convolution without bias (the norm that follows has one), then batch norm (or ``norm2d(norm)``)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), norm2d(norm, c_out))


def adamw(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with decoupled weight decay on the weights only (none on biases, norms or other 1-d parameters)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, *, model: nn.Module | None = None,
                   max_grad_norm: float = 0.0) -> None:
    """One step of every trainer: clear the gradients, backpropagate ``loss``, clip ``model``'s gradient norm
    to ``max_grad_norm`` (0 = off), update."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm and model is not None:
        nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()


@contextlib.contextmanager
def seeded_training(seed: int, device: torch.device) -> Iterator[torch.Generator]:
    """A local generator for shuffling and augmentation, with dropout (which takes no generator) run under a
    forked global RNG seeded from it; the global CPU and GPU states are restored afterwards."""
    gen = torch.Generator().manual_seed(seed)
    dropout_seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), isolated_torch_rng(dropout_seed):
        yield gen
