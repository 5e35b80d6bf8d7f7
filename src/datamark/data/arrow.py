"""Hugging Face layouts: a Parquet file (as in ``shared/data/cifar10``), a ``save_to_disk`` Arrow folder, a folder
of parquet shards as the Hub lays them out, or a ``datasets.Dataset`` (see :mod:`.hf` for the objects and folders).

The table stays Arrow end to end: unchanged rows keep their original stored values (image bytes, strings),
changed rows are re-encoded by the modality (PNG bytes for images, WAV in the original format for audio), and
the schema (including Hugging Face's
feature metadata with the class names) is written back unchanged. Which modality a table holds is read from its
example column: an ``Image`` feature (or a struct with ``bytes``) is an image, an ``Audio`` feature is audio (at
the feature's ``sampling_rate``, else the first clip's), a string column is text.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .._io import Journal
from ..exceptions import DataError, DataFormatError
from ..modalities import Modality, get_modality
from ..registry import MODALITIES
from .records import StoredRecords


def _example_column(table: pa.Table, features: dict, requested: str | None, label_column: str,
                    where: str) -> tuple[str, Modality]:
    """The example column and its modality: the one requested, else the first image column, else the first
    string column that is not the label."""
    modalities = [get_modality(name) for name in MODALITIES]
    names = [requested] if requested is not None else [n for n in table.column_names if n != label_column]
    if requested is not None and requested not in table.column_names:
        raise DataError(f"The dataset {where} has no column '{requested}'; its columns are {table.column_names}.")
    for modality in modalities:
        for name in names:
            if modality.looks_like_column(table.schema.field(name).type, features.get(name, {})):
                return name, modality
    if requested is not None:
        raise DataError(f"The column '{requested}' of {where} holds {table.schema.field(requested).type}, not "
                        f"images (Image feature), audio (Audio feature) or text (strings); name the example column "
                        f"with input_column= (--input-column).")
    raise DataError(f"The dataset {where} has no image, audio or text column (columns: {table.column_names}); pass "
                    f"input_column= (--input-column) to name it.")


class ArrowRecords(StoredRecords):
    """A table with an example column (Hugging Face's Image or Audio feature, or strings) and an integer label
    column."""

    def __init__(self, table: pa.Table, *, where: str, source_format: str = "parquet",
                 input_column: str | None = None, label_column: str = "label", split: str | None = None) -> None:
        meta = (table.schema.metadata or {}).get(b"huggingface", b"{}")
        features = json.loads(meta).get("info", {}).get("features", {})
        self.table = table
        self.source_format = source_format
        self.split = split  # the split it was read as (parquet shards, Hub ids); shards are written under it
        if label_column not in table.column_names:
            raise DataError(f"The dataset {where} has no label column '{label_column}'; its columns are "
                            f"{table.column_names}. Pass label_column= (--label-column).")
        self.input_column, modality = _example_column(table, features, input_column, label_column, where)
        self.label_column = label_column
        labels = np.asarray(table.column(label_column).to_numpy(zero_copy_only=False))
        if labels.dtype.kind not in "iu":
            raise DataError(f"The label column '{label_column}' of {where} must hold integers; got {labels.dtype}.")
        names = features.get(label_column, {}).get("names")
        if names is None:
            names = [str(c) for c in range(int(labels.max()) + 1 if len(labels) else 0)]
        self._values = table.column(self.input_column).to_pylist()  # stored values: bytes structs or strings
        missing = [i for i, v in enumerate(self._values)
                   if v is None or (isinstance(v, dict) and "bytes" in v and v["bytes"] is None)]
        if missing:
            embed = {"image": "embed the images in the table (Hugging Face: cast_column with Image(decode=True)) "
                               "first.",
                     "audio": "embed the audio bytes in the table (Hugging Face: Audio(decode=False) keeps them) "
                              "first."}
            raise DataError(f"Row {missing[0]} of {where} has no {modality.name} ({len(missing)} such rows); "
                            + embed.get(modality.name, "drop or fill empty rows first."))
        modality = modality.configured(self._values, features.get(self.input_column, {}))
        super().__init__(self._values, labels, names, where, modality)

    def replace(self, rows: np.ndarray, inputs: np.ndarray, labels: np.ndarray) -> ArrowRecords:
        values = self._replaced_values(rows, inputs)
        column = pa.array(values, self.table.schema.field(self.input_column).type)
        new_labels = self.labels.copy()
        new_labels[rows] = labels
        label_type = self.table.schema.field(self.label_column).type
        table = self.table.set_column(self.table.column_names.index(self.input_column),
                                      self.table.schema.field(self.input_column), column)
        table = table.set_column(table.column_names.index(self.label_column),
                                 self.table.schema.field(self.label_column), pa.array(new_labels, label_type))
        out = type(self)(table.replace_schema_metadata(self.table.schema.metadata),
                           where=f"{self.where}[watermarked]", source_format=self.source_format,
                           input_column=self.input_column, label_column=self.label_column, split=self.split)
        return self._keep_decoded(out, rows, inputs, values)

    def _write(self, path: str | os.PathLike, *, overwrite: bool = False, journal: Journal | None = None) -> None:
        """Write its own format (see Records.save): a Parquet file, a ``save_to_disk`` folder for data read from one
        (or from a ``datasets`` object), parquet shards for data read from shards."""
        from .output import write_table

        write_table(self.table, path, self.source_format, split=self.split, overwrite=overwrite, journal=journal)

    @classmethod
    def load(cls, path: str | os.PathLike, *, split: str | None = None, **columns) -> ArrowRecords:
        """Read a Parquet file, a ``save_to_disk`` folder or a folder of parquet shards (``split`` picks one split
        of a folder holding several)."""
        path = Path(path)
        if path.is_dir():
            from .hf import load_arrow_folder, load_parquet_shards, looks_like_parquet_shards

            load = load_parquet_shards if looks_like_parquet_shards(path) else load_arrow_folder
            return load(path, split=split, **columns)
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as err:
            raise DataFormatError(f"Cannot read '{path}' as Parquet: {err}.") from err
        return cls(table, where=f"'{path}'", source_format="parquet", **columns)

    @classmethod
    def from_hf(cls, dataset, *, where: str | None = None, source_format: str = "arrow",
                **columns) -> ArrowRecords:
        """Wrap an in-memory ``datasets.Dataset`` (its Arrow table is shared, not copied); see
        :func:`.hf.records_from_hf`, which this is."""
        from .hf import records_from_hf

        return records_from_hf(dataset, where=where, source_format=source_format, **columns)


def import_datasets():
    """The ``datasets`` package, or an ImportError saying how to install it."""
    try:
        import datasets
    except ImportError as err:
        raise ImportError("Reading and writing Hugging Face datasets needs the 'datasets' package: "
                          "pip install \"datamark[hf]\".") from err
    return datasets
