"""Batched untargeted L-infinity PGD (Madry et al. 2018): the perturbation of clean-label methods, for every
modality with a continuous model input (images, audio waveforms).

Each example moves, within an ``eps``-ball around itself and inside the modality's valid range ([0, 1] pixels,
[-1, 1] samples), in the direction that *raises* the cross-entropy of its own (true) label under a base model.
Why untargeted: a clean-label watermark needs the model to find the example hard to classify from its natural
features, so it leans on the trigger instead (Turner et al. 2019; Tang et al. 2023). The modality turns the
result back into its batch type and keeps it in the ball: images are rounded to uint8 and re-clipped, so
rounding never leaves it (``|x' - x| <= floor(255 * eps)`` per pixel); waveforms stay float.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._device import device_of
from .._progress import progress_bar
from ..exceptions import ParameterError
from ..modalities import Modality, modality_of


@dataclass(frozen=True)
class PGDStats:
    """What one PGD run cost: images, seconds and throughput (for the key and the benchmark)."""

    images: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("inf")

    def plus(self, other: PGDStats | None) -> PGDStats:
        """The cost of this run and ``other`` together (several marks, or several batches of one shard)."""
        return self if other is None else PGDStats(self.images + other.images, self.seconds + other.seconds)


def check_budget(name: str, value: float | None, owner: str) -> None:
    """Refuse a budget outside [0, 1] (pixel scale or amplitude; a value like 16 is almost always 16/255 meant).
    None means the modality's default."""
    if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                  and 0.0 <= float(value) <= 1.0):
        raise ParameterError(f"The '{name}' parameter of {owner} must be in [0, 1] (pixel scale: 16/255 = 0.0627; "
                             f"audio: amplitude, full scale 1); got {value!r}. Divide a 0..255 budget by 255.")


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
                  uniform: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    """PGD on one float model-input batch within ``bounds`` from the random start ``uniform`` (U[0, 1) draws of
    ``x``'s shape, on the CPU); returns it perturbed (inside the ball and bounds)."""
    lower, upper = (x - eps).clamp_(*bounds), (x + eps).clamp_(*bounds)
    noise = (uniform * (2 * eps) - eps).to(x.device)  # uniform start in the ball
    adv = torch.minimum(torch.maximum(x + noise, lower), upper)
    with torch.enable_grad():
        for _ in range(steps):
            adv.requires_grad_(True)
            loss = F.cross_entropy(model(adv).float(), y)
            (grad,) = torch.autograd.grad(loss, adv)
            adv = torch.minimum(torch.maximum(adv.detach() + step_size * grad.sign(), lower), upper)
    return adv.detach()


def pgd_perturb(model: nn.Module, examples: np.ndarray, labels: np.ndarray, *, eps: float, step_size: float,
                steps: int, seed: int | None = None, row_seeds: np.ndarray | None = None, batch_size: int = 256,
                progress: bool = False, owner: str = "PGD", modality: Modality | None = None
                ) -> tuple[np.ndarray, PGDStats]:
    """Untargeted L-inf PGD on a batch of ``examples`` (uint8 NHWC images, float N x L waveforms) against
    ``model`` (the modality's model input -> logits); ``modality`` defaults to the batch's.

    Maximises the cross-entropy of ``labels`` with ``steps`` signed-gradient steps of ``step_size`` from a
    uniform random start in the ``eps``-ball. Returns a batch of the same type within ``eps`` of ``examples``
    (after the modality's quantisation) and the run's cost. Give one of:

    * ``seed``: every start is drawn from one local generator, in row order (derive it from the key's secret with
      :func:`datamark._rng.torch_seed`); a row's result then depends on the rows before it.
    * ``row_seeds`` (one per example; derive them from the secret and the row ids with
      :func:`datamark._rng.keyed_scores`): *row-local* PGD. Each start is drawn from the row's own generator, and
      every batch runs at exactly ``batch_size`` rows, the last one padded with copies of its first row (their
      results are dropped). A row's result then depends on that row alone, not on which rows share its batch:
      a model's kernels may round differently at different batch sizes, and PGD's signed steps turn a rounding
      difference into a different pixel (measured: FastNet on CPU, 1 of 64 rows changed by up to 31 levels
      between batches of 64 and of 7; none at one fixed batch size, whatever the rows, their order or the thread
      count). Sharded protect relies on this to craft each shard's rows in its own worker.
    """
    if (seed is None) == (row_seeds is None):
        raise ParameterError(f"PGD of {owner} takes either one 'seed' or per-row 'row_seeds'; got "
                             f"{'both' if seed is not None else 'neither'}.")
    if row_seeds is not None and len(row_seeds) != len(examples):
        raise ParameterError(f"PGD of {owner} needs one row seed per example; got {len(row_seeds)} for "
                             f"{len(examples)} examples.")
    check_budget("eps", eps, owner)
    check_budget("step_size", step_size, owner)
    if int(steps) < 0 or int(batch_size) < 1:
        raise ParameterError(f"The 'steps' and 'batch_size' of {owner}'s PGD must be >= 0 and >= 1; got {steps} "
                             f"and {batch_size}.")
    modality = modality or modality_of(examples)
    if modality.bounds is None:
        raise ParameterError(f"PGD of {owner} needs a continuous input; {modality.name} data has none.")
    examples = modality.batch(examples, f"perturbed by {owner}")
    out = modality.empty(len(examples), modality.example_shape(examples))
    # generators on the CPU: the same start on every device
    gen = None if seed is None else torch.Generator().manual_seed(int(seed) % (2 ** 63))
    device = device_of(model)
    start = time.perf_counter()
    with frozen_eval(model), progress_bar(f"PGD ({owner})", len(examples), enabled=progress, unit="ex") as bar:
        for lo in range(0, len(examples), batch_size):
            chunk = examples[lo:lo + batch_size]
            x, y = modality.to_model_input(chunk), torch.as_tensor(np.asarray(labels[lo:lo + batch_size]),
                                                                    dtype=torch.long)
            if gen is not None:
                uniform = torch.rand(x.shape, generator=gen, dtype=x.dtype)
            else:  # row-local: each row's own start, and a batch of exactly batch_size rows
                uniform = torch.stack([torch.rand(x.shape[1:], generator=torch.Generator().manual_seed(
                    int(s) % (2 ** 63)), dtype=x.dtype) for s in row_seeds[lo:lo + batch_size]])
                pad = batch_size - len(chunk)
                x, y, uniform = (torch.cat([t, t[:1].expand(pad, *t.shape[1:])]) for t in (x, y, uniform))
            adv = _attack_batch(model, x.to(device), y.to(device), eps=float(eps), step_size=float(step_size),
                                steps=int(steps), uniform=uniform, bounds=modality.bounds)
            out[lo:lo + len(chunk)] = modality.from_model_input(adv[:len(chunk)], chunk, float(eps))
            bar.advance(len(chunk))
    return out, PGDStats(len(examples), time.perf_counter() - start)
