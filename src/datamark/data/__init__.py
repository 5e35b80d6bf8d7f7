"""Dataset adapters: read a dataset in any supported format into :class:`Records`, write it back the same way
(or as a Hugging Face layout: see :mod:`.output`).

Sources understood by :func:`load_data` (and so by every method's ``apply``):

* a :class:`Records` (returned as it is);
* a ``datasets.Dataset``, or a ``DatasetDict`` with ``split=`` naming one split (see :mod:`.hf`);
* a torchvision-style dataset: ``len(ds)`` and ``ds[i] == (image, label)``, the image a PIL image, a uint8
  H x W x C array or a C x H x W tensor (uint8, or float in [0, 1]) (see :mod:`.torchvision`);
* ``hf:ID``, ``hf:ID:SPLIT`` or ``hf:ID:CONFIG:SPLIT`` -- through ``datasets.load_dataset`` (the user's cache;
  offline with ``HF_DATASETS_OFFLINE=1``);
* ``digits`` / ``digits:train`` / ``digits:test`` -- the embedded scikit-learn digits (no download);
* ``sst2:train|validation|test``, ``ag_news:train|test`` and ``fsdd:train|test`` -- the shared text and audio
  corpora (see :mod:`.corpora`);
* ``graphs:NAME``, ``graphs:NAME:train|test`` -- the shared TU graph datasets (``$DATAMARK_DATA/graphs/NAME``; the
  split: :func:`.corpora.load_graphs`), and a TU folder by path (``NAME_A.txt`` ..., or PyG's ``ROOT/NAME`` with
  ``raw/``; see :mod:`.tu`);
* a PyG dataset (items with ``edge_index``, ``x``, ``y``), a sequence of ``(edge_index, node_features, label)``
  triples or of ``(Graph, label)`` pairs (see :mod:`.graphs`);
* ``NAME:SPLIT`` such as ``cifar10:train`` -- ``$DATAMARK_DATA/NAME/SPLIT.parquet`` (the shared data folder);
* a ``.parquet`` file (Hugging Face layout; image, audio or string column), a ``save_to_disk`` Arrow folder
  (``split=`` for a DatasetDict), a folder of parquet shards ``data/{split}-0000i-of-0000N.parquet``, a
  folder of images or WAV clips (one sub-folder per class, or files named ``{label}_*``), a ``.tsv`` / ``.csv``
  text file with a header row, or a ``.npz`` file with ``images``, ``labels`` and ``class_names``;
* a folder of WebDataset tar shards (``*.tar``; samples ``KEY.png|jpg|wav|txt`` + ``KEY.cls``; see
  :mod:`.webdataset`), written back as the same tars with only the marked samples' members changed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import DataFormatError, ParameterError
from .arrays import ArrayRecords
from .arrow import ArrowRecords
from .corpora import load_ag_news, load_fsdd, load_graphs, load_sst2
from .delimited import DelimitedRecords
from .embedded import load_digits
from .folder import FolderRecords, looks_like_image_folder
from .graphs import from_edge_lists, from_graph_source, from_graphs, from_pyg, looks_like_graphs
from .hf import HUB_PREFIX, is_hf_dataset, load_hub, looks_like_parquet_shards, records_from_hf
from .records import Records
from .torchvision import from_pairs, looks_like_pairs
from .tu import TURecords, find_tu, load_tu
from .tu_write import write_tu
from .webdataset import WebDatasetRecords, looks_like_webdataset

__all__ = ["ArrayRecords", "ArrowRecords", "DelimitedRecords", "FolderRecords", "Records", "TURecords",
           "WebDatasetRecords", "from_edge_lists", "from_graphs", "from_numpy", "from_pairs", "from_pyg", "from_texts",
           "from_waveforms", "load_data", "load_digits", "load_tu", "shared_data_dir", "write_tu"]


def shared_data_dir() -> Path:
    """``$DATAMARK_DATA`` if set, else the first ``shared/data`` found beside the working directory or the repo."""
    env = os.environ.get("DATAMARK_DATA")
    if env:
        return Path(env)
    candidates = [Path.cwd() / "../shared/data", Path.cwd() / "shared/data",
                  Path(__file__).resolve().parents[4] / "shared/data"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    return candidates[0]


def from_numpy(images: np.ndarray, labels: np.ndarray, class_names: list[str] | None = None) -> ArrayRecords:
    """Wrap in-memory uint8 images (N x H x W [x C]) and integer labels."""
    return ArrayRecords(images, labels, class_names)


def from_waveforms(waves: np.ndarray, labels: Sequence[int] | np.ndarray, *, sample_rate: int,
                   class_names: Sequence[str] | None = None) -> ArrayRecords:
    """Wrap in-memory mono float waveforms (N x L, in [-1, 1], one length: pad or crop first) at ``sample_rate``."""
    from ..modalities import AudioModality

    waves = np.asarray(waves)
    length = waves.shape[1] if waves.ndim == 2 else None
    return ArrayRecords(waves, labels, class_names, where="(waveforms)", modality=AudioModality(sample_rate, length))


def from_texts(texts: Sequence[str], labels: Sequence[int] | np.ndarray,
               class_names: Sequence[str] | None = None) -> ArrayRecords:
    """Wrap in-memory strings (one example each) and integer labels."""
    return ArrayRecords(list(texts), labels, class_names, where="(list of strings)", modality="text")


def load_data(source: Any, *, split: str | None = None, input_column: str | None = None,
              label_column: str = "label") -> Records:
    """Open a dataset from a path, a short name or an in-memory object (see the module docstring); nothing is
    modified.

    Args:
        source: a path, a short name (``digits:test``, ``hf:ID:SPLIT``), a :class:`Records`, a ``datasets``
            Dataset or DatasetDict, or a torchvision-style dataset of ``(example, label)`` pairs.
        split: the split of a DatasetDict, a ``save_to_disk`` folder or parquet-shard folder with several, or a
            Hub id (``hf:ID`` with ``split=`` is ``hf:ID:SPLIT``).
        input_column, label_column: the example and label columns of a table (example column default: detected).
    """
    columns = {"input_column": input_column, "label_column": label_column}
    if isinstance(source, Records):
        if split is not None or input_column is not None or label_column != "label":
            raise ParameterError(f"split=, input_column= and label_column= choose what to read from a file or a "
                                 f"Hugging Face dataset; {source.where} is already read. Drop them.")
        return source
    if is_hf_dataset(source):
        return records_from_hf(source, split=split, **columns)
    if not isinstance(source, (str, os.PathLike)):
        if looks_like_graphs(source):
            return from_graph_source(source)
        if looks_like_pairs(source):
            return from_pairs(source)
        raise DataFormatError(f"Cannot read a {type(source).__name__} as a dataset; pass a path, a name, a "
                              f"datasets.Dataset or a torchvision-style dataset of (example, label) pairs.")
    text = str(source)
    if isinstance(source, str) and text.startswith(HUB_PREFIX):
        return load_hub(text, split=split, **columns)
    if split is not None and not Path(text).is_dir():
        raise ParameterError(f"split= picks a split of a DatasetDict, a dataset folder or a 'hf:' Hub id; '{text}' is "
                             f"none of them (one file holds one split; short names take NAME:SPLIT). Drop split=.")
    if text == "digits" or text.startswith("digits:"):
        return load_digits(text.split(":", 1)[1] if ":" in text else "train")
    path = Path(text)
    if not path.exists() and ":" in text and "/" not in text:
        name, split_name = text.split(":", 1)
        if name == "sst2":
            return load_sst2(shared_data_dir(), split_name)
        if name == "ag_news":
            return load_ag_news(shared_data_dir(), split_name)
        if name == "fsdd":
            return load_fsdd(shared_data_dir(), split_name)
        if name == "graphs":
            return load_graphs(shared_data_dir(), split_name)
        path = shared_data_dir() / name / f"{split_name}.parquet"
        if not path.exists():
            raise DataFormatError(f"No dataset '{text}': expected '{path}'. Set DATAMARK_DATA to the shared data "
                                  f"folder, pass a path, or name a Hub dataset as 'hf:{text}'.")
    if not path.exists():
        raise DataFormatError(f"The dataset path '{path}' does not exist.")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".npz":
            return ArrayRecords.load_npz(path)
        if suffix == ".parquet":
            return ArrowRecords.load(path, **columns)
        if suffix in (".tsv", ".tab", ".csv"):
            return DelimitedRecords.load(path, **columns)
        raise DataFormatError(f"Cannot tell the format of '{path}'; use a .parquet, .tsv, .csv or .npz file, an Arrow "
                              f"folder (datasets.save_to_disk) or a folder of images or WAV clips.")
    if any((path / name).exists() for name in ("dataset_info.json", "state.json", "dataset_dict.json")) \
            or looks_like_parquet_shards(path):
        return ArrowRecords.load(path, split=split, **columns)
    if find_tu(path) is not None:
        return load_tu(path)
    if looks_like_webdataset(path):
        return WebDatasetRecords.load(path, split=split, **columns)
    if looks_like_image_folder(path):
        return FolderRecords.load(path)
    raise DataFormatError(f"'{path}' is a folder but neither an Arrow dataset, parquet shards (data/*.parquet), a TU "
                          f"graph folder (NAME_A.txt ...) nor a folder of images or WAV clips (one sub-folder per "
                          f"class, or files named '{{label}}_*').")
