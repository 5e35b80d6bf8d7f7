"""The input of a sharded protect, one shard at a time: a parquet-shard folder
(``data/{split}-0000i-of-0000N.parquet``, :class:`ParquetSource`) or WebDataset tar shards (a folder or list of
``*.tar``, :class:`~datamark.data.webdataset.WebDatasetSource`). Both follow :class:`Source`: open shard ``i`` as
records, write a marked shard in the input's format, say what identifies the input for resuming.

Every parquet shard is opened with the schema metadata of shard 0, which is what in-memory loading gives the whole
table (:func:`datamark.data.hf.load_parquet_shards`), and, where the Hugging Face features carry no class names, with
the names the whole dataset implies (0..max label) injected, so a shard with few classes is still a valid dataset;
audio without a declared ``sampling_rate`` is read at shard 0's first clip's rate, as in memory, not at each shard's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..data.arrow import ArrowRecords
from ..data.hf import looks_like_parquet_shards, pick_split, shard_files
from ..data.records import Records
from ..data.webdataset import WebDatasetRecords, looks_like_webdataset, shard_paths
from ..exceptions import DataFormatError, ParameterError
from ..modalities import Modality


class Source(Protocol):
    """One split of a sharded dataset: its shard files in order and how to read and write each."""

    folder: str
    split: str | None
    files: tuple[str, ...]           # output names, relative to the output folder (the input's own layout)
    class_names: tuple[str, ...] | None  # None: not known before the hash pass (tars carry no class list)
    input_column: str | None
    label_column: str
    format: str                      # the key's ``dataset.format``: what in-memory loading calls the data

    @property
    def where(self) -> str:
        """What messages call the dataset."""

    @property
    def inputs(self) -> tuple[str, ...]:
        """The input paths, which protect never writes over."""

    def open(self, index: int) -> Records:
        """Shard ``index`` as records, under the whole dataset's class names (and audio sample rate)."""

    def write(self, index: int, records: Records, path: Path) -> None:
        """Write ``records`` (shard ``index`` with some rows replaced) at ``path`` as the input's format writes it,
        unchanged rows keeping their bytes."""

    def digest_input(self) -> list[list]:
        """What identifies the input files for resuming: names, sizes and modification times."""


@dataclass(frozen=True)
class ParquetSource:
    """One split of a parquet-shard folder: its files in order and how to open each as records."""

    folder: str
    split: str
    files: tuple[str, ...]          # paths relative to ``folder`` ("data/train-00000-of-00004.parquet")
    metadata: dict[bytes, bytes]    # shard 0's schema metadata: what every output shard carries
    read_metadata: dict[bytes, bytes]  # the same with the whole dataset's class names (and sample rate): for reading
    class_names: tuple[str, ...]
    input_column: str | None
    label_column: str
    format = "parquet-shards"

    @property
    def where(self) -> str:
        return f"'{self.folder}'[{self.split}]"

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.folder,)

    def open(self, index: int) -> ArrowRecords:
        """Shard ``index`` as records, under the whole dataset's metadata, class names and sample rate."""
        table = _read(Path(self.folder) / self.files[index], pq.read_table)
        return ArrowRecords(table.replace_schema_metadata(self.read_metadata),
                            where=f"'{self.folder}/{self.files[index]}'", source_format=self.format,
                            input_column=self.input_column, label_column=self.label_column, split=self.split)

    def write(self, index: int, records: Records, path: Path) -> None:
        """The shard's table under shard 0's own schema metadata, as in-memory protect saves the whole table."""
        pq.write_table(records.table.replace_schema_metadata(self.metadata), path)

    def digest_input(self) -> list[list]:
        return digest_files(self.folder, self.files)


@dataclass(frozen=True)
class WebDatasetSource:
    """WebDataset tar shards (a folder's ``*.tar`` in name order, or a list): each shard opened as
    :class:`~datamark.data.webdataset.WebDatasetRecords` under the whole dataset's class names, input field and
    modality, and written back as the input tar with only the changed members rewritten."""

    folder: str
    paths: tuple[str, ...]          # the input shards
    files: tuple[str, ...]          # their names: the output's
    class_names: tuple[str, ...] | None  # None until the hash pass has seen every label (see open_source)
    input_column: str | None
    label_column: str
    modality: Modality              # the whole dataset's: its kind, and audio's sample rate (shard 0's first clip)
    split = None
    format = "webdataset"

    @property
    def where(self) -> str:
        return f"'{self.folder}'"

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.folder, *self.paths)

    def open(self, index: int) -> WebDatasetRecords:
        return WebDatasetRecords.load([self.paths[index]], input_column=self.input_column,
                                      label_column=self.label_column,
                                      class_names=self.class_names, modality=self.modality)

    def write(self, index: int, records: Records, path: Path) -> None:
        records.write_shard(0, path)

    def digest_input(self) -> list[list]:
        return digest_files("", self.paths)

    @classmethod
    def open_source(cls, data: str | os.PathLike | Sequence[str | os.PathLike], *, split: str | None = None,
                    input_column: str | None = None, label_column: str = "label") -> WebDatasetSource:
        """Describe the shards of ``data`` from shard 0 (read whole: the input field and modality). Tars carry no
        class list, so ``class_names`` stays None: the engine's hash pass, which reads every label anyway, finds
        the largest label in parallel, and the engine fills the names in before anything
        else reads them."""
        if split is not None:
            raise ParameterError(f"split='{split}' picks a split of a Hugging Face layout; WebDataset shards hold one "
                                 f"split (give that split's folder or list of shards). Drop --split.")
        paths = shard_paths(data)
        first = WebDatasetRecords.load([paths[0]], input_column=input_column, label_column=label_column)
        folder = str(data) if isinstance(data, (str, os.PathLike)) else str(paths[0].parent)
        return cls(folder, tuple(str(p) for p in paths), tuple(p.name for p in paths), None, input_column,
                   label_column, first.modality)


def digest_files(folder: str, files: Sequence[str]) -> list[list]:
    """Name, size and modification time of each of ``files`` under ``folder``: a changed input is a new job."""
    out = []
    for name in files:
        st = os.stat(Path(folder) / name)
        out.append([name, st.st_size, st.st_mtime_ns])
    return out


def open_source(data: str | os.PathLike | Sequence[str | os.PathLike], *, split: str | None = None,
                input_column: str | None = None, label_column: str = "label") -> Source:
    """Describe the sharded dataset ``data``: a parquet-shard folder (reads schemas, label columns and shard 0),
    or WebDataset tar shards, a folder or a list of ``*.tar`` (reads the tars' headers and labels)."""
    if not isinstance(data, (str, os.PathLike)) or looks_like_webdataset(data):
        return WebDatasetSource.open_source(data, split=split, input_column=input_column, label_column=label_column)
    folder = str(data)
    if not looks_like_parquet_shards(folder):
        raise DataFormatError(f"'{folder}' is not a parquet-shard folder (data/{{split}}-0000i-of-0000N.parquet) "
                              f"nor a folder of WebDataset shards (*.tar); the sharded engine reads only those. Write "
                              f"one with `datamark protect ... --format parquet-shards`, or protect without --engine.")
    files = shard_files(folder)
    split = pick_split(list(files), split, f"The folder '{folder}'")
    paths = files[split]
    metadata = dict(_read(paths[0], pq.read_schema).metadata or {})
    features = json.loads(metadata.get(b"huggingface", b"{}")).get("info", {}).get("features", {})
    names = features.get(label_column, {}).get("names")
    if names is None:  # as ArrowRecords does for the whole table: 0..max label
        top = -1
        for path in paths:
            column = _read(path, pq.read_table, columns=[label_column]).column(label_column)
            if len(column):
                top = max(top, int(pc.max(column).as_py()))
        names = [str(c) for c in range(top + 1)]
    read = json.loads(metadata.get(b"huggingface", b"{}"))
    features = read.setdefault("info", {}).setdefault("features", {})
    features.setdefault(label_column, {"_type": "ClassLabel"})["names"] = [str(n) for n in names]
    read_metadata = {**metadata, b"huggingface": json.dumps(read).encode()}
    if any(f.get("_type") == "Audio" and not f.get("sampling_rate") for f in features.values()):
        # every shard at the rate of shard 0's first clip, as in memory the whole table is read, not each shard's
        first = ArrowRecords(_read(paths[0], pq.read_table).replace_schema_metadata(read_metadata),
                             where=f"'{paths[0]}'", input_column=input_column, label_column=label_column)
        if first.modality.name == "audio":
            features[first.input_column]["sampling_rate"] = first.modality.sample_rate
            read_metadata[b"huggingface"] = json.dumps(read).encode()
    return ParquetSource(folder, split, tuple(str(p.relative_to(folder)) for p in paths), metadata, read_metadata,
                         tuple(str(n) for n in names), input_column, label_column)


def _read(path: Path, read: Any, **options: Any) -> Any:
    """``read(path, **options)`` (a pyarrow reader), with an unreadable shard named in a one-line error."""
    try:
        return read(path, **options)
    except (pa.ArrowInvalid, OSError) as err:
        reason = str(err).rstrip(".")
        raise DataFormatError(f"Cannot read the shard '{path}' as Parquet: {reason}. Replace the damaged shard (the "
                              f"input is never modified); a rerun resumes from the shards already written.") from err
