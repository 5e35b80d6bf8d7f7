"""The template every watermark method follows.

:meth:`WatermarkMethod.apply` owns the shared work -- validate the data, resolve the secret, trigger and target,
select rows by keyed hash, mark them in batches, build the new dataset and the key -- so a concrete method
overrides only *which rows* (:meth:`eligible_rows`, :meth:`count`) and *how to mark a batch* (:meth:`mark`).
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._progress import progress_bar
from .._rng import generator, keyed_scores, resolve_secret, select_smallest
from ..data import load_data
from ..data.records import Records
from ..exceptions import ParameterError, WeakTriggerWarning
from ..key import Key
from ..marks import Mark
from ..modalities import Modality
from ..triggers.base import Trigger, carrying
from ..verify.plan import (
    MARKS_RANDOMIZATION,
    RANDOMIZATION_PROBES_PER_MARK,
    SINGLE_MARK_CONTROLS,
    marks_test_for,
)
from ._constraints import check_fields, in_key

logger = logging.getLogger(__name__)

MARK_BATCH = 1024  # rows marked per batch: bounds memory for large datasets, granularity of the progress bar
COMMON_TRIGGER = 0.005  # above this share of clean rows already carrying a trigger, protect warns


@dataclass(frozen=True)
class MarkBatch:
    """One batch of selected rows and everything a method may use to mark it."""

    inputs: np.ndarray        # decoded examples of the batch, the modality's batch type (never modified in place)
    labels: np.ndarray        # their current labels
    ids: list[str]            # their stable row ids (for per-sample keyed choices)
    trigger: Trigger
    target: int | None
    num_classes: int
    secret: bytes
    rng: np.random.Generator  # the method's marking generator, derived from the secret
    rows: np.ndarray | None = None  # their row positions in the dataset
    context: Any = None             # what :meth:`WatermarkMethod.prepare` returned (e.g. a base model)


@dataclass(frozen=True)
class Watermarked:
    """The output of a method: the watermarked dataset (same format as the input), its key, the marked rows."""

    dataset: Records
    key: Key
    rows: np.ndarray


@dataclass(frozen=True, kw_only=True)
class WatermarkMethod(ABC):
    """Base of all methods. ``seed=None`` draws a fresh secret; an int derives it (reproducible runs, tests).

    ``target=None`` draws the target class from the secret (targeted methods only); ``trigger=None`` builds the
    method's default trigger, with a secret pattern, for the data's image shape.

    ``n_marks`` (K, a datamark addition) splits the watermark into K marks, each with its own secret trigger on
    its own share of the rows and its own secret choice (a target class drawn uniformly, or -- untargeted
    methods -- which of several candidate triggers was embedded); see :mod:`datamark.marks`. The verifier then
    counts the marks whose secret choice the suspect reveals with an exact binomial test, so the false-accusation
    rate is at most alpha against *any* model that did not train on this data, including models trained on
    other owners' watermarks of the same method. ``None`` takes the method's default (``default_marks``), or 1
    when a ``target`` or ``trigger`` is fixed (the papers' single watermark, verified with their test plus the
    trigger-specificity control).

    ``trigger_name`` picks one of the modality's named alternative triggers instead of its default (``"style"``
    for text, ``"pulse"`` or ``"noise"`` for audio), drawn from the secret like the default and recorded in the
    key's parameters, so that verification can re-draw it (:mod:`datamark.verify.consistency`). Prefer it to a
    hand-made ``trigger=`` object: a trigger chosen by hand cannot be told apart from one a forger crafted on the
    suspect, so the verifier does not accuse with it unless asked to (``accept_owner_trigger``). Like
    ``trigger``, it makes the papers' single mark.

    ``decoy_rate`` (a datamark addition, 0 = off as in the papers) stamps that fraction of all rows with *other*
    random triggers of the same kind and keeps their labels: the cross-trigger samples of Nguyen & Tran (2020),
    which teach a model to answer only the owner's pattern, so another owner's trigger (the Independent-T
    control) does not fire. Decoy rows are recorded in the key's ``extra``.
    """

    seed: int | None = None
    target: int | None = None
    trigger: Trigger | None = None
    decoy_rate: float = 0.0
    n_marks: int | None = None
    trigger_name: str | None = None

    registry_name: ClassVar[str]
    targeted: ClassVar[bool] = True
    default_marks: ClassVar[int] = 1    # K when n_marks is None; methods that cannot split their mark keep 1
    supports_marks: ClassVar[bool] = False
    count_per_mark: ClassVar[bool] = False  # False: count() is the whole watermark's, split evenly over marks
    modalities: ClassVar[tuple[str, ...]] = ("image",)  # kinds of data the method is defined for
    decodes_all: ClassVar[bool] = True  # False: only the marked rows are decoded (poison-only methods)

    def __post_init__(self) -> None:
        check_fields(self)  # the declarative constraints of every field (see methods/_constraints.py)
        name = type(self).__name__
        if self.seed is not None and (not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool)):
            raise ParameterError(f"The 'seed' parameter of {name} must be an integer or None; got {self.seed!r}.")
        if self.target is not None and (not isinstance(self.target, (int, np.integer)) or self.target < 0):
            raise ParameterError(f"The 'target' parameter of {name} must be a class index >= 0; got {self.target!r}.")
        if not (isinstance(self.decoy_rate, (int, float)) and 0.0 <= self.decoy_rate < 1.0):
            raise ParameterError(f"The 'decoy_rate' parameter of {name} must be in [0, 1); got {self.decoy_rate!r}.")
        if self.trigger_name is not None and (not isinstance(self.trigger_name, str) or self.trigger is not None):
            raise ParameterError(f"The 'trigger_name' parameter of {name} must be a trigger name such as 'style' "
                                 f"(text) or 'pulse' (audio), and not beside a 'trigger' object; got "
                                 f"{self.trigger_name!r}.")
        if self.n_marks is not None:
            if not isinstance(self.n_marks, (int, np.integer)) or isinstance(self.n_marks, bool) or self.n_marks < 1:
                raise ParameterError(f"The 'n_marks' parameter of {name} must be an integer >= 1 or None; got "
                                     f"{self.n_marks!r}.")
            if self.n_marks > 1 and not self.supports_marks:
                raise ParameterError(f"{name} crafts a single watermark; its 'n_marks' must be 1 or None; got "
                                     f"{self.n_marks}.")
            if self.n_marks > 1 and (self.target is not None or self.chooses_trigger):
                raise ParameterError(f"{name} with n_marks={self.n_marks} draws each mark's trigger and target from "
                                     f"the secret (that is what makes its test exact); drop 'target'/'trigger' or "
                                     f"pass n_marks=1.")

    @property
    def marks(self) -> int:
        """K, the number of marks this configuration makes."""
        if self.n_marks is not None:
            return int(self.n_marks)
        return 1 if self.target is not None or self.chooses_trigger else self.default_marks

    @property
    def chooses_trigger(self) -> bool:
        """The owner chose the trigger (a ``trigger`` object or a ``trigger_name``): the papers' single mark."""
        return self.trigger is not None or self.trigger_name is not None

    def candidates(self) -> int:
        """Candidate triggers per mark among which the embedded one is drawn (UBW-P; DVBW with ``n_candidates``);
        0 = none. A targeted mark with candidates hides both its target and its embedded candidate."""
        return 0

    def check_drawn_candidates(self, n_candidates: int) -> None:
        """Refuse an owner-chosen trigger or target beside ``n_candidates`` > 1: the candidates and the secret
        choices must all be drawn from the secret, or the marks test is not exact."""
        if n_candidates > 1 and (self.chooses_trigger or self.target is not None):
            raise ParameterError(f"{type(self).__name__} with n_candidates={n_candidates} draws its candidate "
                                 f"triggers and secret choices from the secret (that is what makes its test exact); "
                                 f"drop 'target'/'trigger' or pass n_candidates=1.")

    @property
    def uses_marks(self) -> bool:
        """Whether the key gets the exact marks test (several marks, or candidate triggers) or the papers' test."""
        return self.marks > 1 or self.candidates() > 1

    # --- what concrete methods provide -------------------------------------------------------------------
    @abstractmethod
    def default_trigger(self, input_shape: tuple[int, ...], rng: np.random.Generator) -> Trigger:
        """The image trigger used when none is given, drawn from the secret's trigger generator."""

    def trigger_for(self, modality: Modality, input_shape: tuple[int, ...], rng: np.random.Generator,
                    mark: int = 0) -> Trigger:
        """The default trigger of mark ``mark`` for data of ``modality``: the method's own for images, the
        modality's otherwise (a keyed rare word for text, a sub-graph sized for its mark on graphs); the
        modality's named one where ``trigger_name`` asks for it."""
        if self.trigger_name is None and modality.name == "image":
            return self.default_trigger(input_shape, rng)
        return modality.mark_trigger(rng, self.trigger_name, mark, self.marks)

    @abstractmethod
    def count(self, data: Records, eligible: np.ndarray) -> int:
        """How many rows to mark (the paper's exact count)."""

    @abstractmethod
    def mark(self, batch: MarkBatch) -> tuple[np.ndarray, np.ndarray]:
        """Marked inputs and their new labels for one batch of selected rows."""

    def eligible_rows(self, data: Records, target: int | None) -> np.ndarray:
        """Boolean mask of rows that may be marked (all rows unless a method restricts it)."""
        return np.ones(len(data), dtype=bool)

    def verification_defaults(self) -> dict[str, Any]:
        """The papers' test and settings for this method (single-mark keys)."""
        return {}

    def probes_per_mark(self) -> int:
        """Probes per mark of the default fixed-n marks test."""
        return 10

    def verification_plan(self, options: int) -> dict[str, Any]:
        """The plan stored in the key: an exact marks test where the key has marks (by randomization where each
        mark has only ``options`` = 2 secret choices, else the binomial count; see :func:`marks_test_for`), else
        the paper's test with the trigger-specificity control (without it, another owner's watermark of the same
        method is accused)."""
        paper = {"margin": 0.2, "alpha": 0.01, **self.verification_defaults()}
        if self.uses_marks:
            test = marks_test_for(options, self.marks)
            per_mark = max(self.probes_per_mark(), RANDOMIZATION_PROBES_PER_MARK if test == MARKS_RANDOMIZATION else 0)
            return {"test": test, "margin": paper["margin"], "alpha": paper["alpha"],
                    "n_probe": self.marks * per_mark, "effect_test": paper.get("test", "paired-t")}
        return {**paper, "n_control_triggers": max(int(paper.get("n_control_triggers", 0)), SINGLE_MARK_CONTROLS)}

    def prepare(self, data: Records, inputs: np.ndarray, *, secret: bytes, target: int | None, trigger: Trigger,
                progress: bool = False) -> Any:
        """Work done once before rows are chosen and marked (load or train a base model, ...); the value is
        handed to :meth:`select_rows`, :meth:`mark` (as ``batch.context``) and :meth:`key_extra`."""
        return None

    def select_rows(self, data: Records, inputs: np.ndarray, *, secret: bytes, eligible: np.ndarray, k: int,
                    context: Any = None) -> np.ndarray:
        """Sorted positions of the ``k`` rows to mark: by default the eligible rows with the smallest keyed hash."""
        return select_smallest(keyed_scores(secret, data.ids, "mark"), k, eligible)

    def mark_rows(self, data: Records, inputs: np.ndarray | None, rows: np.ndarray, *, trigger: Trigger,
                  target: int | None, secret: bytes, context: Any = None, progress: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Marked inputs and labels of all selected ``rows``: :meth:`mark` batch by batch, unless a method marks
        its rows jointly (bi-level crafting optimises every poison against one objective). ``inputs`` is None
        when the method does not decode the whole dataset: each batch's rows are decoded on their own."""
        k = len(rows)
        marked, labels = None, np.empty(k, dtype=np.int64)
        mark_rng = generator(secret, "mark")
        with progress_bar(f"mark ({self.registry_name})", k, enabled=progress, unit="row") as bar:
            for start in range(0, k, MARK_BATCH):
                batch = rows[start:start + MARK_BATCH]
                examples = inputs[batch] if inputs is not None else data.take(batch)
                if marked is None:
                    marked = data.modality.empty(k, data.modality.example_shape(examples))
                marked[start:start + len(batch)], labels[start:start + len(batch)] = self.mark(MarkBatch(
                    examples, data.labels[batch], [data.ids[r] for r in batch], trigger, target,
                    data.num_classes, secret, mark_rng, batch, context))
                bar.advance(len(batch))
        return marked, labels

    # --- the template --------------------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """Hyper-parameters as JSON values, for the key (the trigger is stored on its own)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "trigger" and in_key(f, getattr(self, f.name))}

    def resolve_target(self, data: Records, secret: bytes, purpose: str = "target") -> int | None:
        if not self.targeted:
            return None
        if self.target is None:
            return int(generator(secret, purpose).integers(data.num_classes))
        if self.target >= data.num_classes:
            raise ParameterError(f"The 'target' parameter of {type(self).__name__} must be a class of the dataset "
                                 f"(0..{data.num_classes - 1}); got {self.target}.")
        return int(self.target)

    def draw_marks(self, data: Records, secret: bytes, input_shape: tuple[int, ...]) -> list[Mark]:
        """Each mark's trigger and secret choice, every one from its own purpose of the secret (mark 0 uses the
        purposes single-mark keys have always used, so their triggers and targets are unchanged): the target
        ("target"), each candidate trigger ("candidate:i") and which one is embedded ("embedded") are independent
        draws, so a targeted mark with candidates hides a pair uniform over C x (M + 1)."""
        marks = []
        for j in range(self.marks):
            suffix = "" if j == 0 else f":{j}"
            target = self.resolve_target(data, secret, "target" + suffix)
            n_candidates = self.candidates()
            if n_candidates > 1:
                candidates = tuple(self.trigger_for(data.modality, input_shape,
                                                    generator(secret, f"candidate{suffix}:{i}"), j)
                                   for i in range(n_candidates))
                embedded = int(generator(secret, "embedded" + suffix).integers(n_candidates))
                marks.append(Mark(candidates[embedded], target, candidates, embedded))
                continue
            trigger = self.trigger or self.trigger_for(data.modality, input_shape,
                                                       generator(secret, "trigger" + suffix), j)
            marks.append(Mark(trigger, target))
        return marks

    def _mark_count(self, data: Records, eligible: np.ndarray, j: int) -> int:
        """Rows of mark ``j``: :meth:`count` itself, or its even share (the first ``count % K`` marks get one more)."""
        k = self.count(data, eligible)
        if not self.count_per_mark:
            k = k // self.marks + (1 if j < k % self.marks else 0)
        if k < 1:
            raise ParameterError(f"{type(self).__name__} would mark no rows of {data.where} for one of its "
                                 f"{self.marks} marks ({int(eligible.sum())} eligible); raise the rate or lower "
                                 f"n_marks.")
        return k

    def apply(self, data: Records | Any, *, progress: bool = False) -> Watermarked:
        """Watermark ``data``; returns a new dataset and its key. ``data`` and its files are left untouched.

        ``data`` is a :class:`Records` or anything :func:`datamark.data.load_data` reads (a ``datasets.Dataset``,
        a torchvision-style dataset, a path), converted the same way."""
        data = load_data(data)
        if data.modality.name not in self.modalities:
            raise ParameterError(f"{type(self).__name__} is defined for {' and '.join(self.modalities)} data; "
                                 f"{data.where} holds {data.modality.name}. Choose a method that supports it "
                                 f"(see `datamark methods`).")
        # Methods that look at every example decode (and so validate) them all; poison-only methods decode just
        # the rows they mark, so protect does not need the whole dataset in memory.
        inputs = data.inputs() if self.decodes_all else None
        input_shape = data.modality.example_shape(inputs if inputs is not None else data.take(np.arange(1)))
        secret = resolve_secret(self.seed)
        marks = self.draw_marks(data, secret, input_shape)
        for mark in marks:
            mark.trigger.check_input_shape(input_shape)
        markable = self._markable(data, marks)
        self._warn_if_common(data, marks)
        context = self.prepare(data, inputs, secret=secret, target=marks[0].target, trigger=marks[0].trigger,
                               progress=progress)
        free = np.ones(len(data), dtype=bool)
        per_mark = []
        for j, mark in enumerate(marks):  # disjoint rows: each mark takes its count among rows no earlier mark took
            eligible = self.eligible_rows(data, mark.target) & markable
            k = self._mark_count(data, eligible, j)
            if k > int((eligible & free).sum()):
                raise ParameterError(f"{type(self).__name__} needs {k} rows for a mark but only "
                                     f"{int((eligible & free).sum())} are eligible in {data.where}; lower the rate "
                                     f"or n_marks.")
            rows = np.sort(np.asarray(self.select_rows(data, inputs, secret=secret, eligible=eligible & free, k=k,
                                                       context=context), dtype=np.int64))
            free[rows] = False
            marked, labels = self.mark_rows(data, inputs, rows, trigger=mark.trigger, target=mark.target,
                                            secret=secret, context=context, progress=progress)
            per_mark.append((rows, marked, labels))
        order = np.argsort(np.concatenate([p[0] for p in per_mark]), kind="stable")
        rows, marked, labels = (np.concatenate([p[i] for p in per_mark])[order] for i in range(3))
        decoys = self._decoys(data, secret, rows)
        changes = [(rows, marked, labels)]
        if len(decoys):
            decoy_rng = generator(secret, "mark")  # the stream decoys have always used: keeps old runs reproducible
            changes.append((decoys, self.decoy_inputs(data.take(decoys), marks[0].trigger, decoy_rng),
                            data.labels[decoys]))
        relabelled, new_labels = self.relabelled_rows(data, secret, np.concatenate([rows, decoys]), context=context)
        if len(relabelled):
            changes.append((relabelled, data.take(relabelled), new_labels))
        rows_all = np.concatenate([c[0] for c in changes])  # marks, decoys and relabelled rows are disjoint
        order = np.argsort(rows_all)
        watermarked = data.replace(rows_all[order], np.concatenate([c[1] for c in changes])[order],
                                   np.concatenate([c[2] for c in changes])[order])
        released_ids = ([tuple(watermarked.ids[r] for r in p[0]) for p in per_mark]
                        if self.asks_marked_rows(data, marks) else None)
        key = self.build_key(marks, secret, [tuple(data.ids[r] for r in p[0]) for p in per_mark],
                             tuple(data.ids[r] for r in rows),
                             dataset_record(data, watermarked.fingerprint, input_shape),
                             extra={**self.key_extra(data, rows, labels, context=context),
                                    **({"unmarkable_rows": int((~markable).sum())} if not markable.all() else {}),
                                    **({"decoy_ids": [data.ids[r] for r in decoys]} if len(decoys) else {}),
                                    **({"confusion_ids": [data.ids[r] for r in relabelled]} if len(relabelled)
                                       else {})},
                             released_ids=released_ids)
        return Watermarked(watermarked, key, rows)

    def asks_marked_rows(self, data: Records, marks: list[Mark]) -> bool:
        """Whether the key's marks test also asks each mark's released rows (``marked_rows`` in
        :mod:`datamark.verify.plan`): where the modality asks for it (graphs: small datasets, few rows a mark) and
        the marks are targeted (the rows teach the mark's target)."""
        return bool(self.uses_marks and data.modality.verify_marked_rows and marks[0].targeted)

    def build_key(self, marks: list[Mark], secret: bytes, mark_ids: list[tuple[str, ...]], marked_ids: tuple[str, ...],
                  dataset: dict[str, Any], extra: dict[str, Any],
                  released_ids: list[tuple[str, ...]] | None = None) -> Key:
        """The key of a run: the marks with the ids each changed, all marked ids in row order, the dataset's record
        (:func:`dataset_record`) and the outcomes in ``extra``; with ``released_ids`` (each mark's rows as
        released) the plan also asks the marked rows. Shared by in-memory and sharded protect
        (:mod:`datamark.scale`), so both write the same key."""
        released = released_ids or [()] * len(marks)
        configs = tuple(Mark(m.trigger, m.target, m.candidates, m.embedded, ids, out).to_config()
                        for m, ids, out in zip(marks, mark_ids, released, strict=True))
        plan = self.verification_plan(marks[0].options(dataset["num_classes"]))
        if released_ids:
            plan = {**plan, "marked_rows": True}
        return Key(method={"name": self.registry_name, "params": self.params()}, trigger=marks[0].trigger.to_config(),
                   target=marks[0].target, secret=secret.hex(), marked_ids=marked_ids, dataset=dataset,
                   verification=plan, extra=extra, marks=configs if self.uses_marks else ())

    def decoy_inputs(self, inputs: np.ndarray, trigger: Trigger, rng: np.random.Generator) -> np.ndarray:
        """The decoy rows' new inputs: each stamped with its own independent trigger of the key's kind."""
        out = inputs.copy()
        for i, x in enumerate(inputs):
            out[i] = trigger.independent(rng).apply(x)
        return out

    def _warn_if_common(self, data: Records, marks: list[Mark]) -> None:
        """Warn when a trigger already occurs in the clean data (a frequent word): the model cannot tie it to the
        mark's secret choice, so the watermark is weak. Measured on up to 5,000 rows."""
        sample = None
        for j, mark in enumerate(marks):
            for trigger in mark.candidates or (mark.trigger,):
                if type(trigger).prevalence is Trigger.prevalence:
                    continue  # not measurable for this kind of trigger: decode nothing
                if sample is None:
                    sample = data.take(np.arange(min(len(data), 5000)))
                share = trigger.prevalence(sample)
                if share is not None and share > COMMON_TRIGGER:
                    warnings.warn(f"The trigger of mark {j} already occurs in {100 * share:.1f} % of the rows of "
                                  f"{data.where}; a mark made of a common word is weak. Draw another secret (a new "
                                  f"seed) or pass a rarer trigger.", WeakTriggerWarning, stacklevel=3)

    def _markable(self, data: Records, marks: list[Mark]) -> np.ndarray:
        """Rows every mark's trigger can mark (a style rewrite needs a verb); the others are counted in the key
        and reported, never silently left unmarked among the selected rows."""
        triggers = [t for m in marks for t in (m.candidates or (m.trigger,))]
        markable = carrying(triggers, data)
        if not markable.any():
            raise ParameterError(f"The trigger of {type(self).__name__} can mark none of the rows of {data.where}.")
        if not markable.all():
            logger.warning("%d of %d rows of %s cannot carry the trigger (%s); they are not eligible for marking.",
                           int((~markable).sum()), len(data), data.where, type(triggers[0]).__name__)
        return markable

    def _decoys(self, data: Records, secret: bytes, rows: np.ndarray) -> np.ndarray:
        """Rows that get an independent random trigger and keep their label (none unless ``decoy_rate`` > 0)."""
        k = int(round(self.decoy_rate * len(data)))
        if k == 0:
            return np.zeros(0, dtype=np.int64)
        free = np.ones(len(data), dtype=bool)
        free[rows] = False
        if k > int(free.sum()):
            raise ParameterError(f"decoy_rate={self.decoy_rate} needs {k} unmarked rows; only {int(free.sum())} "
                                 f"are left. Lower decoy_rate or rate.")
        return select_smallest(keyed_scores(secret, data.ids, "decoy"), k, free)

    def relabelled_rows(self, data: Records, secret: bytes, taken: np.ndarray, *, context: Any = None
                        ) -> tuple[np.ndarray, np.ndarray]:
        """Rows relabelled with their inputs unchanged, beyond the marks and decoys (``taken``), and their new
        labels: the confusion channel of poison-label methods (:mod:`datamark.confusion`); none by default.
        ``context`` is :meth:`prepare`'s value."""
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)

    def key_extra(self, data: Records, rows: np.ndarray, new_labels: np.ndarray, *, context: Any = None
                  ) -> dict[str, Any]:
        """Method-specific outcomes to keep in the key (none by default)."""
        return {}

    # --- sharded protect (datamark.scale) --------------------------------------------------------------------
    def unshardable(self) -> str | None:
        """Why sharded protect cannot split this configuration over shards, or None when it can.

        A class that returns None promises that its marking is *row-local*: rows are chosen by the default keyed
        hash (:meth:`select_rows` not overridden) among :meth:`eligible_rows`, which reads only ``data.labels``
        (so a shard's eligibility is a mask over classes); :meth:`count` reads only ``len(data)`` and
        ``eligible.sum()``; :meth:`mark` marks each row from that row alone (its input, label and id, the mark,
        the secret and the context of :meth:`shard_context`) and draws nothing from ``batch.rng``, so any grouping
        of rows into batches and shards gives the same bytes; and :meth:`merge_key_extra` merges the shards'
        :meth:`key_extra` pieces into the in-memory one. The engine holds a subclass that redefines any of these
        below the class that made the promise to nothing (:func:`datamark.scale.engine.check_supported`).
        """
        return "its marking is not declared row-local (it may draw from one random stream across rows, or need " \
               "the whole dataset)"

    def shard_context(self, summary: Any, *, secret: bytes, marks: list[Mark], previous: Any = None,
                      records: Records | None = None, rows: list[np.ndarray] | None = None) -> Any:
        """What :meth:`prepare` hands to :meth:`mark`, built by a sharded-protect worker for one shard from a
        ``summary`` of the dataset (``num_classes``, ``class_rows`` per class, ``input_shape``, ``modality``,
        ``where``), the shard's ``records`` and each mark's ``rows`` of it (both None when the coordinator builds
        it once to check it before any shard is marked). ``previous`` is this process's context from an earlier
        shard of the same run, whose costly parts (a loaded model) may be reused. None by default."""
        return None

    def merge_key_extra(self, pieces: list[dict[str, Any]]) -> dict[str, Any]:
        """The key's ``extra`` of a sharded protect from each shard's :meth:`key_extra` (shards in file order,
        each shard's rows in row order). By default the pieces must agree; methods whose outcomes are per row or
        add up over rows override this."""
        first = pieces[0] if pieces else {}
        if any(piece != first for piece in pieces):
            raise NotImplementedError(f"{type(self).__name__}.key_extra differs between shards; define its "
                                      f"merge_key_extra to protect it shard by shard.")
        return first


def dataset_record(data: Any, watermarked_fingerprint: str, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """What a key records about the protected ``data`` (a :class:`Records`, or any object with its ``fingerprint``,
    length, classes, modality and ``source_format``, as sharded protect has)."""
    return {"fingerprint": data.fingerprint, "watermarked_fingerprint": watermarked_fingerprint,
            "n_rows": len(data), "num_classes": data.num_classes, "class_names": list(data.class_names),
            "input_shape": list(input_shape), "modality": data.modality.name, **data.modality.describe(data),
            "format": data.source_format}
