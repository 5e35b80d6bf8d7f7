"""One thief, several steps: ``loss-filter:fraction=0.2+distill:rows=20000``, ``fine-tune:lr=0.05+distill``.

A thief who knows one countermeasure leaves part of a watermark may stack several: fine-tuning at a large learning
rate washes out the confusion channel's label-only signal while the marks survive, distillation removes trigger
marks while the confusion channel survives, a data filter drops the rows it suspects before training, and the API
may purify the queries of whatever model it serves. :func:`~datamark.evaluate.attacks.parse_attack` reads
``A+B[+C...]`` as an :class:`AttackChain`.

The steps run in the order a thief's work does, and a chain must be written in that order (:data:`STAGES`):
retraining from the release (data filters, whose flagged rows are dropped together, then at most one training
recipe), then model-side steps, each on the model the one before gave back, then the API's query-side steps, each
query passing them in the order written and each answer too.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...exceptions import ParameterError
from .base import Attack, QueryAttack

#: The order a thief's steps run in, which is the order a chain names them.
STAGES = ("data", "training", "model", "query")


@dataclass(frozen=True)
class AttackChain(Attack):
    """Attacks applied one after another as one thief (see the module)."""

    steps: tuple[Attack, ...]

    registry_name = "sequence"

    def __post_init__(self) -> None:
        if len(self.steps) < 2:
            raise ParameterError(f"A chain of attacks needs at least two steps; got {len(self.steps)}.")
        for step in self.steps:
            if not isinstance(step, Attack) or isinstance(step, AttackChain) or step.kind not in STAGES:
                raise ParameterError(f"A chain's steps are single attacks; got {step!r}.")
        for before, after in itertools.pairwise(self.steps):
            if STAGES.index(after.kind) < STAGES.index(before.kind):
                raise ParameterError(f"'{after.registry_name}' ({after.kind}-side) cannot follow "
                                     f"'{before.registry_name}' ({before.kind}-side): write a thief's steps in the "
                                     f"order they run ({', then '.join(STAGES)}).")
        if sum(step.kind == "training" for step in self.steps) > 1:
            raise ParameterError("A chain retrains once: name at most one training-side recipe.")
        if self.modalities == ():
            raise ParameterError(f"The steps of '{self.label}' apply to no modality in common; chain attacks for one "
                                 f"kind of data.")

    @property
    def kind(self) -> str:  # type: ignore[override]
        """The kind of its first stage: ``data`` or ``training`` where the thief retrains (so there is no clean
        model to attack as the control), else ``model``, else ``query``."""
        return min((step.kind for step in self.steps), key=STAGES.index)

    @property
    def modalities(self) -> tuple[str, ...] | None:  # type: ignore[override]
        """The modalities every step applies to."""
        allowed = [set(s.modalities) for s in self.steps if s.modalities is not None]
        return tuple(sorted(set.intersection(*allowed))) if allowed else None

    def params(self) -> dict[str, Any]:
        return {"steps": [step.to_dict() for step in self.steps]}

    @property
    def label(self) -> str:
        """The steps' labels joined by ``+``, in the order they run."""
        return " + ".join(step.label for step in self.steps)

    def apply(self, model: Any, spec: Any, thief_data: Any, *, seed: int = 0, progress: bool = False
              ) -> tuple[Any, Any]:
        """The model-side steps, each on the model the one before gave back (the input model is unchanged); the
        survival suite runs the retraining and query-side steps (:func:`~.robustness.attacked_suspect`)."""
        for step in self.steps:
            if step.kind == "model":
                model, spec = step.apply(model, spec, thief_data, seed=seed, progress=progress)  # type: ignore
        return model, spec


@dataclass(frozen=True)
class QueryPipeline(QueryAttack):
    """Several query-side attacks as one API: each query passes their input transforms in order, each answer
    their output transforms in order; it answers labels only when any of them does."""

    steps: tuple[QueryAttack, ...]

    registry_name = "sequence"

    @property
    def keeps_probs(self) -> bool:  # type: ignore[override]
        return all(step.keeps_probs for step in self.steps)

    @property
    def label(self) -> str:
        return " + ".join(step.label for step in self.steps)

    def params(self) -> dict[str, Any]:
        return {"steps": [step.to_dict() for step in self.steps]}

    def check_modality(self, modality: str) -> None:
        for step in self.steps:
            step.check_modality(modality)

    def transform_inputs(self, batch: np.ndarray, modality: str) -> np.ndarray:
        for step in self.steps:
            batch = step.transform_inputs(batch, modality)
        return batch

    def transform_outputs(self, probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for step in self.steps:
            probs = step.transform_outputs(probs, rng)
        return probs


def steps_of(attack: Attack) -> tuple[Attack, ...]:
    """The single attacks ``attack`` is made of: a chain's steps, or the attack itself."""
    return attack.steps if isinstance(attack, AttackChain) else (attack,)


def purifier(steps: Sequence[QueryAttack]) -> QueryAttack | None:
    """The thief's API made of these query-side steps (in order), or None where there are none."""
    return None if not steps else steps[0] if len(steps) == 1 else QueryPipeline(tuple(steps))
