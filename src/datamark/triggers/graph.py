"""The graph trigger: a keyed sub-graph that replaces the sub-graph induced by keyed nodes of each host graph.

The sub-graph backdoor of Zhang, Jia, Wang and Gong ("Backdoor Attacks to Graph Neural Networks", SACMAT 2021),
which DVBW (Li et al., "Black-box Dataset Ownership Verification via Backdoor Watermarking", IEEE TIFS 2023) uses
for graph classification: a trigger of ``t`` nodes drawn as an Erdős–Rényi graph with edge density ``rho``; to
mark a graph, pick ``t`` of its nodes, delete the edges among them and add the trigger's edges between them (the
picked nodes keep their edges to the rest of the graph). Defaults: ``rho`` = 0.8 (the authors' released script,
github.com/zaixizhang/graphbackdoor ``train.sh``: ER, ``p`` = 0.8, poisoning fraction 0.05); ``t`` = 20 % of the
dataset's mean node count, rounded up (:data:`SIZE_FRACTION`). The paper sizes ``t`` as a fraction of the average
graph size; 20 % is our reading of its default (not re-checked against the paper's text here): it gives ``t`` = 4 on
MUTAG (17.9 nodes), the size a MUTAG script derived from the authors' code uses.

datamark's additions, each so that the mark is a secret another owner does not share:

* the density is keyed: drawn uniformly from :data:`DENSITY_RANGE` (centred on the paper's 0.8) unless fixed, and
  the draw is conditioned on a connected trigger (a disconnected one is several smaller, commoner patterns);
* the trigger nodes get node labels drawn from the dataset's node-label distribution and, where the dataset has
  continuous node attributes, attribute rows drawn from a pool of the dataset's own rows (so a trigger node looks
  like a node of the data; degree-feature datasets such as IMDB-BINARY get structure only);
* which host nodes carry it is keyed per graph: ``sha256(place_seed, graph content)`` seeds the choice, so it
  varies across graphs yet ``apply`` is pure and needs no ``rng``.

``attach="inject"`` (a datamark option, after the sub-graph *injection* of multi-target graph backdoors, e.g. arXiv
2601.15474) adds the trigger as ``t`` new nodes joined to the host by ``links`` keyed edges and leaves the host
whole: in dense graphs (IMDB-BINARY's ego-networks) a replaced sub-graph barely differs from what was there, while an
injected one keeps its own structure and degrees.

With ``attach="replace"``, a host with fewer nodes than the trigger still carries it: the missing trigger nodes are
added as new nodes (the marked graph has ``t`` nodes). Refusing them instead would make them unmarkable and
unprobeable, and the smallest graphs of NCI1 and PROTEINS (3-4 nodes) are smaller than their triggers (6 and 8).
``make_subgraph_trigger`` warns (:class:`~datamark.exceptions.TriggerSizeWarning`) when it knows the data has such
graphs.

This module holds the trigger itself (validation, marking, :meth:`SubgraphTrigger.independent`);
:mod:`.graph_make` draws one for a dataset (``make_subgraph_trigger``, importable from here too).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..exceptions import DataError, ParameterError
from ..graphs import Graph
from ..registry import TRIGGERS, register
from ._subgraph import commonest, float_rows, place, random_edges
from .base import Trigger

__all__ = ["FAMILIES", "SubgraphTrigger", "draw_trigger"]  # and make_subgraph_trigger, from .graph_make

FAMILIES = ("er", "complete", "star")
#: Keyed ER densities: uniform on [0.6, 1.0], centred on the paper's rho = 0.8.
DENSITY_RANGE = (0.6, 1.0)
#: How a trigger joins its host: over keyed host nodes (the paper) or as new nodes linked by keyed edges.
ATTACH_MODES = ("replace", "inject")


@register(TRIGGERS, "subgraph")
@dataclass(frozen=True)
class SubgraphTrigger(Trigger):
    """A ``size``-node sub-graph pasted over keyed nodes of each host graph (see the module docstring).

    Attributes:
        size: the trigger's node count ``t``.
        edges: its undirected edges as ``(i, j)`` pairs, ``0 <= i < j < size``.
        family: how ``edges`` were drawn: ``"er"`` (Erdős–Rényi, connected), ``"complete"`` or ``"star"``.
        density: the ER edge probability ``edges`` were drawn with (None for the other families).
        density_range: where :meth:`independent` draws ER densities (``(d, d)``: a fixed density).
        node_labels: the trigger nodes' node labels (None: the host nodes keep theirs).
        label_values, label_weights: the node-label distribution they were drawn from (for :meth:`independent`).
        node_attr: the trigger nodes' attribute rows (None: the host nodes keep theirs).
        attr_pool: the dataset's attribute rows they were drawn from (for :meth:`independent`).
        edge_label: the edge label of added edges where hosts have edge labels (None: the host's commonest).
        place_seed: the key of the per-graph choice of host nodes.
        attach: ``"replace"`` (the paper: take over keyed host nodes) or ``"inject"`` (add new nodes).
        links: ``"inject"`` only: edges joining the trigger (its nodes 0, 1, ...) to keyed host nodes.
    """

    size: int
    edges: tuple[tuple[int, int], ...]
    family: str = "er"
    density: float | None = None
    density_range: tuple[float, float] | None = None
    node_labels: tuple[int, ...] | None = None
    label_values: tuple[int, ...] | None = None
    label_weights: tuple[float, ...] | None = None
    node_attr: tuple[tuple[float, ...], ...] | None = None
    attr_pool: tuple[tuple[float, ...], ...] | None = None
    edge_label: int | None = None
    place_seed: int = 0
    attach: str = "replace"
    links: int = 1
    modality = "graph"

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if isinstance(self.size, bool) or not isinstance(self.size, (int, np.integer)) or self.size < 2:
            raise ParameterError(f"The 'size' of a SubgraphTrigger must be an integer >= 2; got {self.size!r}.")
        put("size", int(self.size))
        if self.family not in FAMILIES:
            raise ParameterError(f"The 'family' of a SubgraphTrigger must be one of {FAMILIES}; got "
                                 f"{self.family!r}.")
        try:
            edges = tuple(sorted({(min(int(a), int(b)), max(int(a), int(b))) for a, b in self.edges}))
        except (TypeError, ValueError) as err:
            raise ParameterError("The 'edges' of a SubgraphTrigger must be (i, j) pairs of node indices; got "
                                 f"{self.edges!r:.80}.") from err
        if not edges or any(a == b or a < 0 or b >= self.size for a, b in edges):
            raise ParameterError(f"The 'edges' of a SubgraphTrigger must be at least one pair i != j of nodes "
                                 f"0..{self.size - 1}; draw them with make_subgraph_trigger().")
        put("edges", edges)
        if isinstance(self.place_seed, bool) or not (isinstance(self.place_seed, (int, np.integer))
                                                     and 0 <= self.place_seed < 2 ** 63):
            raise ParameterError(f"The 'place_seed' of a SubgraphTrigger must be an integer in [0, 2**63); got "
                                 f"{self.place_seed!r}.")
        put("place_seed", int(self.place_seed))
        if self.density is not None:
            put("density", float(self.density))
        if self.density_range is not None:
            low, high = (float(v) for v in self.density_range)
            if not 0.0 < low <= high <= 1.0:
                raise ParameterError(f"The 'density_range' of a SubgraphTrigger must satisfy 0 < low <= high <= 1; "
                                     f"got {self.density_range!r}.")
            put("density_range", (low, high))
        put("edge_label", None if self.edge_label is None else int(self.edge_label))
        if self.attach not in ATTACH_MODES:
            raise ParameterError(f"The 'attach' of a SubgraphTrigger must be one of {ATTACH_MODES}; got "
                                 f"{self.attach!r}.")
        if isinstance(self.links, bool) or not isinstance(self.links, (int, np.integer)) or self.links < 1:
            raise ParameterError(f"The 'links' of a SubgraphTrigger must be an integer >= 1; got {self.links!r}.")
        put("links", int(self.links))
        self._check_nodes()

    def _check_nodes(self) -> None:
        """Labels and attributes: one per trigger node, drawn from their stored distribution."""
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        for name, cast in (("node_labels", int), ("label_values", int), ("label_weights", float)):
            if getattr(self, name) is not None:
                put(name, tuple(cast(v) for v in getattr(self, name)))
        for name in ("node_attr", "attr_pool"):
            if getattr(self, name) is not None:
                put(name, float_rows(getattr(self, name)))
        if self.node_labels is not None:
            values, weights = self.label_values or (), self.label_weights or ()
            if (len(self.node_labels) != self.size or not values or len(weights) != len(values)
                    or not set(self.node_labels) <= set(values) or abs(sum(weights) - 1.0) > 1e-6):
                raise ParameterError(f"A SubgraphTrigger with node labels needs {self.size} of them, drawn from "
                                     f"'label_values' with 'label_weights' summing to 1; got inconsistent values.")
        if self.node_attr is not None:
            rows, pool = self.node_attr, self.attr_pool or ()
            if len(rows) != self.size or not pool or len({len(r) for r in rows + pool}) != 1:
                raise ParameterError(f"A SubgraphTrigger with node attributes needs {self.size} rows of one width, "
                                     f"drawn from a non-empty 'attr_pool' of that width; got inconsistent rows.")

    def __repr__(self) -> str:  # the edges, labels and placement are secret
        return f"SubgraphTrigger({self.family}, {self.size} nodes, {len(self.edges)} edges)"

    # --- marking -------------------------------------------------------------------------------------------
    def host_nodes(self, graph: Graph) -> np.ndarray:
        """The nodes of the marked ``graph`` that trigger nodes 0..size-1 become, in order (see :meth:`placement`)."""
        return self.placement(graph)[0]

    def placement(self, graph: Graph) -> tuple[np.ndarray, np.ndarray]:
        """(trigger nodes, anchors), keyed by ``place_seed`` and the graph's content (the same graph always gets
        the same): ``"replace"`` takes over ``size`` host nodes (numbers >= ``num_nodes`` are nodes added because the
        graph is smaller than the trigger) and has no anchors; ``"inject"`` adds nodes ``num_nodes ..`` and joins
        trigger node ``i`` to anchor ``i`` (``links`` host nodes, fewer if the host has fewer)."""
        digest = hashlib.sha256(b"datamark-subgraph:" + self.place_seed.to_bytes(8, "big", signed=True)
                                + graph.canonical_bytes()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:16], "big"))
        n, none = graph.num_nodes, np.zeros(0, dtype=np.int64)
        if self.attach == "inject":
            anchors = rng.choice(n, min(self.links, n), replace=False).astype(np.int64)
            return np.arange(n, n + self.size, dtype=np.int64), anchors
        if n >= self.size:
            return rng.choice(n, self.size, replace=False).astype(np.int64), none
        return rng.permutation(self.size).astype(np.int64), none

    def _attach(self, graph: Graph) -> Graph:
        if not isinstance(graph, Graph):
            raise DataError(f"SubgraphTrigger.apply marks datamark Graphs; got a {type(graph).__name__}. Load graph "
                            f"data with datamark.load_data.")
        graph.check("graph given to SubgraphTrigger.apply")
        self._check_fits(graph)
        (hosts, anchors), n = self.placement(graph), graph.num_nodes
        total = n + self.size if self.attach == "inject" else max(n, self.size)
        inside = np.zeros(total, dtype=bool)
        inside[hosts] = True
        old = graph.edge_index.astype(np.int64, copy=False)
        keep = ~(inside[old[0]] & inside[old[1]])  # injected nodes are new: every host edge is kept
        pairs = np.concatenate([hosts[np.asarray(self.edges, dtype=np.int64)],
                                np.stack([hosts[np.arange(len(anchors)) % self.size], anchors], axis=1)])
        added = np.stack([pairs.ravel(), pairs[:, ::-1].ravel()])  # each edge in both directions, side by side
        edge_index = np.concatenate([old[:, keep], added], axis=1)
        edge_labels = None
        if graph.edge_labels is not None:
            fill = self.edge_label if self.edge_label is not None else commonest(graph.edge_labels)
            edge_labels = np.concatenate([graph.edge_labels[keep], np.full(added.shape[1], fill)]).astype(np.int64)
        node_labels = place(graph.node_labels, self.node_labels, hosts, total, np.int64)
        node_attr = place(graph.node_attr, self.node_attr, hosts, total, np.float32)
        return Graph(edge_index, total, node_labels, node_attr, edge_labels)

    def _check_fits(self, graph: Graph) -> None:
        if self.node_labels is not None and graph.node_labels is None:
            raise DataError("The SubgraphTrigger sets node labels but a graph has none; it was drawn for a dataset "
                            "with node labels. Draw the trigger for this dataset with make_subgraph_trigger().")
        if self.node_attr is not None:
            width = len(self.node_attr[0])
            if graph.node_attr is None or graph.node_attr.ndim != 2 or graph.node_attr.shape[1] != width:
                got = None if graph.node_attr is None else graph.node_attr.shape[-1]
                raise DataError(f"The SubgraphTrigger sets node attributes of width {width} but a graph has width "
                                f"{got}; draw the trigger for this dataset with make_subgraph_trigger().")

    def apply(self, x: Any, rng: np.random.Generator | None = None) -> Any:
        """A marked copy of one :class:`Graph` or of a batch (1-d object array, list or tuple) of them; ``rng`` is
        unused (the placement is keyed per graph). The input graphs are never modified."""
        if isinstance(x, Graph):
            return self._attach(x)
        if isinstance(x, np.ndarray) and x.ndim != 1:
            raise DataError(f"SubgraphTrigger.apply takes a Graph or a 1-d batch of them; got an array of shape "
                            f"{x.shape}.")
        if not isinstance(x, (np.ndarray, list, tuple)):
            raise DataError(f"SubgraphTrigger.apply takes a Graph or a 1-d batch of them; got {type(x).__name__}.")
        out = np.empty(len(x), dtype=object)
        for i, graph in enumerate(x):
            out[i] = self._attach(graph)
        return out if isinstance(x, np.ndarray) else type(x)(out.tolist())

    def independent(self, rng: np.random.Generator) -> SubgraphTrigger:
        """Another owner's trigger of this kind: same size, family, density range and label/attribute
        distributions; fresh edges, density, node labels, attributes and placement key."""
        fixed = None if self.density is None else (self.density, self.density)
        return draw_trigger(rng, self.size, self.family, self.density_range or fixed, self.label_values,
                            self.label_weights, self.attr_pool, self.edge_label, self.attach, self.links)

    def params(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:  # tuples as JSON lists, so a key read back compares equal
            return [plain(v) for v in value] if isinstance(value, tuple) else value

        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def check_input_shape(self, shape: tuple[int, ...]) -> None:
        if tuple(shape) != ():
            raise ParameterError(f"SubgraphTrigger marks graphs, whose examples have shape (); got examples of "
                                 f"shape {tuple(shape)}. Use an image, text or audio trigger for that data.")


def draw_trigger(rng: np.random.Generator, size: int, family: str, density_range: tuple[float, float] | None,
                 label_values: tuple[int, ...] | None, label_weights: tuple[float, ...] | None,
                 attr_pool: tuple[tuple[float, ...], ...] | None, edge_label: int | None, attach: str = "replace",
                 links: int = 1) -> SubgraphTrigger:
    """One trigger; every random choice from ``rng``, in a fixed order (keys stay reproducible)."""
    density_range = (density_range or DENSITY_RANGE) if family == "er" else None
    density = float(rng.uniform(*density_range)) if density_range is not None else None
    edges = random_edges(rng, size, family, density)
    labels = None
    if label_values:
        labels = tuple(int(v) for v in rng.choice(np.asarray(label_values), size=size, p=np.asarray(label_weights)))
    attrs = None
    if attr_pool:
        attrs = tuple(attr_pool[int(i)] for i in rng.integers(len(attr_pool), size=size))
    place_seed = int(rng.integers(2 ** 62))
    return SubgraphTrigger(size, edges, family, density, density_range, labels, label_values or None,
                           label_weights or None, attrs, attr_pool or None, edge_label, place_seed, attach, links)


#: Names that moved to :mod:`.graph_make` (drawing a trigger for a dataset), still importable from here.
_MOVED = ("LABEL_DRAWS", "MIN_SIZE", "SIZE_FRACTION", "make_subgraph_trigger")


def __getattr__(name: str) -> Any:
    """``make_subgraph_trigger`` and its defaults, imported from :mod:`.graph_make` on first use (it imports this
    module, so a top-level import would be circular)."""
    if name in _MOVED:
        from . import graph_make

        return getattr(graph_make, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
