"""The input of a sharded protect: a parquet-shard folder (``data/{split}-0000i-of-0000N.parquet``), read one
shard at a time as an :class:`~datamark.data.arrow.ArrowRecords`.

Every shard is opened with the schema metadata of shard 0, which is what in-memory loading gives the whole table
(:func:`datamark.data.hf.load_parquet_shards`), and, where the Hugging Face features carry no class names, with
the names the whole dataset implies (0..max label) injected, so a shard with few classes is still a valid dataset.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..data.arrow import ArrowRecords
from ..data.hf import looks_like_parquet_shards, pick_split, shard_files
from ..exceptions import DataFormatError


@dataclass(frozen=True)
class Source:
    """One split of a parquet-shard folder: its files in order and how to open each as records."""

    folder: str
    split: str
    files: tuple[str, ...]          # paths relative to ``folder`` ("data/train-00000-of-00004.parquet")
    metadata: dict[bytes, bytes]    # shard 0's schema metadata: what every output shard carries
    class_names: tuple[str, ...]
    input_column: str | None
    label_column: str

    def open(self, index: int) -> ArrowRecords:
        """Shard ``index`` as records, under the whole dataset's metadata and class names."""
        table = _read(Path(self.folder) / self.files[index], pq.read_table)
        meta = dict(self.metadata)
        hf = json.loads(meta.get(b"huggingface", b"{}"))
        features = hf.setdefault("info", {}).setdefault("features", {})
        label = features.setdefault(self.label_column, {"_type": "ClassLabel"})
        label["names"] = list(self.class_names)
        meta[b"huggingface"] = json.dumps(hf).encode()
        return ArrowRecords(table.replace_schema_metadata(meta), where=f"'{self.folder}/{self.files[index]}'",
                            source_format="parquet-shards", input_column=self.input_column,
                            label_column=self.label_column, split=self.split)

    def digest_input(self) -> list[list]:
        """What identifies the input files for resuming: names, sizes and modification times."""
        out = []
        for name in self.files:
            st = os.stat(Path(self.folder) / name)
            out.append([name, st.st_size, st.st_mtime_ns])
        return out


def open_source(folder: str | os.PathLike, *, split: str | None = None, input_column: str | None = None,
                label_column: str = "label") -> Source:
    """Describe the parquet-shard folder ``folder`` (reads schemas and label columns only)."""
    folder = str(folder)
    if not looks_like_parquet_shards(folder):
        raise DataFormatError(f"'{folder}' is not a parquet-shard folder (data/{{split}}-0000i-of-0000N.parquet); "
                              f"the sharded engine reads only those. Write one with `datamark protect ... --format "
                              f"parquet-shards`, or protect without --engine.")
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
    return Source(folder, split, tuple(str(p.relative_to(folder)) for p in paths), metadata,
                  tuple(str(n) for n in names), input_column, label_column)


def _read(path: Path, read: Any, **options: Any) -> Any:
    """``read(path, **options)`` (a pyarrow reader), with an unreadable shard named in a one-line error."""
    try:
        return read(path, **options)
    except (pa.ArrowInvalid, OSError) as err:
        reason = str(err).rstrip(".")
        raise DataFormatError(f"Cannot read the shard '{path}' as Parquet: {reason}. Replace the damaged shard (the "
                              f"input is never modified); a rerun resumes from the shards already written.") from err
