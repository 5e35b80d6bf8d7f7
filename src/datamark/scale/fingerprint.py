"""The dataset fingerprint of :attr:`Records.fingerprint`, computed from shards without holding every row id.

The fingerprint is SHA-256 over the sorted ``"{id}:{label}\\n"`` lines of all rows. Each shard writes its
(id, label) pairs sorted (ids as their 32 raw bytes, whose order is the order of their hex strings); the
coordinator merges the sorted runs from memory-mapped files, so memory stays at one row per shard.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np


def write_sorted(ids: Sequence[str], labels: np.ndarray, stem: Path) -> None:
    """Write one shard's (id, label) pairs, sorted as the fingerprint sorts them, to ``stem``.ids/.labels.npy."""
    raw = np.array([bytes.fromhex(i) for i in ids], dtype="S32")
    order = np.lexsort((np.asarray(labels, dtype=np.int64), raw))
    np.save(f"{stem}.ids.npy", raw[order])
    np.save(f"{stem}.labels.npy", np.asarray(labels, dtype=np.int64)[order])


def _pairs(stem: Path) -> Iterator[tuple[bytes, int]]:
    ids = np.load(f"{stem}.ids.npy", mmap_mode="r")
    labels = np.load(f"{stem}.labels.npy", mmap_mode="r")
    for start in range(0, len(ids), 4096):
        # S32 drops trailing zero bytes; pad back so that the order and the hex are the digest's
        yield from zip((i.ljust(32, b"\0") for i in ids[start:start + 4096].tolist()),
                       labels[start:start + 4096].tolist(), strict=True)


def merged_fingerprint(stems: Sequence[Path]) -> str:
    """SHA-256 over all shards' sorted ``id:label`` lines: equal to ``Records.fingerprint`` of the whole table."""
    digest = hashlib.sha256()
    for raw, label in heapq.merge(*(_pairs(s) for s in stems)):
        digest.update(f"{raw.hex()}:{label}\n".encode())
    return digest.hexdigest()
