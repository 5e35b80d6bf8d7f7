"""The shared corpora by short name: ``sst2:train|validation|test``, ``ag_news:train|test``, ``fsdd:train|test``
and the TU graph datasets ``graphs:NAME``, ``graphs:NAME:train|test`` (see :func:`load_graphs` for the split).

FSDD (the Free Spoken Digit Dataset, ``fsdd/recordings/{digit}_{speaker}_{index}.wav``, 8 kHz) is split as
usual: recordings with index 0-4 are the test set (300 clips), the rest train (2,700).

SST-2 is read as it is staged (``sst2/SPLIT.tsv``, header ``sentence<TAB>label``, 1 = positive). AG News is
staged as its *test* split only (7,600 rows, no header: ``"class(1-4)","title","description"``); datamark
splits it into train (80 %) and test (20 %) per class by a fixed keyed hash of each row's text, so the split is
stratified, independent of row order and the same on every machine. The example is ``title + " " +
description``; a split is written out (``save``) as a CSV with header ``label,text``.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np

from ..exceptions import DataFormatError, ParameterError
from .delimited import DelimitedRecords
from .folder import FolderRecords
from .tu import TURecords, load_tu

SST2_CLASSES = ("negative", "positive")
AG_NEWS_SPLITS = ("train", "test")
AG_NEWS_TRAIN_FRACTION = 0.8
_AG_NEWS_SPLIT_KEY = b"datamark/ag_news/split/v1"
FSDD_SPLITS = ("train", "test")
FSDD_TEST_INDICES = range(5)


def load_fsdd(root: Path, split: str) -> FolderRecords:
    """FSDD's recordings of one split, as a label-prefixed WAV folder (written back in the same layout)."""
    if split not in FSDD_SPLITS:
        raise ParameterError(f"FSDD has splits {FSDD_SPLITS} (index 0-4 = test); got '{split}'.")
    path = root / "fsdd" / "recordings"
    if not path.is_dir():
        raise DataFormatError(f"FSDD is not staged: expected '{path}'; set DATAMARK_DATA to the shared data folder.")

    def in_split(name: str) -> bool:
        index = Path(name).stem.rsplit("_", 1)[-1]
        return index.isdigit() and (int(index) in FSDD_TEST_INDICES) == (split == "test")

    records = FolderRecords.load(path, include=in_split)
    records.where = f"fsdd:{split}"
    return records


def load_sst2(root: Path, split: str) -> DelimitedRecords:
    path = root / "sst2" / f"{split}.tsv"
    if not path.exists():
        raise DataFormatError(f"No SST-2 split '{split}': expected '{path}'. Splits are train, validation, test; "
                              f"set DATAMARK_DATA to the shared data folder.")
    return DelimitedRecords.load(path, input_column="sentence", label_column="label", class_names=SST2_CLASSES)


def load_ag_news(root: Path, split: str) -> DelimitedRecords:
    if split not in AG_NEWS_SPLITS:
        raise ParameterError(f"AG News has splits {AG_NEWS_SPLITS} (datamark's split of the staged test set); got "
                             f"'{split}'.")
    path = root / "ag_news" / "test.csv"
    if not path.exists():
        raise DataFormatError(f"AG News is not staged: expected '{path}'; set DATAMARK_DATA to the shared data "
                              f"folder.")
    names_file = root / "ag_news" / "classes.txt"
    names = ["1", "2", "3", "4"]
    if names_file.exists():
        names = [n.strip() for n in names_file.read_text(encoding="utf-8").splitlines() if n.strip()]
    with open(path, encoding="utf-8", newline="") as f:
        raw = [r for r in csv.reader(f) if r]
    rows = [[label, f"{title.strip()} {description.strip()}".replace("\\", " ").strip()]
            for label, title, description in raw]
    by_class: dict[str, list[tuple[str, int]]] = {}
    for i, (label, text) in enumerate(rows):
        rank = hashlib.sha256(_AG_NEWS_SPLIT_KEY + text.encode("utf-8") + b"\0" + str(i).encode()).hexdigest()
        by_class.setdefault(label, []).append((rank, i))
    chosen = []
    for members in by_class.values():
        members.sort()
        cut = round(AG_NEWS_TRAIN_FRACTION * len(members))
        chosen += [i for _, i in (members[:cut] if split == "train" else members[cut:])]
    chosen.sort()
    return DelimitedRecords(["label", "text"], [rows[i] for i in chosen], delimiter=",", quoting=csv.QUOTE_MINIMAL,
                            where=f"ag_news:{split}", text_column="text", label_column="label",
                            class_names=names, label_offset=1)


GRAPH_SPLITS = ("train", "test")
#: Every 5th graph of each class (the 5th, 10th, ... in file order) is a test graph: a stratified 80/20 split.
GRAPH_TEST_EVERY = 5


def load_graphs(root: Path, spec: str) -> TURecords:
    """``NAME`` (all graphs), ``NAME:train`` or ``NAME:test`` of the TU folder ``root/graphs/NAME``.

    The split is fixed and stratified by graph index: within each class, graphs are counted in file order from 0
    and the k-th is a test graph when ``k % 5 == 4``, so each class is split 80/20 (to the graph), independently
    of anything random, the same on every machine. Both splits share the node encoding learned from the whole
    folder (a model trained on one takes the other).
    """
    name, _, split = spec.partition(":")
    path = root / "graphs" / name
    if not name or not path.is_dir():
        staged = sorted(p.name for p in (root / "graphs").iterdir() if p.is_dir()) if (root / "graphs").is_dir() else []
        raise DataFormatError(f"No graph dataset '{name}': expected the TU folder '{path}' (staged: "
                              f"{', '.join(staged) or 'none'}); set DATAMARK_DATA to the shared data folder.")
    if split and split not in GRAPH_SPLITS:
        raise ParameterError(f"Graph datasets have splits {GRAPH_SPLITS} (every 5th graph of a class is a test "
                             f"graph) or none (graphs:{name}: all graphs); got '{split}'.")
    records = load_tu(path)
    if not split:
        records.where = f"graphs:{name}"
        return records
    return records.select(graph_split_rows(records.labels, split), where=f"graphs:{name}:{split}")


def graph_split_rows(labels: np.ndarray, split: str) -> np.ndarray:
    """The rows of ``split`` ("train" or "test") under :func:`load_graphs`' rule."""
    rank = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rank[members] = np.arange(len(members))
    test = rank % GRAPH_TEST_EVERY == GRAPH_TEST_EVERY - 1
    return np.flatnonzero(test if split == "test" else ~test)
