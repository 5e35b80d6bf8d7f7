"""The watermark key: one versioned JSON file holding everything verification needs, and nothing executable.

It records the method and trigger as ``{"name", "params"}``, the target, the resolved secret, the ids of the
marked rows (outcomes, not only seeds: RNG streams change across library versions), a fingerprint of the
protected dataset and the recommended verification settings. The *commitment* (``key_id``) is the SHA-256 of
the canonical JSON; the owner publishes it with the release, and only it ever appears in logs and results.
The file also carries its own checksum, so an edited key is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ._io import Journal, atomic_path
from ._version import __version__
from .exceptions import KeyFormatError, KeyMismatchError
from .marks import Mark

if TYPE_CHECKING:
    from .verify.plan import VerificationPlan

KEY_FORMAT = "datamark-key"
SCHEMA_VERSION = 2  # 2: multi-mark keys ("marks"); keys without marks are still written as version 1


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no whitespace, ASCII: the byte string the commitment is computed over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@dataclass(frozen=True, eq=False)
class Key:
    """A watermark key. Build it through a method's ``apply``; load it with :meth:`Key.load`."""

    method: dict[str, Any]
    trigger: dict[str, Any]
    target: int | None
    secret: str
    marked_ids: tuple[str, ...]
    dataset: dict[str, Any]
    verification: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    marks: tuple[dict[str, Any], ...] = ()  # multi-mark keys: one config per mark (see datamark.marks)
    datamark_version: str = __version__
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        body = {"format": KEY_FORMAT, "schema_version": 2 if self.marks else 1,
                "datamark_version": self.datamark_version, "created": self.created, "method": self.method,
                "trigger": self.trigger, "target": self.target, "secret": self.secret,
                "marked_ids": list(self.marked_ids), "dataset": self.dataset, "verification": self.verification,
                "extra": self.extra}
        return {**body, "marks": list(self.marks)} if self.marks else body  # version-1 keys hash as before

    @property
    def goal(self) -> str:
        """What the watermark does, in words safe to print (a multi-mark key's targets stay secret)."""
        if self.marks:
            marks = self.mark_list()
            if marks[0].candidates and marks[0].targeted:
                return (f"{len(marks)} marks each hiding a secret target class and 1 of {len(marks[0].candidates)} "
                        f"candidate triggers")
            if marks[0].candidates:
                return f"untargeted, {len(marks)} marks each hiding 1 of {len(marks[0].candidates)} candidate triggers"
            return f"{len(marks)} marks with secret target classes"
        return f"target class {self.target}" if self.target is not None else "untargeted"

    def mark_list(self) -> tuple[Mark, ...]:
        """The key's marks, validated; a single-mark (version 1) key is one mark of its trigger and target."""
        num_classes = int(self.dataset.get("num_classes") or 0)
        if not self.marks:
            return (Mark.from_config({"trigger": self.trigger, "target": self.target,
                                      "marked_ids": list(self.marked_ids)}, num_classes=num_classes,
                                     where="The key's trigger"),)
        return tuple(Mark.from_config(m, num_classes=num_classes, where=f"Mark {j} of the key")
                     for j, m in enumerate(self.marks))

    @property
    def plan(self) -> VerificationPlan:
        """The verification the key recommends, validated like any other setting."""
        from .verify.plan import VerificationPlan  # the verify package imports this module

        return VerificationPlan.from_dict(self.verification)

    @property
    def commitment(self) -> str:
        """SHA-256 of the canonical JSON of the key: publish this, keep the key."""
        return hashlib.sha256(canonical_json(self.to_dict())).hexdigest()

    key_id = commitment

    @property
    def secret_bytes(self) -> bytes:
        return bytes.fromhex(self.secret)

    def __repr__(self) -> str:  # the secret and the trigger never reach logs
        return (f"Key(method={self.method.get('name')!r}, target={self.target}, marked={len(self.marked_ids)}, "
                f"commitment={self.commitment[:16]}...)")

    def summary(self) -> dict[str, Any]:
        """What may be shown or published: no secret, no trigger pattern, no row ids, no secret targets; where the
        triggers and secret choices come from (drawn from the secret, or chosen by the owner)."""
        from .verify.consistency import provenance  # the verify package imports this module

        target: Any = self.target if not self.marks else "secret (one per mark)"
        drawn = provenance(self)
        return {"commitment": self.commitment, "method": self.method.get("name"), "trigger": self.trigger.get("name"),
                "marks": max(1, len(self.marks)), "target": target, "marked_rows": len(self.marked_ids),
                **({"confusion_rows": len(self.extra["confusion_ids"]), "confusion_partners": "secret (one per class)"}
                   if self.extra.get("confusion_ids") else {}),
                "dataset_rows": self.dataset.get("n_rows"),
                "num_classes": self.dataset.get("num_classes"), "datamark_version": self.datamark_version,
                "created": self.created,
                "provenance": drawn.describe() if drawn is not None else "not the triggers its secret draws"}

    def save(self, path: str | os.PathLike, *, overwrite: bool = False, journal: Journal | None = None) -> None:
        """Write the key with owner-only permissions (0600, set before a byte is written), atomically, flushed to
        disk, with an integrity checksum; ``journal`` lets a caller undo it (see :class:`datamark._io.Journal`).

        No local variable of this frame holds the secret, and a failed write is re-raised without the frames
        that do, so no traceback printer (not even one showing locals) can reveal it.
        """
        with atomic_path(path, overwrite=overwrite, what="key", mode=0o600, journal=journal) as tmp:
            self._write_file(tmp, Path(path))

    def _dump(self, file: IO[str]) -> None:
        """Write the key file's content into ``file``: the key and a checksum of it. Streamed chunk by chunk, so a
        key listing millions of row ids (a sharded protect) costs no second copy of itself as text."""
        body = self.to_dict()
        json.dump({**body, "checksum": hashlib.sha256(canonical_json(body)).hexdigest()}, file, indent=1,
                  sort_keys=True)
        file.write("\n")

    def _write_file(self, tmp: Path, path: Path) -> None:
        """Write the key into ``tmp``; errors come back as fresh exceptions whose traceback holds no secret."""
        try:
            with open(tmp, "w", encoding="ascii") as file:
                self._dump(file)
        except OSError as err:
            raise OSError(err.errno, f"Cannot write the key file '{path}': {err.strerror or type(err).__name__}. "
                                     f"Free some space or choose a writable folder (--key).") from None
        except (TypeError, ValueError) as err:
            raise KeyFormatError(f"The key cannot be written as JSON ({type(err).__name__}: {err}); a method "
                                 f"recorded a value that is not JSON.") from None

    @classmethod
    def load(cls, path: str | os.PathLike, *, commitment: str | None = None) -> Key:
        """Read and check a key file; with ``commitment``, refuse a key whose hash differs from the published one."""
        path = Path(path)
        try:
            payload = json.loads(path.read_text())
        except FileNotFoundError:
            raise
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise KeyFormatError(f"The key file '{path}' is not valid JSON ({err}); it is corrupt or not a key."
                                 ) from err
        if not isinstance(payload, dict) or payload.get("format") != KEY_FORMAT:
            raise KeyFormatError(f"'{path}' is not a datamark key (missing format '{KEY_FORMAT}').")
        version = payload.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise KeyFormatError(f"The key '{path}' has schema version {version}, newer than this datamark "
                                 f"({__version__}) reads ({SCHEMA_VERSION}); upgrade datamark.")
        checksum = payload.pop("checksum", None)
        if checksum != hashlib.sha256(canonical_json(payload)).hexdigest():
            raise KeyFormatError(f"The key '{path}' fails its integrity check: it was edited or damaged after it "
                                 f"was written. Use the original key file.")
        try:
            key = cls(method=payload["method"], trigger=payload["trigger"], target=payload["target"],
                      secret=payload["secret"], marked_ids=tuple(payload["marked_ids"]), dataset=payload["dataset"],
                      verification=payload["verification"], extra=payload.get("extra", {}),
                      marks=tuple(payload.get("marks", ())), datamark_version=payload["datamark_version"],
                      created=payload["created"])
        except (KeyError, TypeError) as err:
            raise KeyFormatError(f"The key '{path}' lacks the field {err} or has a malformed one; it is incomplete."
                                 ) from err
        key.validate(str(path))
        if commitment is not None and commitment.strip().lower() != key.commitment:
            raise KeyMismatchError(f"The key '{path}' has commitment {key.commitment}, not the published "
                                   f"{commitment.strip()}: this is not the key that was committed to at release.")
        return key

    def validate(self, where: str = "the key") -> None:
        """Check every value verification will read, with the rules of the constructors and the CLI.

        The checksum only shows the file is as written; this shows what is written is sane (an edited key with
        its checksum recomputed, a negative margin or a target of 42 must not reach a verdict).
        """
        from .methods import build_method  # the methods import this module

        try:
            if not isinstance(self.dataset, dict) or not _is_count(self.dataset.get("num_classes"), 2):
                raise KeyFormatError("its dataset record lacks a class count >= 2")
            if not isinstance(self.secret, str) or len(self.secret_bytes) < 16:
                raise KeyFormatError("its secret is not a hex string of at least 16 bytes")
            if not isinstance(self.method, dict) or not isinstance(self.method.get("params"), dict):
                raise KeyFormatError("its method record is malformed")
            params = {k: v for k, v in self.method["params"].items() if k != "seed"}
            build_method(str(self.method.get("name")), params, strict=True)
            self.plan  # noqa: B018 -- validates the verification plan
            marks = self.mark_list()
            if self.marks and len(marks) < 2 and not any(m.candidates for m in marks):
                raise KeyFormatError("a multi-mark key needs at least 2 marks, or candidate triggers")
            if self.marks and (self.target != marks[0].target or self.trigger != marks[0].trigger.to_config()):
                raise KeyFormatError(f"its target {self.target!r} or trigger is not its first mark's")
            if self.plan.uses_marks and any(m.options(self.dataset["num_classes"]) < 2 for m in marks):
                raise KeyFormatError("its marks test needs at least 2 options per mark")
            if self.plan.marked_rows and not all(m.targeted and m.released_ids for m in marks):
                raise KeyFormatError("its plan asks the marked rows but a mark has no target or no released row ids")
        except (ValueError, TypeError) as err:  # ParameterError and KeyFormatError are ValueErrors
            raise KeyFormatError(f"The key '{where}' holds an invalid value ({err}); it was edited or damaged; "
                                 f"use the original key file.") from err
        # Sane values are not enough: a forger may write triggers crafted on a clean model (and a checksum) into
        # a key. Its triggers and secret choices must be the ones its secret draws (see verify/consistency.py).
        from .verify.consistency import check_key

        check_key(self, where)

    def check_data(self, num_classes: int, input_shape: tuple[int, ...], where: str,
                   sample_rate: int | None = None) -> None:
        """Refuse data whose class count, example shape or (audio) sample rate differs from the protected
        dataset's."""
        expected = self.dataset.get("num_classes")
        if expected != num_classes:
            raise KeyMismatchError(f"The key protects a dataset with {expected} classes but {where} has "
                                   f"{num_classes}: it is a key for another dataset or the wrong data/model.")
        shape = tuple(self.dataset.get("input_shape") or ())
        if shape and tuple(input_shape) != shape:
            raise KeyMismatchError(f"The key protects examples of shape {shape} but {where} has "
                                   f"{tuple(input_shape)}: it is a key for another dataset.")
        rate = self.dataset.get("sample_rate")
        if rate is not None and sample_rate is not None and int(sample_rate) != int(rate):
            raise KeyMismatchError(f"The key protects audio at {rate} Hz but {where} is at {sample_rate} Hz; "
                                   f"resample the probes (or use a model trained at {rate} Hz).")


def _is_count(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least
