"""A tamper-evident record of a verification run: hash-chained JSON Lines, resumable after an interruption.

Line 1 is the header (key commitment and public summary, never the secret or the trigger; the resolved test
settings; the probe data's fingerprint; the suspect's description and its SHA-256). Then one ``batch`` line per
query batch (the SHA-256 of every input, the suspect's answers, a UTC timestamp), ``resume`` lines where a run
was continued, and a final ``result`` line: nothing may follow it, and a file without one is an unfinished run,
not a verdict. Every line carries ``prev`` (the previous line's hash) and ``hash`` = SHA-256(prev + canonical
JSON of the line without ``hash``), so editing, dropping or reordering any line breaks the chain; publishing (or
timestamping) the last hash fixes the whole record.

The verifier is not forked: :class:`RecordingSuspect` sits between it and the suspect, logging each batch
before the verifier sees it and answering inputs already in the log without querying again. Probe order is
deterministic from the seed, so a resumed run asks the same questions and the log answers the ones it has.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .._io import check_output
from .._version import __version__
from ..data.records import Records
from ..exceptions import EvidenceError, EvidenceWarning, OutputExistsError
from ..key import Key, canonical_json
from ..suspects.base import Suspect, as_suspect
from .result import VerificationResult
from .verifier import Verifier

EVIDENCE_FORMAT = "datamark-evidence"
EVIDENCE_VERSION = 2  # 2: the header records suspect_sha256, and a resume must match it
GENESIS = "0" * 64
# Result fields reverify always compares, even where a forger deleted them; it compares every other recorded
# field too (fields a newer version adds, absent from an older file, are left out).
VERDICT_FIELDS = ("accused", "verdict", "outcome", "specificity", "sequential")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def entry_hash(body: dict[str, Any]) -> str:
    """SHA-256 of the previous hash followed by the canonical JSON of the entry (without its ``hash``)."""
    return hashlib.sha256(body["prev"].encode() + canonical_json(body)).hexdigest()


def input_hashes(inputs: np.ndarray) -> list[str]:
    """SHA-256 of each example's dtype, shape and bytes (text: its UTF-8 bytes): what the suspect was asked,
    without storing it."""
    if inputs.dtype == object:
        return [hashlib.sha256(b"text:" + str(x).encode("utf-8")).hexdigest() for x in inputs]
    arr = np.ascontiguousarray(inputs)
    tag = f"{arr.dtype.str}{list(arr.shape[1:])}".encode()
    return [hashlib.sha256(tag + row.tobytes()).hexdigest() for row in arr]


def _differences(recorded: Any, actual: Any, where: str = "") -> list[str]:
    """The paths (``test.seed``, ``outcome.p_value``) at which two JSON values differ.

    Generic, so that headers and results compare whatever fields a version writes; numbers compare with a
    relative tolerance of 1e-9 (a replay recomputes the same floats; this only absorbs library rounding).
    """
    if isinstance(recorded, dict) and isinstance(actual, dict):
        return [d for k in sorted(recorded.keys() | actual.keys())
                for d in _differences(recorded.get(k), actual.get(k), f"{where}.{k}" if where else str(k))]
    if isinstance(recorded, list) and isinstance(actual, list) and len(recorded) == len(actual):
        pairs = enumerate(zip(recorded, actual, strict=True))
        return [d for i, (a, b) in pairs for d in _differences(a, b, f"{where}[{i}]")]
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (recorded, actual))
    if numbers:
        same = math.isclose(recorded, actual, rel_tol=1e-9) or (math.isnan(recorded) and math.isnan(actual))
    else:
        same = recorded == actual
    return [] if same else [where or "value"]


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from the file (tuples become lists), so live values compare with recorded ones."""
    return json.loads(json.dumps(value))


def _check_line(path: Path, number: int, line: bytes, prev: str, seq: int) -> dict[str, Any]:
    """Parse one line and check it continues the chain; :class:`EvidenceError` names the line."""
    try:
        entry = json.loads(line)
    except ValueError as err:
        raise EvidenceError(f"Evidence file '{path}', line {number}, is not JSON ({err}); the file is corrupt "
                            f"or was edited.") from err
    if not isinstance(entry, dict):
        raise EvidenceError(f"Evidence file '{path}', line {number}, is not a JSON object; the file was edited.")
    body = {k: v for k, v in entry.items() if k != "hash"}
    if body.get("prev") != prev or entry.get("seq") != seq:
        raise EvidenceError(f"Evidence file '{path}', line {number}: the chain is broken (expected seq {seq} after "
                            f"hash {prev[:16]}…); a line was removed, reordered or edited.")
    if entry_hash(body) != entry.get("hash"):
        raise EvidenceError(f"Evidence file '{path}', line {number} ({body.get('type')}): its hash does not match "
                            f"its content; the line was edited after it was written.")
    if number == 1 and (body.get("type") != "header" or body.get("format") != EVIDENCE_FORMAT):
        raise EvidenceError(f"'{path}' is not a datamark evidence file (no '{EVIDENCE_FORMAT}' header).")
    return entry


def _after_result(path: Path, number: int, offset: int, result_line: int) -> EvidenceError:
    return EvidenceError(f"Evidence file '{path}', line {number} (byte {offset}): something follows the result on "
                         f"line {result_line}; a finished run's record ends at its result, so this was appended "
                         f"afterwards (tampering or misuse). Use the original file; to test again, record a new "
                         f"run with --evidence.")


@dataclass(frozen=True)
class _Chain:
    """A checked chain: its entries, the byte length of the checked lines, and the file's size."""

    entries: list[dict[str, Any]]
    valid: int
    size: int

    @property
    def torn_bytes(self) -> int:
        """Bytes of an unterminated last line (a write torn by a crash): never part of the chain."""
        return self.size - self.valid


def _read(path: Path) -> _Chain:
    """Every entry of a chain, checked; an unterminated last line is left out (and reported by the caller)."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    entries: list[dict[str, Any]] = []
    prev, valid, offset, result_line = GENESIS, 0, 0, None
    for number, line in enumerate(lines, start=1):
        start, offset, last = offset, offset + len(line) + 1, number == len(lines)
        if result_line is not None and (line or not last):
            raise _after_result(path, number, start, result_line)
        if not line or last:  # a blank line, the end of the file, or a torn write (no newline after it)
            continue
        entry = _check_line(path, number, line, prev, len(entries))
        entries.append(entry)
        prev, valid = entry["hash"], offset
        result_line = number if entry.get("type") == "result" else None
    if not entries:
        raise EvidenceError(f"Evidence file '{path}' is empty; start a new run with --evidence instead of --resume.")
    return _Chain(entries, valid, len(data))


@dataclass(frozen=True)
class EvidenceReport:
    """What a checked chain holds: its entries, the recorded queries, the result (None: the run is unfinished).

    ``torn_offset`` is the byte offset of an unterminated last line (a write torn by a crash; ``torn_bytes``
    long), None when the file ends cleanly. Such a line is not evidence; ``verify --resume`` cuts it off.
    """

    path: str
    entries: list[dict[str, Any]]
    torn_offset: int | None = None
    torn_bytes: int = 0

    @property
    def header(self) -> dict[str, Any]:
        return self.entries[0]

    @property
    def batches(self) -> list[dict[str, Any]]:
        return [e for e in self.entries if e["type"] == "batch"]

    @property
    def queries(self) -> int:
        return sum(len(b["inputs"]) for b in self.batches)

    @property
    def result(self) -> dict[str, Any] | None:
        """The recorded result; it is always the last entry (the chain check refuses anything after it)."""
        last = self.entries[-1]
        return last["result"] if last["type"] == "result" else None

    @property
    def finished(self) -> bool:
        """Whether the run recorded a result: an unfinished file is no verdict, only evidence to resume from."""
        return self.result is not None

    @property
    def last_hash(self) -> str:
        return self.entries[-1]["hash"]


def check_evidence(path: str | os.PathLike) -> EvidenceReport:
    """Verify the hash chain of an evidence file; :class:`EvidenceError` names the first bad line.

    A line after the result is an error; a missing result (``report.finished`` false) and a torn last line
    (``report.torn_offset``) are reported, since an interrupted run legitimately leaves them.
    """
    chain = _read(Path(path))
    torn_offset = chain.valid if chain.torn_bytes else None
    return EvidenceReport(str(path), chain.entries, torn_offset, chain.torn_bytes)


def _check_new(path: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse an existing evidence file unless ``overwrite``, naming the two ways on."""
    try:
        return check_output(path, overwrite=overwrite, what="evidence")
    except OutputExistsError as err:
        raise OutputExistsError(f"The evidence file '{path}' already exists; pass --overwrite to replace it, or "
                                f"--resume {path} to continue it (overwrite=True / resume=True in Python).") from err


class EvidenceLog:
    """An evidence file open for appending; each entry is flushed and fsynced before the caller goes on.

    A new log is staged in a hidden sibling and moved onto its path with the first entry after the header, so
    a run that fails before its first query leaves nothing behind (no header-only file to block a retry) and
    ``overwrite`` replaces an old file only once there is something to replace it with.
    """

    def __init__(self, path: Path, entries: list[dict[str, Any]], *, staged: Path | None = None,
                 overwrite: bool = False, torn: tuple[int, int] | None = None) -> None:
        self.path, self.entries = path, entries
        self._staged, self._overwrite, self._torn = staged, overwrite, torn

    @classmethod
    def create(cls, path: str | os.PathLike, header: dict[str, Any], *, overwrite: bool = False) -> EvidenceLog:
        """A new log holding only ``header``, staged until its first further entry (see the class docstring)."""
        path = _check_new(path, overwrite)
        entry = {"type": "header", "format": EVIDENCE_FORMAT, "version": EVIDENCE_VERSION,
                 "datamark_version": __version__, "time": _now(), **header, "seq": 0, "prev": GENESIS}
        entry["hash"] = entry_hash(entry)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        log = cls(path, [], staged=Path(name), overwrite=overwrite)
        log._write(entry)
        return log

    @classmethod
    def reopen(cls, path: str | os.PathLike) -> EvidenceLog:
        """An existing file, chain checked; a torn last line stays until :meth:`cut_torn_tail` (before appending)."""
        path = Path(path)
        chain = _read(path)
        return cls(path, chain.entries, torn=(chain.valid, chain.torn_bytes) if chain.torn_bytes else None)

    @property
    def published(self) -> bool:
        """Whether the log is at its path (false for a new log that holds only its header)."""
        return self._staged is None

    def cut_torn_tail(self) -> dict[str, Any]:
        """Warn about, then cut off, a torn last line; the fields a ``resume`` entry records about it ({} if none)."""
        if self._torn is None:
            return {}
        offset, size = self._torn
        warnings.warn(EvidenceWarning(f"The evidence file '{self.path}' ends in an unterminated line at byte "
                                      f"{offset} ({size} bytes), a write torn by a crash; it is not part of the "
                                      f"chain and is cut off (the resume entry records its size and SHA-256)."),
                      stacklevel=3)
        with open(self.path, "r+b") as f:
            f.seek(offset)
            torn = f.read()
            f.truncate(offset)
            f.flush()
            os.fsync(f.fileno())
        self._torn = None
        return {"dropped_torn_bytes": len(torn), "dropped_torn_offset": offset,
                "dropped_torn_sha256": hashlib.sha256(torn).hexdigest()}

    def append(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Chain, write and fsync one entry; the first one after a new header moves the log onto its path."""
        if self._torn is not None:
            raise EvidenceError(f"The evidence file '{self.path}' ends in a torn line; call cut_torn_tail() before "
                                f"appending, or the new entry would follow garbage.")
        entry = {"type": kind, "time": _now(), **fields, "seq": len(self.entries), "prev": self.entries[-1]["hash"]}
        entry["hash"] = entry_hash(entry)
        self._write(entry)
        if self._staged is not None:
            os.replace(self._staged, _check_new(self.path, self._overwrite))
            self._staged = None
        return entry

    def discard(self) -> None:
        """Delete a log that never left staging (its run failed before recording anything but the header)."""
        if self._staged is not None:
            self._staged.unlink(missing_ok=True)
            self._staged = None

    def _write(self, entry: dict[str, Any]) -> None:
        with open(self._staged or self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.entries.append(entry)


class RecordingSuspect:
    """A suspect that logs every batch to an :class:`EvidenceLog` and replays answers already logged.

    ``inner`` None makes a replay-only suspect (re-checking a finished run offline): an input the log does not
    answer is then an error.
    """

    def __init__(self, inner: Suspect | None, log: EvidenceLog, *, batch_size: int = 64,
                 outputs: str | None = None, num_classes: int | None = None) -> None:
        self.inner, self.log, self.batch_size = inner, log, batch_size
        self.outputs = outputs or inner.outputs  # type: ignore[union-attr]
        self.num_classes = num_classes or inner.num_classes  # type: ignore[union-attr]
        self.queries = self.replayed = self.fresh = 0
        self._replay: dict[str, Any] = {}
        for entry in log.entries:
            if entry["type"] == "batch":
                self._replay.update(zip(entry["inputs"], entry["response"], strict=True))

    def describe(self) -> dict[str, Any]:
        """The recorded suspect's description (a replay without a live suspect: just that)."""
        return {"kind": "evidence-replay"} if self.inner is None else as_suspect(self.inner).describe()

    @property
    def budget_left(self) -> int | None:
        left = None if self.inner is None else as_suspect(self.inner).budget_left
        return None if left is None else left + max(0, len(self._replay) - self.replayed)

    def _answer(self, hashes: list[str], inputs: np.ndarray) -> np.ndarray:
        missing = [i for i, h in enumerate(hashes) if h not in self._replay]
        if missing and self.inner is None:
            raise EvidenceError(f"The evidence file '{self.log.path}' has no answer for a probe the run asks "
                                f"(input sha256 {hashes[missing[0]][:16]}…); it was not written by this run.")
        if missing:
            answers = self.inner.query(inputs[missing])  # type: ignore[union-attr]
            self.fresh += len(missing)
            new = [hashes[i] for i in missing]
            self.log.append("batch", inputs=new, response=answers.tolist())
            self._replay.update(zip(new, answers.tolist(), strict=True))
        self.replayed += len(hashes) - len(missing)
        dtype = np.float64 if self.outputs == "probs" else np.int64
        return np.asarray([self._replay[h] for h in hashes], dtype=dtype)

    def query(self, inputs: np.ndarray) -> np.ndarray:
        inputs = inputs if isinstance(inputs, np.ndarray) else np.asarray(inputs)
        hashes = input_hashes(inputs)
        chunks = [self._answer(hashes[s:s + self.batch_size], inputs[s:s + self.batch_size])
                  for s in range(0, len(inputs), self.batch_size)]
        self.queries += len(inputs)
        return np.concatenate(chunks) if chunks else np.zeros((0, self.num_classes))


def _weights_sha256(model: Any) -> str | None:
    """SHA-256 of a torch module's state dict (names, dtypes, shapes, bytes); None for anything else."""
    state_dict = getattr(model, "state_dict", None)
    if not callable(state_dict):
        return None
    import torch  # only reached with a torch module in hand

    digest = hashlib.sha256()
    for name, value in state_dict().items():
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"{name}:{tensor.dtype}:{list(tensor.shape)}\n".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:  # a module's extra state
            digest.update(f"{name}:{value!r}\n".encode())
    return digest.hexdigest()


def describe_suspect(suspect: Suspect) -> dict[str, Any]:
    """What the evidence records about a suspect, so that a resume can tell whether it is the same one.

    A suspect's own ``describe()`` (kind, endpoint, wire format) where it has one, else its class, outputs and
    class count; plus the SHA-256 of the weights where the suspect holds a torch ``model`` (a local checkpoint).
    An endpoint is identified only by what it says about itself: a server that swaps its model behind the same
    URL and format looks the same.
    """
    description = dict(as_suspect(suspect).describe())
    weights = _weights_sha256(getattr(suspect, "model", None))
    return _as_json({**description, **({"weights_sha256": weights} if weights else {})})


def _probe_data(data: Records) -> dict[str, Any]:
    return {"fingerprint": data.fingerprint, "rows": len(data)}


def _header(verifier: Verifier, suspect: Suspect, key: Key, data: Records) -> dict[str, Any]:
    """The header fields of a run (``verify_with_evidence``) and what a resume of it must match."""
    description = describe_suspect(suspect)
    return {"commitment": key.commitment, "key": key.summary(), "test": _as_json(verifier.settings(key)),
            "probe_data": _probe_data(data), "suspect": description,
            "suspect_sha256": hashlib.sha256(canonical_json(description)).hexdigest()}


def _check_resumable(log: EvidenceLog, expected: dict[str, Any]) -> None:
    """Refuse to continue a finished run, or one recorded with another key, data, settings or suspect."""
    header = log.entries[0]
    if log.entries[-1]["type"] == "result":
        raise EvidenceError(f"The evidence file '{log.path}' already holds a finished run; nothing to resume "
                            f"(check it with 'datamark evidence {log.path}').")
    for field in ("commitment", "test", "probe_data"):
        differ = _differences(header.get(field), expected[field], field)
        if differ:
            raise EvidenceError(f"The evidence file '{log.path}' was written with a different {field} "
                                f"({json.dumps(header.get(field))}) than this run ({json.dumps(expected[field])}; "
                                f"differs at {', '.join(differ)}); resume with the same key, data and settings, or "
                                f"start a new file with --evidence.")
    recorded = header.get("suspect_sha256")
    if recorded != expected["suspect_sha256"]:
        shown = recorded or "none recorded: an older file, whose suspect cannot be checked"
        raise EvidenceError(f"The evidence file '{log.path}' was recorded from another suspect (sha256 "
                            f"{shown}: {json.dumps(header.get('suspect'))}) than this run "
                            f"queries (sha256 {expected['suspect_sha256']}: {json.dumps(expected['suspect'])}); "
                            f"answers of two models must not be pooled into one verdict. Resume with the same "
                            f"suspect, or start a new file with --evidence.")


def _resume_log(path: str | os.PathLike, header: dict[str, Any]) -> EvidenceLog:
    """Reopen ``path`` for a run with ``header``: checked, its torn tail (if any) cut off, a ``resume`` entry added."""
    log = EvidenceLog.reopen(path)
    _check_resumable(log, header)
    dropped = log.cut_torn_tail()
    recorded = EvidenceReport(str(path), log.entries).queries
    log.append("resume", suspect=header["suspect"], suspect_sha256=header["suspect_sha256"],
               recorded_queries=recorded, **dropped)
    return log


def _after_failure(log: EvidenceLog, error: BaseException) -> None:
    """A failed run: drop a log with nothing but its header; keep one with answers, and say how to go on."""
    if not log.published:
        log.discard()
        return
    queries = EvidenceReport(str(log.path), log.entries).queries
    warnings.warn(EvidenceWarning(f"The run stopped ({type(error).__name__}) with {queries} queries recorded in "
                                  f"'{log.path}'; the file is kept as evidence: continue the run with --resume "
                                  f"{log.path}."), stacklevel=3)


def verify_with_evidence(verifier: Verifier, suspect: Suspect, key: Key, data: Records, path: str | os.PathLike, *,
                         resume: bool = False, overwrite: bool = False, batch_size: int = 64) -> VerificationResult:
    """Run ``verifier`` on ``suspect`` recording every batch to ``path``; ``resume`` continues an earlier file.

    ``overwrite`` replaces an existing file (only once the new run has recorded something). A run that fails
    (any exception, Ctrl-C included) leaves no file if it recorded no query, else keeps it for ``resume``.
    """
    header = _header(verifier, suspect, key, data)
    log = _resume_log(path, header) if resume else EvidenceLog.create(path, header, overwrite=overwrite)
    recorder = RecordingSuspect(suspect, log, batch_size=batch_size)
    try:
        result = verifier.verify(recorder, key, data)
        log.append("result", result=result.to_dict(), fresh_queries=recorder.fresh,
                   replayed_queries=recorder.replayed)
    except BaseException as error:
        _after_failure(log, error)
        raise
    return result


def verifier_from_settings(settings: dict[str, Any]) -> Verifier:
    """The verifier an evidence header describes (to re-run a recorded verification offline).

    Every recorded setting that names a constructor parameter is passed on. Two are recorded resolved: a seed
    derived from the key is written as a word ("key"), which is the constructor's None; a control that was off
    is absent, so it is passed as 0 (the constructor's None would mean "the key's plan").
    """
    from .sequential import SequentialVerifier

    cls = SequentialVerifier if settings.get("verifier") == "sequential" else Verifier
    params = inspect.signature(cls).parameters
    kwargs = {name: value for name, value in settings.items() if name in params}
    if isinstance(kwargs.get("seed"), str):
        kwargs["seed"] = None
    kwargs.setdefault("n_control_triggers", 0)
    return cls(**kwargs)


def _rebuild_verifier(path: str | os.PathLike, header: dict[str, Any], key: Key,
                      released: Records | None = None) -> Verifier:
    """The recorded run's verifier, refused where this version cannot reproduce every recorded setting (a run
    that asked the key's released rows needs the same release back: ``released``)."""
    if header["test"].get("marked_rows") and released is None:
        raise EvidenceError(f"The evidence file '{path}' records a run that also asked the key's released rows; "
                            f"pass the watermarked dataset it used (--released WM).")
    recorded = header["test"].get("released_fingerprint")
    if released is not None and recorded is not None and released.fingerprint != recorded:
        raise EvidenceError(f"The evidence file '{path}' was written with another release than "
                            f"{released.where} (fingerprint {recorded[:16]}…); pass the watermarked dataset it used.")
    verifier = replace(verifier_from_settings(header["test"]), released=released)
    differ = _differences(header["test"], _as_json(verifier.settings(key)))
    if differ:
        raise EvidenceError(f"The evidence file '{path}' records test settings this datamark ({__version__}) cannot "
                            f"rebuild (differing: {', '.join(differ)}); re-verify with the version that wrote it "
                            f"({header.get('datamark_version')}).")
    return verifier


def _check_verdict(path: str | os.PathLike, header: dict[str, Any], recorded: dict[str, Any],
                   result: VerificationResult) -> None:
    """Refuse a recorded result that the recorded answers do not reproduce, field by field."""
    again = _as_json(result.to_dict())
    fields = sorted(recorded.keys() | set(VERDICT_FIELDS))
    differ = [d for field in fields for d in _differences(recorded.get(field), again.get(field), field)]
    if not differ:
        return
    version = header.get("datamark_version")
    note = "" if version == __version__ else (f" (written by datamark {version}, re-computed by {__version__}: if "
                                              f"only the wording of the verdict differs, re-verify with {version})")
    log10 = recorded.get("outcome", {}).get("log10_p")
    raise EvidenceError(f"The evidence file '{path}' records a result (accused={recorded.get('accused')}, log10 p = "
                        f"{log10}) that its answers do not imply (accused={result.accused}, log10 p = "
                        f"{result.outcome.log10_p:.4g}; differing: {', '.join(differ)}); it was tampered with{note}.")


def reverify(path: str | os.PathLike, key: Key, data: Records, *, released: Records | None = None,
             wrap: Callable[[Verifier], Verifier] | None = None) -> VerificationResult:
    """Re-run a recorded verification from the evidence alone (no suspect) and check it reaches the same result.

    With the key and probe data, this shows the recorded answers really imply the recorded verdict. Only a
    finished chain qualifies: nothing after its result line, and a result line to compare with. ``wrap`` may
    replace the rebuilt verifier with an equivalent one that also records what it computes (the HTML report
    reads the per-probe scores that way); the check against the recorded result still applies.
    """
    report = check_evidence(path)
    header, recorded = report.header, report.result
    if recorded is None:
        raise EvidenceError(f"The evidence file '{path}' records no result: the run is unfinished, so there is no "
                            f"verdict to re-verify; finish it with 'datamark verify ... --resume {path}'.")
    expected = {"commitment": key.commitment, "probe_data": _probe_data(data)}
    for field, value in expected.items():
        if _differences(header.get(field), value):
            raise EvidenceError(f"The evidence file '{path}' was written for a different {field} "
                                f"({json.dumps(header.get(field))}, not {json.dumps(value)}); pass the key and "
                                f"probe data of that run.")
    verifier = _rebuild_verifier(path, header, key, released)
    verifier = wrap(verifier) if wrap is not None else verifier
    replay = RecordingSuspect(None, EvidenceLog(Path(path), report.entries), outputs=header["test"]["mode"],
                              num_classes=data.num_classes)
    result = verifier.verify(replay, key, data)
    _check_verdict(path, header, recorded, result)
    return result
