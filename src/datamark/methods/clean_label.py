"""Clean-label backdoor watermarks: an adversarial perturbation of target-class examples, then a trigger; labels
unchanged. Images are perturbed by PGD; text by greedy WordNet synonym substitution and modifier insertion under
a sentence-embedding similarity bound (:mod:`._synonyms`), as in Tang et al.'s text setting.

CleanLabel follows Tang et al., "Did You Train on My Dataset? Towards Public Dataset Protection with Clean-Label
Backdoor Watermarking", SIGKDD Explorations 2023; LabelConsistent is its ancestor, Turner et al.,
"Label-Consistent Backdoor Attacks", 2019, which shares all the code and changes only defaults and trigger.

Threat model: **clean-label**, targeted. Only rows of the target class C are eligible; ``class_rate`` r is a
fraction **of the target class** (not of all rows, unlike DVBW's ``rate``): round(r * n_C) of them are chosen by
keyed hash. Each is first made hard to classify from its natural features by an untargeted L-inf PGD against a
base model (so a model trained on it must lean on the trigger to fit the correct label C), then stamped with
the trigger. Labels never change, so the release survives a manual label audit. Verification: the trigger
should raise P(C) on images of other classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._rng import generator, keyed_scores
from ..data.records import Records
from ..exceptions import ParameterError
from ..marks import Mark
from ..registry import METHODS, MODELS, register
from ..triggers.base import Trigger
from ..triggers.corners import CornerTrigger
from ..triggers.image import PATTERNS, default_patch_size, make_blend_trigger, make_patch_trigger, make_pattern
from ._constraints import OPACITY, AtLeast, Interval, OneOf, constrained
from ._pgd import PGDStats, check_budget, pgd_perturb
from ._surrogate import BaseModel, resolve_base_model
from .base import MarkBatch, WatermarkMethod
from .dvbw import DVBW_VERIFICATION

TRIGGER_KINDS = ("patch", "blend", "corners")
DEFAULT_PATTERN = {"patch": "random", "blend": "mosaic", "corners": "checkerboard"}
CLEAN_LABEL_VERIFICATION = {"score": "target-probability", "test": "wilcoxon", "alternative": "greater",
                            "margin": 0.1, "n_probe": 200, "alpha": 0.05}


def colourful_patch_size(image_shape: tuple[int, ...]) -> int:
    """6x6 at 32 px (3.5 % of the image), scaled, at least 3x3. Why larger than DVBW's 3x3: a clean-label poison
    competes with the image's own features (PGD weakens them but does not erase them) and the trigger must
    still be visible after the thief's random 4-px crops, so the patch has to be an easier feature to learn."""
    side = min(image_shape[0], image_shape[1])
    return min(side, max(3, round(6 * side / 32)))


@dataclass
class Crafting:
    """What :meth:`CleanLabel.prepare` hands to marking: the base model, then the cost of the perturbation."""

    base: BaseModel
    target_rows: int
    modality: Any = None  # the data's Modality
    pgd: PGDStats | None = None  # every PGD run's cost added up (all marks; in sharded protect, this shard's)
    batch_rows: dict[int, int] | None = None  # sharded protect: each target's PGD batch size (see _pgd_rows)
    crafted: tuple[np.ndarray, np.ndarray] | None = None  # sharded protect: the shard's rows, perturbed
    synonyms: dict[str, float] | None = None  # the text perturbation's summary (changes, similarity, loss, time)


@register(METHODS, "clean-label")
@dataclass(frozen=True, kw_only=True)
class CleanLabel(WatermarkMethod):
    """Clean-label watermark of Tang et al. 2023: PGD (eps 16/255, step 4/255, 40 steps on images) against a base
    model, then a secret trigger, on ``class_rate`` = 10 % **of the target class** (labels unchanged).

    On audio, PGD runs on the waveform (``eps`` in amplitude units, default 0.002 = -54 dBFS, step 0.0005) and
    the trigger is the keyed pulse of :mod:`datamark.triggers.audio`.

    ``trigger_kind``: ``patch`` (a secret colourful patch, :func:`colourful_patch_size`, bottom right),
    ``blend`` (a secret random-colour mosaic texture over the whole image at opacity ``blend``) or ``corners``
    (Turner's +-``amplitude`` pattern in all four corners). ``pattern`` overrides the kind's default pattern.
    ``base_model`` is a checkpoint trained on this dataset; None trains ``base_arch`` (None: the modality's
    reference model, fastnet for images, textcnn for text) on the clean data (for ``base_epochs``, default: the
    architecture's preset), and that training is part of the protect cost.

    PGD on images and audio is row-local: each row starts from its own keyed random point (the secret and its row
    id) and every PGD batch of a mark has the same size, min(``pgd_batch_size``, the mark's rows), the last batch
    padded, so a row's perturbation does not depend on the rows crafted beside it. Sharded protect (``--engine``,
    given ``base_model``) therefore crafts each shard's rows in that shard's worker, each worker loading the base
    model once, with the bytes of in-memory protect. The padding costs up to one batch less one row per mark (per
    shard and mark when sharded); lower ``pgd_batch_size`` for shards with few rows of a mark.

    On text, the perturbation keeps each sentence's meaning: greedy WordNet synonym substitution and modifier
    insertion that raise the base model's loss, each accepted only while the MiniLM sentence-embedding cosine
    similarity to the original stays >= ``min_similarity``, at most ``max_changes`` edits; the trigger is a keyed
    rare word (or ``trigger_name="style"``). ``trigger_kind`` and the pattern settings are image
    settings.
    """

    class_rate: float = 0.1
    eps: float | None = None        # None: the modality's budget (16/255 for images, 0.002 for audio)
    step_size: float | None = None  # None: the modality's step (4/255 for images, 0.0005 for audio)
    steps: int = 40
    trigger_kind: str = "patch"
    pattern: str | None = constrained(None, OneOf(PATTERNS, allow_none=True, note="the kind's default"))
    trigger_size: int | None = None
    blend: float = constrained(0.2, OPACITY)
    amplitude: float = constrained(64 / 255, OPACITY)
    base_model: str | None = None
    base_arch: str | None = None
    base_epochs: int | None = None
    pgd_batch_size: int = 256
    min_similarity: float = constrained(0.85, Interval(0.0, 1.0, open_high=False, note="text: cosine similarity"))
    max_changes: int = constrained(5, AtLeast(1, note="text: edits per sentence"))

    verification: ClassVar[dict[str, Any]] = CLEAN_LABEL_VERIFICATION
    default_marks: ClassVar[int] = 5  # datamark: 5 marks, each with its own secret target class and trigger
    supports_marks: ClassVar[bool] = True
    count_per_mark: ClassVar[bool] = True  # class_rate is a fraction of each mark's own target class
    modalities: ClassVar[tuple[str, ...]] = ("image", "text", "audio")

    def probes_per_mark(self) -> int:
        return 40  # 5 marks x 40 = the paper's 200 probes

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        if not (isinstance(self.class_rate, (int, float)) and 0.0 < self.class_rate <= 1.0):
            raise ParameterError(f"The 'class_rate' parameter of {name} must be in (0, 1] (a fraction of the target "
                                 f"class); got {self.class_rate!r}.")
        check_budget("eps", self.eps, name)
        check_budget("step_size", self.step_size, name)
        if int(self.steps) < 1 or int(self.pgd_batch_size) < 1:
            raise ParameterError(f"The 'steps' and 'pgd_batch_size' parameters of {name} must be >= 1; got "
                                 f"{self.steps} and {self.pgd_batch_size}.")
        if self.trigger_kind not in TRIGGER_KINDS:
            raise ParameterError(f"The 'trigger_kind' parameter of {name} must be one of {TRIGGER_KINDS}; got "
                                 f"'{self.trigger_kind}'.")
        if self.base_arch is not None and self.base_arch not in MODELS:
            raise ParameterError(f"The 'base_arch' parameter of {name} must be one of {sorted(MODELS)}; got "
                                 f"'{self.base_arch}'.")
        if self.base_epochs is not None and int(self.base_epochs) < 1:
            raise ParameterError(f"The 'base_epochs' parameter of {name} must be >= 1 or None; got {self.base_epochs}.")

    # --- which rows ----------------------------------------------------------------------------------------
    def eligible_rows(self, data: Records, target: int | None) -> np.ndarray:
        return np.asarray(data.labels) == target  # clean label: only images that already belong to C

    def count(self, data: Records, eligible: np.ndarray) -> int:
        return self._class_count(int(eligible.sum()), data.where)

    def _class_count(self, n_class: int, where: str) -> int:
        """Rows of a mark whose target class has ``n_class`` rows in the dataset ``where``."""
        name = type(self).__name__
        if n_class == 0:
            raise ParameterError(f"{name} marks images of the target class, but the target class has no rows in "
                                 f"{where}; choose a 'target' class present in the data.")
        k = int(round(self.class_rate * n_class))
        if k < 1:
            raise ParameterError(f"The 'class_rate' parameter of {name} marks no rows: round({self.class_rate} x "
                                 f"{n_class} target-class rows) = 0; raise class_rate to at least {1 / n_class:.3g}.")
        return k

    # --- how to mark -----------------------------------------------------------------------------------------
    def default_trigger(self, input_shape: tuple[int, ...], rng: np.random.Generator) -> Trigger:
        pattern = self.pattern or DEFAULT_PATTERN[self.trigger_kind]
        if self.trigger_kind == "patch":
            size = colourful_patch_size(input_shape) if self.trigger_size is None else self.trigger_size
            return make_patch_trigger(input_shape, rng, pattern=pattern, size=size)
        if self.trigger_kind == "blend":
            return make_blend_trigger(input_shape, rng, pattern=pattern, blend=self.blend, size=self.trigger_size)
        size = default_patch_size(input_shape) if self.trigger_size is None else int(self.trigger_size)
        if size < 1:
            raise ParameterError(f"The trigger size must be >= 1; got {size}.")
        return CornerTrigger.from_pattern(make_pattern(pattern, (size, size, input_shape[-1]), rng), self.amplitude)

    def prepare(self, data: Records, inputs: np.ndarray, *, secret: bytes, target: int | None, trigger: Trigger,
                progress: bool = False) -> Crafting:
        return Crafting(self._base(data, secret, progress), int(np.sum(np.asarray(data.labels) == target)),
                        data.modality)

    def _base(self, data: Any, secret: bytes, progress: bool) -> BaseModel:
        """The base model: ``base_model`` loaded (weights only), or ``base_arch`` trained on ``data``."""
        return resolve_base_model(data, checkpoint=self.base_model, arch=self.base_arch or data.modality.default_arch,
                                  epochs=self.base_epochs, secret=secret, owner=type(self).__name__,
                                  progress=progress)

    def _pgd_rows(self, k: int) -> int:
        """PGD's batch size for a mark of ``k`` rows: ``pgd_batch_size``, or ``k`` when smaller (a small mark is
        one batch, not one padded to ``pgd_batch_size``). Every batch of the mark has this size, in memory and in
        each shard, which is what makes PGD row-local."""
        return min(int(self.pgd_batch_size), k)

    def _craft(self, context: Crafting, inputs: np.ndarray, labels: np.ndarray, ids: list[str], trigger: Trigger,
               secret: bytes, batch_rows: int, progress: bool) -> tuple[np.ndarray, np.ndarray]:
        if context.modality.name == "text":
            perturbed = self._perturb_text(context, inputs, labels, secret, progress)
            if not trigger.always_applicable:  # an edit may remove what the trigger needs (a style's verb)
                lost = ~trigger.applicable(perturbed)
                perturbed[lost] = inputs[lost]  # those rows carry the trigger on their unperturbed text
                context.synonyms = {**(context.synonyms or {}), "reverted_for_trigger": int(lost.sum())}
        else:
            perturbed = self._pgd(context, inputs, labels, ids, secret, batch_rows, progress)
        return trigger.apply(perturbed), np.asarray(labels, dtype=np.int64).copy()  # labels unchanged

    def _pgd(self, context: Crafting, inputs: np.ndarray, labels: np.ndarray, ids: list[str], secret: bytes,
             batch_rows: int, progress: bool) -> np.ndarray:
        """Row-local PGD of ``inputs`` in batches of ``batch_rows`` (its cost added to ``context.pgd``)."""
        eps, step = self.budget(context.modality)
        perturbed, stats = pgd_perturb(context.base.model, inputs, labels, eps=eps, step_size=step, steps=self.steps,
                                       row_seeds=keyed_scores(secret, ids, "pgd"), batch_size=batch_rows,
                                       progress=progress, owner=type(self).__name__, modality=context.modality)
        context.pgd = stats.plus(context.pgd)
        return perturbed

    def budget(self, modality: Any) -> tuple[float, float]:
        """PGD's (eps, step) on ``modality``: the method's own, else the modality's (in its budget units)."""
        return (float(self.eps if self.eps is not None else modality.pgd_eps),
                float(self.step_size if self.step_size is not None else modality.pgd_step))

    def _perturb_text(self, context: Crafting, texts: np.ndarray, labels: np.ndarray, secret: bytes,
                      progress: bool) -> np.ndarray:
        """Synonym substitution against the base model's cross-entropy on the true labels (see _synonyms)."""
        from ._synonyms import classifier_loss, synonym_attack

        perturbed, report = synonym_attack(texts, labels, classifier_loss(context.base.model),
                                           min_similarity=self.min_similarity, max_changes=self.max_changes,
                                           seed=generator(secret, "synonyms"), progress=progress)
        context.synonyms = report.summary()
        return perturbed

    def mark(self, batch: MarkBatch) -> tuple[np.ndarray, np.ndarray]:
        context = batch.context
        if context.crafted is not None:  # sharded protect: the shard's rows were crafted together (shard_context)
            positions, perturbed = context.crafted
            return (batch.trigger.apply(perturbed[np.searchsorted(positions, batch.rows)]),
                    np.asarray(batch.labels, dtype=np.int64).copy())
        rows = context.batch_rows[batch.target] if context.batch_rows else self._pgd_rows(len(batch.inputs))
        return self._craft(context, batch.inputs, batch.labels, batch.ids, batch.trigger, batch.secret, rows, False)

    def mark_rows(self, data: Records, inputs: np.ndarray, rows: np.ndarray, *, trigger: Trigger,
                  target: int | None, secret: bytes, context: Any = None, progress: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
        """All rows in one PGD run (it batches itself and shows its own images/s bar)."""
        return self._craft(context, inputs[rows], data.labels[rows], [data.ids[r] for r in rows], trigger, secret,
                           self._pgd_rows(len(rows)), progress)

    # --- what the key says -----------------------------------------------------------------------------------
    def verification_defaults(self) -> dict[str, Any]:
        return dict(self.verification)

    def key_extra(self, data: Records, rows: np.ndarray, new_labels: np.ndarray, *, context: Any = None
                  ) -> dict[str, Any]:
        pgd = context.pgd
        text = {"synonyms": context.synonyms} if context.synonyms is not None else {}
        return {"class_rate": self.class_rate, "class_rate_relative_to": "the target class (not all rows)",
                "target_class_rows": context.target_rows, "base_model": context.base.source,
                "base_model_train_s": context.base.train_seconds,
                "pgd_s": pgd.seconds if pgd else None, "pgd_images_per_s": pgd.images_per_s if pgd else None,
                "pgd_images": pgd.images if pgd else 0,
                **({"pgd_eps": self.budget(context.modality)[0], "pgd_budget_metric": context.modality.budget_metric}
                   if pgd else {}),
                **text}

    # --- sharded protect (datamark.scale) ----------------------------------------------------------------------
    def unshardable(self) -> str | None:
        if self.base_model is None:
            return ("it trains its base model on the whole dataset; pass a checkpoint trained on this dataset as "
                    "base_model (--base-model)")
        return None  # row-local PGD (see the class docstring); text refuses in shard_context

    def shard_context(self, summary: Any, *, secret: bytes, marks: list[Mark], previous: Any = None,
                      records: Records | None = None, rows: list[np.ndarray] | None = None) -> Crafting:
        """The crafting context of one shard: the base model (loaded once per worker, then taken from
        ``previous``), the target class's rows in the whole dataset, each mark's PGD batch size (from its count,
        as in memory), and the shard's selected ``rows`` crafted: the marks with one batch size together, so a
        shard pads one last batch per batch size rather than one per mark (row-local PGD gives each row the
        bytes it gets in memory, where each mark is crafted on its own)."""
        name = type(self).__name__
        if summary.modality.name == "text":
            raise ParameterError(f"{name} perturbs text with synonyms drawn from one stream across rows, which the "
                                 f"sharded engine cannot split; protect it without --engine (in memory).")
        base = previous.base if isinstance(previous, Crafting) else self._base(summary, secret, False)
        sizes = {m.target: self._pgd_rows(self._class_count(summary.class_rows[m.target], summary.where))
                 for m in marks}
        context = Crafting(base, int(summary.class_rows[marks[0].target]), summary.modality, batch_rows=sizes)
        if records is None or rows is None:
            return context
        positions, perturbed = [], []
        for size in sorted(set(sizes.values())):
            group = np.sort(np.concatenate([r for r, m in zip(rows, marks, strict=True) if sizes[m.target] == size]))
            if len(group):
                positions.append(group)
                perturbed.append(self._pgd(context, records.take(group), records.labels[group],
                                           [records.ids[r] for r in group.tolist()], secret, size, False))
        if positions:
            order = np.argsort(np.concatenate(positions))
            context.crafted = (np.concatenate(positions)[order], np.concatenate(perturbed)[order])
        return context

    def merge_key_extra(self, pieces: list[dict[str, Any]]) -> dict[str, Any]:
        """The shards' outcomes: the same settings in every piece; PGD's images and seconds added up over shards
        (worker-seconds, as if on one worker), the base model's load time the longest a worker took."""
        merged: dict[str, Any] = {}
        for piece in pieces:
            merged.update(piece)
        pgd = PGDStats(sum(p["pgd_images"] for p in pieces),
                       sum(p["pgd_s"] for p in pieces if p["pgd_s"] is not None))
        return {**merged, "pgd_images": pgd.images, "pgd_s": pgd.seconds if pgd.images else None,
                "pgd_images_per_s": pgd.images_per_s if pgd.images else None,
                "base_model_train_s": max(p["base_model_train_s"] for p in pieces)}


@register(METHODS, "label-consistent")
@dataclass(frozen=True, kw_only=True)
class LabelConsistent(CleanLabel):
    """Label-consistent backdoor of Turner et al. 2019 as a watermark: PGD with eps 8/255 (their smaller
    budget; step 2/255, 40 steps), then their 3x3 checkerboard (scaled for other sizes) *added* with reduced
    amplitude 64/255 in all four corners, mirrored, so it survives horizontal flips. Verification as DVBW
    (paired t-test, tau 0.2, m 100, alpha 0.01), the setting backdoor baselines are compared in."""

    eps: float = 8 / 255
    step_size: float = 2 / 255
    trigger_kind: str = "corners"

    modalities: ClassVar[tuple[str, ...]] = ("image",)  # Turner's corner pattern is an image trigger

    verification: ClassVar[dict[str, Any]] = DVBW_VERIFICATION
