"""The suspect the owner meets behind a thief's purifying API: each query is transformed before the stolen
model sees it and each answer before it is returned (:class:`~.base.QueryAttack`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._rng import generator, seed_secret
from ...modalities import modality_of
from ...suspects.base import Outputs, Suspect, require_probs, validate_output


class PurifiedSuspect:
    """``inner`` (answering probabilities) behind ``attack``'s transforms; answers probabilities, or labels when
    the attack returns only the top-1 class or ``outputs="labels"`` is asked for (the label-only setting)."""

    def __init__(self, inner: Suspect, attack: Any, *, seed: int = 0, outputs: Outputs | None = None) -> None:
        require_probs(inner, f"The '{attack.registry_name}' query attack")
        self.inner, self.attack, self.seed = inner, attack, seed
        self.num_classes = inner.num_classes
        self.outputs: Outputs = outputs or ("probs" if attack.keeps_probs else "labels")
        if self.outputs == "probs" and not attack.keeps_probs:
            raise ValueError(f"The '{attack.registry_name}' attack answers labels only.")
        self.queries = 0
        self._rng = generator(seed_secret(seed), f"purify:{attack.registry_name}")

    model = property(lambda self: getattr(self.inner, "model", None))  # the weights' hash goes into evidence

    @property
    def budget_left(self) -> int | None:
        return self.inner.budget_left

    def with_outputs(self, outputs: Outputs) -> PurifiedSuspect:
        """The same API answering ``outputs`` (a fresh noise stream from the same seed)."""
        return PurifiedSuspect(self.inner, self.attack, seed=self.seed, outputs=outputs)

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "outputs": self.outputs, "purified_by": self.attack.to_dict()}

    def query(self, inputs: np.ndarray) -> np.ndarray:
        modality = modality_of(inputs).name
        self.attack.check_modality(modality)
        probs = self.inner.query(self.attack.transform_inputs(inputs, modality))
        probs = np.asarray(self.attack.transform_outputs(np.asarray(probs, dtype=np.float64), self._rng))
        self.queries += len(inputs)
        out = probs if self.outputs == "probs" else probs.argmax(axis=1)
        return validate_output(out, self.outputs, len(inputs), self.num_classes,
                               f"the suspect behind '{self.attack.registry_name}'")
