"""One graph of a graph-classification dataset, as every graph layer holds it (the batch of the ``graph`` modality
is a 1-d ``object`` array of :class:`Graph`).

A graph keeps what the TU format stores, so that a watermarked dataset is written back with only its marked graphs
changed: the undirected edges (each stored in both directions, as TU files and PyG do), an integer label per node
where the dataset has them, continuous node attributes where it has them, and edge labels where it has them. The
features a model sees (one-hot node labels, attributes, or degrees for datasets without node features) are the
modality's business, not the graph's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .exceptions import DataError


@dataclass(frozen=True, eq=False)
class Graph:
    """An undirected graph with ``num_nodes`` nodes 0..N-1.

    Attributes:
        edge_index: int64 array (2, E): edge j goes from ``edge_index[0, j]`` to ``edge_index[1, j]``; every
            undirected edge appears in both directions; no self-loops, no duplicates.
        num_nodes: N (isolated nodes count: a node need not appear in ``edge_index``).
        node_labels: int64 (N,) or None: the dataset's own integer node labels (TU ``node_labels``).
        node_attr: float32 (N, A) or None: continuous node attributes (TU ``node_attributes``).
        edge_labels: int64 (E,) or None: one label per column of ``edge_index`` (TU ``edge_labels``).
    """

    edge_index: np.ndarray
    num_nodes: int
    node_labels: np.ndarray | None = None
    node_attr: np.ndarray | None = None
    edge_labels: np.ndarray | None = None

    @property
    def num_edges(self) -> int:
        """Undirected edges (each stored twice)."""
        return int(self.edge_index.shape[1]) // 2

    def canonical_bytes(self) -> bytes:
        """A byte string that two equal graphs share (edges sorted, arrays in fixed dtypes): the content id's
        input, so a graph's id does not depend on the order its edges were listed in."""
        order = np.lexsort((self.edge_index[1], self.edge_index[0]))
        parts = [np.int64(self.num_nodes).tobytes(),
                 np.ascontiguousarray(self.edge_index[:, order], np.int64).tobytes()]
        for name, value, dtype in (("labels", self.node_labels, np.int64), ("attr", self.node_attr, np.float32),
                                   ("edges", None if self.edge_labels is None else self.edge_labels[order], np.int64)):
            parts.append(name.encode() + (b"-" if value is None else np.ascontiguousarray(value, dtype).tobytes()))
        return b"|".join(parts)

    def content_id(self) -> str:
        return hashlib.sha256(self.canonical_bytes()).hexdigest()

    def __eq__(self, other: object) -> bool:
        """Equal content (:meth:`canonical_bytes`), so that batches of graphs compare like batches of images or
        strings (``np.array_equal`` on object arrays compares items with ``==``; identity would call two equal
        watermarks different)."""
        if not isinstance(other, Graph):
            return NotImplemented
        return self is other or self.canonical_bytes() == other.canonical_bytes()

    def __hash__(self) -> int:
        return hash(self.canonical_bytes())

    def check(self, where: str = "graph") -> Graph:
        """Validate (shapes, dtypes, index range, symmetry, no self-loops); return self. One-line DataErrors."""
        e = self.edge_index
        if not isinstance(e, np.ndarray) or e.ndim != 2 or e.shape[0] != 2 or e.dtype.kind not in "iu":
            raise DataError(f"The {where} has an edge_index of shape {getattr(e, 'shape', None)}; expected an "
                            f"integer array of shape (2, E).")
        if self.num_nodes < 1:
            raise DataError(f"The {where} has no nodes; drop empty graphs before watermarking.")
        if e.size and (e.min() < 0 or e.max() >= self.num_nodes):
            raise DataError(f"The {where} has an edge to node {int(e.max() if e.max() >= self.num_nodes else e.min())}"
                            f" but only nodes 0..{self.num_nodes - 1}; fix its edge list.")
        if e.size and bool(np.any(e[0] == e[1])):
            raise DataError(f"The {where} has self-loops; remove them (TU graphs have none).")
        for name, value, rows in (("node_labels", self.node_labels, self.num_nodes),
                                  ("node_attr", self.node_attr, self.num_nodes),
                                  ("edge_labels", self.edge_labels, e.shape[1])):
            if value is not None and len(value) != rows:
                raise DataError(f"The {where} has {len(value)} {name} for {rows} "
                                f"{'edges' if name == 'edge_labels' else 'nodes'}; one per "
                                f"{'edge' if name == 'edge_labels' else 'node'} is needed.")
        return self
