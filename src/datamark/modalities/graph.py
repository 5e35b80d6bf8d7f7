"""Graphs: a batch is a 1-d ``object`` array of :class:`~datamark.graphs.Graph` (one graph per row).

The modality instance carries the dataset's node-feature encoding, because a model's input width depends on it and
a key must record it: one-hot node labels over the dataset's label values (``node_label_values``), then the
continuous node attributes (``attr_dim`` columns), or, for datasets without node features (IMDB-BINARY), one-hot
node degrees capped at ``max_degree`` (PyG's ``OneHotDegree``). Graph models take PyG-style inputs
``model(x, edge_index, batch) -> logits``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exceptions import DataError
from ..graphs import Graph
from ..registry import MODALITIES, register
from .base import Modality

DEFAULT_MAX_DEGREE = 64  # one-hot degrees 0..64 for featureless graphs (degrees above are clipped to 64)


@register(MODALITIES, "graph")
class GraphModality(Modality):
    """Graph classification. ``node_label_values``: the dataset's node labels in feature order (None: the
    dataset has none); ``attr_dim``: continuous attributes per node; ``max_degree``: the cap of one-hot degree
    features, used only when the dataset has neither labels nor attributes."""

    name = "graph"
    feature_type = "Graph"
    budget_metric = "graph edit distance (nodes and edges changed)"

    def __init__(self, node_label_values: tuple[int, ...] | None = None, attr_dim: int = 0,
                 max_degree: int = DEFAULT_MAX_DEGREE) -> None:
        self.node_label_values = None if node_label_values is None else tuple(int(v) for v in node_label_values)
        self.attr_dim = int(attr_dim)
        self.max_degree = int(max_degree)
        if self.attr_dim < 0 or self.max_degree < 1:
            raise DataError(f"attr_dim must be >= 0 and max_degree >= 1; got {attr_dim} and {max_degree}.")
        self._label_column = {v: i for i, v in enumerate(self.node_label_values or ())}

    # --- the feature encoding (what a model's input width depends on) ------------------------------------
    @property
    def uses_degree(self) -> bool:
        return self.node_label_values is None and self.attr_dim == 0

    @property
    def num_features(self) -> int:
        """Width of :meth:`features`' rows."""
        if self.uses_degree:
            return self.max_degree + 1
        return len(self.node_label_values or ()) + self.attr_dim

    def feature_spec(self) -> dict[str, Any]:
        """The settings that rebuild this encoding (recorded in keys and checkpoints)."""
        return {"node_label_values": None if self.node_label_values is None else list(self.node_label_values),
                "attr_dim": self.attr_dim, "max_degree": self.max_degree}

    def features(self, graph: Graph) -> np.ndarray:
        """float32 (num_nodes, num_features): the model-side node features of ``graph``."""
        n = graph.num_nodes
        if self.uses_degree:
            degree = np.bincount(graph.edge_index[0], minlength=n)
            out = np.zeros((n, self.max_degree + 1), np.float32)
            out[np.arange(n), np.minimum(degree, self.max_degree)] = 1.0
            return out
        parts = []
        if self.node_label_values is not None:
            if graph.node_labels is None:
                raise DataError("A graph has no node labels but its dataset's encoding one-hot encodes them; every "
                                "graph of a dataset needs the same node features.")
            try:
                columns = np.fromiter((self._label_column[int(v)] for v in graph.node_labels), np.int64, n)
            except KeyError as err:
                raise DataError(f"A graph has node label {err.args[0]}, which its dataset's encoding does not know "
                                f"(values {list(self.node_label_values)}).") from None
            onehot = np.zeros((n, len(self.node_label_values)), np.float32)
            onehot[np.arange(n), columns] = 1.0
            parts.append(onehot)
        if self.attr_dim:
            attr = graph.node_attr
            if attr is None or attr.ndim != 2 or attr.shape[1] != self.attr_dim:
                width = None if attr is None else attr.shape[-1]
                raise DataError(f"A graph has node attributes of width {width}; its dataset's have {self.attr_dim}. "
                                f"Every graph of a dataset needs the same node-feature width.")
            parts.append(np.asarray(attr, np.float32))
        return np.concatenate(parts, axis=1)

    # --- the batch --------------------------------------------------------------------------------------------
    def batch(self, examples: Any, where: str = "") -> np.ndarray:
        values = list(examples) if not (isinstance(examples, np.ndarray) and examples.dtype == object) else examples
        out = np.empty(len(values), dtype=object)
        for i, value in enumerate(values):
            if not isinstance(value, Graph):
                raise DataError(f"Row {i} of the graphs {where} is a {type(value).__name__}, not a datamark Graph; "
                                f"load graph data with datamark.load_data (TU folders, PyG datasets, edge lists).")
            out[i] = value
        return out

    def empty(self, n: int, example_shape: tuple[int, ...]) -> np.ndarray:
        return np.empty(n, dtype=object)

    def example_shape_of(self, example: Any) -> tuple[int, ...]:
        return ()

    def example_shape(self, batch: np.ndarray) -> tuple[int, ...]:
        return ()

    def content_id(self, example: Any) -> str:
        return example.content_id()
