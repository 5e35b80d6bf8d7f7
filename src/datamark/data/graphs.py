"""In-memory graph datasets: datamark :class:`~datamark.graphs.Graph` objects, PyG datasets (items with
``edge_index``, ``x``, ``y``) and sequences of ``(edge_index, node_features, label)`` triples.

Node features (PyG's ``x`` or ``node_features``: float N x F, or None) become node *labels* when every row of every
graph is exactly one-hot (PyG's encoding of TU node labels; the label is the column, the values 0..F-1), else
continuous node *attributes* (all F columns; PyG's ``use_node_attr=True`` puts attributes first, so those are
attributes). Graphs without features get degree features from the modality. A PyG ``edge_attr`` that is exactly
one-hot becomes edge labels; other edge features are ignored (logged). Edge lists may be directed: missing reverse
edges are added with one :class:`~datamark.exceptions.GraphFormatWarning` per dataset saying how many; duplicates are
coalesced. Refused with a one-line DataError naming the graph: no nodes, an edge index out of range, a self-loop, a
node-feature width that differs from the first graph's. Labels are kept when they are non-negative integers (class
names "0".."C-1" unless given), else mapped to 0..C-1 in sorted order with the values as class names (as TU does).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..exceptions import DataError, GraphFormatWarning
from ..graphs import Graph
from ..modalities import GraphModality
from .arrays import ArrayRecords
from .tu import coalesce

log = logging.getLogger(__name__)


def from_graphs(graphs: Sequence[Graph], labels: Sequence[int] | np.ndarray, *,
                class_names: Sequence[str] | None = None, modality: GraphModality | None = None,
                where: str = "(list of graphs)") -> ArrayRecords:
    """Wrap datamark Graphs and integer labels; the node encoding is learned from the graphs unless given."""
    graphs = list(graphs)
    for i, graph in enumerate(graphs):
        if not isinstance(graph, Graph):
            raise DataError(f"Item {i} of {where} is a {type(graph).__name__}, not a datamark Graph; use "
                            f"from_edge_lists or from_pyg for other graph objects.")
        graph.check(f"graph {i} of {where}")
    modality = modality or GraphModality.learn(graphs, where)
    return ArrayRecords(graphs, labels, class_names, where=where, modality=modality)


def looks_like_graphs(obj: Any) -> bool:
    """Whether ``obj`` is a non-empty sequence of PyG graphs (items with ``edge_index``), ``(Graph, label)`` pairs
    or ``(edge_index, node_features, label)`` triples."""
    if isinstance(obj, (str, bytes, dict, np.ndarray)) or not (hasattr(type(obj), "__len__")
                                                               and hasattr(type(obj), "__getitem__")):
        return False
    if not len(obj):
        return False
    first = obj[0]
    if hasattr(first, "edge_index"):
        return True
    if isinstance(first, (tuple, list)) and len(first) == 2:
        return isinstance(first[0], Graph)
    return isinstance(first, (tuple, list)) and len(first) == 3 and np.ndim(first[0]) == 2 \
        and np.shape(first[0])[0] == 2


def from_graph_source(source: Any, *, class_names: Sequence[str] | None = None) -> ArrayRecords:
    """:func:`from_pyg`, :func:`from_edge_lists` or ``(Graph, label)`` pairs, by what ``source[0]`` is."""
    first = source[0]
    if hasattr(first, "edge_index"):
        return from_pyg(source, class_names=class_names)
    if isinstance(first[0], Graph):
        return from_graphs([g for g, _ in source], [_label(y, i, "(graph pairs)") for i, (_, y) in enumerate(source)],
                           class_names=class_names, where="(list of (Graph, label) pairs)")
    return from_edge_lists(source, class_names=class_names)


def from_pyg(dataset: Any, *, class_names: Sequence[str] | None = None) -> ArrayRecords:
    """Read a PyG dataset (or list of ``Data``): ``edge_index``, ``x`` (or None), ``y``, ``num_nodes`` and a one-hot
    ``edge_attr`` per graph (see the module docstring)."""
    where = f"({type(dataset).__name__} of {len(dataset)} graphs)"
    items = []
    for i in range(len(dataset)):
        data = dataset[i]
        edge_attr = getattr(data, "edge_attr", None)
        items.append((data.edge_index, getattr(data, "x", None), data.y, getattr(data, "num_nodes", None),
                      None if edge_attr is None else _numpy(edge_attr)))
    edge_onehot = all(e is not None and e.ndim == 2 and _one_hot(e) for *_, e in items)
    if any(e is not None for *_, e in items) and not edge_onehot:
        log.info("%s: edge features that are not one-hot edge labels are ignored", where)
    return _build([(e, x, y, n, np.argmax(a, axis=1) if edge_onehot else None) for e, x, y, n, a in items],
                  where, class_names)


def from_edge_lists(items: Sequence[Any], *, class_names: Sequence[str] | None = None,
                    where: str = "(list of edge lists)") -> ArrayRecords:
    """Read ``(edge_index, node_features, label)`` triples: ``edge_index`` an integer (2, E) array (directed or
    not), ``node_features`` a float (N, F) array or None (then N is the largest node id + 1), ``label`` an int."""
    triples = []
    for i, item in enumerate(items):
        if not isinstance(item, (tuple, list)) or len(item) != 3:
            raise DataError(f"Item {i} of {where} is not an (edge_index, node_features, label) triple; got "
                            f"{type(item).__name__}.")
        triples.append((item[0], item[1], item[2], None, None))
    return _build(triples, where, class_names)


def _build(items: list[tuple], where: str, class_names: Sequence[str] | None) -> ArrayRecords:
    """Graphs from ``(edge_index, features, label, num_nodes or None, edge_labels or None)`` items."""
    if not items:
        raise DataError(f"The graph dataset {where} holds no graphs.")
    parts, added, width = [], 0, None
    for i, (edge_index, features, _, num_nodes, edge_labels) in enumerate(items):
        name = f"graph {i} of {where}"
        edges = _numpy(edge_index)
        if edges.ndim != 2 or edges.shape[0] != 2 or (edges.size and edges.dtype.kind not in "iu"):
            raise DataError(f"The {name} has an edge_index of shape {edges.shape} ({edges.dtype}); expected integers "
                            f"of shape (2, E).")
        edges = edges.astype(np.int64)
        x = None if features is None else _numpy(features).astype(np.float32)
        if x is not None and x.ndim != 2:
            raise DataError(f"The {name} has node features of shape {x.shape}; expected (num_nodes, F).")
        own = None if x is None else x.shape[1]
        if i and own != width:
            raise DataError(f"The {name} has node features of width {own}; the dataset's (graph 0) have width "
                            f"{width}. Give every graph the same node-feature width.")
        width = own
        n = len(x) if x is not None else int(num_nodes) if num_nodes is not None else \
            int(edges.max()) + 1 if edges.size else 0
        if n < 1:
            raise DataError(f"The {name} has no nodes; drop empty graphs first.")
        if edges.size and (edges.min() < 0 or edges.max() >= n):
            bad = int(edges.max() if edges.max() >= n else edges.min())
            raise DataError(f"The {name} has an edge to node {bad} but only nodes 0..{n - 1}; fix its edge_index.")
        if edges.size and np.any(edges[0] == edges[1]):
            raise DataError(f"The {name} has self-loops; remove them (datamark graphs have none).")
        labels = None if edge_labels is None else np.asarray(edge_labels, dtype=np.int64)
        src, dst, labels = coalesce(edges.T, n, labels, name, warn=False)
        added += len(src) - len(np.unique(edges[0] * n + edges[1]))
        parts.append((np.stack([src, dst]), n, x, labels))
    if added:
        warnings.warn(f"{added} edge(s) of {where} were listed in one direction only; added their reverse (graphs "
                      f"are read as undirected).", GraphFormatWarning, stacklevel=3)
    xs = [x for _, _, x, _ in parts if x is not None]
    onehot = bool(xs) and _one_hot(np.concatenate(xs))
    graphs = [Graph(e, n, None if x is None or not onehot else np.argmax(x, axis=1).astype(np.int64),
                    None if x is None or onehot else x, labels) for e, n, x, labels in parts]
    modality = GraphModality(tuple(range(width)) if onehot else None, 0 if onehot or width is None else width)
    labels = np.array([_label(item[2], i, where) for i, item in enumerate(items)], dtype=np.int64)
    if labels.min() < 0:
        values, labels = np.unique(labels, return_inverse=True)
        class_names = class_names or [str(v) for v in values.tolist()]
    return ArrayRecords(graphs, labels, class_names, where=where, modality=modality)


def _numpy(value: Any) -> np.ndarray:
    """A numpy copy of an array or a (CPU) torch tensor."""
    detach = getattr(value, "detach", None)
    return np.asarray(detach().cpu().numpy() if callable(detach) else value)


def _one_hot(x: np.ndarray) -> bool:
    return bool(x.size) and bool(np.all((x == 0) | (x == 1))) and bool(np.all(x.sum(axis=1) == 1))


def _label(value: Any, i: int, where: str) -> int:
    array = _numpy(value).reshape(-1)
    if array.size != 1 or array.dtype.kind not in "iub" and not float(array[0]).is_integer():
        raise DataError(f"The label of graph {i} of {where} is {value!r}; expected one integer class.")
    return int(array[0])
