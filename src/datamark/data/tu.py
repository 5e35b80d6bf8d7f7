"""TU-format graph datasets (the TU Dortmund collection's text files) in, as :class:`TURecords`.

A TU folder holds ``NAME_A.txt`` (one ``src, dst`` edge per line, node ids 1-based and global), ``NAME_graph_
indicator.txt`` (the graph id of each node, 1-based, sorted), ``NAME_graph_labels.txt`` (one integer class per
graph) and optionally ``NAME_node_labels.txt`` (one integer per node), ``NAME_node_attributes.txt`` (a float vector
per node) and ``NAME_edge_labels.txt`` (one integer per line of ``_A``). Values are separated by ``", "`` or
``","``. PyG's layout ``ROOT/NAME/raw/NAME_*.txt`` is read the same way (pass ``ROOT/NAME``).

Reading is vectorised (numpy over whole files). Graph labels are mapped to 0..C-1 in sorted order of the dataset's
own values, which become the class names (``"-1"``, ``"1"`` for MUTAG), as PyG does. Edges listed twice (IMDB-BINARY
lists every directed edge twice) are coalesced; edges listed in one direction only are symmetrised with one
:class:`~datamark.exceptions.GraphFormatWarning` per dataset saying how many were added. Node ids out of range, an
edge joining two graphs, a self-loop, a graph id without nodes (an empty graph) or unsorted graph ids are refused
with a one-line :class:`~datamark.exceptions.DataFormatError` naming the file and line.

The records keep the files' bytes, so a dataset written back (:mod:`.tu_write`) reproduces every unchanged
graph's lines byte for byte; the node encoding is learned from the whole folder, so splits share it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._io import Journal
from ..exceptions import DataFormatError, GraphFormatWarning
from ..graphs import Graph
from ..modalities import GraphModality
from .arrays import ArrayRecords

TU_SUFFIXES = ("A", "graph_indicator", "graph_labels", "node_labels", "node_attributes", "edge_labels")


@dataclass(frozen=True, eq=False)
class TUFile:
    """One TU text file: its bytes (ending in a newline) and the byte offset of each line (plus the end)."""

    path: Path
    data: bytes
    starts: np.ndarray
    newline: bytes
    sep: bytes

    @classmethod
    def read(cls, path: Path) -> TUFile:
        data = path.read_bytes()
        newline = b"\r\n" if b"\r\n" in data[:4096] else b"\n"
        data = data.rstrip(b"\r\n")  # no blank trailing lines; the last line ends like the others
        data = data + newline if data.strip() else b""  # a file of no lines (no edges at all) stays empty
        ends = np.flatnonzero(np.frombuffer(data, np.uint8) == ord("\n")) + 1
        sep = b", " if b", " in data[:ends[0] if len(ends) else 0] else b","
        return cls(path, data, np.concatenate([[0], ends]).astype(np.int64), newline, sep)

    def __len__(self) -> int:
        return len(self.starts) - 1

    def chunk(self, lo: int, hi: int) -> bytes:
        """Lines ``lo``..``hi - 1`` as they are in the file."""
        return self.data[self.starts[lo]:self.starts[hi]]

    def values(self, dtype: type, columns: int | None = None) -> np.ndarray:
        """The file as a (lines, columns) array (comma- and space-separated numbers); a one-line error naming the
        first bad line."""
        text = self.data.replace(b",", b" ").decode("ascii", errors="replace")
        try:
            flat = np.fromstring(text, dtype=dtype, sep=" ")  # C parsing: 3x faster than split() + np.array
        except ValueError:
            flat = None
        if flat is None or (np.dtype(dtype).kind in "iu" and "." in text):
            bad = next(i for i, line in enumerate(text.split("\n")) if not _parses(line, dtype))
            raise DataFormatError(f"Line {bad + 1} of '{self.path}' holds a value that is not "
                                  f"{_kind(dtype)}: {text.split(chr(10))[bad].strip()[:40]!r}; fix the file.")
        if not len(self):
            return flat.reshape(0, columns or 0)
        width = columns or self.data[:self.starts[1]].count(b",") + 1
        if flat.size != width * len(self):
            counts = np.array([line.count(b",") + 1 for line in self.data.split(self.newline)[:-1]])
            bad = int(np.flatnonzero(counts != width)[0]) if np.any(counts != width) else len(self) - 1
            raise DataFormatError(f"Line {bad + 1} of '{self.path}' does not hold {width} {_kind(dtype)} value(s) "
                                  f"like line 1; fix the file.")
        return flat.reshape(len(self), width)


def _kind(dtype: type) -> str:
    return "integer" if np.dtype(dtype).kind in "iu" else "numeric"


def _parses(line: str, dtype: type) -> bool:
    try:
        np.array(line.split(), dtype=dtype if np.dtype(dtype).kind not in "iu" else np.int64)
    except ValueError:
        return False
    return not (np.dtype(dtype).kind in "iu" and "." in line)


@dataclass(frozen=True, eq=False)
class TUSource:
    """A TU folder as read: its files, each graph's node range and ``_A`` line range, and the raw edge lines (kept
    so an unchanged graph is written back byte for byte, IMDB-BINARY's duplicates included)."""

    name: str
    folder: Path
    files: dict[str, TUFile]
    node_ptr: np.ndarray  # graph g holds global nodes node_ptr[g]..node_ptr[g+1]-1
    edge_order: np.ndarray  # _A's line numbers grouped by graph (the identity when the file is grouped already)
    edge_ptr: np.ndarray  # graph g's lines of _A are edge_order[edge_ptr[g]:edge_ptr[g+1]]
    edges_grouped: bool
    pairs: np.ndarray  # (m, 2) 0-based global node ids of _A's lines
    graph_labels: np.ndarray  # each graph's own label value
    node_labels: np.ndarray | None  # (n,) as read
    node_attr: np.ndarray | None  # (n, A) float32 as read


def find_tu(folder: str | os.PathLike) -> tuple[Path, str] | None:
    """``(directory holding NAME_A.txt, NAME)`` for a TU folder or a PyG ``ROOT/NAME`` folder (its ``raw/``)."""
    folder = Path(folder)
    for directory in (folder, folder / "raw"):
        if not directory.is_dir():
            continue
        names = sorted(p.name[:-len("_A.txt")] for p in directory.glob("*_A.txt")
                       if (directory / p.name.replace("_A.txt", "_graph_indicator.txt")).is_file())
        if len(names) > 1:
            raise DataFormatError(f"'{directory}' holds several TU datasets ({', '.join(names)}); pass a folder "
                                  f"holding one.")
        if names:
            return directory, names[0]
    return None


def load_tu(folder: str | os.PathLike) -> TURecords:
    """Read a TU folder (or a PyG ``ROOT/NAME`` folder) into :class:`TURecords` (see the module docstring)."""
    found = find_tu(folder)
    if found is None:
        raise DataFormatError(f"'{folder}' is not a TU dataset folder: expected NAME_A.txt and "
                              f"NAME_graph_indicator.txt in it (or in its raw/ folder).")
    directory, name = found
    files = {s: TUFile.read(directory / f"{name}_{s}.txt") for s in TU_SUFFIXES
             if (directory / f"{name}_{s}.txt").is_file()}
    if "graph_labels" not in files:
        raise DataFormatError(f"'{directory}' has no {name}_graph_labels.txt; datamark reads graph classification "
                              f"datasets (one integer class per graph).")
    where = f"'{directory}'"
    gi = files["graph_indicator"].values(np.int64, 1)[:, 0] - 1
    node_ptr = _node_ptr(gi, files["graph_indicator"].path)
    n, n_graphs = len(gi), len(node_ptr) - 1
    raw_labels = files["graph_labels"].values(np.int64, 1)[:, 0]
    if len(raw_labels) != n_graphs:
        raise DataFormatError(f"'{files['graph_labels'].path}' has {len(raw_labels)} lines for the {n_graphs} "
                              f"graphs of the graph indicator; one label per graph is needed.")
    values, labels = np.unique(raw_labels, return_inverse=True)
    node_labels = _per_node(files, "node_labels", np.int64, n)
    node_attr = _per_node(files, "node_attributes", np.float64, n)
    pairs = files["A"].values(np.int64, 2) - 1
    _check_edges(pairs, gi, files["A"].path)
    owner = gi[pairs[:, 0]]
    grouped = bool(np.all(np.diff(owner) >= 0))
    order = np.arange(len(pairs)) if grouped else np.argsort(owner, kind="stable")
    attr32 = None if node_attr is None else node_attr.astype(np.float32)
    edge_labels = _per_node(files, "edge_labels", np.int64, len(pairs), what="line of _A")
    src, dst, coalesced_labels = coalesce(pairs, n, edge_labels, where)
    graph_ptr = np.searchsorted(gi[src], np.arange(n_graphs + 1))
    source = TUSource(name, directory, files, node_ptr, order, np.searchsorted(owner[order], np.arange(n_graphs + 1)),
                      grouped, pairs, raw_labels, node_labels, attr32)
    for array in (src, dst, node_labels, attr32, coalesced_labels):
        if array is not None:
            array.setflags(write=False)  # graphs hold views: no one edits the source through them
    graphs = np.empty(n_graphs, dtype=object)
    for g in range(n_graphs):
        lo, hi, e0, e1 = node_ptr[g], node_ptr[g + 1], graph_ptr[g], graph_ptr[g + 1]
        graphs[g] = Graph(np.stack([src[e0:e1] - lo, dst[e0:e1] - lo]), int(hi - lo),
                          None if node_labels is None else node_labels[lo:hi],
                          None if attr32 is None else attr32[lo:hi],
                          None if coalesced_labels is None else coalesced_labels[e0:e1])
    modality = GraphModality(None if node_labels is None else tuple(np.unique(node_labels).tolist()),
                             0 if attr32 is None else attr32.shape[1])
    return TURecords(graphs, labels, [str(v) for v in values.tolist()], where=where, modality=modality,
                     source=source, origin=np.arange(n_graphs), changed=np.zeros(n_graphs, dtype=bool))


def _node_ptr(gi: np.ndarray, path: Path) -> np.ndarray:
    if not len(gi):
        raise DataFormatError(f"'{path}' lists no nodes; the dataset has no graphs.")
    if gi.min() < 0:
        raise DataFormatError(f"'{path}' has graph id {int(gi.min()) + 1}; graph ids start at 1.")
    unsorted = np.flatnonzero(np.diff(gi) < 0)
    if unsorted.size:
        raise DataFormatError(f"Line {int(unsorted[0]) + 2} of '{path}' goes back to graph "
                              f"{int(gi[unsorted[0] + 1]) + 1}; TU files list the nodes graph by graph (sorted ids).")
    counts = np.bincount(gi)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise DataFormatError(f"Graph {int(empty[0]) + 1} of '{path}' has no nodes ({empty.size} empty graph(s)); "
                              f"drop empty graphs and renumber the graph ids contiguously.")
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def _per_node(files: dict[str, TUFile], suffix: str, dtype: type, rows: int, what: str = "node") -> np.ndarray | None:
    """An optional per-node (or per-edge-line) file as an array; node labels and edge labels are one column."""
    file = files.get(suffix)
    if file is None:
        return None
    if suffix != "node_attributes" and len(file) and b"," in file.chunk(0, 1):
        raise DataFormatError(f"Line 1 of '{file.path}' holds several values; datamark reads one integer label per "
                              f"{what} (keep one column, or turn the others into node attributes).")
    values = file.values(dtype, 1 if suffix != "node_attributes" else None)
    if len(values) != rows:
        raise DataFormatError(f"'{file.path}' has {len(values)} lines for {rows} {what}s; one line per {what} is "
                              f"needed.")
    return values if suffix == "node_attributes" else values[:, 0]


def _check_edges(pairs: np.ndarray, gi: np.ndarray, path: Path) -> None:
    bad = np.flatnonzero((pairs < 0).any(axis=1) | (pairs >= len(gi)).any(axis=1))
    if bad.size:
        line = pairs[bad[0]]
        node = int(line.max() if line.max() >= len(gi) else line.min()) + 1
        raise DataFormatError(f"Line {int(bad[0]) + 1} of '{path}' names node {node}, outside the nodes "
                              f"1..{len(gi)} of the graph indicator; fix the edge list.")
    across = np.flatnonzero(gi[pairs[:, 0]] != gi[pairs[:, 1]])
    if across.size:
        j = int(across[0])
        raise DataFormatError(f"Line {j + 1} of '{path}' joins graphs {int(gi[pairs[j, 0]]) + 1} and "
                              f"{int(gi[pairs[j, 1]]) + 1}; an edge stays within one graph.")
    loops = np.flatnonzero(pairs[:, 0] == pairs[:, 1])
    if loops.size:
        raise DataFormatError(f"Line {int(loops[0]) + 1} of '{path}' is a self-loop ({loops.size} in all); datamark "
                              f"graphs have none: remove them.")


def coalesce(pairs: np.ndarray, num_nodes: int, edge_labels: np.ndarray | None, where: str,
             warn: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Directed ``(m, 2)`` edges -> (src, dst, labels) sorted by (src, dst): duplicates coalesced (first label
    kept) and every edge present in both directions (added ones take their reverse's label; one
    GraphFormatWarning, if ``warn``, says how many)."""
    keys = pairs[:, 0] * num_nodes + pairs[:, 1]
    unique, first = np.unique(keys, return_index=True)
    reverse = (unique % num_nodes) * num_nodes + unique // num_nodes
    at = np.minimum(np.searchsorted(unique, reverse), max(len(unique) - 1, 0))
    missing = unique[at] != reverse if len(unique) else np.zeros(0, dtype=bool)  # np.isin: 10x slower here
    labels = None if edge_labels is None else edge_labels[first]
    if missing.any():
        if warn:
            warnings.warn(f"{int(missing.sum())} edge(s) of {where} were listed in one direction only; added their "
                          f"reverse (graphs are read as undirected).", GraphFormatWarning, stacklevel=3)
        merged = np.concatenate([unique, reverse[missing]])
        order = np.argsort(merged, kind="stable")
        unique = merged[order]
        if labels is not None:
            labels = np.concatenate([labels, labels[missing]])[order]
    return unique // num_nodes, unique % num_nodes, labels


class TURecords(ArrayRecords):
    """Graphs read from a TU folder, written back as one (:meth:`save`: a folder ``NAME_*.txt`` in which every
    unchanged graph's lines are the input's, byte for byte, where the node numbering allows: see :mod:`.tu_write`).
    ``origin`` maps each row to its graph in the source folder; ``changed`` marks rows replaced since reading."""

    def __init__(self, graphs: np.ndarray, labels: np.ndarray, class_names: list[str], *, where: str,
                 modality: GraphModality, source: TUSource, origin: np.ndarray, changed: np.ndarray) -> None:
        super().__init__(graphs, labels, class_names, where=where, modality=modality)
        self.source, self.origin, self.changed = source, np.asarray(origin), np.asarray(changed, dtype=bool)

    def replace(self, rows: np.ndarray, inputs: np.ndarray, labels: np.ndarray) -> TURecords:
        graphs, new_labels, changed = self._images.copy(), self.labels.copy(), self.changed.copy()
        graphs[rows], new_labels[rows], changed[rows] = inputs, labels, True
        return TURecords(graphs, new_labels, list(self.class_names), where=f"{self.where}[watermarked]",
                         modality=self.modality, source=self.source, origin=self.origin, changed=changed)

    def select(self, rows: np.ndarray, where: str) -> TURecords:
        """The given rows as TU records of the same source and encoding (a split)."""
        rows = np.asarray(rows, dtype=np.int64)
        return TURecords(self._images[rows], self.labels[rows], list(self.class_names), where=where,
                         modality=self.modality, source=self.source, origin=self.origin[rows],
                         changed=self.changed[rows])

    def _write(self, path: str | os.PathLike, *, overwrite: bool = False, journal: Journal | None = None) -> None:
        from .tu_write import write_tu

        write_tu(self, path, overwrite=overwrite, journal=journal)
