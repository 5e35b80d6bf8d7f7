"""Keyed, order-independent randomness.

Every random choice in datamark flows from a secret (the key's) or a seed through local generators; global
RNGs are never touched. Row selection ranks rows by HMAC-SHA256(secret, purpose, row id) and keeps the k
smallest: exact counts like the papers, independent of row order, and computable shard by shard (hash each
shard in parallel, then keep rows under the global k-th smallest score).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets as _secrets
from collections.abc import Iterator, Sequence

import numpy as np
import torch

SECRET_BYTES = 32


def resolve_secret(seed: int | None) -> bytes:
    """A fresh random secret, or one derived from ``seed`` for reproducible runs and tests."""
    if seed is None:
        return _secrets.token_bytes(SECRET_BYTES)
    return hashlib.sha256(f"datamark-secret:{int(seed)}".encode()).digest()


def _digest(secret: bytes, purpose: str) -> bytes:
    return hmac.new(secret, f"purpose:{purpose}".encode(), hashlib.sha256).digest()


def generator(secret: bytes, purpose: str) -> np.random.Generator:
    """A numpy generator private to one purpose of one secret (trigger pattern, target class, labels...)."""
    return np.random.default_rng(np.frombuffer(_digest(secret, purpose), dtype=np.uint32))


def torch_seed(secret: bytes, purpose: str) -> int:
    """A 63-bit seed for torch generators, derived like :func:`generator`."""
    return int.from_bytes(_digest(secret, purpose)[:8], "little") >> 1


def seed_secret(seed: int) -> bytes:
    """The secret that ``seed`` stands for in functions that take either (training, probe draws)."""
    return resolve_secret(int(seed))


def keyed_scores(secret: bytes, ids: Sequence[str], purpose: str) -> np.ndarray:
    """Uniform uint64 scores, one per row id, from HMAC-SHA256(secret, purpose | id)."""
    base = hmac.new(secret, f"rows:{purpose}|".encode(), hashlib.sha256)
    out = np.empty(len(ids), dtype=np.uint64)
    for i, row_id in enumerate(ids):
        h = base.copy()
        h.update(row_id.encode())
        out[i] = int.from_bytes(h.digest()[:8], "big")
    return out


def select_smallest(scores: np.ndarray, k: int, eligible: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices of the ``k`` eligible rows with the smallest scores (ties broken by position)."""
    candidates = np.arange(len(scores)) if eligible is None else np.flatnonzero(eligible)
    if k > len(candidates):
        raise ValueError(f"cannot select {k} rows from {len(candidates)} eligible rows")
    order = np.lexsort((candidates, scores[candidates]))
    return np.sort(candidates[order[:k]])


def threshold_for(scores: np.ndarray, k: int) -> np.uint64:
    """The k-th smallest score: rows at or below it are selected, shard by shard, with no coordination."""
    if k <= 0:
        raise ValueError("k must be positive")
    return np.partition(scores, k - 1)[k - 1]


@contextlib.contextmanager
def isolated_torch_rng(seed: int) -> Iterator[None]:
    """Seed torch's global RNG for code that only reads it (layer initialisation), then restore it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
