"""Model-side attacks: the thief changes the stolen model with a little clean data of its own.

Every attack deep-copies the stolen model (the input is never modified) and trains through the one image trainer,
:func:`datamark.models.train_model`: fine-tuning is that trainer with a small learning rate, fine-pruning adds a
parameter mask that keeps the pruned weights at zero, distillation trains a fresh network on soft targets (and
the own-data baseline one on the thief's labels).

* ``fine-tune``: continue training on the thief's labelled data at a small learning rate;
* ``fine-prune`` (Liu, Dolan-Gavitt and Garg, RAID 2018): remove the features of the last layer that clean data
  leaves dormant, then fine-tune;
* ``distill`` (Hinton, Vinyals and Dean, 2015): train a fresh student on the stolen model's softened outputs on
  clean, by default unlabelled, images.
* ``own-data``: the thief's outside option, a fresh network on its own labelled data alone (no stolen model):
  the innocent baseline whose accuracy cost any countermeasure must beat to be worth a thief's while.

Images only for now: each attack needs a trainer that takes a model, targets and a mask. Text, audio and graphs
have their own trainers (``train_text_model``, ``train_audio_model``, ``train_graph_model``, AdamW through
``models._common.train_epochs``); they would need the same ``soft_targets``/``masks`` options, and distillation
their modality's batched logits (``Modality.logits``) instead of :func:`to_tensor`.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..._device import compute_device
from ..._rng import generator, seed_secret
from ...exceptions import ParameterError
from ...modalities.image import to_tensor
from .base import ModelAttack, register_attack

#: Images per forward batch when the thief runs a model over its data (teacher outputs, activations).
BATCH_SIZE = 512


def _check(attack: str, name: str, ok: bool, value: Any, expected: str) -> None:
    """Refuse a parameter with a one-line message naming the attack, the parameter, the value and the fix."""
    if not ok:
        raise ParameterError(f"The '{name}' parameter of the '{attack}' attack must be {expected}; got {value!r}.")


def _image_arch(arch: str) -> str:
    """The modality of a registered architecture ('' if unknown)."""
    from ... import models  # noqa: F401 -- registers the reference architectures
    from ...registry import MODELS

    return getattr(MODELS[arch], "modality", "image") if arch in MODELS else ""


def _thief_rows(attack: str, thief_data: Any, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` of the thief's data (0: all), drawn at random from ``seed``, as (uint8 NHWC images, labels)."""
    n = len(thief_data)
    if rows > n:
        raise ParameterError(f"The 'rows' parameter of the '{attack}' attack asks for {rows} rows; the thief's data "
                             f"has {n}. Pass rows <= {n} (0 = all).")
    if rows in (0, n):
        return thief_data.inputs(), np.asarray(thief_data.labels)
    chosen = np.sort(generator(seed_secret(seed), f"attack:{attack}:rows").choice(n, rows, replace=False))
    return thief_data.take(chosen), np.asarray(thief_data.labels)[chosen]


def _forward(model: nn.Module, images: np.ndarray, out: list[torch.Tensor] | None = None) -> None:
    """Run ``model`` (in eval mode, without gradients, on the compute device) over uint8 NHWC ``images`` in
    batches; the logits go to ``out`` on the CPU (None: run for the hooks' sake only)."""
    device = compute_device()
    model.to(device).eval()
    with torch.no_grad():
        for start in range(0, len(images), BATCH_SIZE):
            logits = model(to_tensor(images[start:start + BATCH_SIZE]).to(device)).float()
            if out is not None:
                out.append(logits.cpu())
    model.cpu()


def _final_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The last ``nn.Linear`` registered in ``model`` (the classifier head of every reference architecture)."""
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ParameterError(f"fine-prune needs a model with a final nn.Linear layer; {type(model).__name__} has "
                             f"none.")
    return linears[-1]


class _ImageModelAttack(ModelAttack):
    """Shared checks: an image model and image data."""

    modalities = ("image",)

    def _check_inputs(self, spec: Any, thief_data: Any) -> None:
        self.check_modality(_image_arch(spec.arch))
        self.check_modality(thief_data.modality.name)

    def _fine_tune(self, model: nn.Module, spec: Any, images: np.ndarray, labels: np.ndarray, *, lr: float,
                   epochs: int, seed: int, progress: bool, masks: dict[str, torch.Tensor] | None = None) -> nn.Module:
        """The thief's default recipe for ``spec.arch`` at learning rate ``lr`` for ``epochs``, on ``model``."""
        from ...models import default_config, train_model

        config = default_config(spec.arch, lr=lr, epochs=epochs, seed=seed)
        return train_model(model, images, labels, config, progress=progress, masks=masks)

    def _train_fresh(self, spec: Any, arch: str, images: np.ndarray, labels: np.ndarray | None, *, epochs: int,
                     lr: float, seed: int, progress: bool, label_smoothing: float | None = None,
                     **train: Any) -> tuple[nn.Module, Any]:
        """A FRESH network of ``arch`` (empty: the stolen model's, ``spec.arch``) trained on ``images`` with the
        architecture's default recipe for ``epochs`` at its learning rate (or ``lr`` if > 0) and label smoothing (or
        ``label_smoothing`` if given); ``train`` goes to :func:`~datamark.models.train_model` (soft targets and
        temperature). Returns the network and its spec."""
        from ...models import build_model, default_config, train_model

        arch = arch or spec.arch
        fresh_spec = spec if arch == spec.arch else dataclasses.replace(spec, arch=arch, params={})
        overrides = {"lr": lr} if lr else {}
        if label_smoothing is not None:
            overrides["label_smoothing"] = label_smoothing
        config = default_config(arch, epochs=epochs, seed=seed, **overrides)
        fresh = build_model(fresh_spec, seed=seed)
        return train_model(fresh, images, labels, config, progress=progress, **train), fresh_spec

    def _check_arch(self, arch: str) -> None:
        """Refuse an ``arch`` parameter that is not a registered image architecture (empty: the stolen model's)."""
        if arch:
            from ...registry import MODELS

            _check(self.registry_name, "arch", _image_arch(arch) == "image", arch,
                   f"an image architecture, one of {', '.join(sorted(a for a in MODELS if _image_arch(a) == 'image'))}"
                   f" (empty: the stolen model's)")


@register_attack("fine-tune")
@dataclass(frozen=True)
class FineTune(_ImageModelAttack):
    """Fine-tuning on clean labelled data (the baseline removal attack of Liu et al., RAID 2018, and of every
    dataset-watermark paper since): the stolen model trains ``epochs`` more epochs on ``rows`` of the thief's
    data (0 = all) with the architecture's default recipe at peak learning rate ``lr``.

    The thief pays labelled clean data and a few epochs of training; a larger ``lr`` forgets more of the
    watermark and more accuracy (the strength a sweep varies).
    """

    lr: float = 0.01
    epochs: int = 5
    rows: int = 0

    strength = "lr"

    def __post_init__(self) -> None:
        _check(self.registry_name, "lr", self.lr > 0, self.lr, "> 0 (the peak learning rate, e.g. 0.01)")
        _check(self.registry_name, "epochs", self.epochs >= 1, self.epochs, ">= 1")
        _check(self.registry_name, "rows", self.rows >= 0, self.rows, ">= 0 (0 = all the thief's data)")

    def apply(self, model: Any, spec: Any, thief_data: Any, *, seed: int = 0, progress: bool = False
              ) -> tuple[Any, Any]:
        self._check_inputs(spec, thief_data)
        images, labels = _thief_rows(self.registry_name, thief_data, self.rows, seed)
        return self._fine_tune(copy.deepcopy(model), spec, images, labels, lr=self.lr, epochs=self.epochs,
                               seed=seed, progress=progress), spec


@register_attack("fine-prune")
@dataclass(frozen=True)
class FinePrune(_ImageModelAttack):
    """Fine-pruning (Liu, Dolan-Gavitt and Garg, RAID 2018): a backdoor hides in units that clean inputs leave
    dormant, so prune those, then fine-tune.

    The paper prunes the last convolutional layer's channels in increasing order of their mean activation on
    clean data. Here the pruned units are the input features of the model's final ``nn.Linear`` (found by a
    forward hook, so any architecture with a linear head works): for the reference networks these are the last
    layer's channels after global pooling (FastNet, ResNets) or their pooled cells (TinyCNN). The ``prune`` share
    with the lowest mean activation on the thief's clean images is masked to zero, and the mask holds through
    ``epochs`` of fine-tuning at ``lr`` (0 epochs: pruning only). The paper prunes until clean accuracy drops by
    a set amount; a fixed share is what a strength sweep varies.

    The thief pays labelled clean data, some accuracy (pruned capacity) and a short fine-tune.
    """

    prune: float = 0.5
    lr: float = 0.01
    epochs: int = 5

    strength = "prune"

    def __post_init__(self) -> None:
        _check(self.registry_name, "prune", 0 <= self.prune < 1, self.prune,
               "in [0, 1) (the share of the last layer's features removed, e.g. 0.5)")
        _check(self.registry_name, "lr", self.lr > 0, self.lr, "> 0 (the peak learning rate, e.g. 0.01)")
        _check(self.registry_name, "epochs", self.epochs >= 0, self.epochs, ">= 0 (0 = prune without fine-tuning)")

    def apply(self, model: Any, spec: Any, thief_data: Any, *, seed: int = 0, progress: bool = False
              ) -> tuple[Any, Any]:
        self._check_inputs(spec, thief_data)
        model = copy.deepcopy(model)
        images, labels = thief_data.inputs(), np.asarray(thief_data.labels)
        name, head = _final_linear(model)
        mask = self.mask(model, head, images)
        masks = {f"{name}.weight": mask}
        with torch.no_grad():
            head.weight.mul_(mask)
        if self.epochs:
            model = self._fine_tune(model, spec, images, labels, lr=self.lr, epochs=self.epochs, seed=seed,
                                    progress=progress, masks=masks)
        return model.eval(), spec

    def mask(self, model: nn.Module, head: nn.Linear, images: np.ndarray) -> torch.Tensor:
        """A ``1 x in_features`` 0/1 mask of ``head``'s weight: 0 for the ``prune`` share of its input features with
        the lowest mean activation on ``images`` (ties to the lower index)."""
        total = torch.zeros(head.in_features, dtype=torch.float64)

        def accumulate(_module: nn.Module, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor) -> None:
            total.add_(inputs[0].double().sum(0).cpu())  # returns None: the head's output is left as it is

        hook = head.register_forward_hook(accumulate)
        try:
            _forward(model, images)
        finally:
            hook.remove()
        order = torch.from_numpy(np.argsort(total.numpy(), kind="stable"))
        mask = torch.ones(1, head.in_features)
        mask[0, order[:int(round(self.prune * head.in_features))]] = 0.0
        return mask


@register_attack("distill")
@dataclass(frozen=True)
class Distill(_ImageModelAttack):
    """Knowledge distillation (Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural Network", 2015):
    a FRESH network (the stolen model's architecture, or ``arch``) trains on the stolen model's outputs on
    ``rows`` clean images of the thief, so nothing of the stolen weights is kept and only what the teacher's
    outputs on clean images carry can pass on -- the attack that removed every watermark in issue 15.

    Targets are the teacher's probabilities at ``temperature`` T (computed once, in eval mode); the student
    trains on them at the same T with the loss scaled by T^2 (Hinton et al.), and is used at T = 1. With
    ``labels`` the targets are half the teacher's and half the one-hot labels (a simplification of Hinton's
    separate T = 1 hard-label term); without, the thief needs no labels at all. The recipe is the student
    architecture's default (:func:`~datamark.models.default_config`) for ``epochs`` at its learning rate (or
    ``lr``), without label smoothing: soft targets already are smooth.

    The thief pays unlabelled clean images, a full training run of the student and a little accuracy. The
    strength is ``rows``: clean data is what the thief must obtain, and more of it buys a student closer to the
    teacher's clean behaviour at a lower accuracy cost (epochs only trade compute).
    """

    rows: int = 20000
    epochs: int = 10
    temperature: float = 4.0
    labels: bool = False
    arch: str = ""
    lr: float = 0.0

    strength = "rows"

    def __post_init__(self) -> None:
        name = self.registry_name
        _check(name, "rows", self.rows >= 0, self.rows, ">= 0 (0 = all the thief's data)")
        _check(name, "epochs", self.epochs >= 1, self.epochs, ">= 1")
        _check(name, "temperature", self.temperature > 0, self.temperature, "> 0 (Hinton et al. use 1 to 20)")
        _check(name, "lr", self.lr >= 0, self.lr, ">= 0 (0 = the student architecture's default)")
        self._check_arch(self.arch)

    def apply(self, model: Any, spec: Any, thief_data: Any, *, seed: int = 0, progress: bool = False
              ) -> tuple[Any, Any]:
        self._check_inputs(spec, thief_data)
        images, labels = _thief_rows(self.registry_name, thief_data, self.rows, seed)
        targets = self.targets(model, images, labels, spec.num_classes)
        return self._train_fresh(spec, self.arch, images, None, epochs=self.epochs, lr=self.lr, seed=seed,
                                 progress=progress, soft_targets=targets, temperature=self.temperature,
                                 label_smoothing=0.0)

    def targets(self, model: nn.Module, images: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
        """The student's targets: the teacher's probabilities at the temperature (mixed 50/50 with the one-hot
        labels where ``labels``), float64 N x K, from one batched eval-mode pass over a copy of the teacher."""
        logits: list[torch.Tensor] = []
        _forward(copy.deepcopy(model), images, logits)
        soft = torch.softmax(torch.cat(logits).double() / self.temperature, dim=1).numpy()
        if self.labels:
            soft = 0.5 * soft + 0.5 * np.eye(num_classes)[labels]
        return soft


@register_attack("own-data")
@dataclass(frozen=True)
class OwnData(_ImageModelAttack):
    """No theft, the thief's outside option: a fresh model on its own labelled data alone (an innocent baseline).

    The stolen model is discarded and a FRESH network (the stolen model's architecture, or ``arch``) trains on
    ``rows`` of the thief's labelled data (0 = all) with the architecture's default recipe for ``epochs``.
    Nothing of the stolen model is used, so the result is an innocent model: the verdict must be "not accused" (a
    second clean control, trained on the thief's rows), and its accuracy cost is the price the thief pays for not
    stealing at all.

    That cost is the yardstick for the other rows: a countermeasure that costs the thief as much as (or more
    than) this row buys nothing the thief could not have had without the owner's data, so escaping the watermark
    with it is no theft worth making. Not a removal attack of the literature; a baseline the survival table
    needs to be read.
    """

    rows: int = 0
    epochs: int = 10
    arch: str = ""

    strength = "rows"
    uses_model = False

    def __post_init__(self) -> None:
        name = self.registry_name
        _check(name, "rows", self.rows >= 0, self.rows, ">= 0 (0 = all the thief's data)")
        _check(name, "epochs", self.epochs >= 1, self.epochs, ">= 1")
        self._check_arch(self.arch)

    def apply(self, model: Any, spec: Any, thief_data: Any, *, seed: int = 0, progress: bool = False
              ) -> tuple[Any, Any]:
        self._check_inputs(spec, thief_data)
        images, labels = _thief_rows(self.registry_name, thief_data, self.rows, seed)
        return self._train_fresh(spec, self.arch, images, labels, epochs=self.epochs, lr=0.0, seed=seed,
                                 progress=progress)
