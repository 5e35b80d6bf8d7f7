"""A tamper-evident record of a verification run: hash-chained JSON Lines, resumable after an interruption.

Line 1 is the header (key commitment and public summary, never the secret or the trigger; the resolved test
settings; the probe data's fingerprint; the suspect's description). Then one ``batch`` line per query batch
(the SHA-256 of every input, the suspect's answers, a UTC timestamp), ``resume`` lines where a run was
continued, and a final ``result`` line. Every line carries ``prev`` (the previous line's hash) and ``hash`` =
SHA-256(prev + canonical JSON of the line without ``hash``), so editing, dropping or reordering any line breaks
the chain; publishing (or timestamping) the last hash fixes the whole record.

The verifier is not forked: :class:`RecordingSuspect` sits between it and the suspect, logging each batch
before the verifier sees it and answering inputs already in the log without querying again. Probe order is
deterministic from the seed, so a resumed run asks the same questions and the log answers the ones it has.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .._io import atomic_path, check_output
from ..data.records import Records
from ..exceptions import EvidenceError
from ..key import Key, canonical_json
from ..suspects.base import Suspect
from .result import VerificationResult
from .verifier import Verifier

EVIDENCE_FORMAT = "datamark-evidence"
EVIDENCE_VERSION = 1
GENESIS = "0" * 64


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def entry_hash(body: dict[str, Any]) -> str:
    """SHA-256 of the previous hash followed by the canonical JSON of the entry (without its ``hash``)."""
    return hashlib.sha256(body["prev"].encode() + canonical_json(body)).hexdigest()


def input_hashes(inputs: np.ndarray) -> list[str]:
    """SHA-256 of each example's dtype, shape and bytes: what the suspect was asked, without storing it."""
    arr = np.ascontiguousarray(inputs)
    tag = f"{arr.dtype.str}{list(arr.shape[1:])}".encode()
    return [hashlib.sha256(tag + row.tobytes()).hexdigest() for row in arr]


def _read(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Every entry of a chain, checked; also the byte length of the valid prefix (a torn last line is dropped)."""
    entries, prev, valid, offset = [], GENESIS, 0, 0
    lines = path.read_bytes().split(b"\n")
    for number, line in enumerate(lines, start=1):
        offset += len(line) + 1
        if not line:
            continue
        if number == len(lines):  # no newline after it: the writer died mid-line and nobody relied on it
            break
        try:
            entry = json.loads(line)
        except ValueError as err:
            raise EvidenceError(f"Evidence file '{path}', line {number}, is not JSON ({err}); the file is corrupt "
                                f"or was edited.") from err
        if not isinstance(entry, dict):
            raise EvidenceError(f"Evidence file '{path}', line {number}, is not a JSON object; the file was edited.")
        body = {k: v for k, v in entry.items() if k != "hash"}
        if body.get("prev") != prev or entry.get("seq") != len(entries):
            raise EvidenceError(f"Evidence file '{path}', line {number}: the chain is broken (expected seq "
                                f"{len(entries)} after hash {prev[:16]}…); a line was removed, reordered or edited.")
        if entry_hash(body) != entry.get("hash"):
            raise EvidenceError(f"Evidence file '{path}', line {number} ({body.get('type')}): its hash does not match "
                                f"its content; the line was edited after it was written.")
        if number == 1 and (body.get("type") != "header" or body.get("format") != EVIDENCE_FORMAT):
            raise EvidenceError(f"'{path}' is not a datamark evidence file (no '{EVIDENCE_FORMAT}' header).")
        entries.append(entry)
        prev, valid = entry["hash"], offset
    if not entries:
        raise EvidenceError(f"Evidence file '{path}' is empty; start a new run with --evidence instead of --resume.")
    return entries, valid


@dataclass(frozen=True)
class EvidenceReport:
    """What a checked chain holds: its entries, the number of recorded queries, the result (if finished)."""

    path: str
    entries: list[dict[str, Any]]

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
        return next((e["result"] for e in self.entries if e["type"] == "result"), None)

    @property
    def last_hash(self) -> str:
        return self.entries[-1]["hash"]


def check_evidence(path: str | os.PathLike) -> EvidenceReport:
    """Verify the hash chain of an evidence file; :class:`EvidenceError` names the first bad line."""
    entries, _ = _read(Path(path))
    return EvidenceReport(str(path), entries)


class EvidenceLog:
    """An evidence file open for appending; each entry is flushed and fsynced before the caller goes on."""

    def __init__(self, path: Path, entries: list[dict[str, Any]]) -> None:
        self.path, self.entries = path, entries

    @classmethod
    def create(cls, path: str | os.PathLike, header: dict[str, Any], *, overwrite: bool = False) -> EvidenceLog:
        """A new file holding only ``header`` (written atomically: it appears whole or not at all)."""
        path = check_output(path, overwrite=overwrite, what="evidence")
        entry = {"type": "header", "format": EVIDENCE_FORMAT, "version": EVIDENCE_VERSION,
                 "datamark_version": __version__, "time": _now(), **header, "seq": 0, "prev": GENESIS}
        entry["hash"] = entry_hash(entry)
        with atomic_path(path, overwrite=overwrite, what="evidence") as tmp:
            tmp.write_text(json.dumps(entry) + "\n")
        return cls(path, [entry])

    @classmethod
    def reopen(cls, path: str | os.PathLike) -> EvidenceLog:
        """An existing file, chain checked, a torn last line (a crash mid-write) cut off."""
        path = Path(path)
        entries, valid = _read(path)
        if valid < path.stat().st_size:
            with open(path, "r+b") as f:
                f.truncate(valid)
        return cls(path, entries)

    def append(self, kind: str, **fields: Any) -> dict[str, Any]:
        entry = {"type": kind, "time": _now(), **fields, "seq": len(self.entries), "prev": self.entries[-1]["hash"]}
        entry["hash"] = entry_hash(entry)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.entries.append(entry)
        return entry


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

    @property
    def budget_left(self) -> int | None:
        left = getattr(self.inner, "budget_left", None)
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
        inputs = np.asarray(inputs)
        hashes = input_hashes(inputs)
        chunks = [self._answer(hashes[s:s + self.batch_size], inputs[s:s + self.batch_size])
                  for s in range(0, len(inputs), self.batch_size)]
        self.queries += len(inputs)
        return np.concatenate(chunks) if chunks else np.zeros((0, self.num_classes))


def _header(verifier: Verifier, suspect: Suspect, key: Key, data: Records) -> dict[str, Any]:
    describe = getattr(suspect, "describe", None)
    return {"commitment": key.commitment, "key": key.summary(), "test": verifier.settings(key),
            "probe_data": {"fingerprint": data.fingerprint, "rows": len(data)},
            "suspect": describe() if describe else {"kind": type(suspect).__name__, "outputs": suspect.outputs}}


def _check_resumable(log: EvidenceLog, expected: dict[str, Any]) -> None:
    header = log.entries[0]
    for field in ("commitment", "test", "probe_data"):
        if header.get(field) != expected[field]:
            raise EvidenceError(f"The evidence file '{log.path}' was written with a different {field} "
                                f"({json.dumps(header.get(field))}) than this run ({json.dumps(expected[field])}); "
                                f"resume with the same key, data and settings, or start a new file with --evidence.")
    if any(e["type"] == "result" for e in log.entries):
        raise EvidenceError(f"The evidence file '{log.path}' already holds a finished run; nothing to resume "
                            f"(check it with 'datamark evidence {log.path}').")


def verify_with_evidence(verifier: Verifier, suspect: Suspect, key: Key, data: Records, path: str | os.PathLike, *,
                         resume: bool = False, overwrite: bool = False, batch_size: int = 64) -> VerificationResult:
    """Run ``verifier`` on ``suspect`` recording every batch to ``path``; ``resume`` continues an earlier file."""
    header = _header(verifier, suspect, key, data)
    if resume:
        log = EvidenceLog.reopen(path)
        _check_resumable(log, header)
        log.append("resume", suspect=header["suspect"], recorded_queries=EvidenceReport(str(path), log.entries).queries)
    else:
        log = EvidenceLog.create(path, header, overwrite=overwrite)
    recorder = RecordingSuspect(suspect, log, batch_size=batch_size)
    result = verifier.verify(recorder, key, data)
    log.append("result", result=result.to_dict(), fresh_queries=recorder.fresh, replayed_queries=recorder.replayed)
    return result


def verifier_from_settings(settings: dict[str, Any]) -> Verifier:
    """The verifier an evidence header describes (to re-run a recorded verification offline)."""
    from .sequential import SequentialVerifier

    common = {k: settings[k] for k in ("mode", "n_probe", "margin", "alpha", "seed")}
    if settings.get("verifier") == "sequential":
        return SequentialVerifier(**common, batch_size=settings["batch_size"], futility=settings["futility"],
                                  bet_cap=settings["bet_cap"])
    return Verifier(**common, n_control_triggers=int(settings.get("n_control_triggers", 0)))


def reverify(path: str | os.PathLike, key: Key, data: Records) -> VerificationResult:
    """Re-run a recorded verification from the evidence alone (no suspect) and check it reaches the same result.

    With the key and probe data, this shows the recorded answers really imply the recorded verdict.
    """
    report = check_evidence(path)
    header = report.header
    verifier = verifier_from_settings(header["test"])
    expected = {"commitment": key.commitment, "probe_data": {"fingerprint": data.fingerprint, "rows": len(data)}}
    for field, value in expected.items():
        if header.get(field) != value:
            raise EvidenceError(f"The evidence file '{path}' was written for a different {field}; pass the key and "
                                f"probe data of that run.")
    replay = RecordingSuspect(None, EvidenceLog(Path(path), report.entries), outputs=header["test"]["mode"],
                              num_classes=data.num_classes)
    result = verifier.verify(replay, key, data)
    recorded = report.result
    if recorded is not None and (recorded["accused"] != result.accused
                                 or not np.isclose(recorded["outcome"]["log10_p"], result.outcome.log10_p)):
        raise EvidenceError(f"The evidence file '{path}' records a result (accused={recorded['accused']}, log10 p = "
                            f"{recorded['outcome']['log10_p']:.4g}) that its answers do not imply (accused="
                            f"{result.accused}, log10 p = {result.outcome.log10_p:.4g}); it was tampered with.")
    return result
