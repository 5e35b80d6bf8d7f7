"""What a graph trigger learns from its dataset: the graph sizes, the node-label distribution, a pool of attribute
rows and the commonest edge label (:func:`graph_statistics`), so that trigger nodes look like the data's nodes and
the trigger's size follows the data's (Zhang et al. 2021 size it as a fraction of the mean node count)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..exceptions import DataError
from ..graphs import Graph

__all__ = ["GraphStats", "graph_statistics", "label_distribution"]

#: At most this many attribute rows are kept as the pool trigger nodes draw from (stored in the key: 64 rows of
#: ENZYMES' 18 attributes are ~1,200 numbers; enough to reproduce the attribute distribution's spread).
POOL_SIZE = 64


@dataclass(frozen=True, eq=False)
class GraphStats:
    """Summary of a graph dataset (see :func:`graph_statistics`).

    Attributes:
        node_counts: int64 (G,): nodes per graph.
        label_values, label_counts: the node labels that occur and how often (empty without node labels).
        attr_pool: up to :data:`POOL_SIZE` node-attribute rows, evenly spaced over all nodes (empty without).
        edge_label: the commonest edge label (None without edge labels).
    """

    node_counts: np.ndarray
    label_values: tuple[int, ...] = ()
    label_counts: tuple[int, ...] = ()
    attr_pool: tuple[tuple[float, ...], ...] = ()
    edge_label: int | None = None

    @property
    def n_graphs(self) -> int:
        return int(len(self.node_counts))

    @property
    def mean_nodes(self) -> float:
        return float(self.node_counts.mean())

    @property
    def min_nodes(self) -> int:
        return int(self.node_counts.min())

    def n_smaller(self, size: int) -> int:
        """How many graphs have fewer than ``size`` nodes."""
        return int((self.node_counts < size).sum())

    def to_record(self) -> dict[str, Any]:
        """What a trigger draw reads, as JSON values for the key (so that verification can re-draw the trigger
        from the secret alone: :mod:`datamark.verify.consistency`)."""
        return {"mean_nodes": self.mean_nodes, "label_values": list(self.label_values),
                "label_counts": list(self.label_counts), "attr_pool": [list(row) for row in self.attr_pool],
                "edge_label": self.edge_label}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> GraphStats:
        """The statistics a key recorded (:meth:`to_record`). Only the mean graph size survives of the sizes, which is
        all a trigger draw reads of them (the smallest size only words a warning that protect already gave)."""
        return cls(np.array([float(record["mean_nodes"])]), tuple(int(v) for v in record["label_values"]),
                   tuple(int(c) for c in record["label_counts"]),
                   tuple(tuple(float(v) for v in row) for row in record["attr_pool"]),
                   None if record["edge_label"] is None else int(record["edge_label"]))


def _graphs_of(data: Any) -> list[Graph]:
    """The graphs of a Records (its decoded inputs), an object array, or a list/tuple of Graphs."""
    if hasattr(data, "inputs") and hasattr(data, "modality"):
        data = data.inputs()
    if isinstance(data, Graph) or not isinstance(data, (np.ndarray, list, tuple)):
        raise DataError(f"Graph statistics need a dataset of graphs (a Records or a sequence of Graphs); got "
                        f"{type(data).__name__}.")
    graphs = list(data)
    if not graphs:
        raise DataError("Graph statistics need at least one graph; got an empty dataset.")
    for i, graph in enumerate(graphs):
        if not isinstance(graph, Graph):
            raise DataError(f"Item {i} of the graphs is a {type(graph).__name__}, not a datamark Graph; load graph "
                            f"data with datamark.load_data.")
    return graphs


def graph_statistics(data: Any) -> GraphStats:
    """Summarise ``data`` (a Records of graphs or a sequence of :class:`Graph`) for :func:`make_subgraph_trigger`.

    Node labels and attributes are counted over the graphs that have them; the attribute pool is every
    ``ceil(N / 64)``-th node row in dataset order (deterministic: the key's secret decides which pool rows a
    trigger takes, not which rows are pooled)."""
    graphs = _graphs_of(data)
    counts = np.fromiter((g.num_nodes for g in graphs), dtype=np.int64, count=len(graphs))
    labels = [g.node_labels for g in graphs if g.node_labels is not None]
    values, label_counts = np.unique(np.concatenate(labels), return_counts=True) if labels else ((), ())
    attrs = [np.asarray(g.node_attr, np.float32) for g in graphs if g.node_attr is not None and len(g.node_attr)]
    pool: tuple[tuple[float, ...], ...] = ()
    if attrs:
        if len({a.shape[1:] for a in attrs}) != 1:
            raise DataError(f"The graphs' node attributes have different widths "
                            f"{sorted({a.shape[-1] for a in attrs})}; every graph of a dataset needs the same width.")
        rows = np.concatenate(attrs)
        step = -(-len(rows) // POOL_SIZE)
        pool = tuple(tuple(float(v) for v in row) for row in rows[::step])
    edge_labels = [g.edge_labels for g in graphs if g.edge_labels is not None and len(g.edge_labels)]
    edge_label = None
    if edge_labels:
        uniques, edge_counts = np.unique(np.concatenate(edge_labels), return_counts=True)
        edge_label = int(uniques[np.argmax(edge_counts)])
    return GraphStats(counts, tuple(int(v) for v in values), tuple(int(c) for c in label_counts), pool, edge_label)


def label_distribution(stats: GraphStats | None, modality: Any = None
                       ) -> tuple[tuple[int, ...] | None, tuple[float, ...] | None]:
    """(values, weights) trigger nodes draw their node labels from: the data's frequencies, restricted to the labels
    ``modality`` encodes (its ``node_label_values``); uniform over those without statistics; (None, None) where
    the modality encodes no labels (a degree-feature dataset), so a trigger never adds a feature the model ignores."""
    encoded = getattr(modality, "node_label_values", None) if modality is not None else None
    if modality is not None and encoded is None:
        return None, None
    if stats is None or not stats.label_values:
        return (tuple(encoded), tuple(1.0 / len(encoded) for _ in encoded)) if encoded else (None, None)
    counts = dict(zip(stats.label_values, stats.label_counts, strict=True))
    values = tuple(v for v in (encoded or stats.label_values) if counts.get(v, 0) > 0)
    total = sum(counts[v] for v in values)
    return (values, tuple(counts[v] / total for v in values)) if values else (None, None)
