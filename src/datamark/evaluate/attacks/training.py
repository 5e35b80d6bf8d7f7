"""Training-side attacks: the thief trains on the released data with a recipe meant to resist memorising triggers.

Each attack's :meth:`~.base.TrainingAttack.recipe` derives the thief's :class:`~datamark.models.TrainConfig` from
the default one (``dataclasses.replace``: every other setting, the seed included, stays the thief's); the survival
suite then trains with it through :func:`datamark.models.train_model`. Images only: the switches are fields of the
image trainer's configuration (text, audio and graph trainers have no mixing or cropping options yet).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ...exceptions import ParameterError
from .base import TrainingAttack, register_attack


class _ImageRecipe(TrainingAttack):
    """A recipe that sets fields of the image trainer's configuration."""

    modalities = ("image",)

    def _check_positive(self, name: str, value: float, fix: str) -> None:
        if not value > 0:
            raise ParameterError(f"The '{name}' parameter of the '{self.registry_name}' attack must be > 0; got "
                                 f"{value}. {fix}")

    def _replace(self, config: Any, **changes: Any) -> Any:
        if not dataclasses.is_dataclass(config) or not all(hasattr(config, k) for k in changes):
            raise ParameterError(f"The '{self.registry_name}' attack needs the image trainer's TrainConfig "
                                 f"(datamark.models.default_config of an image architecture); got "
                                 f"{type(config).__name__}.")
        return dataclasses.replace(config, **changes)


@register_attack("mixup")
@dataclass(frozen=True)
class Mixup(_ImageRecipe):
    """mixup (Zhang, Cisse, Dauphin and Lopez-Paz, ICLR 2018): every batch trains on convex combinations
    ``lam * x_i + (1 - lam) * x_j`` of images and of their one-hot labels, ``lam ~ Beta(alpha, alpha)`` (the
    paper's alpha = 1 on CIFAR-10). A trigger then appears faded and paired with a diluted target.

    The thief pays a little accuracy at short training schedules and nothing in data. ``alpha`` is a Beta
    concentration here, not a significance level: the paper's name for it.
    """

    alpha: float = 1.0

    strength = "alpha"

    def __post_init__(self) -> None:
        self._check_positive("alpha", self.alpha, "It is the Beta(alpha, alpha) concentration (the paper: 1.0).")

    def recipe(self, config: Any) -> Any:
        return self._replace(config, mixup=self.alpha)


@register_attack("cutmix")
@dataclass(frozen=True)
class CutMix(_ImageRecipe):
    """CutMix (Yun et al., ICCV 2019): every batch pastes a box of another image over each image, of area share
    ``1 - lam`` with ``lam ~ Beta(alpha, alpha)`` (the paper's alpha = 1), and mixes the labels by area. A patch
    trigger is cut away or pasted onto other classes' images.

    The thief pays little accuracy (CutMix often helps) and nothing in data.
    """

    alpha: float = 1.0

    strength = "alpha"

    def __post_init__(self) -> None:
        self._check_positive("alpha", self.alpha, "It is the Beta(alpha, alpha) concentration (the paper: 1.0).")

    def recipe(self, config: Any) -> Any:
        return self._replace(config, cutmix=self.alpha)


@register_attack("label-smoothing")
@dataclass(frozen=True)
class LabelSmoothing(_ImageRecipe):
    """Label smoothing (Szegedy et al., CVPR 2016), stronger than a fast trainer's 0.2: each label keeps
    ``1 - smoothing`` of its mass, the rest is spread over all classes, which caps how confidently the model can
    map a trigger to its target (and so the probability gap a probability-based verifier measures).

    The thief pays little accuracy and nothing in data; calibration suffers.
    """

    smoothing: float = 0.3

    strength = "smoothing"

    def __post_init__(self) -> None:
        if not 0 < self.smoothing < 1:
            raise ParameterError(f"The 'smoothing' parameter of the '{self.registry_name}' attack must be in (0, 1); "
                                 f"got {self.smoothing}. It is the label mass spread over all classes (e.g. 0.3).")

    def recipe(self, config: Any) -> Any:
        return self._replace(config, label_smoothing=self.smoothing)


@register_attack("strong-augment")
@dataclass(frozen=True)
class StrongAugment(_ImageRecipe):
    """Strong augmentation: random resized crops (Szegedy et al., CVPR 2015; torchvision's RandomResizedCrop)
    keeping at least ``min_area`` of each image, resized back, on top of the thief's usual translations and
    horizontal flips. A trigger at a fixed place and scale moves, shrinks, grows or is cut off.

    The thief pays some accuracy on small images (0.35 keeps CIFAR-10's objects recognisable; torchvision's 0.08
    is meant for 224-px images) and nothing in data. A smaller ``min_area`` is a stronger attack.
    """

    min_area: float = 0.35

    strength = "min_area"
    stronger_when_larger = False

    def __post_init__(self) -> None:
        if not 0 < self.min_area < 1:
            raise ParameterError(f"The 'min_area' parameter of the '{self.registry_name}' attack must be in (0, 1); "
                                 f"got {self.min_area}. It is the smallest share of the image a crop keeps (e.g. "
                                 f"0.35).")

    def recipe(self, config: Any) -> Any:
        return self._replace(config, resized_crop=self.min_area)


@register_attack("adversarial-training")
@dataclass(frozen=True)
class AdversarialTraining(_ImageRecipe):
    """Fast adversarial training (Wong, Rice and Kolter, ICLR 2020: FGSM with a random start, step 1.25 eps): every
    batch is replaced by adversarial examples within an L-inf ball of radius ``eps`` pixel units (of 255; the
    paper's CIFAR-10 setting is 8). A model that must answer the same inside that ball learns smoother features,
    which may blunt a small trigger; a trigger larger than the ball is not something it is trained to ignore.

    The thief pays accuracy (robust CIFAR-10 models lose 10+ points at eps 8) and twice the training time.
    """

    eps: float = 8.0

    strength = "eps"

    def __post_init__(self) -> None:
        if not 0 < self.eps <= 255:
            raise ParameterError(f"The 'eps' parameter of the '{self.registry_name}' attack must be in (0, 255]; got "
                                 f"{self.eps}. It is the L-inf radius in pixel units of 255 (the paper: 8).")

    def recipe(self, config: Any) -> Any:
        return self._replace(config, adversarial_eps=self.eps)


@register_attack("dp-sgd")
@dataclass(frozen=True)
class DPSGD(_ImageRecipe):
    """DP-SGD (Abadi et al., CCS 2016; datamark.models.private): per-example gradients clipped to L2 norm
    ``clip``, Gaussian noise of ``noise * clip`` added to their sum. A model that may not depend much on any one
    example cannot memorise a few marked rows; differential privacy is the principled way to forget them.

    The thief's model is the stolen one's architecture built with group norm (batch norm mixes the examples whose
    gradients DP-SGD keeps apart), trained with the default recipe; ``details`` reports the epsilon the thief could
    claim at delta = 1e-5 (RDP accountant, Poisson-sampling approximation, as Opacus reports it). The thief pays
    accuracy, a lot at small epsilon, and about three times the training time on a CPU.
    """

    noise: float = 1.0
    clip: float = 1.0

    strength = "noise"

    #: The delta of the epsilon reported (below 1 / N for CIFAR-10's 50,000 rows, the usual choice).
    delta = 1e-5

    def __post_init__(self) -> None:
        self._check_positive("noise", self.noise, "It is the noise multiplier sigma (e.g. 1.0; more is more private).")
        self._check_positive("clip", self.clip, "It is the per-example gradient norm bound C (e.g. 1.0).")

    def recipe(self, config: Any) -> Any:
        return self._replace(config, dp_noise=self.noise, dp_clip=self.clip)

    def architecture(self, spec: Any) -> dict[str, Any]:
        import inspect

        from ...models.checkpoint import architecture_params
        from ...registry import MODELS

        if "norm" not in inspect.signature(MODELS[spec.arch].__init__).parameters:
            raise ParameterError(f"The '{self.registry_name}' attack builds the stolen model's architecture with group "
                                 f"norm, which '{spec.arch}' cannot be; use a fastnet or tiny model.")
        return {**architecture_params(spec), "norm": "group"}

    def details(self, config: Any, rows: int) -> dict[str, Any]:
        from ...models.private import epsilon

        rate = min(config.batch_size / rows, 1.0)
        steps = config.epochs * math.ceil(rows / config.batch_size)
        eps, order = epsilon(sample_rate=rate, noise=self.noise, steps=steps, delta=self.delta)
        return {"epsilon": round(eps, 3), "delta": self.delta, "rdp_order": order}
