"""Gradient matching: craft bounded perturbations of training samples whose *training gradient* mimics the
gradient of an attacker's objective, so that a model trained on them moves as if it had been trained on that
objective (Geiping et al., "Witches' Brew", ICLR 2021; Souri et al., "Sleeper Agent", NeurIPS 2022; Li et al.,
"Untargeted Backdoor Watermark" (UBW-C), NeurIPS 2022).

One routine serves every method; a method supplies only the *objective* on triggered samples (a loss whose
descent the poisons should imitate). Per poison batch the loss is 1 - cos(grad_theta CE(f(x_p + delta_p), y_p),
grad_theta objective), the cosine over all parameters; delta = eps * u with u in [-1, 1] (so the L_inf bound
holds by construction) is updated by Adam on the *sign* of the gradient (signAdam of Witches' Brew), with
differentiable flips and shifts so the perturbation survives the victim's augmentation. The surrogate is
optionally retrained from scratch on the poisoned data between rounds (Sleeper Agent's retraining).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._device import compute_device, device_of, on_device
from .._progress import progress_bar
from ..exceptions import ParameterError
from ..modalities.image import to_tensor

Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True, kw_only=True)
class CraftSettings:
    """Hyper-parameters of the crafting loop (defaults from UBW-C / Sleeper Agent, scaled as noted)."""

    eps: float = 16 / 255   # L_inf budget on the [0, 1] pixel scale
    steps: int = 250        # optimisation steps over all poisons (the papers' 250)
    lr: float = 0.025       # signAdam step, in units of eps (u = delta / eps)
    batch_size: int = 128   # poisons per matched gradient
    retrain_rounds: int = 0  # retrain the surrogate from scratch this many times, evenly spaced (Sleeper Agent: 4)
    bf16: bool = True       # bf16 autocast for the surrogate's passes on CPU (the trainer's setting)

    def __post_init__(self) -> None:
        if not 0.0 < self.eps <= 1.0:
            raise ParameterError(f"The perturbation budget 'eps' must be in (0, 1] (pixel scale, 16/255 = 0.0627); "
                                 f"got {self.eps}.")
        if self.steps < 1 or self.batch_size < 1 or self.retrain_rounds < 0:
            raise ParameterError(f"craft steps and batch size must be >= 1 and retrain rounds >= 0; got "
                                 f"{self.steps}, {self.batch_size}, {self.retrain_rounds}.")
        if not self.lr > 0:
            raise ParameterError(f"The crafting 'lr' must be > 0; got {self.lr}.")


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Differentiable random flip and shift (up to 4 px, reflect padding), one draw per batch."""
    if torch.rand(1, generator=gen).item() < 0.5:
        x = x.flip(3)
    dy, dx = (int(v) for v in torch.randint(-4, 5, (2,), generator=gen))
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    h, w = x.shape[-2:]
    return padded[..., 4 + dy:4 + dy + h, 4 + dx:4 + dx + w]


def _flat_grad(loss: torch.Tensor, params: list[torch.Tensor], *, create_graph: bool) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, params, create_graph=create_graph))


def target_gradient(model: nn.Module, objective: Objective, images: np.ndarray, labels: np.ndarray,
                    batch_size: int = 256) -> list[torch.Tensor]:
    """The gradient of the objective over the triggered samples (averaged over batches), detached."""
    params = [p for p in model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    device = device_of(model)
    for start in range(0, len(images), batch_size):
        x = to_tensor(images[start:start + batch_size]).to(device)
        y = torch.tensor(np.array(labels[start:start + batch_size]), dtype=torch.long).to(device)
        grads = _flat_grad(objective(model, x, y) * len(x) / len(images), params, create_graph=False)
        total = [t + g for t, g in zip(total, grads, strict=True)]
    return [t.detach() for t in total]


def matching_loss(poison_grad: list[torch.Tensor], target_grad: list[torch.Tensor], target_norm: torch.Tensor
                  ) -> torch.Tensor:
    """1 - cosine similarity of two gradients taken over all parameters."""
    dot = sum((p * t).sum() for p, t in zip(poison_grad, target_grad, strict=True))
    norm = torch.sqrt(sum((p * p).sum() for p in poison_grad))
    return 1.0 - dot / (norm * target_norm + 1e-12)


def craft(model: nn.Module, poisons: np.ndarray, labels: np.ndarray, target_grad_fn: Callable[[nn.Module],
          list[torch.Tensor]], settings: CraftSettings, *, seed: int,
          retrain: Callable[[np.ndarray], nn.Module] | None = None, progress: bool = False
          ) -> tuple[np.ndarray, dict[str, float]]:
    """Perturb uint8 NHWC ``poisons`` (labels unchanged) so their training gradient matches the target gradient.

    ``target_grad_fn(model)`` recomputes the target gradient for the current surrogate; ``retrain(poisoned)``
    returns a surrogate trained from scratch on the data with the current poisons (used when
    ``settings.retrain_rounds`` > 0). Returns the poisoned uint8 images and a cost/quality report. Runs on
    :func:`~datamark._device.compute_device`; the surrogate goes back to where it was.
    """
    if poisons.dtype != np.uint8 or poisons.ndim != 4:
        raise ParameterError(f"Poisons must be uint8 N x H x W x C images; got {poisons.dtype} {poisons.shape}.")
    gen = torch.Generator().manual_seed(seed)  # draws stay on the CPU: the same crafting on every device
    device, home = compute_device(), device_of(model)
    base = to_tensor(poisons).to(device)
    y_all = torch.tensor(np.array(labels), dtype=torch.long).to(device)
    u = ((torch.rand(base.shape, generator=gen) * 2 - 1) * 0.5).to(device)  # random start inside half the ball
    u.requires_grad_(True)
    optimizer = torch.optim.Adam([u], lr=settings.lr)
    schedule = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=[int(settings.steps * f) for f in (3 / 8, 5 / 8, 7 / 8)], gamma=0.1)
    retrain_at = ({int(settings.steps * (i + 1) / (settings.retrain_rounds + 1))
                   for i in range(settings.retrain_rounds)} if retrain is not None else set())
    def arm(surrogate: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """Eval mode, gradients on its parameters; its target gradient and that gradient's norm."""
        surrogate.to(device).eval()
        weights = list(surrogate.parameters())
        for w in weights:
            w.requires_grad_(True)
        grad = target_grad_fn(surrogate)
        return weights, grad, torch.sqrt(sum((g * g).sum() for g in grad))

    surrogate = model
    params, target, target_norm = arm(model)
    start, losses = time.perf_counter(), []
    n = len(base)
    with progress_bar("craft (gradient matching)", settings.steps, enabled=progress, unit="step") as bar:
        for step in range(settings.steps):
            if step in retrain_at:
                model = retrain(_poisoned(base, u, settings.eps))
                params, target, target_norm = arm(model)
            order = torch.randperm(n, generator=gen)
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for first in range(0, n, settings.batch_size):
                idx = order[first:first + settings.batch_size].to(device)
                x = (base[idx] + settings.eps * u[idx].clamp(-1, 1)).clamp(0, 1)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.bf16):
                    logits = model(_augment(x, gen)).float()
                loss_train = F.cross_entropy(logits, y_all[idx])
                grads = _flat_grad(loss_train, params, create_graph=True)
                loss = matching_loss(grads, target, target_norm)
                (loss * len(idx) / n).backward(inputs=[u])
                step_loss = step_loss + loss.detach() * len(idx) / n  # no per-batch sync on a GPU
            u.grad = u.grad.sign()
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                u.clamp_(-1, 1)
            losses.append(float(step_loss))
            bar.advance()
            bar.status(f"matching loss {losses[-1]:.3f}")
    for p in params:
        p.requires_grad_(False)
    surrogate.to(home)
    model.to(home)
    seconds = time.perf_counter() - start
    report = {"craft_seconds": seconds, "steps": settings.steps, "poisons": n,
              "images_per_second": n * settings.steps / max(seconds, 1e-9),
              "matching_loss_first": losses[0], "matching_loss_last": losses[-1]}
    return _poisoned(base, u, settings.eps), report


def _poisoned(base: torch.Tensor, u: torch.Tensor, eps: float) -> np.ndarray:
    """uint8 NHWC images of base + eps * u, rounded inside the eps-ball and the valid range."""
    with torch.no_grad():
        lo = torch.ceil((base - eps).clamp(0, 1) * 255 - 1e-6)
        hi = torch.floor((base + eps).clamp(0, 1) * 255 + 1e-6)
        x = torch.round((base + eps * u.clamp(-1, 1)).clamp(0, 1) * 255)
        x = torch.minimum(torch.maximum(x, lo), hi)
    return x.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy().copy()


def head_gradient_norms(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch_size: int = 512
                        ) -> np.ndarray:
    """Per-sample norm of the cross-entropy gradient w.r.t. the model's final linear layer: ||p - y|| * ||h||
    (exact for that layer). A cheap stand-in for the full per-sample gradient norm the papers rank poisons by;
    needs a model with ``features`` (penultimate vector) and ``head``."""
    if not (hasattr(model, "features") and hasattr(model, "head")):
        raise ParameterError(f"Ranking poisons by gradient norm needs a model with 'features' and 'head' "
                             f"(fastnet, tiny, resnet18); got {type(model).__name__}.")
    out = np.empty(len(images), dtype=np.float64)
    with torch.no_grad(), on_device(model) as device:
        for start in range(0, len(images), batch_size):
            x = to_tensor(images[start:start + batch_size]).to(device)
            h = model.features(x).flatten(1).float()
            p = F.softmax(model.head(h).float(), dim=1)
            y = torch.tensor(np.array(labels[start:start + batch_size]), dtype=torch.long).to(device)
            p[torch.arange(len(y), device=device), y] -= 1.0
            out[start:start + len(x)] = (p.norm(dim=1) * h.norm(dim=1)).cpu().numpy()
    return out


def entropy_of_logits(logits: torch.Tensor) -> torch.Tensor:
    """Mean Shannon entropy (nats) of softmax(logits)."""
    logp = F.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(1).mean()
