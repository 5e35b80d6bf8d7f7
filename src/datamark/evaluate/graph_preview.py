"""What a graph watermark did to released graphs, as one PNG: each marked graph drawn with what differs from its
original highlighted -- the trigger's nodes and edges in red, host edges the trigger replaced as dashed grey lines.

Layouts are networkx spring layouts with a fixed seed over the union of both graphs' edges, so the picture is
reproducible and a removed edge is drawn where it was.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from .._io import check_output
from ..exceptions import DataError, ParameterError
from ..graphs import Graph
from .plots import _figure, _save

__all__ = ["graph_changes", "graph_preview"]

_MAX_PANELS = 8
_COLUMNS = 4
_LAYOUT_SEED = 0
_INSTALL_HINT = 'Drawing graphs needs networkx: pip install "datamark[graph]" (or pip install networkx).'


def _edge_set(graph: Graph) -> set[tuple[int, int]]:
    e = graph.edge_index
    return {(int(min(a, b)), int(max(a, b))) for a, b in zip(e[0], e[1], strict=True)}


def _rows_differ(before: np.ndarray | None, after: np.ndarray | None, n: int) -> np.ndarray:
    if before is None or after is None:
        return np.zeros(n, dtype=bool)
    a, b = np.asarray(before), np.asarray(after)[:len(before)]
    return (a != b).reshape(len(a), -1).any(axis=1)


def graph_changes(original: Graph, marked: Graph) -> tuple[set[int], set[tuple[int, int]], set[tuple[int, int]]]:
    """(changed nodes, added edges, removed edges) of ``marked`` against ``original``: a node changed if it is
    new, touches an added or removed edge, or has a new label or attribute row. Edges as (low, high) pairs."""
    before, after = _edge_set(original), _edge_set(marked)
    added, removed = after - before, before - after
    nodes = {i for edge in added | removed for i in edge} | set(range(original.num_nodes, marked.num_nodes))
    n = min(original.num_nodes, marked.num_nodes)
    for old, new in ((original.node_labels, marked.node_labels), (original.node_attr, marked.node_attr)):
        nodes |= {int(i) for i in np.flatnonzero(_rows_differ(None if old is None else old[:n], new, n))}
    return nodes, added, removed


def _draw(ax, nx, original: Graph, marked: Graph) -> str:
    """One panel; returns its caption (what changed)."""
    nodes, added, removed = graph_changes(original, marked)
    # every marked edge between two changed nodes is the trigger's (the host's edges among them were removed)
    trigger = {e for e in _edge_set(marked) if e[0] in nodes and e[1] in nodes}
    kept = _edge_set(marked) - trigger
    g = nx.Graph()
    g.add_nodes_from(range(marked.num_nodes))
    g.add_edges_from(kept | trigger | removed)
    pos = nx.spring_layout(g, seed=_LAYOUT_SEED)
    others = [i for i in range(marked.num_nodes) if i not in nodes]
    nx.draw_networkx_edges(g, pos, edgelist=sorted(kept), ax=ax, edge_color="0.6", width=0.8)
    nx.draw_networkx_edges(g, pos, edgelist=sorted(removed), ax=ax, edge_color="0.6", width=0.8, style="dashed",
                           alpha=0.7)
    nx.draw_networkx_edges(g, pos, edgelist=sorted(trigger), ax=ax, edge_color="tab:red", width=2.0)
    nx.draw_networkx_nodes(g, pos, nodelist=others, ax=ax, node_size=30, node_color="tab:blue")
    nx.draw_networkx_nodes(g, pos, nodelist=sorted(nodes), ax=ax, node_size=60, node_color="tab:red")
    ax.set_axis_off()
    new_nodes = marked.num_nodes - original.num_nodes
    return (f"{len(nodes)} nodes, +{len(added)}/-{len(removed)} edges"
            + (f" ({new_nodes} new nodes)" if new_nodes > 0 else ""))


def graph_preview(originals: Sequence[Graph] | np.ndarray, marked: Sequence[Graph] | np.ndarray,
                  path: str | os.PathLike, *, titles: Sequence[str] = (), overwrite: bool = False) -> None:
    """Write a PNG grid of marked graphs (the first eight) with their changes highlighted (module docstring).

    ``titles`` go above the panels, followed by a count of what changed. The file is written atomically and an
    existing one is kept unless ``overwrite`` (else :class:`~datamark.exceptions.OutputExistsError`)."""
    originals, marked = list(originals), list(marked)
    if len(originals) != len(marked):
        raise ParameterError(f"graph_preview needs as many marked graphs as originals; got {len(marked)} and "
                             f"{len(originals)}. Pass the same rows of both datasets.")
    if not originals:
        raise DataError("graph_preview got no graphs to draw; pass at least one marked graph and its original.")
    for i, graph in enumerate(originals + marked):
        if not isinstance(graph, Graph):
            raise DataError(f"graph_preview draws datamark Graphs; item {i % len(marked)} is a "
                            f"{type(graph).__name__}.")
    check_output(path, overwrite=overwrite, what="picture")  # refuse before drawing, not after
    try:
        import networkx as nx
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    count = min(len(marked), _MAX_PANELS)
    cols = min(count, _COLUMNS)
    rows = -(-count // cols)
    fig, axes = _figure(rows, cols, 2.6)
    fig.set_layout_engine("constrained")  # the title above the panels' titles, without overlaps
    for k in range(rows * cols):
        ax = axes[k // cols][k % cols]
        if k >= count:
            ax.set_axis_off()
            continue
        caption = _draw(ax, nx, originals[k], marked[k])
        title = str(titles[k]) if k < len(titles) else f"graph {k}"
        ax.set_title(f"{title}\n{caption}", fontsize=8)
    fig.suptitle("trigger in red; replaced host edges dashed" + (f" (first {count} of {len(marked)})"
                                                                 if len(marked) > count else ""), fontsize=9)
    _save(fig, path, overwrite)
