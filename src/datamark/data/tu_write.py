"""Graph datasets out in TU format: a folder ``NAME_A.txt``, ``NAME_graph_indicator.txt``, ``NAME_graph_labels.txt``
and, where the graphs have them, ``NAME_node_labels.txt``, ``NAME_node_attributes.txt``, ``NAME_edge_labels.txt``
(layout ``"tu"``); or PyG's ``ROOT/NAME/raw/NAME_*.txt`` (layout ``"pyg"``: ``TUDataset(ROOT, NAME)`` reads it).

Graphs and nodes are numbered contiguously from 1 in row order. For data read from a TU folder (:mod:`.tu`), only
the graphs a method changed are written anew: an unchanged graph's lines are copied from the input byte for byte
(its duplicated edges and number formatting included) -- the edge lines too wherever its node ids are unchanged,
i.e. always when the whole dataset is written and no earlier graph changed its node count; otherwise only the
renumbered ids differ. Within a changed graph, each node's label and attribute line is kept where the node's values
are unchanged. New lines use the input file's separator (``", "`` where there is no input), its line ending,
integer graph labels as the dataset's own values (the class names, when they are integers; else 0..C-1), and float32
attributes in their shortest exact decimal form.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

import numpy as np

from .._io import Journal, atomic_path
from ..exceptions import DataError, ParameterError
from .records import Records

log = logging.getLogger(__name__)

LAYOUTS = ("tu", "pyg")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def write_tu(records: Records, path: str | os.PathLike, *, name: str | None = None, layout: str = "tu",
             overwrite: bool = False, journal: Journal | None = None) -> Path:
    """Write graph ``records`` as a TU folder at ``path`` (see the module docstring), atomically.

    Args:
        records: graph records (``records.modality.name == "graph"``).
        path: the folder to write (``layout="pyg"``: the ``ROOT/NAME`` folder, so named after the dataset).
        name: the files' prefix; default: the source folder's dataset name for TU data, else ``path``'s name.
        layout: ``"tu"`` (``path/NAME_*.txt``) or ``"pyg"`` (``path/raw/NAME_*.txt``).
        overwrite, journal: as for :meth:`Records.save`.

    Returns:
        ``path``.
    """
    if records.modality.name != "graph":
        raise ParameterError(f"write_tu writes graph datasets; {records.where} holds {records.modality.name}. Use "
                             f"its save() instead.")
    if layout not in LAYOUTS:
        raise ParameterError(f"The 'layout' parameter of write_tu must be one of {list(LAYOUTS)}; got {layout!r}.")
    path = Path(path)
    source = getattr(records, "source", None)
    name = name or (source.name if source is not None and layout == "tu" else path.name)
    if not _NAME.match(name):
        raise ParameterError(f"A TU dataset name must be letters, digits, '_', '.', '+' or '-'; got {name!r}.")
    if layout == "pyg" and name != path.name:
        raise ParameterError(f"PyG's TUDataset(root, name) reads root/name/raw/name_*.txt, so the folder must be named "
                             f"after the dataset: got folder '{path.name}' for name '{name}'. Write to "
                             f"'{path.parent / name}'.")
    contents = tu_contents(records)
    with atomic_path(path, overwrite=overwrite, directory=True, what="dataset",
                     inputs=[source.folder] if source is not None else [], journal=journal) as tmp:
        folder = tmp / "raw" if layout == "pyg" else tmp
        folder.mkdir(exist_ok=True)
        for suffix, data in contents.items():
            (folder / f"{name}_{suffix}.txt").write_bytes(data)
        if source is not None and (source.folder / "README.txt").is_file():  # the collection's own description
            shutil.copyfile(source.folder / "README.txt", folder / "README.txt")
    log.info("wrote %d graphs of %s as TU files %s_*.txt in %s", len(records), records.where, name, path)
    return path


def tu_contents(records: Records) -> dict[str, bytes]:
    """The TU files of ``records`` (suffix -> bytes), as :func:`write_tu` writes them."""
    graphs, labels, modality = records.inputs(), records.labels, records.modality
    source = getattr(records, "source", None)
    origin = getattr(records, "origin", None)
    changed = getattr(records, "changed", np.ones(len(graphs), dtype=bool))
    files = getattr(source, "files", {})
    newline = files["A"].newline if "A" in files else b"\n"
    sep = {s: files[s].sep if s in files else b", " for s in ("A", "node_attributes")}
    with_edge_labels = _all_or_none(graphs, "edge_labels", records.where)
    parts: dict[str, list[bytes]] = {s: [] for s in ("A", "graph_indicator", "graph_labels")}
    if modality.node_label_values is not None:
        parts["node_labels"] = []
    if modality.attr_dim:
        parts["node_attributes"] = []
    if with_edge_labels:
        parts["edge_labels"] = []
    label_lines = _label_lines(records.class_names, newline)
    offset = 0
    for i, graph in enumerate(graphs):
        n = graph.num_nodes
        s = -1 if source is None else int(origin[i])
        kept = s >= 0 and not changed[i]
        lo, hi = (source.node_ptr[s], source.node_ptr[s + 1]) if s >= 0 else (0, 0)
        lines = source.edge_order[source.edge_ptr[s]:source.edge_ptr[s + 1]] if s >= 0 else None
        parts["graph_labels"].append(files["graph_labels"].chunk(s, s + 1) if kept else label_lines[labels[i]])
        parts["graph_indicator"].append(files["graph_indicator"].chunk(lo, hi) if kept and s == i else
                                        (b"%d" % (i + 1) + newline) * n)
        if kept and source.edges_grouped and lo == offset:
            parts["A"].append(files["A"].chunk(lines[0], lines[-1] + 1) if len(lines) else b"")
        elif kept:  # the input's edge lines (duplicates and order kept), renumbered
            parts["A"].append(_rows(source.pairs[lines] - lo + offset + 1, sep["A"], newline))
        else:
            parts["A"].append(_rows(graph.edge_index.T + offset + 1, sep["A"], newline))
        if with_edge_labels:
            parts["edge_labels"].append(_lines(files["edge_labels"], lines, source.edges_grouped) if kept else
                                        _rows(graph.edge_labels[:, None], b"", newline))
        for suffix, new, old in (("node_labels", graph.node_labels, getattr(source, "node_labels", None)),
                                 ("node_attributes", graph.node_attr, getattr(source, "node_attr", None))):
            if suffix not in parts:
                continue
            if kept:
                parts[suffix].append(files[suffix].chunk(lo, hi))
                continue
            new2 = np.asarray(new).reshape(n, -1)
            fresh = _rows(new2, sep.get(suffix, b""), newline, floats=suffix == "node_attributes", split=True)
            if s < 0 or old is None:
                parts[suffix].append(b"".join(fresh))
                continue
            old2 = old[lo:hi].reshape(hi - lo, -1)
            m = min(n, hi - lo)
            same = np.zeros(n, dtype=bool)
            same[:m] = (new2[:m] == old2[:m]).all(axis=1)
            parts[suffix].append(b"".join(files[suffix].chunk(lo + j, lo + j + 1) if same[j] else fresh[j]
                                          for j in range(n)))
        offset += n
    return {suffix: b"".join(chunks) for suffix, chunks in parts.items()}


def _all_or_none(graphs: np.ndarray, field: str, where: str) -> bool:
    present = [getattr(g, field) is not None for g in graphs]
    if any(present) and not all(present):
        i = present.index(not present[0])
        raise DataError(f"Graph {i} of {where} {'has' if present[i] else 'has no'} {field.replace('_', ' ')} but "
                        f"graph 0 {'has' if present[0] else 'has none'}; a TU dataset has them for every graph or "
                        f"none.")
    return bool(present) and present[0]


def _label_lines(class_names: tuple[str, ...], newline: bytes) -> list[bytes]:
    """Each class's graph-label line: its name where every name is an integer (the dataset's own values), else
    its index (TU labels are integers)."""
    if all(re.fullmatch(r"-?\d+", name.strip()) for name in class_names):
        return [name.strip().encode() + newline for name in class_names]
    log.info("class names %s are not integers; graph labels are written as 0..%d", list(class_names),
             len(class_names) - 1)
    return [b"%d" % c + newline for c in range(len(class_names))]


def _rows(values: np.ndarray, sep: bytes, newline: bytes, *, floats: bool = False,
          split: bool = False) -> bytes | list[bytes]:
    """A 2-d array as text lines (integers; float32 values in their shortest exact form); ``split``: one bytes per
    line."""
    values = np.asarray(values)
    if floats:
        text = [sep.join(str(v).encode() for v in row) + newline for row in values.astype(np.float32)]
    else:
        line = sep.join([b"%d"] * values.shape[1]) + newline if values.ndim == 2 and values.shape[1] else newline
        text = [line % tuple(row) for row in values.tolist()] if split else \
            [(line * len(values)) % tuple(values.reshape(-1).tolist())] if len(values) else []
    return text if split else b"".join(text)


def _lines(file, lines: np.ndarray, contiguous: bool) -> bytes:
    """Lines of ``file`` by number, as they are in it (``contiguous``: they are one run of lines)."""
    if contiguous or not len(lines):
        return file.chunk(lines[0], lines[-1] + 1) if len(lines) else b""
    return b"".join(file.chunk(j, j + 1) for j in lines.tolist())
