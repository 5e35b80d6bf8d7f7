"""One thief, several model-side steps: ``fine-tune:lr=0.05,rows=5000+distill:rows=20000``.

A thief who knows one countermeasure leaves part of a watermark may stack two: fine-tuning at a large learning rate
washes out the confusion channel's label-only signal while the marks survive, and distillation removes trigger
marks while the confusion channel survives, so a fine-tune *then* distil thief is the one to measure against a key
that carries both channels. :func:`~datamark.evaluate.attacks.parse_attack` reads ``A+B[+C...]`` as this attack.

Model-side steps only: each takes a model and gives one back, so they chain. Query-side steps wrap the API and
data- and training-side steps retrain from the release; neither chains this way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...exceptions import ParameterError
from .base import ModelAttack


@dataclass(frozen=True)
class ModelSequence(ModelAttack):
    """Model-side attacks applied one after another, each to the model the one before gave back."""

    steps: tuple[ModelAttack, ...]

    registry_name = "sequence"

    def __post_init__(self) -> None:
        if len(self.steps) < 2:
            raise ParameterError(f"A sequence of attacks needs at least two steps; got {len(self.steps)}.")
        for step in self.steps:
            if not isinstance(step, ModelAttack) or isinstance(step, ModelSequence):
                name = getattr(step, "registry_name", type(step).__name__)
                raise ParameterError(f"Only model-side attacks chain with '+' (fine-tune, fine-prune, distill); "
                                     f"'{name}' is a {getattr(step, 'kind', 'non')}-side attack. Run it on its "
                                     f"own.")

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
        for step in self.steps:
            model, spec = step.apply(model, spec, thief_data, seed=seed, progress=progress)
        return model, spec
