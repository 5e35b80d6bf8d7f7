"""Sharded protect: watermark a parquet-shard dataset or WebDataset tar shards (image, text or audio) shard by shard,
never holding the whole dataset.

Two passes over the shards, the coordinator holding only counts, cuts and the key's outcomes:

1. **hash**: every shard's keyed scores (``keyed_scores(secret, ids, "mark")``, as in-memory protect) and its
   sorted (id, label) run for the fingerprint are cached in a work folder; the exact global cut for each mark
   (and for the decoys) is found by :func:`datamark.scale.select.find_cuts`, so the selected rows are exactly
   those of :meth:`WatermarkMethod.apply`.
2. **mark**: every shard's selected rows are marked by the method's own ``mark`` (and ``decoy_inputs``, from the
   decoy generator at the state where that shard's first decoy starts), and the shard is written under its own
   name; unselected rows keep their stored bytes.

The output folder equals, byte for byte, ``method.apply(data)`` written as parquet shards with the input's shard
boundaries (the whole table when the input is one shard), or, for tar shards, ``method.apply(load_data(folder))``
saved by its own writer (:mod:`datamark.data.webdataset`: the input tars with only changed members rewritten),
whatever the number of workers or the order shards are processed in; the key equals the in-memory key except for
its creation time and ``extra["shard_manifest"]`` (file names, rows and SHA-256 of the output shards; verification
needs none of it).

Resumable: the dataset is built in ``{output}.datamark-partial`` (its work folder holds the plan, the secret of a
seedless run, the cached scores and one record per finished shard, each shard written atomically); running the
same job again continues from there and gives the same bytes. The input is never modified; an existing output is
replaced only with ``overwrite``, and only when everything is done (see :func:`install`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._io import Journal, _install_directory, check_output, file_sha256
from .._progress import progress_bar
from .._rng import generator, resolve_secret
from ..exceptions import ParameterError
from ..key import Key, canonical_json
from ..methods.base import WatermarkMethod, dataset_record
from .fingerprint import merged_fingerprint
from .local import LocalRunner
from .ray import RayRunner
from .select import find_cuts, nothing
from .shards import ParquetSource, Source, WebDatasetSource, open_source
from .work import (
    Job,
    MarkPlan,
    Selection,
    count_below,
    count_unmarkable,
    forget_context,
    hash_shard,
    mark_shard,
    method_context,
    outcome,
    query_shard,
)

log = logging.getLogger(__name__)

WORK = ".datamark-work"
#: The kinds of data the engine reproduces byte for byte (tested on generated images, SST-2, AG News and FSDD);
#: graphs are not stored in shards yet.
SHARDED_MODALITIES = ("image", "text", "audio")
PARTIAL = ".datamark-partial"
#: What the engine does itself instead of the method (keyed cuts, the decoys' replayed stream): a method must keep
#: WatermarkMethod's own.
REPLAYED = ("select_rows", "_decoys", "decoy_inputs")
#: What a method's row-local promise (WatermarkMethod.unshardable returning None) is about: a class that redefines
#: any of them below the class that made the promise is not covered by it.
PROMISED = ("mark", "mark_rows", "count", "eligible_rows", "prepare", "shard_context", "key_extra",
            "merge_key_extra")


@dataclass(frozen=True)
class Sharded:
    """A finished sharded protect: the key, the staged output folder and where :func:`install` puts it."""

    key: Key
    staged: Path
    output: Path
    n_rows: int
    n_marked: int
    n_shards: int
    timings: dict[str, float]  # seconds: "hash" (pass 1), "select" (the exact cuts), "mark" (pass 2), "key"
    worker_peak_rss_mib: float = 0.0  # the largest peak resident memory a worker reported (this run's workers)


class _Summary:
    """What the method's template reads of a dataset, for a dataset that is never loaded whole."""

    def __init__(self, source: Source, rows: list[int], modality, fingerprint: str, *,
                 class_rows: tuple[int, ...] = (), input_shape: tuple[int, ...] = ()) -> None:
        self.source, self.rows, self.n_rows = source, rows, sum(rows)
        self.class_rows, self.input_shape = class_rows, input_shape  # rows per class; the first example's shape
        self.modality, self.fingerprint = modality, fingerprint
        self.class_names = source.class_names
        self.source_format = source.format
        self.where = source.where

    def __len__(self) -> int:
        return self.n_rows

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The examples at ``rows``, read from the shards that hold them (what the key records of text, its mean
        length, and the common-trigger warning read: the first few hundred or thousand rows)."""
        rows = np.asarray(rows, dtype=np.int64)
        starts = np.cumsum([0, *self.rows])
        shard_of = np.searchsorted(starts, rows, side="right") - 1
        order = np.argsort(shard_of, kind="stable")
        parts = [self.source.open(int(s)).take(rows[shard_of == s] - starts[s]) for s in np.unique(shard_of)]
        if not parts:
            return self.modality.empty(0, ())
        return np.concatenate(parts)[np.argsort(order, kind="stable")]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


class _Eligible:
    """A mark's eligibility mask as a method's ``count`` reads it in the engine: only its sum (the rows of the
    mark's eligible classes, from the shards' class counts)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def sum(self) -> int:
        return self.n


class _Classes:
    """One row per class (label i at row i): a method's ``eligible_rows`` on it gives the mask of eligible classes,
    since a row-local method's eligibility reads only the labels."""

    def __init__(self, summary: _Summary) -> None:
        self.labels = np.arange(summary.num_classes)
        self.num_classes, self.class_names, self.where = summary.num_classes, summary.class_names, summary.where

    def __len__(self) -> int:
        return len(self.labels)


def check_supported(method: WatermarkMethod) -> None:
    """Refuse a method the sharded engine cannot reproduce byte for byte (one line, with the fix): one whose
    configuration is not row-local (:meth:`WatermarkMethod.unshardable`), one that replaces what the engine does
    itself (:data:`REPLAYED`), or one that redefines a promised part below the class that made the promise."""
    cls, name = type(method), type(method).__name__
    fix = "protect it without --engine (in memory)"
    reason = method.unshardable()
    if reason is not None:
        raise ParameterError(f"The sharded engine cannot split {name} over shards: {reason}; {fix}.")
    replaced = [m for m in REPLAYED if getattr(cls, m) is not getattr(WatermarkMethod, m)]
    if replaced:
        raise ParameterError(f"{name} overrides {', '.join(replaced)}, which the sharded engine does itself (keyed "
                             f"cuts, the decoys' stream), so it cannot prove it marks the same rows the same way; "
                             f"{fix}.")
    promiser = _owner(cls, "unshardable")
    unpromised = [m for m in PROMISED if not issubclass(promiser, _owner(cls, m))]
    if unpromised:
        raise ParameterError(f"{name} redefines {', '.join(unpromised)} below {promiser.__name__}, whose row-local "
                             f"promise (unshardable) does not cover it; {fix}, or declare unshardable in {name}.")


def _owner(cls: type, attr: str) -> type:
    """The class of ``cls``'s MRO that defines ``attr``."""
    return next(c for c in cls.__mro__ if attr in vars(c))


def protect_shards(method: WatermarkMethod, data: str | os.PathLike | list | Source, output: str | os.PathLike, *,
                   workers: int = 1, split: str | None = None, input_column: str | None = None,
                   label_column: str = "label", overwrite: bool = False, engine: str = "local",
                   runner: Any = None, order: list[int] | None = None, progress: bool = False) -> Sharded:
    """Watermark the sharded dataset ``data`` -- a parquet-shard folder, or WebDataset tar shards (a folder of
    ``*.tar`` or a list of them), or a source :func:`~datamark.scale.shards.open_source` opened from one (then
    ``split`` and the columns are the source's) -- shard by shard into a staged copy of ``output`` with the input's
    shard names.

    Returns a :class:`Sharded`; :func:`install` writes its key and puts the folder in place. ``engine`` runs the
    shard tasks: ``"local"`` (a :class:`LocalRunner` with ``workers`` processes, started in ``order`` for tests) or
    ``"ray"`` (a :class:`RayRunner`: the cluster of ``RAY_ADDRESS``, else a local one with ``workers`` CPUs);
    ``runner`` overrides both. ``progress`` shows a bar (shards done, rate, ETA) for the hash and the mark pass.
    """
    if engine not in ("local", "ray"):
        raise ParameterError(f"The 'engine' of sharded protect must be 'local' (worker processes) or 'ray' (Ray "
                             f"tasks); got {engine!r}.")
    check_supported(method)
    output = Path(output)
    opened = isinstance(data, (ParquetSource, WebDatasetSource))  # the CLI opens it first, for its modality
    inputs = list(data.inputs) if opened else [data] if isinstance(data, (str, os.PathLike)) else list(data)
    check_output(output, overwrite=overwrite, what="dataset", inputs=inputs, directory=True)
    source = data if opened else open_source(data, split=split, input_column=input_column, label_column=label_column)
    first = source.open(0)
    kind = first.modality.name
    if kind not in SHARDED_MODALITIES:
        raise ParameterError(f"The sharded engine marks {', '.join(SHARDED_MODALITIES)} data; {source.where} holds "
                             f"{kind}. Protect it without --engine.")
    if kind not in type(method).modalities:
        raise ParameterError(f"{type(method).__name__} is defined for {' and '.join(type(method).modalities)} data; "
                             f"{source.where} holds {kind}. Choose a method that supports it (see `datamark "
                             f"methods`).")
    staged = output.with_name(output.name + PARTIAL)
    secret = _prepare(staged, method, source, overwrite)
    job = Job(source, str(staged / WORK), str(staged), secret, method.decoy_rate > 0)
    if runner is None:
        runner = LocalRunner(workers, order=order) if engine == "local" else RayRunner(num_cpus=workers)
    clock = time.perf_counter()
    with runner:
        started = time.perf_counter() - clock
        result = _run(method, job, runner, output, modality=first.modality, progress=progress)
    return dataclasses.replace(result, timings={"start": started, **result.timings})


def install(result: Sharded, key_path: str | os.PathLike, *, overwrite: bool = False,
            journal: Journal | None = None) -> None:
    """Write the key (first, as protect always does), then swap the staged folder in at ``result.output``."""
    result.key.save(key_path, overwrite=overwrite, journal=journal)
    check_output(result.output, overwrite=overwrite, what="dataset", directory=True)
    shutil.rmtree(result.staged / WORK)  # the cached scores and the secret of a seedless run: not part of the output
    _drop_temporaries(result.staged)
    _install_directory(result.staged, result.output, "dataset", journal)


def _prepare(staged: Path, method: WatermarkMethod, source: Source, overwrite: bool) -> bytes:
    """Start or resume the job's staged folder; return its secret (a seedless run keeps its first secret)."""
    work = staged / WORK
    plan = {"method": method.registry_name, "params": method.params(),
            "trigger": None if method.trigger is None else method.trigger.to_config(), "split": source.split,
            "columns": [source.input_column, source.label_column], "input": source.digest_input(),
            "files": _digest_files(method.params())}
    digest = hashlib.sha256(canonical_json(plan)).hexdigest()
    if staged.exists():
        known = work / "plan.json"
        same = known.is_file() and json.loads(known.read_text()).get("digest") == digest
        if same:
            log.info("resuming the sharded protect in %s", staged)
            _drop_temporaries(staged)
            return bytes.fromhex((work / "secret").read_text())
        if not known.is_file() or not overwrite:
            raise ParameterError(f"'{staged}' holds a partial run of another protect job (other data or settings); "
                                 f"pass overwrite=True (--overwrite) to discard it, or move it away.")
        shutil.rmtree(staged)
    secret = resolve_secret(method.seed)
    staged.mkdir(parents=True)  # the shards' folders (parquet: data/) are made as shards are written
    work.mkdir()
    fd = os.open(work / "secret", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret.hex())
    (work / "plan.json").write_text(json.dumps({"digest": digest}))
    return secret


def _digest_files(params: dict[str, Any]) -> dict[str, str]:
    """SHA-256 of each file a method's parameters name (a clean-label ``base_model`` checkpoint): a resumed run must
    craft with the same model as the shards already written, not with a checkpoint replaced in between."""
    return {name: file_sha256(value) for name, value in sorted(params.items())
            if isinstance(value, str) and name.endswith("_model") and Path(value).is_file()}


def _drop_temporaries(staged: Path) -> None:
    """Remove the half-written shard files of workers that were killed (``.{name}.tmp-{pid}``)."""
    for tmp in staged.rglob(".*.tmp-*"):  # data/ for parquet shards, the top for tars
        tmp.unlink(missing_ok=True)


def _run(method: WatermarkMethod, job: Job, runner: Any, output: Path, *, modality, progress: bool = False
         ) -> Sharded:
    source, n_shards = job.source, len(job.source.files)
    clock = [time.perf_counter()]
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        now = time.perf_counter()
        timings[name] = timings.get(name, 0.0) + now - clock[0]
        clock[0] = now

    infos = [_read(job.stem("hashed", i).with_suffix(".json")) for i in range(n_shards)]
    todo = [i for i in range(n_shards) if infos[i] is None or "classes" not in infos[i]]  # older runs: no labels
    with progress_bar("hash shards", len(todo), enabled=progress, unit="shard") as bar:
        hashed = runner.map(hash_shard, [(job, i) for i in todo], on_done=bar.advance)
    for i, info in zip(todo, hashed, strict=True):
        infos[i] = info
    n = sum(info["rows"] for info in infos)
    shape = tuple(next(info["shape"] for info in infos if info["shape"] is not None))
    width = max(len(info["classes"]) for info in infos)  # 1 + the largest label seen
    if source.class_names is None:  # tars carry no class list: 0 .. the largest label, as in memory
        source = dataclasses.replace(source, class_names=tuple(str(c) for c in range(width)))
        job = dataclasses.replace(job, source=source)  # pass 2 opens every shard under the whole dataset's names
    class_rows = np.sum([np.pad(info["classes"], (0, width - len(info["classes"]))) for info in infos], axis=0)
    lap("hash")
    summary = _Summary(source, [info["rows"] for info in infos], modality,
                       merged_fingerprint([job.stem("input", i) for i in range(n_shards)]),
                       class_rows=tuple(int(c) for c in class_rows), input_shape=shape)
    lap("key")
    marks = method.draw_marks(summary, job.secret, shape)
    for mark in marks:
        mark.trigger.check_input_shape(shape)
    picky = [t for m in marks for t in m.candidates or (m.trigger,) if not t.always_applicable]
    if picky:  # in memory such rows leave the selection and are counted in the key: not reproduced here yet
        unmarkable = sum(runner.map(count_unmarkable, [(job, picky, i) for i in range(n_shards)]))
        if unmarkable:
            raise ParameterError(f"{unmarkable} of {n} rows of {summary.where} cannot carry the trigger "
                                 f"({type(picky[0]).__name__}); the sharded engine marks only data whose every row "
                                 f"can. Protect without --engine.")
    method._warn_if_common(summary, marks)  # as in memory: a trigger already frequent in the data is weak

    def ask(purpose: str, taken: Selection | None, classes: np.ndarray | None):
        return lambda queries: runner.map(query_shard, [(job, i, purpose, taken, classes, queries)
                                                        for i in range(n_shards)])

    selection, ks = _select(method, summary, marks, ask)
    plan = MarkPlan(method, selection, marks, summary, uuid.uuid4().hex)
    method_context(job, plan)  # built here once first: a wrong base model is refused before any shard is marked
    states: list[dict | None] = [None] * n_shards
    k_decoys = int(round(method.decoy_rate * n))
    if k_decoys:
        free = n - sum(ks)
        if k_decoys > free:
            raise ParameterError(f"decoy_rate={method.decoy_rate} needs {k_decoys} unmarked rows; only {free} are "
                                 f"left. Lower decoy_rate or rate.")
        decoy_cut = find_cuts(ask("decoy", selection, None), [k_decoys], n_shards, free)[0]
        counts = runner.map(count_below, [(job, i, "decoy", selection, decoy_cut) for i in range(n_shards)])
        states = _decoy_states(job.secret, marks[0].trigger, counts)
        plan = dataclasses.replace(plan, decoy_cut=decoy_cut, decoy_trigger=marks[0].trigger)
    lap("select")
    done = [_finished(job, i) for i in range(n_shards)]
    todo = [i for i in range(n_shards) if done[i] is None]
    with progress_bar("mark shards", len(todo), enabled=progress, unit="shard") as bar:
        marked = runner.map(mark_shard, [(job, plan, i, states[i]) for i in todo], on_done=bar.advance)
    for i, result in zip(todo, marked, strict=True):
        done[i] = result
    forget_context()  # a base model the coordinator loaded to check it is not kept after the run
    lap("mark")
    result = _finish(method, job, output, summary, marks, shape, done)
    lap("key")
    peak = max([d.get("peak_rss_mib", 0.0) for d in done] + [i.get("peak_rss_mib", 0.0) for i in infos])
    return dataclasses.replace(result, timings=timings, worker_peak_rss_mib=peak)


def _select(method: WatermarkMethod, summary: _Summary, marks, ask) -> tuple[Selection, list[int]]:
    """Each mark's rows as in-memory protect chooses them, as exact distributed cuts, and each mark's count.

    A mark's eligible rows are those of its eligible classes (the method's ``eligible_rows`` on one row per class);
    marks with the same classes take consecutive ranks of one ranking, as each in-memory mark takes the first
    eligible rows no earlier mark took. Marks whose classes overlap without being the same cannot be cut this way
    and are refused."""
    name, n_shards = type(method).__name__, len(summary.rows)
    classes = []
    for mark in marks:
        mask = np.asarray(method.eligible_rows(_Classes(summary), mark.target), dtype=bool)
        classes.append(None if mask.all() else mask)
    rows_of = [summary.n_rows if c is None else int(np.asarray(summary.class_rows)[c].sum()) for c in classes]
    ks = [method._mark_count(summary, _Eligible(rows_of[j]), j) for j in range(len(marks))]
    groups: dict[bytes, list[int]] = {}
    for j, c in enumerate(classes):
        groups.setdefault(b"all" if c is None else c.tobytes(), []).append(j)
    masks = [np.ones(summary.num_classes, dtype=bool) if c is None else c for c in classes]
    for a, b in ((groups[g][0], groups[h][0]) for g in groups for h in groups if g < h):
        if (masks[a] & masks[b]).any():
            raise ParameterError(f"The eligible classes of {name}'s marks {a} and {b} overlap without being the "
                                 f"same, which the sharded engine cannot cut exactly; protect it without --engine.")
    lower, upper = [nothing(n_shards)] * len(marks), [nothing(n_shards)] * len(marks)
    for members in groups.values():
        wanted, have = int(sum(ks[j] for j in members)), rows_of[members[0]]
        if wanted > have:
            raise ParameterError(f"{name} needs {wanted} rows for its marks but only {have} are eligible in "
                                 f"{summary.where}; lower the rate or n_marks.")
        cuts = find_cuts(ask("mark", None, classes[members[0]]), list(np.cumsum([ks[j] for j in members])),
                         n_shards, have)
        for j, before, cut in zip(members, [nothing(n_shards), *cuts], cuts, strict=False):
            lower[j], upper[j] = before, cut
    return Selection(lower, upper, classes), ks


def _decoy_states(secret: bytes, trigger, counts: list[int]) -> list[dict | None]:
    """The decoy generator's state at each shard's first decoy. In-memory protect draws one independent trigger
    per decoy from one generator, in row order; replaying those draws (no data needed) gives every shard the state
    it starts from, so the decoys are the same bytes whatever order the shards are marked in."""
    rng = generator(secret, "mark")  # the stream in-memory decoys use
    states: list[dict | None] = []
    for count in counts:
        states.append(rng.bit_generator.state if count else None)
        for _ in range(count):
            trigger.independent(rng)
    return states


def _finished(job: Job, index: int) -> dict | None:
    """The record of a shard already marked (resume), if its file is there with the recorded digest."""
    record = _read(job.stem("done", index).with_suffix(".json"))
    path = Path(job.staged) / record["file"] if record is not None else None
    if path is None or not path.is_file() or file_sha256(path) != record["sha256"]:
        return None
    return outcome(record)


def _finish(method: WatermarkMethod, job: Job, output: Path, summary: _Summary, marks, shape, done) -> Sharded:
    """Build the key from the shards' records (the work folder stays until :func:`install`: a failed install can
    be run again and resumes with nothing left to do)."""
    n_shards = len(done)
    watermarked = merged_fingerprint([job.stem("output", i) for i in range(n_shards)])
    mark_ids: list[list[str]] = [[] for _ in marks]
    marked_ids: list[str] = []
    decoys: list[str] = []
    pieces: list[dict[str, Any]] = []  # each shard's key_extra (the method merges them: merge_key_extra)
    for index in range(n_shards):  # one shard's record in memory at a time; each id is kept once, shared
        record = _read(job.stem("done", index).with_suffix(".json"))
        for j, ids in enumerate(record["marked"]):
            mark_ids[j] += ids
        pairs = sorted((p, i) for ps, ids in zip(record["positions"], record["marked"], strict=True)
                       for p, i in zip(ps, ids, strict=True))
        marked_ids += [i for _, i in pairs]  # all marks' rows of the shard, in row order
        decoys += record["decoys"]
        pieces.append(record.get("key_extra", {}))
        del record, pairs
    manifest = {"split": job.source.split,
                "shards": [{"file": d["file"], "rows": d["rows"], "sha256": d["sha256"]} for d in done]}
    extra = {**method.merge_key_extra(pieces), **({"decoy_ids": decoys} if decoys else {}),
             "shard_manifest": manifest}
    key = method.build_key(marks, job.secret, [tuple(ids) for ids in mark_ids], tuple(marked_ids),
                           dataset_record(summary, watermarked, shape), extra)
    return Sharded(key, Path(job.staged), output, len(summary), len(marked_ids), n_shards, {})


def _read(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None
