"""Graphs: a batch is a 1-d ``object`` array of :class:`~datamark.graphs.Graph` (one graph per row).

The modality instance carries the dataset's node-feature encoding, because a model's input width depends on it and
a key must record it: one-hot node labels over the dataset's label values (``node_label_values``), then the
continuous node attributes (``attr_dim`` columns), or, for datasets without node features (IMDB-BINARY), one-hot
node degrees capped at ``max_degree`` (PyG's ``OneHotDegree``). That cap is learned from the data with the rest of
the encoding: the largest node degree of the dataset, at most :data:`MAX_DEGREE_CAP` (IMDB-BINARY: 135), so no
node's degree collapses into the last column; an encoding that states its cap (every key and checkpoint records
one) keeps it, and one that does not say uses :data:`DEFAULT_MAX_DEGREE`, the fixed cap of earlier versions. Graph
models take PyG-style inputs ``model(x, edge_index, batch) -> logits``.

Stored in Arrow (Parquet, ``save_to_disk``, Hub shards) as one struct column, lossless: ``num_nodes`` (int64),
``edge_index`` (list<int64>: the (2, E) array row-major), ``node_labels`` (list<int64> or null), ``node_attr``
(list<float32>, the (N, A) array row-major, or null), ``edge_labels`` (list<int64> or null); its Hugging Face
feature is the matching struct of ``Value``/``List`` features (``feature_type`` "Graph" is datamark's name for it).
The encoding of a stored dataset is learned from all its graphs (:meth:`GraphModality.configured`); TU folders are
read by :mod:`datamark.data.tu`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from ..exceptions import DataError, ParameterError
from ..graphs import Graph
from ..registry import MODALITIES, register
from .base import Modality, value_names

#: The degree cap of an encoding that states none and has not seen its data (keys and checkpoints of earlier
#: versions all state theirs: 64, this value). Degrees above the cap are clipped to it.
DEFAULT_MAX_DEGREE = 64
#: The largest learned degree cap: one-hot degrees 0..256 (257 input columns). Hubs beyond it (a 1,000-node star) are
#: rare in graph-classification benchmarks and share the last column, so one outlier cannot widen every model's
#: input layer without bound.
MAX_DEGREE_CAP = 256


def largest_degree(graphs: Sequence[Graph]) -> int:
    """The degree cap learned from ``graphs``: their largest node degree (at least 1), at most
    :data:`MAX_DEGREE_CAP`."""
    largest = max((int(np.bincount(g.edge_index[0]).max()) for g in graphs if g.edge_index.shape[1]), default=1)
    return max(1, min(largest, MAX_DEGREE_CAP))


#: How the sub-graphs of a multi-mark key's marks are sized (see :attr:`GraphModality.mark_sizes`).
MARK_SIZES = ("distinct", "same")


@register(MODALITIES, "graph")
class GraphModality(Modality):
    """Graph classification. ``node_label_values``: the dataset's node labels in feature order (None: the
    dataset has none); ``attr_dim``: continuous attributes per node; ``max_degree``: the cap of one-hot degree
    features, used only when the dataset has neither labels nor attributes (None: learned from the first batch
    the encoding is fitted to, :meth:`for_batch`; :data:`DEFAULT_MAX_DEGREE` until then)."""

    name = "graph"
    feature_type = "Graph"
    budget_metric = "graph edit distance (nodes and edges changed)"
    # TU sets are small (PROTEINS: about 9 training graphs a mark at gamma = 0.1): the marks test also asks each
    # mark's released graphs, which the thief's model remembers (benchmarks/graph_tu.py measures the gain).
    verify_marked_rows = True

    def __init__(self, node_label_values: tuple[int, ...] | None = None, attr_dim: int = 0,
                 max_degree: int | None = None) -> None:
        self.node_label_values = None if node_label_values is None else tuple(int(v) for v in node_label_values)
        self.attr_dim = int(attr_dim)
        self._degree_given = max_degree is not None  # else learned from the data (for_batch, learn, configured)
        self.max_degree = int(max_degree) if max_degree is not None else DEFAULT_MAX_DEGREE
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

    # --- the dataset's encoding ------------------------------------------------------------------------------
    def __repr__(self) -> str:
        return (f"GraphModality(node_label_values={self.node_label_values}, attr_dim={self.attr_dim}, "
                f"max_degree={self.max_degree})")

    @property
    def given_max_degree(self) -> int | None:
        """The degree cap this encoding was built with; None where it is to be learned from the data."""
        return self.max_degree if self._degree_given else None

    @classmethod
    def learn(cls, graphs: Sequence[Graph], where: str = "", max_degree: int | None = None) -> GraphModality:
        """The encoding of a dataset of graphs: one-hot over every node-label value its graphs use, then their
        attributes; degrees where they have neither, capped at ``max_degree`` (None: the graphs' largest degree,
        :func:`largest_degree`). Every graph must have the same kind of node features (labels or not, and one
        attribute width): a one-line DataError names the first graph that differs."""
        if not len(graphs):
            raise DataError(f"The graph dataset {where} holds no graphs.")
        first = graphs[0]
        width = 0 if first.node_attr is None else first.node_attr.shape[1]
        for i, graph in enumerate(graphs):
            if (graph.node_labels is None) != (first.node_labels is None):
                raise DataError(f"Graph {i} of {where} {'has no' if graph.node_labels is None else 'has'} node labels"
                                f" but graph 0 {'has' if graph.node_labels is None else 'has none'}; every graph of a "
                                f"dataset needs the same node features.")
            own = 0 if graph.node_attr is None else graph.node_attr.shape[1]
            if own != width:
                raise DataError(f"Graph {i} of {where} has node attributes of width {own}; the dataset's (graph 0) "
                                f"have width {width}. Give every graph the same node-feature width.")
        values = None
        if first.node_labels is not None:
            values = tuple(np.unique(np.concatenate([g.node_labels for g in graphs])).tolist())
        if max_degree is None and values is None and not width:
            max_degree = largest_degree(graphs)
        return cls(values, width, max_degree)

    def for_batch(self, batch: np.ndarray) -> GraphModality:
        """This encoding if ``batch`` fits it; the encoding learned from ``batch`` when this one is the bare default
        (degrees) and the graphs carry node labels or attributes (``ArrayRecords(graphs, modality="graph")``), or
        when it encodes degrees with a cap still to be learned (then ``batch``'s largest degree: the whole dataset,
        as the data loaders fit it; its splits and marked copies keep it). Either keeps ``stats``, the
        :func:`~datamark.triggers.graph_stats.graph_statistics` of the first batch it was fitted to: what its default
        trigger is sized and drawn from (a split keeps its whole dataset's)."""
        if self.uses_degree and len(batch) and (batch[0].node_labels is not None or batch[0].node_attr is not None
                                                or not self._degree_given):
            return GraphModality.learn(batch, "(in memory)", self.given_max_degree).for_batch(batch)
        self.check_fits(batch, "(in memory)")
        if getattr(self, "stats", None) is None and len(batch):
            from ..triggers.graph_stats import graph_statistics

            self.stats = graph_statistics(batch)
        return self

    def check_fits(self, graphs: Sequence[Graph], where: str, names: Sequence[str] | None = None) -> None:
        """Refuse graphs whose node features this encoding cannot encode (missing or unknown node labels, another
        attribute width), naming the first such graph."""
        label = (lambda i: names[i]) if names is not None else (lambda i: f"graph {i} of {where}")
        wants_labels = self.node_label_values is not None
        for i, graph in enumerate(graphs):
            if wants_labels and graph.node_labels is None:
                raise DataError(f"The {label(i)} has no node labels; its dataset's graphs have them "
                                f"(values {list(self.node_label_values)}).")
            width = 0 if graph.node_attr is None else graph.node_attr.shape[1]
            if width != self.attr_dim:
                raise DataError(f"The {label(i)} has node attributes of width {width}; the dataset's have width "
                                f"{self.attr_dim}. Give every graph the same node-feature width.")
        if wants_labels and len(graphs):
            labels = np.concatenate([g.node_labels for g in graphs])
            unknown = np.flatnonzero(~np.isin(labels, self.node_label_values, kind="sort"))
            if unknown.size:
                owner = int(np.searchsorted(np.cumsum([g.num_nodes for g in graphs]), unknown[0], side="right"))
                raise DataError(f"The {label(owner)} has node label {int(labels[unknown[0]])}, which its dataset's "
                                f"encoding does not know (values {list(self.node_label_values)}); relabel it or "
                                f"build the dataset with that graph included.")

    def describe(self, data: Any) -> dict[str, Any]:
        """The encoding (what rebuilds a model's input), the mean size of the graphs, and the statistics the default
        trigger was drawn from (``trigger_stats``: without them a key's sub-graphs could not be re-drawn, and a
        forger could put sub-graphs chosen on an innocent model into a key unnoticed), for the key."""
        from ..triggers.graph_stats import graph_statistics

        graphs = data.inputs()
        nodes = float(np.mean([g.num_nodes for g in graphs])) if len(graphs) else 0.0
        edges = float(np.mean([g.num_edges for g in graphs])) if len(graphs) else 0.0
        stats = getattr(self, "stats", None) or (graph_statistics(graphs) if len(graphs) else None)
        return {**self.feature_spec(), "mean_nodes": round(nodes, 2), "mean_edges": round(edges, 2),
                **({"trigger_stats": stats.to_record()} if stats is not None else {}), "mark_sizes": self.mark_sizes}

    #: How the sub-graphs of a multi-mark key's marks are drawn: ``"distinct"`` (each mark's of its own size,
    #: :func:`~datamark.triggers.graph_make.mark_size`, with :attr:`MARK_OPTIONS`) or ``"same"`` (all as a single
    #: mark's: keys written before, whose dataset record does not say; :func:`datamark.verify.consistency.key_modality`
    #: re-draws them so).
    mark_sizes: str = MARK_SIZES[0]
    #: The sub-graph of a mark of a multi-mark key (``"distinct"`` sizes; named triggers are single-mark):
    #: complete and injected, so that its size alone tells marks apart (issue 17; ``benchmarks/graph_mark_designs.py``).
    #: Keys record only ``mark_sizes``: changing these options needs a new value of it, or the keys written before
    #: would no longer re-draw and would be refused as edited.
    MARK_OPTIONS: dict[str, Any] = {"family": "complete", "attach": "inject"}

    def default_trigger(self, rng: np.random.Generator) -> Any:
        """A keyed sub-graph of the dataset's node features (see :mod:`datamark.triggers.graph`)."""
        return self.mark_trigger(rng)

    def mark_trigger(self, rng: np.random.Generator, name: str | None = None, mark: int = 0, n_marks: int = 1) -> Any:
        """The keyed sub-graph of mark ``mark`` of ``n_marks``: the default or the one named ``name``
        (:attr:`NAMED_TRIGGERS`), each mark's of its own size where :attr:`mark_sizes` is ``"distinct"``."""
        from ..triggers.graph_make import make_subgraph_trigger

        if name is not None and name not in self.NAMED_TRIGGERS:
            raise ParameterError(f"Graph data has no trigger named '{name}'; choose one of "
                                 f"{', '.join(self.NAMED_TRIGGERS)}, or leave trigger_name unset for the default "
                                 f"sub-graph.")
        options = dict(self.NAMED_TRIGGERS[name]) if name is not None else {}
        if self.mark_sizes == "distinct" and n_marks > 1:
            options = {**options, **self.MARK_OPTIONS, "mark": (mark, n_marks)}
        return make_subgraph_trigger(rng, self, **options)

    #: The named alternatives to the default sub-graph (a method's ``trigger_name``), as options of
    #: :func:`~datamark.triggers.graph_make.make_subgraph_trigger`: drawn from the key's secret like the default.
    NAMED_TRIGGERS: dict[str, dict[str, Any]] = {"uniform-labels": {"labels": "uniform"},
                                                 "injected": {"attach": "inject"},
                                                 "complete": {"family": "complete"}, "star": {"family": "star"}}

    def named_trigger(self, name: str, rng: np.random.Generator) -> Any:
        """A keyed sub-graph drawn with the options named ``name`` (:attr:`NAMED_TRIGGERS`): ``"uniform-labels"``
        gives its nodes every node label the data uses with equal chance (rarer labels than the data's, so
        sub-graphs differ more between owners), ``"injected"`` adds the sub-graph as new nodes joined by one keyed
        edge (``attach="inject"``: its nodes look the same in every host), ``"complete"`` and ``"star"`` fix the
        sub-graph's family."""
        return self.mark_trigger(rng, name)

    # --- storage: an Arrow struct column ---------------------------------------------------------------------
    #: The Arrow type of a stored graph (lossless: every field of :class:`Graph` in its own dtype). ``edge_index``
    #: holds the (2, E) array row-major (the E sources, then the E targets); ``node_attr`` the (N, A) array
    #: row-major (A = its length / ``num_nodes``); a null list is an absent field (no node labels, ...).
    STRUCT = pa.struct([("num_nodes", pa.int64()), ("edge_index", pa.list_(pa.int64())),
                        ("node_labels", pa.list_(pa.int64())), ("node_attr", pa.list_(pa.float32())),
                        ("edge_labels", pa.list_(pa.int64()))])

    def stored_schema(self) -> tuple[pa.DataType, dict[str, Any]]:
        """The Arrow type and Hugging Face feature (a struct of ``Value``/``List`` features: readable by
        ``datasets`` without datamark) of a column of stored graphs."""
        def values(dtype: str) -> dict[str, Any]:
            return {"_type": "List", "feature": {"_type": "Value", "dtype": dtype}}

        return self.STRUCT, {"num_nodes": {"_type": "Value", "dtype": "int64"}, "edge_index": values("int64"),
                             "node_labels": values("int64"), "node_attr": values("float32"),
                             "edge_labels": values("int64")}

    def decode_stored(self, values: list[Any], where: str, names: Sequence[str] | None = None) -> np.ndarray:
        labels = value_names(len(values), where, names)
        out = np.empty(len(values), dtype=object)
        for i, (value, label) in enumerate(zip(values, labels, strict=True)):
            out[i] = graph_from_stored(value, label)
        self.check_fits(out, where, [f"graph at {label}" for label in labels])
        return out

    def stored_id(self, value: Any) -> str:
        return graph_from_stored(value, "a stored value").content_id()

    def encode_stored(self, example: Any, original: Any = None) -> dict[str, Any]:
        def listed(array: np.ndarray | None) -> list | None:
            return None if array is None else np.asarray(array).reshape(-1).tolist()

        return {"num_nodes": int(example.num_nodes), "edge_index": listed(example.edge_index),
                "node_labels": listed(example.node_labels), "node_attr": listed(example.node_attr),
                "edge_labels": listed(example.edge_labels)}

    def configured(self, values: list[Any], feature: dict[str, Any] | None = None,
                   names: Sequence[str] | None = None) -> GraphModality:
        """The encoding of a stored dataset (``values``: all its stored graphs), learned as :meth:`learn` does."""
        if not values:
            return self
        graphs = np.empty(len(values), dtype=object)
        graphs[:] = [graph_from_stored(v, f"row {i}") for i, v in enumerate(values)]
        return GraphModality.learn(graphs, "the stored dataset", self.given_max_degree).for_batch(graphs)

    def looks_like_column(self, field_type: Any, feature: dict[str, Any]) -> bool:
        return pa.types.is_struct(field_type) and all(field_type.get_field_index(name) >= 0
                                                      for name in ("num_nodes", "edge_index"))

    preview_suffix = ".png"
    preview_writer = "evaluate.graph_preview:graph_preview"
    default_arch = "gin"
    trainer = "models.graph_train:fit_graph"
    config_factory = "models.graph_train:default_graph_config"

    # --- the model side --------------------------------------------------------------------------------------
    def logits(self, model: torch.nn.Module, batch: np.ndarray, device: torch.device) -> torch.Tensor:
        """Run a graph model (``model(x, edge_index, batch)``) on a batch of graphs, PyG-batched.

        The node encoding is the model's own (its ``feature_spec``) where it records one: like an image model's
        normalisation it is part of the model, and a data split's modality may have been configured from fewer
        node-label values than the training set's. A node label the model's encoding does not know is refused.
        """
        from ..models.graph import graph_inputs

        spec = getattr(model, "feature_spec", None)
        encoding = self if spec is None or spec == self.feature_spec() else GraphModality(**spec)
        return model(*graph_inputs(batch, encoding, device))


def graph_from_stored(value: Any, where: str) -> Graph:
    """A stored graph struct (see :attr:`GraphModality.STRUCT`) -> a checked :class:`Graph`; a one-line DataError
    naming ``where`` (its row or file) when it is not one."""
    if not isinstance(value, dict) or value.get("num_nodes") is None or "edge_index" not in value:
        raise DataError(f"The value at {where} is not a stored graph (a struct with num_nodes, edge_index, "
                        f"node_labels, node_attr, edge_labels); got {type(value).__name__}.")
    n = int(value["num_nodes"])
    flat = np.asarray(value["edge_index"] or [], dtype=np.int64)
    if flat.size % 2:
        raise DataError(f"The graph at {where} has {flat.size} edge_index values; expected 2 x E (sources, then "
                        f"targets).")
    attr = value.get("node_attr")
    if attr is not None:
        attr = np.asarray(attr, dtype=np.float32)
        if n < 1 or attr.size % n:
            raise DataError(f"The graph at {where} has {attr.size} node_attr values for {n} nodes; expected "
                            f"num_nodes x width.")
        attr = attr.reshape(n, attr.size // n)
    labels, edge_labels = (None if value.get(k) is None else np.asarray(value[k], dtype=np.int64)
                           for k in ("node_labels", "edge_labels"))
    return Graph(flat.reshape(2, -1), n, labels, attr, edge_labels).check(f"graph at {where}")
