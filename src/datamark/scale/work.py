"""What one worker does to one shard: hash it (pass 1), answer the selection's queries, mark and write it (pass 2).

Top-level functions of picklable arguments, so any executor (processes, Ray tasks) runs them; each reads its
shard and the small files of the work folder, and holds one shard in memory at most.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._io import file_sha256
from .._rng import generator, keyed_scores
from ..marks import Mark
from ..methods.base import MARK_BATCH, MarkBatch, WatermarkMethod
from ..triggers.base import Trigger, carrying
from .fingerprint import write_sorted
from .select import Cut, Query, answer
from .shards import Source


@dataclass(frozen=True)
class Job:
    """Everything a worker needs, the same for every shard."""

    source: Source
    work: str                    # the work folder (scores, fingerprint runs, finished shards' records)
    staged: str                  # the output folder being built (its data/ gets the shards)
    secret: bytes
    decoys: bool                 # whether decoy scores are needed

    def stem(self, kind: str, index: int) -> Path:
        return Path(self.work) / f"{kind}-{index:05d}"


def hash_shard(job: Job, index: int) -> dict[str, Any]:
    """Pass 1: the shard's keyed scores (as in-memory protect computes them from the row ids), its labels (for
    selections restricted to classes), its sorted (id, label) run for the input fingerprint, and its row count,
    rows per class and first example's shape."""
    records = job.source.open(index)
    ids = records.ids
    np.save(job.stem("mark", index).with_suffix(".npy"), keyed_scores(job.secret, ids, "mark"))
    if job.decoys:
        np.save(job.stem("decoy", index).with_suffix(".npy"), keyed_scores(job.secret, ids, "decoy"))
    write_sorted(ids, records.labels, job.stem("input", index))
    labels = np.asarray(records.labels, dtype=np.int64)
    np.save(job.stem("labels", index).with_suffix(".npy"), labels)  # eligibility by class, for selections
    shape = list(records.modality.example_shape(records.take(np.arange(1)))) if len(records) else None
    info = {"rows": len(records), "shape": shape, "peak_rss_mib": peak_rss_mib(),
            "classes": np.bincount(labels, minlength=len(job.source.class_names or ())).tolist()}
    _write_json(job.stem("hashed", index).with_suffix(".json"), info)  # last: the shard's pass 1 is finished
    return info


@dataclass(frozen=True)
class Selection:
    """Which rows of a shard each mark takes. Mark j's rows are its eligible rows (those whose label is in the
    class mask ``classes[j]``; every row where it is None) at or above the cut ``lower[j]`` and below ``upper[j]``,
    both cuts ranking the eligible rows only. Marks with the same classes share one ranking, each starting where
    the one before stopped: in-memory protect gives each mark the first eligible rows no earlier mark took."""

    lower: list[Cut]
    upper: list[Cut]
    classes: list[np.ndarray | None]

    def rows(self, job: Job, index: int) -> list[np.ndarray]:
        """Each mark's rows of shard ``index``, in row order."""
        scores = _load(job, "mark", index)
        labels = _load(job, "labels", index) if any(c is not None for c in self.classes) else None
        out = []
        for lower, upper, classes in zip(self.lower, self.upper, self.classes, strict=True):
            eligible = None if classes is None else classes[labels]
            out.append(np.flatnonzero(upper.below(scores, index, eligible) & ~lower.below(scores, index, eligible)))
        return out

    def free(self, job: Job, index: int, n_rows: int) -> np.ndarray:
        """Mask of the rows of shard ``index`` that no mark takes (where decoys may go)."""
        return untaken(self.rows(job, index), n_rows)


def untaken(rows_of: list[np.ndarray], n_rows: int) -> np.ndarray:
    """Mask of the ``n_rows`` rows of a shard that none of the marks' ``rows_of`` takes."""
    free = np.ones(n_rows, dtype=bool)
    for rows in rows_of:
        free[rows] = False
    return free


def query_shard(job: Job, index: int, purpose: str, taken: Selection | None, classes: np.ndarray | None,
                queries: list[Query]) -> list[np.ndarray]:
    """Answer the selection's ``queries`` over the shard's ``purpose`` scores, among the rows whose label is in
    ``classes`` (None: every row) that ``taken`` (the marks, when choosing decoys) left free."""
    scores = _load(job, purpose, index)
    return answer(scores, _eligible(job, index, len(scores), taken, classes), queries)


def count_below(job: Job, index: int, purpose: str, taken: Selection | None, cut: Cut) -> int:
    """How many rows of the shard that ``taken`` left free lie below ``cut`` (the shard's share of a selection)."""
    scores = _load(job, purpose, index)
    return int(cut.below(scores, index, _eligible(job, index, len(scores), taken, None)).sum())


def _eligible(job: Job, index: int, n_rows: int, taken: Selection | None, classes: np.ndarray | None
              ) -> np.ndarray:
    eligible = np.ones(n_rows, dtype=bool) if taken is None else taken.free(job, index, n_rows)
    if classes is not None:
        eligible &= classes[_load(job, "labels", index)]
    return eligible


def _load(job: Job, kind: str, index: int) -> np.ndarray:
    return np.load(job.stem(kind, index).with_suffix(".npy"))


@dataclass(frozen=True)
class MarkPlan:
    """What pass 2 applies to every shard: the method, which rows each mark takes, the marks (trigger, target),
    what the method's worker context is built from, and the decoys."""

    method: WatermarkMethod
    selection: Selection
    marks: list[Mark]
    summary: Any                 # the dataset as the method's shard_context reads it (classes, rows per class, shape)
    run: str                     # this run's id: a worker builds the method's costly context once per run
    decoy_cut: Cut | None = None
    decoy_trigger: Trigger | None = None


def mark_shard(job: Job, plan: MarkPlan, index: int, decoy_state: dict | None) -> dict[str, Any]:
    """Pass 2: mark the shard's selected rows, write it atomically under its own name, and record the outcome
    (``done-i.json``, written last: a shard is finished once that file exists)."""
    records = job.source.open(index)
    rows_of = plan.selection.rows(job, index)
    context = method_context(job, plan, records, rows_of)
    inputs, labels = [], []
    for j, rows in enumerate(rows_of):
        if len(rows):
            marked, new = _mark(plan, records, rows, j, job.secret, context)
            inputs.append(marked)
            labels.append(new)
    extra = _key_extra(plan.method, records, rows_of, labels, context)
    decoys = np.zeros(0, dtype=np.int64)
    if plan.decoy_cut is not None:
        free = untaken(rows_of, len(records))
        decoys = np.flatnonzero(plan.decoy_cut.below(_load(job, "decoy", index), index, free))
        if len(decoys):
            rng = _restore(decoy_state)
            inputs.append(plan.method.decoy_inputs(records.take(decoys), plan.decoy_trigger, rng))
            labels.append(records.labels[decoys])
    rows_all = np.concatenate([*rows_of, decoys]).astype(np.int64)
    order = np.argsort(rows_all, kind="stable")
    if len(rows_all):
        out = records.replace(rows_all[order], np.concatenate(inputs)[order], np.concatenate(labels)[order])
    else:
        # nothing to decode (an image shard cannot decode zero rows): an empty batch of the modality
        out = records.replace(rows_all, records.modality.empty(0, ()), records.labels[rows_all])
    name = job.source.files[index]
    target = Path(job.staged) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    with _replaced(target) as tmp:
        job.source.write(index, out, tmp)  # the input's own format: unchanged rows keep their bytes
        digest = file_sha256(tmp)
    write_sorted(out.ids, out.labels, job.stem("output", index))
    ids = records.ids
    record = {"file": name, "rows": len(records), "sha256": digest,
              "marked": [[ids[r] for r in rows.tolist()] for rows in rows_of],
              "positions": [rows.tolist() for rows in rows_of],
              "decoys": [ids[r] for r in decoys.tolist()], "key_extra": extra, "peak_rss_mib": peak_rss_mib()}
    _write_json(job.stem("done", index).with_suffix(".json"), record)  # last: the shard is finished
    return outcome(record)


def count_unmarkable(job: Job, triggers: list[Trigger], index: int) -> int:
    """How many rows of the shard cannot carry every one of ``triggers`` (a style rewrite needs a verb, a pulse a
    clip longer than its end): in-memory protect leaves them out of the selection, which the engine refuses."""
    records = job.source.open(index)
    return int((~carrying(triggers, records)).sum())


def outcome(record: dict[str, Any]) -> dict[str, Any]:
    """What the coordinator keeps of a finished shard: its file, counts and digest, not its row ids (those stay
    in ``done-i.json`` and are read back one shard at a time for the key, so the coordinator's memory does not
    grow with the dataset's marked rows while the shards are marked)."""
    return {"file": record["file"], "rows": record["rows"], "sha256": record["sha256"],
            "n_marked": sum(len(ids) for ids in record["marked"]), "n_decoys": len(record["decoys"]),
            "peak_rss_mib": record.get("peak_rss_mib", 0.0)}


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB (what bounds a worker's share of a machine); 0 where unknown."""
    try:
        import resource
    except ImportError:  # not on this platform
        return 0.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _write_json(path: Path, value: Any) -> None:
    """Write ``value`` as JSON atomically."""
    with _replaced(path) as tmp:
        tmp.write_text(json.dumps(value))


@contextlib.contextmanager
def _replaced(path: Path) -> Iterator[Path]:
    """A temporary sibling of ``path`` to write into, renamed over ``path`` when the block succeeds. Its name,
    ``.{name}.tmp-{pid}``, is what a resumed run recognises as a killed worker's half-written file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    yield tmp
    os.replace(tmp, path)


def _mark(plan: MarkPlan, records, rows: np.ndarray, j: int, secret: bytes, context: Any
          ) -> tuple[np.ndarray, np.ndarray]:
    """Mark ``rows`` with mark ``j`` through the method's own :meth:`mark`, batch by batch as in-memory protect.
    The supported methods' marking is row-local (:meth:`WatermarkMethod.unshardable`): it draws nothing from
    ``batch.rng``, so a fresh marking generator per shard gives the same bytes as one generator over all rows."""
    outs, labels = [], []
    rng = generator(secret, "mark")
    mark = plan.marks[j]
    for start in range(0, len(rows), MARK_BATCH):
        batch = rows[start:start + MARK_BATCH]
        marked, new = plan.method.mark(MarkBatch(records.take(batch), records.labels[batch],
                                                 [records.ids[r] for r in batch.tolist()], mark.trigger,
                                                 mark.target, plan.summary.num_classes, secret, rng, batch, context))
        outs.append(marked)
        labels.append(np.asarray(new, dtype=np.int64))
    return np.concatenate(outs), np.concatenate(labels)


#: This process's method context for one run, ``(run id, context)``: a worker loads a base model once per run.
_CONTEXT: dict[str, Any] = {}


def method_context(job: Job, plan: MarkPlan, records: Any = None, rows_of: list[np.ndarray] | None = None) -> Any:
    """The method's context for one shard, its ``records`` and each mark's rows ``rows_of`` (None: the
    coordinator's check; :meth:`WatermarkMethod.shard_context`), handed this process's context of an earlier
    shard of the same run so that its costly parts (a loaded model) are built once per worker."""
    previous = _CONTEXT.get(plan.run)
    context = plan.method.shard_context(plan.summary, secret=job.secret, marks=plan.marks, previous=previous,
                                        records=records, rows=rows_of)
    _CONTEXT.clear()  # one run at a time: an earlier run's model is not kept
    _CONTEXT[plan.run] = context
    return context


def forget_context() -> None:
    """Drop this process's method context (the coordinator's, once every shard is marked)."""
    _CONTEXT.clear()


def _key_extra(method: WatermarkMethod, records, rows_of: list[np.ndarray], labels: list[np.ndarray],
               context: Any) -> dict[str, Any]:
    """The method's key outcomes for this shard's marked rows, in row order (merged by ``merge_key_extra``)."""
    rows = np.concatenate(rows_of).astype(np.int64)
    new = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    return method.key_extra(records, rows[order], new[order], context=context)


def _restore(state: dict | None) -> np.random.Generator:
    """The decoy generator at the state where this shard's first decoy starts (computed by the coordinator)."""
    if state is None:
        raise ValueError("a shard with decoys needs the decoy generator's state")
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    return np.random.Generator(bit_generator)
