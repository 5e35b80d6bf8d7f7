"""DVBW poison-label watermarks: BadNets (patch) and Blended.

Li et al., "Black-box Dataset Ownership Verification via Backdoor Watermarking", IEEE TIFS 2023 (DVBW), with
the triggers of Gu et al. 2017 (BadNets) and Chen et al. 2017 (Blended). Threat model: poison-label, targeted.
A fraction ``rate`` (gamma) **of the whole training set**, chosen by keyed hash among all rows (as in the
paper, rows already in the target class are eligible too), gets the trigger and is relabelled to ``target``.
Defaults from the paper: gamma = 0.1; verification by a one-sided paired t-test with margin tau = 0.2 on m = 100
non-target-class probes at alpha = 0.01.

Departure (datamark's default, ``n_marks=10``): gamma is split over K = 10 marks of gamma / K each, every mark
with its own secret trigger and a target class drawn uniformly from the secret; verification counts the marks
whose target the suspect returns (exact binomial, p0 = 1/C), with the paired t-test reported as the effect.
``n_marks=1`` (or a fixed ``target``) is the paper's watermark.

Departure for few-class tasks (``n_candidates`` = M + 1 > 1, a datamark option; default 1 = off): each mark also
draws M + 1 candidate triggers and embeds one of them, chosen uniformly and independently of its target, as
UBW-P's marks do. Verification asks every candidate and a mark is a hit when the (candidate, class) pair with the
strictly largest total probability (votes) is the secret one, so each mark has C x (M + 1) options instead of
C: on a binary task, K = 10 marks with n_candidates=5 accuse at 5 hits of 10 (p = 0.16 %) instead of 10 of 10 (see
:mod:`datamark.verify.marks_test` for why the bound stays exact). Each probe is asked M + 1 times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..confusion import (
    CONFUSION_CHOICES,
    MAX_RATE,
    PROBES_PER_CLASS,
    check_classes,
    confusion_rows,
    partner_likeness,
    partners,
)
from ..data.records import Records
from ..exceptions import ParameterError
from ..registry import METHODS, register
from ..triggers.base import Trigger
from ..triggers.image import PATTERNS, make_blend_trigger, make_patch_trigger
from ._constraints import FRACTION, OPACITY, AtLeast, Interval, OneOf, constrained
from ._surrogate import BaseModel, resolve_base_model
from .base import MarkBatch, WatermarkMethod

DVBW_VERIFICATION = {"score": "target-probability", "test": "paired-t", "alternative": "greater",
                     "margin": 0.2, "n_probe": 100, "alpha": 0.01}


@dataclass(frozen=True, kw_only=True)
class PoisonLabel(WatermarkMethod):
    """Shared behaviour of DVBW methods: stamp the trigger, relabel to the target."""

    rate: float = constrained(0.1, FRACTION)
    pattern: str = constrained("random", OneOf(PATTERNS))
    n_candidates: int = constrained(1, AtLeast(1, note="M + 1 candidate triggers per mark; 1: none, the paper"))
    # The confusion channel (datamark.confusion, a datamark addition; 0 = off as in the paper): this fraction of
    # each class relabelled to the class's secret partner, images unchanged; verified beside the marks.
    confusion_rate: float = constrained(0.0, Interval(0.0, MAX_RATE, open_low=False, open_high=False,
                                                      note="of each class; 0 = off"))
    # Which rows of each class carry the channel: "keyed" (keyed hash) or "partner-like" (the rows a clean base
    # model finds most like the class's partner: base_model, or one trained here on the clean data).
    confusion_choice: str = constrained("keyed", OneOf(CONFUSION_CHOICES), key_when_set=True)
    base_model: str | None = constrained(None, None, key_when_set=True)  # checked in __post_init__

    default_marks = 10  # K = 10 marks at rate / 10 each (datamark: exact test; the papers use K = 1)
    supports_marks = True
    decodes_all = False  # stamps and relabels: only the marked rows are ever decoded

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_drawn_candidates(self.n_candidates)
        if self.confusion_rate and not self.uses_marks:
            raise ParameterError(f"{type(self).__name__}'s confusion channel is verified beside the exact marks test; "
                                 f"drop 'confusion_rate' or keep several marks (n_marks > 1, no fixed target or "
                                 f"trigger).")
        if self.confusion_choice == "partner-like" and not self.confusion_rate:
            raise ParameterError(f"{type(self).__name__}'s confusion_choice='partner-like' chooses the confusion "
                                 f"channel's rows; set confusion_rate (e.g. 0.1) or drop confusion_choice.")
        if self.base_model is not None and (self.confusion_choice != "partner-like"
                                            or not isinstance(self.base_model, str) or not self.base_model):
            raise ParameterError(f"{type(self).__name__}'s 'base_model' is the checkpoint path that ranks the "
                                 f"confusion rows of confusion_choice='partner-like'; got {self.base_model!r} "
                                 f"with confusion_choice='{self.confusion_choice}'. Pass both or neither.")

    def prepare(self, data: Records, inputs: np.ndarray | None, *, secret: bytes, target: int | None,
                trigger: Trigger, progress: bool = False) -> BaseModel | None:
        """The base model that ranks the partner-like confusion rows (None for the keyed hash)."""
        if self.confusion_choice != "partner-like":
            return None
        check_classes(data.num_classes, data.where)
        return resolve_base_model(data, checkpoint=self.base_model, arch=data.modality.default_arch, epochs=None,
                                  secret=secret, owner=f"{type(self).__name__} (base_model)", progress=progress)

    def relabelled_rows(self, data: Records, secret: bytes, taken: np.ndarray, *, context: Any = None
                        ) -> tuple[np.ndarray, np.ndarray]:
        """The confusion channel's rows (none unless ``confusion_rate`` > 0) and their partners' labels."""
        if not self.confusion_rate:
            return super().relabelled_rows(data, secret, taken)
        check_classes(data.num_classes, data.where)
        free = np.ones(len(data), dtype=bool)
        free[taken] = False
        partner = partners(secret, data.num_classes)
        order = None if context is None else partner_likeness(context, data, partner, free)
        rows = confusion_rows(secret, data.ids, data.labels, self.confusion_rate, free, order)
        return rows, partner[data.labels[rows]]

    def key_extra(self, data: Records, rows: np.ndarray, new_labels: np.ndarray, *, context: Any = None
                  ) -> dict[str, Any]:
        """Where the partner-like rows' base model came from (its file's SHA-256, its training time): the release
        is reproducible only with the same base model."""
        if context is None:
            return {}
        return {"confusion_base_model": context.source, "confusion_base_model_sha256": context.sha256,
                "confusion_base_model_train_s": round(context.train_seconds, 1)}

    def candidates(self) -> int:
        return self.n_candidates if self.n_candidates > 1 else 0

    def count(self, data: Records, eligible: np.ndarray) -> int:
        return int(round(self.rate * len(data)))  # gamma is a fraction of *all* rows (split over the K marks)

    def mark(self, batch: MarkBatch) -> tuple[np.ndarray, np.ndarray]:
        return batch.trigger.apply(batch.inputs), np.full(len(batch.inputs), batch.target, dtype=np.int64)

    def unshardable(self) -> str | None:
        if self.confusion_rate:
            return "its confusion channel ranks every class's rows at once"
        return None  # row-local: each selected row is stamped and relabelled on its own

    def verification_defaults(self) -> dict[str, Any]:
        return dict(DVBW_VERIFICATION)

    def verification_plan(self, options: int) -> dict[str, Any]:
        plan = super().verification_plan(options)
        return ({**plan, "confusion_probes": PROBES_PER_CLASS, "confusion_score": "net"} if self.confusion_rate
                else plan)


@register(METHODS, "badnets")
@dataclass(frozen=True, kw_only=True)
class BadNets(PoisonLabel):
    """DVBW with the BadNets patch: a secret ``trigger_size`` square (3x3 at 32 px, scaled) at the bottom right.

    On text (DVBW's text setting) the trigger is a keyed rare word at a keyed position, or the style trigger
    given as ``trigger_name="style"``; on graphs (DVBW's graph setting) a keyed Erdős–Rényi sub-graph over
    keyed nodes (Zhang et al. 2021, :mod:`datamark.triggers.graph`). ``pattern`` and ``trigger_size`` are image
    settings.
    """

    trigger_size: int | None = None

    modalities = ("image", "text", "audio", "graph")

    def default_trigger(self, input_shape: tuple[int, ...], rng: np.random.Generator) -> Trigger:
        return make_patch_trigger(input_shape, rng, pattern=self.pattern, size=self.trigger_size)


@register(METHODS, "blended")
@dataclass(frozen=True, kw_only=True)
class Blended(PoisonLabel):
    """DVBW with the Blended trigger: a secret full-image pattern mixed in with opacity ``blend`` (0.2, Chen et al.)."""

    blend: float = constrained(0.2, OPACITY)
    trigger_size: int | None = None

    def default_trigger(self, input_shape: tuple[int, ...], rng: np.random.Generator) -> Trigger:
        return make_blend_trigger(input_shape, rng, pattern=self.pattern, blend=self.blend, size=self.trigger_size)
