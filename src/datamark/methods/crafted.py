"""The shared template of clean-label methods crafted by gradient matching (UBW-C, Sleeper Agent).

What they share: a surrogate (base) model, poisons chosen among the eligible rows by the largest per-sample
gradient norm under it, one joint crafting run over all poisons, labels never changed, the trigger used only
at verification. A concrete method supplies only its objective on triggered samples (:meth:`objective`) and
which training rows show it (:meth:`source_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from .._rng import generator, torch_seed
from ..data.records import Records
from ..exceptions import ParameterError
from ..triggers.base import Trigger
from ..triggers.image import PATTERNS, make_patch_trigger
from ._constraints import FRACTION, OneOf, constrained
from ._gradient_matching import CraftSettings, craft, head_gradient_norms, target_gradient
from ._surrogate import BaseModel, resolve_base_model
from .base import MarkBatch, WatermarkMethod


@dataclass
class CraftContext:
    """The surrogate and, once crafting has run, its cost and quality report (for the key)."""

    base: BaseModel
    report: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class CraftedCleanLabel(WatermarkMethod):
    """Hyper-parameters shared by gradient-matching methods; see :mod:`._gradient_matching` for the loop."""

    rate: float = constrained(0.1, FRACTION)
    eps: float = 16 / 255
    craft_steps: int = 250
    lr: float = 0.025
    retrain_rounds: int = 0
    n_source: int = 1000          # triggered training samples that define the target gradient
    pattern: str = constrained("random", OneOf(PATTERNS))
    trigger_size: int | None = None  # default: a quarter of the image side (8 px at 32 px, as Sleeper Agent)
    base_model: str | None = None    # checkpoint of the surrogate; None trains one (its cost is reported)
    base_arch: str = "fastnet"
    base_epochs: int | None = None
    # A datamark addition (0 = the papers): weight of a keep-correct term in the target objective on the same
    # sources stamped with *independent* triggers (one each, as decoy rows get), so the poisons teach "this
    # trigger", not "any patch here"; without it a wrong trigger fires the watermark (Independent-T fails).
    decoy_weight: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        if not 0.0 < self.eps <= 1.0:
            raise ParameterError(f"The 'eps' parameter of {name} must be in (0, 1] (pixel scale, 16/255 = "
                                 f"0.0627); got {self.eps}.")
        if self.decoy_weight < 0:
            raise ParameterError(f"The 'decoy_weight' parameter of {name} must be >= 0; got {self.decoy_weight}.")
        if self.n_source < 1:
            raise ParameterError(f"The 'n_source' parameter of {name} must be >= 1; got {self.n_source}.")
        self.settings()  # validates steps, lr, retrain_rounds

    def settings(self) -> CraftSettings:
        return CraftSettings(eps=self.eps, steps=self.craft_steps, lr=self.lr, retrain_rounds=self.retrain_rounds)

    # --- what a concrete method provides -----------------------------------------------------------------
    def objective(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, target: int | None
                  ) -> torch.Tensor:
        """The loss on triggered samples ``x`` (true labels ``y``) whose descent the poisons imitate."""
        raise NotImplementedError

    def source_rows(self, data: Records, target: int | None, poisons: np.ndarray) -> np.ndarray:
        """Training rows whose triggered versions define the objective (never the poisons themselves)."""
        raise NotImplementedError

    # --- the template hooks ----------------------------------------------------------------------------------
    def default_trigger(self, input_shape: tuple[int, ...], rng: np.random.Generator) -> Trigger:
        size = self.trigger_size or max(3, min(input_shape[:2]) // 4)
        return make_patch_trigger(input_shape, rng, pattern=self.pattern, size=size)

    def count(self, data: Records, eligible: np.ndarray) -> int:
        return int(round(self.rate * len(data)))

    def prepare(self, data: Records, inputs: np.ndarray, *, secret: bytes, target: int | None, trigger: Trigger,
                progress: bool = False) -> CraftContext:
        return CraftContext(resolve_base_model(data, checkpoint=self.base_model, arch=self.base_arch,
                                               epochs=self.base_epochs, secret=secret, owner=type(self).__name__,
                                               progress=progress))

    def select_rows(self, data: Records, inputs: np.ndarray, *, secret: bytes, eligible: np.ndarray, k: int,
                    context: Any = None) -> np.ndarray:
        """The ``k`` eligible rows with the largest gradient norm under the surrogate (the papers' choice)."""
        norms = head_gradient_norms(context.base.model, inputs, data.labels)
        candidates = np.flatnonzero(eligible)
        return np.sort(candidates[np.argsort(-norms[candidates], kind="stable")[:k]])

    def mark_rows(self, data: Records, inputs: np.ndarray, rows: np.ndarray, *, trigger: Trigger,
                  target: int | None, secret: bytes, context: Any = None, progress: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
        base: BaseModel = context.base
        sources = self.source_rows(data, target, rows)
        pick = generator(secret, "sources").permutation(len(sources))[:self.n_source]
        sources = np.sort(sources[pick])
        triggered, source_labels = trigger.apply(inputs[sources]), np.asarray(data.labels[sources])

        decoyed = (self.decoy_inputs(inputs[sources], trigger, generator(secret, "craft-decoys"))
                   if self.decoy_weight > 0 else None)

        def target_grad(model):
            grad = target_gradient(model, lambda m, x, y: self.objective(m, x, y, target), triggered, source_labels)
            if decoyed is None:
                return grad
            keep = target_gradient(model, lambda m, x, y: F.cross_entropy(m(x).float(), y), decoyed, source_labels)
            return [g + self.decoy_weight * k for g, k in zip(grad, keep, strict=True)]

        def retrain(poisoned: np.ndarray) -> torch.nn.Module:
            from ..models import build_model, default_config, train_model

            images = inputs.copy()
            images[rows] = poisoned
            config = default_config(base.spec.arch, seed=torch_seed(secret, "retrain") % (2 ** 31),
                                    **({"epochs": self.base_epochs} if self.base_epochs else {}))
            return train_model(build_model(base.spec, seed=config.seed), images, data.labels, config,
                               progress=progress)

        labels = np.asarray(data.labels[rows], dtype=np.int64)
        poisoned, report = craft(base.model, inputs[rows], labels, target_grad, self.settings(),
                                 seed=torch_seed(secret, "craft"), retrain=retrain, progress=progress)
        context.report.update(report, n_source=len(sources), decoy_weight=self.decoy_weight)
        return poisoned, labels

    def key_extra(self, data: Records, rows: np.ndarray, new_labels: np.ndarray, *, context: Any = None
                  ) -> dict[str, Any]:
        return {"base_model": context.base.source, "base_train_seconds": context.base.train_seconds,
                "craft": context.report, "labels_changed": 0,
                "note": "clean-label: perturbations only (L_inf <= eps); the trigger is added only at verification"}

    def mark(self, batch: MarkBatch) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - mark_rows is joint
        raise NotImplementedError("gradient-matching methods mark all rows jointly in mark_rows")
