"""Primitives of the sub-graph trigger (:mod:`datamark.triggers.graph`): its edges (an Erdős–Rényi draw conditioned
on being connected, or a complete / star graph: :func:`random_edges`) and per-node values written over a host's
(:func:`place`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exceptions import ParameterError

_MAX_DRAWS = 10_000  # rejection sampling of connected ER graphs; densities >= 0.6 need a handful of tries


def random_edges(rng: np.random.Generator, size: int, family: str, density: float | None
                 ) -> tuple[tuple[int, int], ...]:
    """Undirected edges ``(i, j)``, ``i < j``, over nodes 0..size-1: every pair for ``"complete"``; node 0 to every
    other for ``"star"`` (the placement key decides which host node is the centre); for ``"er"`` each pair with
    probability ``density``, redrawn until the graph is connected (a disconnected trigger is several smaller,
    commoner patterns). Only ``"er"`` uses ``rng``."""
    pairs = [(i, j) for i in range(size) for j in range(i + 1, size)]
    if family == "complete":
        return tuple(pairs)
    if family == "star":
        return tuple((0, j) for j in range(1, size))
    for _ in range(_MAX_DRAWS):
        edges = tuple(p for p, u in zip(pairs, rng.random(len(pairs)), strict=True) if u < density)
        if connected(size, edges):
            return edges
    raise ParameterError(f"No connected Erdős–Rényi trigger of {size} nodes at density {density:.2f} in "
                         f"{_MAX_DRAWS} draws; raise the density or the size.")


def connected(size: int, edges: tuple[tuple[int, int], ...]) -> bool:
    """Whether ``edges`` connect all of nodes 0..size-1 (union-find)."""
    parent = list(range(size))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in edges:
        parent[root(a)] = root(b)
    return len({root(i) for i in range(size)}) == 1


def float_rows(rows: Any) -> tuple[tuple[float, ...], ...]:
    """Rows of float32 values as Python floats (exact through JSON)."""
    return tuple(tuple(float(v) for v in np.asarray(r, dtype=np.float32).ravel()) for r in rows)


def commonest(values: np.ndarray) -> int:
    """The most frequent value (0 for none)."""
    if not len(values):
        return 0
    uniques, counts = np.unique(values, return_counts=True)
    return int(uniques[np.argmax(counts)])


def place(host: np.ndarray | None, trigger: tuple | None, hosts: np.ndarray, total: int, dtype: type
          ) -> np.ndarray | None:
    """The host's per-node values with the trigger's written at ``hosts``; nodes beyond the host's (a small host's
    or injected ones) get the trigger's values or, where the trigger keeps the host's, the host's commonest label /
    mean attribute row."""
    if host is None:
        return None
    out = np.asarray(host, dtype=dtype).copy()
    if total > len(out):
        filler = commonest(out) if out.ndim == 1 else out.mean(axis=0)
        out = np.concatenate([out, np.repeat(np.asarray(filler, dtype=dtype)[None], total - len(out), axis=0)])
    if trigger is not None:
        out[hosts] = np.asarray(trigger, dtype=dtype)
    return out
