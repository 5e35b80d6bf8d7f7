"""Where a dataset is written, and in which format: its own, or a Hugging Face layout ready to publish.

``Records.save(path, format=...)`` takes one of:

* ``None`` -- the dataset's own format (``.npz``, ``.parquet``, ``.tsv``/``.csv``, a ``save_to_disk`` folder, a
  parquet-shard folder, an image or WAV folder), exactly as before;
* ``"hf-disk"`` -- a ``datasets.save_to_disk`` folder (``datasets.load_from_disk`` reads it);
* ``"parquet-shards"`` -- a folder ``data/{split}-00000-of-0000N.parquet`` as the Hub lays a dataset out, ready
  for ``push_to_hub`` or ``huggingface-cli upload`` (shards of at most :data:`MAX_SHARD_BYTES` of Arrow data);
* ``"parquet"`` -- one Parquet file with the Hugging Face features in its schema.

A path whose suffix names another format than the one written (``x.npz`` for parquet data, ``x.parquet`` for a
folder) is **refused** with the fix, never silently written in the wrong format nor silently converted: converting
is what an explicit ``format`` is for. Converting to a Hugging Face layout keeps each row's stored bytes where the
adapter has them (Arrow tables, image and WAV folders); in-memory images are stored as PNG and text as strings,
both lossless. In-memory waveforms are refused (a WAV column would quantise them). Every write is atomic and
journalled (:mod:`datamark._io`): a failed write leaves nothing behind and replaces only its own output.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .._io import Journal, atomic_path
from ..exceptions import DataError, ParameterError
from .records import Records

log = logging.getLogger(__name__)

HF_FORMATS = ("hf-disk", "parquet-shards", "parquet")
#: Suffixes of the file formats datamark reads and writes; a path ending in one names that format.
FILE_SUFFIXES = {".npz": "npz", ".parquet": "parquet", ".tsv": "tsv", ".tab": "tsv", ".csv": "csv"}
#: Own formats written as one file (``Records.source_format`` -> the format its suffix names); the rest are folders.
FILE_FORMATS = {"numpy": "npz", "parquet": "parquet", "tsv": "tsv", "csv": "csv"}
#: What each Records.source_format is called in messages.
FOLDER_NAMES = {"arrow": "a save_to_disk folder", "parquet-shards": "a parquet-shard folder", "tu": "a TU folder",
                "webdataset": "a folder of WebDataset tar shards"}
#: The largest shard written, in bytes of Arrow data: push_to_hub's default max_shard_size (500 MB).
MAX_SHARD_BYTES = 500 * 2**20
ROWS_PER_ENCODE = 1024  # in-memory examples encoded per batch when converting (bounds peak memory)


def resolve_format(records: Records, path: str | os.PathLike, format: str | None = None) -> str:
    """The format ``records`` is written in at ``path``: ``format``, else ``"native"`` (its own).

    Raises ParameterError for an unknown format and for a path whose suffix names another format than the one
    written (one line, naming both and the fix). Callers check this before the work (the CLI: right after
    loading), then pass :func:`writes_directory` to :func:`datamark._io.check_outputs`.
    """
    if format is not None and format not in HF_FORMATS:
        raise ParameterError(f"The output format must be one of {list(HF_FORMATS)} or None (the dataset's own "
                             f"format, {_own(records)}); got {format!r}.")
    chosen = format or "native"
    named = FILE_SUFFIXES.get(Path(path).suffix.lower())
    if named is None:
        return chosen
    written = FILE_FORMATS.get(records.source_format) if chosen == "native" else (
        "parquet" if chosen == "parquet" else None)
    if named == written:
        return chosen
    what = _own(records) if chosen == "native" else f"format={chosen!r}"
    fix = (f"'{Path(path).with_suffix('.' + written)}'" if written else f"a folder name such as "
           f"'{Path(path).with_suffix('')}'")
    raise ParameterError(f"The output path '{path}' names a .{named} file, but {records.where} is written as "
                         f"{what}; use {fix}, or convert with format= one of {list(HF_FORMATS)} (--format).")


def _own(records: Records) -> str:
    own = FILE_FORMATS.get(records.source_format)
    return f"a .{own} file" if own else FOLDER_NAMES.get(records.source_format, f"a folder ({records.source_format})")


def writes_directory(records: Records, format: str) -> bool:
    """Whether the resolved ``format`` (see :func:`resolve_format`) writes a folder rather than a file."""
    if format == "native":
        return records.source_format not in FILE_FORMATS
    return format != "parquet"


def save_records(records: Records, path: str | os.PathLike, *, format: str | None = None, split: str | None = None,
                 overwrite: bool = False, journal: Journal | None = None) -> None:
    """Write ``records`` at ``path`` in ``format`` (see the module docstring); the body of :meth:`Records.save`."""
    chosen = resolve_format(records, path, format)
    if split is not None and (chosen if chosen != "native" else records.source_format) != "parquet-shards":
        raise ParameterError(f"split='{split}' names the shards of format='parquet-shards'; {path} is written as "
                             f"{_own(records) if chosen == 'native' else chosen}, which has no split. Drop split=.")
    if chosen == "native":
        records._write(path, overwrite=overwrite, journal=journal)
        return
    kind = "arrow" if chosen == "hf-disk" else chosen  # the source_format of data read back from it
    if kind != records.source_format:
        log.info("converting %s (%s) to %s at %s", records.where, _own(records), chosen, path)
    write_table(arrow_table(records), path, kind, split=split or getattr(records, "split", None),
                overwrite=overwrite, journal=journal)


def write_table(table: pa.Table, path: str | os.PathLike, kind: str, *, split: str | None = None,
                overwrite: bool = False, journal: Journal | None = None) -> None:
    """Write an Arrow table atomically as ``kind``: ``"parquet"`` (a file), ``"arrow"`` (a ``save_to_disk``
    folder) or ``"parquet-shards"`` (a Hub-style folder, shards of split ``split``, default ``"train"``)."""
    if kind == "parquet":
        with atomic_path(path, overwrite=overwrite, what="dataset", journal=journal) as tmp:
            pq.write_table(table, tmp)
    elif kind == "arrow":
        from .arrow import import_datasets

        dataset = import_datasets().Dataset(table)
        with atomic_path(path, overwrite=overwrite, directory=True, what="dataset", journal=journal) as tmp:
            dataset.save_to_disk(str(tmp))
    elif kind == "parquet-shards":
        write_parquet_shards(table, path, split=split or "train", overwrite=overwrite, journal=journal)
    else:
        raise ParameterError(f"Cannot write a table as '{kind}'; expected 'parquet', 'arrow' or 'parquet-shards'.")


def write_parquet_shards(table: pa.Table, path: str | os.PathLike, *, split: str = "train",
                         max_shard_bytes: int = MAX_SHARD_BYTES, overwrite: bool = False,
                         journal: Journal | None = None) -> list[str]:
    """Write ``table`` as ``path/data/{split}-{i:05d}-of-{n:05d}.parquet`` (n shards of about equal row counts, each
    at most ``max_shard_bytes`` of Arrow data), atomically; returns the shards' names relative to ``path``."""
    from .hf import SHARD_FILE

    if not SHARD_FILE.match(f"{split}.parquet") or "-" in split:
        raise ParameterError(f"The split name must be letters, digits, '_' or '.' (e.g. 'train'); got {split!r}.")
    n_shards = max(1, math.ceil(table.nbytes / max_shard_bytes))
    bounds = np.linspace(0, table.num_rows, n_shards + 1).round().astype(int)
    names = [f"data/{split}-{i:05d}-of-{n_shards:05d}.parquet" for i in range(n_shards)]
    with atomic_path(path, overwrite=overwrite, directory=True, what="dataset", journal=journal) as tmp:
        (tmp / "data").mkdir()
        for name, start, stop in zip(names, bounds[:-1], bounds[1:], strict=True):
            pq.write_table(table.slice(start, stop - start), tmp / name)
    return names


def arrow_table(records: Records) -> pa.Table:
    """``records`` as an Arrow table with Hugging Face features: its own table for Arrow data; otherwise an
    example column named after the modality (``image``, ``text``, ``audio``) of its stored values (or of its
    examples encoded by the modality: PNG images, strings) and a ``ClassLabel`` column ``label``."""
    table = getattr(records, "table", None)
    if isinstance(table, pa.Table):
        return table
    modality = records.modality
    values = records.stored_values()
    if values is None:
        if not modality.lossless_storage:
            raise DataError(f"{records.where} holds in-memory {modality.name} examples, which a Hugging Face "
                            f"{modality.feature_type} column would store lossily; save it in its own format (.npz), "
                            f"or start from files (a folder or a table) so their bytes are kept.")
        values = []
        for start in range(0, len(records), ROWS_PER_ENCODE):
            batch = records.take(np.arange(start, min(start + ROWS_PER_ENCODE, len(records))))
            values += [modality.encode_stored(example) for example in batch]
    feature: dict = {"_type": modality.feature_type}
    if modality.feature_type == "Value":  # the only Value a modality stores is a string
        feature["dtype"] = "string"
    if getattr(modality, "sample_rate", None):
        feature["sampling_rate"] = int(modality.sample_rate)
    kind = pa.string() if values and isinstance(values[0], str) else pa.struct([("bytes", pa.binary()),
                                                                                 ("path", pa.string())])
    kind, feature = modality.stored_schema() or (kind, feature)  # graphs: a struct of lists, their own feature
    name = modality.name  # "image", "text", "audio": the column names Hugging Face datasets use
    features = {name: feature, "label": {"_type": "ClassLabel", "names": list(records.class_names)}}
    out = pa.table({name: pa.array(values, kind), "label": pa.array(records.labels, pa.int64())})
    return out.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
