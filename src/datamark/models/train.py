"""Train a reference model the way a thief would: on the (possibly watermarked) images as released, with
random crops and flips applied *after* the watermark, so the trigger must survive augmentation.

One readable trainer in the style of the fast CIFAR-10 baselines: SGD with Nesterov momentum, a one-cycle
(linear warm-up then linear decay) learning rate, label smoothing, bf16 autocast and channels-last memory on
CPU (about 2x faster on AVX-512 machines), and flip test-time augmentation left to the evaluator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._device import compute_device
from .._progress import progress_bar
from ..exceptions import ParameterError
from ..modalities.image import to_tensor  # noqa: F401 -- re-exported: the image preprocessing
from ._common import optimizer_step
from .private import check_private_model, private_gradients


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Training hyper-parameters; see :func:`default_config` for the tuned values per architecture."""

    epochs: int = 15
    batch_size: int = 512
    lr: float = 0.2               # peak learning rate of the one-cycle schedule
    warmup_frac: float = 0.25     # share of steps spent warming up linearly from 0 to ``lr``
    milestones: tuple[float, ...] = ()  # if set: step schedule, lr x0.1 at these fractions of training (paper)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.2  # fast-trainer default; 0 for the papers' ResNet-18 setting
    crop_padding: int = 4         # random translation by up to this many pixels (reflect padding), 0 = off
    flip: bool = True             # random horizontal flips (off for digits, where flips change meaning)
    # The thief's anti-memorisation recipes (issue 15), all off by default (0 = the trainer as it always was):
    resized_crop: float = 0.0     # random-resized-crop minimum area share (torchvision's 0.08 is for 224-px images)
    mixup: float = 0.0            # Beta(a, a) of mixup (Zhang et al., ICLR 2018: a = 1 on CIFAR-10)
    cutmix: float = 0.0           # Beta(a, a) of CutMix (Yun et al., ICCV 2019: a = 1); with mixup: one or the other
    adversarial_eps: float = 0.0  # L-inf radius (pixel units of 255) of fast adversarial training (FGSM-RS), 0 = off
    dp_noise: float = 0.0         # DP-SGD noise multiplier (Abadi et al., CCS 2016), 0 = off; needs norm="group"
    dp_clip: float = 1.0          # DP-SGD per-example gradient L2 clip
    bf16: bool = True             # bf16 autocast on CPU; ignored where unsupported
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ParameterError(f"epochs and batch_size must be >= 1; got {self.epochs} and {self.batch_size}.")
        if self.lr <= 0:
            raise ParameterError(f"The 'lr' parameter of TrainConfig must be > 0; got {self.lr}.")
        if not 0 <= self.resized_crop < 1:
            raise ParameterError(f"The 'resized_crop' parameter of TrainConfig (minimum area share) must be in [0, 1), "
                                 f"0 = off; got {self.resized_crop}.")
        if not 0 <= self.adversarial_eps <= 255:
            raise ParameterError(f"The 'adversarial_eps' parameter of TrainConfig (L-inf radius in pixel units of "
                                 f"255) must be in [0, 255], 0 = off; got {self.adversarial_eps}.")
        if not self.dp_noise >= 0 or not self.dp_clip > 0:
            raise ParameterError(f"TrainConfig's DP-SGD needs dp_noise >= 0 (0 = off) and dp_clip > 0; got "
                                 f"dp_noise={self.dp_noise}, dp_clip={self.dp_clip}.")
        if self.dp_noise and (self.mixup or self.cutmix or self.adversarial_eps):
            raise ParameterError("TrainConfig's DP-SGD (dp_noise > 0) trains on single examples' gradients; turn "
                                 "off mixup, cutmix and adversarial_eps, which mix or replace examples.")
        for name in ("mixup", "cutmix"):
            if not getattr(self, name) >= 0:
                raise ParameterError(f"The '{name}' parameter of TrainConfig (Beta concentration) must be >= 0, "
                                     f"0 = off; got {getattr(self, name)}.")


def _fast_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast speeds training up here: on a GPU, or a CPU with native bf16 (AVX-512 BF16 or AMX).
    Elsewhere it is emulated, measured about 6x slower than float32 on this project's 2-core AMD machines."""
    if device.type != "cpu":
        return True
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def default_config(arch: str, **overrides):
    """Tuned defaults: ``fastnet`` for CIFAR on 2 CPU cores, ``resnet18`` as in the papers, ``tiny`` for tests;
    ``vgg11`` and ``resnet20`` (small CPU-trainable nets for transferability) reuse the fast-trainer recipe.
    Architectures of another modality (text models) get that modality's trainer configuration."""
    from ..modalities import get_modality
    from ..registry import MODELS

    modality = getattr(MODELS.get(arch), "modality", "image")
    if modality != "image":
        return get_modality(modality).default_config(arch, **overrides)
    presets = {
        "fastnet": dict(epochs=10, batch_size=512, lr=0.2),  # 88.8 % (TTA) at 12 epochs in 535 s; 10 fit 10 min
        # Transferability architectures (clean-label benchmark): the fast-trainer recipe, not separately tuned;
        # plain VGG without residuals prefers a lower peak rate, ResNet-20 smaller batches (0.27 M parameters).
        "vgg11": dict(epochs=10, batch_size=512, lr=0.1),
        "resnet20": dict(epochs=10, batch_size=256, lr=0.2),
        # DVBW/UBW/BackdoorBox setting: 200 epochs, batch 128, lr 0.1 divided by 10 at epochs 150 and 180.
        "resnet18": dict(epochs=200, batch_size=128, lr=0.1, milestones=(0.75, 0.9), label_smoothing=0.0),
        "tiny": dict(epochs=30, batch_size=64, lr=0.05, warmup_frac=0.1, crop_padding=1, flip=False,
                     label_smoothing=0.0, bf16=False),
    }
    return TrainConfig(**{**presets.get(arch, {}), **overrides})


def _lr_at(config: TrainConfig, step: int, total: int) -> float:
    frac = step / max(total, 1)
    if config.milestones:
        return config.lr * 0.1 ** sum(frac >= m for m in config.milestones)
    if frac < config.warmup_frac:
        return config.lr * frac / config.warmup_frac
    return config.lr * max(0.0, (1 - frac) / (1 - config.warmup_frac))


def _augment(x: torch.Tensor, config: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Random resized crop (if on), random translation (reflect-padded crop) and horizontal flip, per sample, on a
    float NCHW batch."""
    n, _, h, w = x.shape
    device = x.device
    if config.resized_crop:
        x = _resized_crop(x, config.resized_crop, gen)
    if config.crop_padding:
        p = config.crop_padding
        padded = F.pad(x, (p, p, p, p), mode="reflect")
        dy = torch.randint(0, 2 * p + 1, (n,), generator=gen).to(device)  # drawn on the CPU: same on every device
        dx = torch.randint(0, 2 * p + 1, (n,), generator=gen).to(device)
        rows = (dy.view(n, 1) + torch.arange(h, device=device).view(1, h))            # n x h
        cols = (dx.view(n, 1) + torch.arange(w, device=device).view(1, w))            # n x w
        x = padded[torch.arange(n, device=device).view(n, 1, 1, 1),
                   torch.arange(x.shape[1], device=device).view(1, -1, 1, 1), rows.view(n, 1, h, 1),
                   cols.view(n, 1, 1, w)]
    if config.flip:
        flip = (torch.rand(n, generator=gen) < 0.5).to(device)
        x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    return x


def _resized_crop(x: torch.Tensor, min_area: float, gen: torch.Generator) -> torch.Tensor:
    """torchvision's RandomResizedCrop, batched: per sample a box of U(min_area, 1) of the area with aspect ratio
    log-uniform in [3/4, 4/3], resized back to full size (bilinear) by one affine grid."""
    n = len(x)
    area = min_area + (1 - min_area) * torch.rand(n, generator=gen)
    ratio = torch.exp(math.log(3 / 4) + math.log(16 / 9) * torch.rand(n, generator=gen))
    sw, sh = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)  # shares of width, height
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = sw, sh
    theta[:, 0, 2] = (1 - sw) * (2 * torch.rand(n, generator=gen) - 1)  # box centre, normalised [-1, 1] coordinates
    theta[:, 1, 2] = (1 - sh) * (2 * torch.rand(n, generator=gen) - 1)
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _mix(x: torch.Tensor, config: TrainConfig, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mixup or CutMix of a batch with a shuffled copy of itself: ``(mixed x, partner rows, lam)``, where the targets
    mix as ``lam * t + (1 - lam) * t[partner]``. With both on, each batch takes one of them with probability 1/2."""
    from scipy.special import betaincinv  # Beta(a, a) by inversion: every draw comes from the run's generator

    cutmix = config.cutmix > 0 and (config.mixup == 0 or float(torch.rand(1, generator=gen)) < 0.5)
    a = config.cutmix if cutmix else config.mixup
    lam = float(betaincinv(a, a, float(torch.rand(1, generator=gen))))
    partner = torch.randperm(len(x), generator=gen).to(x.device)
    if not cutmix:
        return lam * x + (1 - lam) * x[partner], partner, lam
    h, w = x.shape[2:]  # a box of area share 1 - lam at a uniform centre, clipped to the image (Yun et al.'s code)
    cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
    cy, cx = (int(torch.randint(0, size, (1,), generator=gen)) for size in (h, w))
    y0, y1, x0, x1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h), max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    x = x.clone()
    x[:, :, y0:y1, x0:x1] = x[partner, :, y0:y1, x0:x1]
    return x, partner, 1 - (y1 - y0) * (x1 - x0) / (h * w)  # lam of the box actually pasted


def _loss(logits: torch.Tensor, hard: torch.Tensor | None, soft: torch.Tensor | None, config: TrainConfig,
          mixing: tuple[torch.Tensor, torch.Tensor, float] | None, temperature: float) -> torch.Tensor:
    """Cross-entropy with label smoothing against hard labels (the original loss, unchanged) or against
    probabilities (soft targets, or labels mixed by mixup/CutMix); at a temperature T the logits are divided by T
    and the loss multiplied by T^2, which keeps gradient sizes comparable (Hinton et al., 2015)."""
    if soft is None and mixing is None:
        return F.cross_entropy(logits, hard, label_smoothing=config.label_smoothing)
    target = soft if soft is not None else F.one_hot(hard, logits.shape[1]).float()
    if mixing is not None:
        _, partner, lam = mixing
        target = lam * target + (1 - lam) * target[partner]
    if temperature == 1:
        return F.cross_entropy(logits, target, label_smoothing=config.label_smoothing)
    return F.cross_entropy(logits / temperature, target, label_smoothing=config.label_smoothing) * temperature ** 2


def _check_inputs(n: int, labels: np.ndarray | None, soft_targets: np.ndarray | None, temperature: float,
                  masks: dict[str, torch.Tensor] | None, model: nn.Module) -> None:
    """One-line ParameterErrors for what :func:`train_model` is given besides the configuration."""
    if (labels is None) == (soft_targets is None):
        raise ParameterError("train_model needs exactly one of labels and soft_targets (to mix hard labels into soft "
                             "targets, do it in the targets and pass labels=None).")
    if labels is not None and len(labels) != n:
        raise ParameterError(f"images and labels differ in length: {n} vs {len(labels)}.")
    if soft_targets is not None:
        soft = np.asarray(soft_targets)
        if soft.ndim != 2 or len(soft) != n or not np.isfinite(soft).all() or (soft < 0).any() \
                or not np.allclose(soft.sum(1), 1.0, atol=1e-3):
            raise ParameterError(f"soft_targets must be an N x K array of probabilities (rows >= 0 summing to 1) "
                                 f"with N = {n} images; got shape {soft.shape}. Pass softmax outputs, not logits.")
    if not temperature > 0:
        raise ParameterError(f"The 'temperature' of train_model must be > 0; got {temperature}.")
    params = dict(model.named_parameters())
    for name, mask in (masks or {}).items():
        if name not in params or torch.broadcast_shapes(mask.shape, params[name].shape) != params[name].shape:
            raise ParameterError(f"masks['{name}'] must name a parameter of the model and broadcast to its shape; "
                                 f"got shape {tuple(mask.shape)}. Parameters: {', '.join(params)}.")


def train_model(model: nn.Module, images: np.ndarray, labels: np.ndarray | None, config: TrainConfig, *,
                progress: bool = False, soft_targets: np.ndarray | None = None, temperature: float = 1.0,
                masks: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """Train ``model`` in place on uint8 NHWC ``images`` and int ``labels``; returns it in eval mode.

    The thief's variants run through the same loop: ``soft_targets`` (N x K probabilities, with ``labels=None``)
    replace the labels by a soft cross-entropy, for distillation, at ``temperature`` (student logits divided by
    it, loss scaled by its square); ``masks`` (parameter name -> 0/1 tensor) are multiplied into those
    parameters before training and after every step, so pruned weights stay zero (fine-pruning); fine-tuning is
    a call on a trained model with a small ``config.lr``. ``config`` switches mixup, CutMix, random resized crops,
    fast adversarial training (each batch replaced by its FGSM-RS adversarial examples: twice the cost) and DP-SGD
    (:mod:`.private`; a model built with ``norm="group"``).

    Deterministic for a given ``config.seed`` (shuffling and augmentation use a local generator). Runs on
    :func:`~datamark._device.compute_device` (a GPU when one is visible) and returns the model on the CPU.
    """
    n = len(images)
    _check_inputs(n, labels, soft_targets, temperature, masks, model)
    if config.dp_noise:
        if soft_targets is not None or masks:
            raise ParameterError("train_model's DP-SGD (config.dp_noise > 0) trains on hard labels of a whole model; "
                                 "it does not take soft_targets or masks.")
        check_private_model(model)
    gen = torch.Generator().manual_seed(config.seed)
    device = compute_device()
    data = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(device)  # uint8 NCHW
    # Copies (torch.tensor): Arrow labels are read-only.
    targets = None if labels is None else torch.tensor(np.asarray(labels), dtype=torch.long).to(device)
    soft = None if soft_targets is None else torch.tensor(np.asarray(soft_targets), dtype=torch.float32).to(device)
    steps_per_epoch = math.ceil(n / config.batch_size)
    total = steps_per_epoch * config.epochs
    model = model.to(device=device, memory_format=torch.channels_last).train()  # before the optimizer sees it
    params = dict(model.named_parameters())
    masks = {name: mask.to(device=device, dtype=params[name].dtype) for name, mask in (masks or {}).items()}
    _apply_masks(params, masks)
    decay, no_decay = [], []
    for _name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)  # no weight decay on BN and biases
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": config.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=config.lr, momentum=config.momentum, nesterov=True)
    step = 0
    with progress_bar("train", total, enabled=progress, unit="step") as bar:
        for epoch in range(config.epochs):
            order = torch.randperm(n, generator=gen)
            running, seen = 0.0, 0
            for start in range(0, n, config.batch_size):
                idx = order[start:start + config.batch_size].to(device)
                if len(idx) < 2:  # batch norm cannot train on a single sample
                    continue
                x = _augment(data[idx].float().div_(255.0), config, gen)
                mixing = _mix(x, config, gen) if config.mixup or config.cutmix else None
                x = (x if mixing is None else mixing[0]).contiguous(memory_format=torch.channels_last)
                for group in optimizer.param_groups:
                    group["lr"] = _lr_at(config, step, total)
                autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16 and _fast_bf16(device))

                def loss_of(batch: torch.Tensor, idx=idx, mixing=mixing, autocast=autocast) -> torch.Tensor:
                    with autocast:
                        return _loss(model(batch).float(), None if targets is None else targets[idx],
                                     None if soft is None else soft[idx], config, mixing, temperature)

                if config.adversarial_eps:
                    x = fgsm_rs(x, loss_of, config.adversarial_eps / 255.0, gen)
                if config.dp_noise:
                    loss = _private_step(model, optimizer, x, targets[idx], config, gen)
                else:
                    loss = loss_of(x)
                    optimizer_step(optimizer, loss)
                _apply_masks(params, masks)
                running = running + loss.detach() * len(idx)  # no per-step sync on a GPU
                seen += len(idx)
                step += 1
                bar.advance()
            bar.status(f"epoch {epoch + 1}/{config.epochs} loss {float(running) / max(seen, 1):.3f}")
    return model.cpu().eval()


def _private_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                  config: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """One DP-SGD step (:mod:`.private`: clipped per-example gradients of the trainer's loss plus noise, in
    float32); returns the batch's loss before the step, for the progress line."""
    def loss_of_one(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return _loss(logits, label, None, config, None, 1.0)

    optimizer.zero_grad(set_to_none=True)
    loss = private_gradients(model, loss_of_one, x, y, clip=config.dp_clip, noise=config.dp_noise, gen=gen)
    optimizer.step()
    return loss.to(x.device)


def fgsm_rs(x: torch.Tensor, loss_of, eps: float, gen: torch.Generator) -> torch.Tensor:
    """Fast adversarial training's example for a batch ``x`` in [0, 1] (Wong, Rice and Kolter, "Fast is better
    than free", ICLR 2020): a uniform random start in the L-inf ball of radius ``eps``, one signed-gradient step
    of 1.25 eps on ``loss_of(batch)``, projected back onto the ball and the image range. One extra forward and
    backward per batch: the cheapest adversarial training that resists PGD, and the one a thief on a budget uses.
    """
    start = (torch.rand(x.shape, generator=gen) * 2 - 1).mul_(eps).to(x.device)
    delta = start.requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_of((x + delta).clamp(0, 1)), delta)
    delta = (delta.detach() + 1.25 * eps * grad.sign()).clamp_(-eps, eps)
    return (x + delta).clamp_(0, 1).contiguous(memory_format=torch.channels_last)


def _apply_masks(params: dict[str, nn.Parameter], masks: dict[str, torch.Tensor]) -> None:
    """Multiply each masked parameter by its mask, outside autograd (pruned weights stay exactly zero)."""
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].mul_(mask)


def fit(data, *, arch: str | None = None, config=None, progress: bool = False, **arch_params):
    """Train a fresh ``arch`` (default: the modality's, fastnet for images) on a :class:`~datamark.data.Records`
    dataset of any modality; returns ``(model, spec)``. The data's modality chooses the trainer."""
    return data.modality.fit(data, arch=arch or data.modality.default_arch, config=config, progress=progress,
                             **arch_params)


def fit_images(data, *, arch: str = "fastnet", config: TrainConfig | None = None, progress: bool = False,
               **arch_params):
    """Train a fresh image ``arch`` on an image :class:`~datamark.data.Records` dataset; returns ``(model, spec)``.

    The normalisation statistics come from the training images themselves and travel in the checkpoint.
    """
    from .checkpoint import ModelSpec, build_model

    images = data.inputs()
    channels = [images[..., c] for c in range(images.shape[-1])]  # per channel: bounded temporary memory
    mean = tuple(float(ch.mean(dtype=np.float64)) / 255.0 for ch in channels)
    std = tuple(max(float(ch.std(dtype=np.float64)) / 255.0, 1e-3) for ch in channels)
    spec = ModelSpec(arch=arch, num_classes=data.num_classes, input_shape=tuple(images.shape[1:]), mean=mean, std=std,
                     class_names=tuple(data.class_names), params=dict(arch_params))
    config = config or default_config(arch)
    model = build_model(spec, seed=config.seed)
    return train_model(model, images, data.labels, config, progress=progress), spec
