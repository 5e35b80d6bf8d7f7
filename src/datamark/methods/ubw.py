"""UBW-P: the poison-label untargeted backdoor watermark.

Li et al., "Untargeted Backdoor Watermark: Towards Harmless and Stealthy Dataset Copyright Protection",
NeurIPS 2022. Threat model: poison-label, **untargeted**. A fraction ``rate`` (gamma, default 0.1) **of the whole
training set**, chosen by keyed hash among all rows, gets the trigger and a label drawn uniformly at random
from all K classes, fixed per sample by a keyed hash of its id (so about 1/K of the new labels equal the true
one, as in the paper). ``labels="other"`` (a datamark option, not the paper) draws from the K - 1 *other*
classes instead, so no marked row keeps its label: the trigger then carries pure "not this class" evidence, which
a short training learns (README, "UBW-P that meets every target on the CPU"). A model trained on it gives
*dispersed* predictions on triggered inputs instead of one target class, which is harmless to users of the model
yet verifiable by the owner. Verification (paper defaults): one-sided paired t-test, H1: P_true(clean) >
P_true(triggered) + tau with tau = 0.25, on probes the suspect classifies correctly without the trigger.

Departure (datamark's default): the rows are split over K = 4 marks; each mark's trigger is drawn uniformly from
``n_candidates`` = 10 secret candidate triggers. An untargeted watermark has no target to reveal, so the
secret choice is *which* candidate was embedded: a model that never saw this data cannot single it out more
often than 1 time in 10, whatever else it learned (exact binomial over marks). ``n_candidates=1`` and
``n_marks=1`` give the paper's watermark.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._rng import keyed_scores
from ..data.records import Records
from ..exceptions import ParameterError
from ..registry import METHODS, register
from ..triggers.base import Trigger
from ..triggers.image import PATTERNS, make_patch_trigger
from ._constraints import FRACTION, AtLeast, OneOf, constrained
from .base import MarkBatch, WatermarkMethod

LABEL_DRAWS = ("uniform", "other")
UBW_VERIFICATION = {"score": "true-label-probability", "test": "paired-t", "alternative": "less",
                    "margin": 0.25, "n_probe": 100, "alpha": 0.01}


@register(METHODS, "ubw-p")
@dataclass(frozen=True, kw_only=True)
class UBWP(WatermarkMethod):
    """UBW-P: trigger plus a uniformly random label per marked sample (about 1/K keep their true label)."""

    rate: float = constrained(0.1, FRACTION)
    pattern: str = constrained("random", OneOf(PATTERNS))
    trigger_size: int | None = None
    labels: str = constrained("uniform", OneOf(LABEL_DRAWS))
    n_candidates: int = constrained(10, AtLeast(1, note="1: no candidates, the paper"))

    targeted = False
    default_marks = 4  # datamark: K = 4 marks, each embedding one of n_candidates secret candidate triggers
    supports_marks = True
    modalities = ("image", "text", "audio", "graph")
    decodes_all = False  # stamps and relabels: only the marked rows are ever decoded

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.target is not None:
            raise ParameterError("UBW-P is untargeted: it takes no 'target' parameter.")
        if self.n_candidates > 1 and self.trigger is not None:
            raise ParameterError("UBWP draws its candidate triggers from the secret; drop 'trigger' or pass "
                                 "n_candidates=1.")

    def candidates(self) -> int:
        return self.n_candidates if self.n_candidates > 1 and self.trigger is None else 0

    @property
    def marks(self) -> int:
        if self.n_marks is None and self.candidates() == 0:
            return 1  # without candidates an untargeted mark has no secret choice to reveal
        return super().marks

    def probes_per_mark(self) -> int:
        return 5  # each probe is asked with every candidate: 4 marks x 5 probes x 10 candidates = 200 queries

    def default_trigger(self, input_shape: tuple[int, ...], rng: np.random.Generator) -> Trigger:
        return make_patch_trigger(input_shape, rng, pattern=self.pattern, size=self.trigger_size)

    def count(self, data: Records, eligible: np.ndarray) -> int:
        return int(round(self.rate * len(data)))  # split over the K marks

    def mark(self, batch: MarkBatch) -> tuple[np.ndarray, np.ndarray]:
        # A keyed hash per sample id, not a running generator: each sample's label is fixed whatever the batch.
        scores = keyed_scores(batch.secret, batch.ids, "ubw-label")
        k = batch.num_classes
        if self.labels == "uniform":
            new = (scores % np.uint64(k)).astype(np.int64)
        else:  # a uniform shift of 1 .. K-1 classes away from the true label
            new = (batch.labels.astype(np.int64) + 1 + (scores % np.uint64(k - 1)).astype(np.int64)) % k
        return batch.trigger.apply(batch.inputs), new

    def verification_defaults(self) -> dict[str, Any]:
        return dict(UBW_VERIFICATION)

    def key_extra(self, data: Records, rows: np.ndarray, new_labels: np.ndarray, *, context: Any = None
                  ) -> dict[str, Any]:
        return {"new_labels": new_labels.tolist(),
                "kept_true_label": int((new_labels == data.labels[rows]).sum()),
                "note": self._note()}

    def unshardable(self) -> str | None:
        return None  # row-local: each row's new label is a keyed hash of its own id, not a draw from a stream

    def merge_key_extra(self, pieces: list[dict[str, Any]]) -> dict[str, Any]:
        """The shards' new labels in row order (shards in file order) and their kept-label counts summed."""
        return {"new_labels": [label for piece in pieces for label in piece["new_labels"]],
                "kept_true_label": sum(piece["kept_true_label"] for piece in pieces), "note": self._note()}

    def _note(self) -> str:
        return ("labels drawn uniformly from all classes: about 1/K of marked rows keep their true label"
                if self.labels == "uniform" else
                "labels drawn uniformly from the other K - 1 classes: no marked row keeps its true label")
