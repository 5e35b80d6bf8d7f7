"""The template every watermark method follows.

:meth:`WatermarkMethod.apply` owns the shared work -- validate the data, resolve the secret, trigger and target,
select rows by keyed hash, mark them in batches, build the new dataset and the key -- so a concrete method
overrides only *which rows* (:meth:`eligible_rows`, :meth:`count`) and *how to mark a batch* (:meth:`mark`).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._progress import progress_bar
from .._rng import generator, keyed_scores, resolve_secret, select_smallest
from ..data.records import Records
from ..exceptions import ParameterError
from ..key import Key
from ..triggers.base import Trigger

MARK_BATCH = 1024  # rows marked per batch: bounds memory for large datasets, granularity of the progress bar


@dataclass(frozen=True)
class MarkBatch:
    """One batch of selected rows and everything a method may use to mark it."""

    inputs: np.ndarray        # decoded examples of the batch (never modified in place)
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

    ``decoy_rate`` (a datamark addition, 0 = off as in the papers) stamps that fraction of all rows with *other*
    random triggers of the same kind and keeps their labels: the cross-trigger samples of Nguyen & Tran (2020),
    which teach a model to answer only the owner's pattern, so another owner's trigger (the Independent-T
    control) does not fire. Decoy rows are recorded in the key's ``extra``.
    """

    seed: int | None = None
    target: int | None = None
    trigger: Trigger | None = None
    decoy_rate: float = 0.0

    registry_name: ClassVar[str]
    targeted: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.target is not None and (not isinstance(self.target, (int, np.integer)) or self.target < 0):
            raise ParameterError(f"The 'target' parameter of {type(self).__name__} must be a class index >= 0; "
                                 f"got {self.target!r}.")
        if not 0.0 <= self.decoy_rate < 1.0:
            raise ParameterError(f"The 'decoy_rate' parameter of {type(self).__name__} must be in [0, 1); got "
                                 f"{self.decoy_rate}.")

    # --- what concrete methods provide -------------------------------------------------------------------
    @abstractmethod
    def default_trigger(self, input_shape: tuple[int, ...], rng: np.random.Generator) -> Trigger:
        """The trigger used when none is given, drawn from the secret's trigger generator."""

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
        """The test and its settings recommended for this method, stored in the key."""
        return {}

    def prepare(self, data: Records, inputs: np.ndarray, *, secret: bytes, target: int | None, trigger: Trigger,
                progress: bool = False) -> Any:
        """Work done once before rows are chosen and marked (load or train a base model, ...); the value is
        handed to :meth:`select_rows`, :meth:`mark` (as ``batch.context``) and :meth:`key_extra`."""
        return None

    def select_rows(self, data: Records, inputs: np.ndarray, *, secret: bytes, eligible: np.ndarray, k: int,
                    context: Any = None) -> np.ndarray:
        """Sorted positions of the ``k`` rows to mark: by default the eligible rows with the smallest keyed hash."""
        return select_smallest(keyed_scores(secret, data.ids, "mark"), k, eligible)

    def mark_rows(self, data: Records, inputs: np.ndarray, rows: np.ndarray, *, trigger: Trigger,
                  target: int | None, secret: bytes, context: Any = None, progress: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Marked inputs and labels of all selected ``rows``: :meth:`mark` batch by batch, unless a method marks
        its rows jointly (bi-level crafting optimises every poison against one objective)."""
        k, input_shape = len(rows), tuple(inputs.shape[1:])
        marked, labels = np.empty((k, *input_shape), dtype=np.uint8), np.empty(k, dtype=np.int64)
        mark_rng = generator(secret, "mark")
        with progress_bar(f"mark ({self.registry_name})", k, enabled=progress, unit="img") as bar:
            for start in range(0, k, MARK_BATCH):
                batch = rows[start:start + MARK_BATCH]
                marked[start:start + len(batch)], labels[start:start + len(batch)] = self.mark(MarkBatch(
                    inputs[batch], data.labels[batch], [data.ids[r] for r in batch], trigger, target,
                    data.num_classes, secret, mark_rng, batch, context))
                bar.advance(len(batch))
        return marked, labels

    # --- the template --------------------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """Hyper-parameters as JSON values, for the key (the trigger is stored on its own)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "trigger"}

    def resolve_target(self, data: Records, secret: bytes) -> int | None:
        if not self.targeted:
            return None
        if self.target is None:
            return int(generator(secret, "target").integers(data.num_classes))
        if self.target >= data.num_classes:
            raise ParameterError(f"The 'target' parameter of {type(self).__name__} must be a class of the dataset "
                                 f"(0..{data.num_classes - 1}); got {self.target}.")
        return int(self.target)

    def apply(self, data: Records, *, progress: bool = False) -> Watermarked:
        """Watermark ``data``; returns a new dataset and its key. ``data`` and its files are left untouched."""
        inputs = data.inputs()  # decodes and validates every example (corrupt files, mixed shapes)
        input_shape = tuple(inputs.shape[1:])
        secret = resolve_secret(self.seed)
        trigger = self.trigger or self.default_trigger(input_shape, generator(secret, "trigger"))
        trigger.check_input_shape(input_shape)
        target = self.resolve_target(data, secret)
        eligible = self.eligible_rows(data, target)
        k = self.count(data, eligible)
        if k < 1:
            raise ParameterError(f"{type(self).__name__} would mark no rows of {data.where} ({int(eligible.sum())} "
                                 f"eligible); raise the rate.")
        if k > int(eligible.sum()):
            raise ParameterError(f"{type(self).__name__} needs {k} rows but only {int(eligible.sum())} are "
                                 f"eligible in {data.where}; lower the rate.")
        context = self.prepare(data, inputs, secret=secret, target=target, trigger=trigger, progress=progress)
        rows = np.sort(np.asarray(self.select_rows(data, inputs, secret=secret, eligible=eligible, k=k,
                                                   context=context), dtype=np.int64))
        marked, labels = self.mark_rows(data, inputs, rows, trigger=trigger, target=target, secret=secret,
                                        context=context, progress=progress)
        decoys = self._decoys(data, secret, rows)
        if len(decoys):
            rows_all = np.concatenate([rows, decoys])
            order = np.argsort(rows_all)
            decoy_rng = generator(secret, "mark")  # the stream decoys have always used: keeps old runs reproducible
            decoy_inputs = self.decoy_inputs(inputs[decoys], trigger, decoy_rng)
            watermarked = data.replace(rows_all[order], np.concatenate([marked, decoy_inputs])[order],
                                       np.concatenate([labels, data.labels[decoys]])[order])
        else:
            watermarked = data.replace(rows, marked, labels)
        key = Key(method={"name": self.registry_name, "params": self.params()}, trigger=trigger.to_config(),
                  target=target, secret=secret.hex(), marked_ids=tuple(data.ids[r] for r in rows),
                  dataset={"fingerprint": data.fingerprint, "watermarked_fingerprint": watermarked.fingerprint,
                           "n_rows": len(data), "num_classes": data.num_classes, "class_names": list(data.class_names),
                           "input_shape": list(input_shape), "modality": data.modality,
                           "format": data.source_format},
                  verification=self.verification_defaults(),
                  extra={**self.key_extra(data, rows, labels, context=context),
                         **({"decoy_ids": [data.ids[r] for r in decoys]} if len(decoys) else {})})
        return Watermarked(watermarked, key, rows)

    def decoy_inputs(self, inputs: np.ndarray, trigger: Trigger, rng: np.random.Generator) -> np.ndarray:
        """The decoy rows' new inputs: each stamped with its own independent trigger of the key's kind."""
        return np.stack([trigger.independent(rng).apply(x) for x in inputs])

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

    def key_extra(self, data: Records, rows: np.ndarray, new_labels: np.ndarray, *, context: Any = None
                  ) -> dict[str, Any]:
        """Method-specific outcomes to keep in the key (none by default)."""
        return {}
