"""Hugging Face layouts: a Parquet file (as in ``shared/data/cifar10``) or a ``save_to_disk`` Arrow folder.

The table stays Arrow end to end: unchanged rows keep their original bytes, changed rows get PNG bytes, and
the schema (including Hugging Face's feature metadata with the class names) is written back unchanged.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .._io import Journal, atomic_path
from ..exceptions import DataError, DataFormatError
from .codec import content_id, decode_image, encode_png, stack_images
from .records import Records


def _image_column(table: pa.Table, features: dict, requested: str | None, where: str) -> str:
    if requested is not None:
        if requested not in table.column_names:
            raise DataError(f"The dataset {where} has no column '{requested}'; its columns are {table.column_names}.")
        return requested
    for name in table.column_names:
        if features.get(name, {}).get("_type") == "Image":
            return name
    for name in table.column_names:
        typ = table.schema.field(name).type
        if pa.types.is_struct(typ) and typ.get_field_index("bytes") >= 0:
            return name
    raise DataError(f"The dataset {where} has no image column (columns: {table.column_names}); pass "
                    f"input_column= (--input-column) to name it.")


class ArrowRecords(Records):
    """A table with an image column (struct of ``bytes`` and ``path``, Hugging Face's Image feature) and labels."""

    def __init__(self, table: pa.Table, *, where: str, source_format: str = "parquet",
                 input_column: str | None = None, label_column: str = "label") -> None:
        meta = (table.schema.metadata or {}).get(b"huggingface", b"{}")
        features = json.loads(meta).get("info", {}).get("features", {})
        self.table = table
        self.source_format = source_format
        self.input_column = _image_column(table, features, input_column, where)
        if label_column not in table.column_names:
            raise DataError(f"The dataset {where} has no label column '{label_column}'; its columns are "
                            f"{table.column_names}. Pass label_column= (--label-column).")
        self.label_column = label_column
        labels = np.asarray(table.column(label_column).to_numpy(zero_copy_only=False))
        if labels.dtype.kind not in "iu":
            raise DataError(f"The label column '{label_column}' of {where} must hold integers; got {labels.dtype}.")
        names = features.get(label_column, {}).get("names")
        if names is None:
            names = [str(c) for c in range(int(labels.max()) + 1 if len(labels) else 0)]
        self._bytes = table.column(self.input_column).combine_chunks().field("bytes").to_pylist()
        missing = [i for i, b in enumerate(self._bytes) if b is None]
        if missing:
            raise DataError(f"Row {missing[0]} of {where} has no image bytes ({len(missing)} such rows); embed the "
                            f"images in the table (Hugging Face: cast_column with Image(decode=True)) first.")
        self._decoded: np.ndarray | None = None
        super().__init__(labels, names, where)

    def _compute_ids(self) -> list[str]:
        return [content_id(b) for b in self._bytes]

    def inputs(self) -> np.ndarray:
        if self._decoded is None:
            self._decoded = stack_images([decode_image(b, f"at row {i} of {self.where}")
                                          for i, b in enumerate(self._bytes)], self.where)
        return self._decoded

    def replace(self, rows: np.ndarray, inputs: np.ndarray, labels: np.ndarray) -> ArrowRecords:
        images = list(self._bytes)
        paths = self.table.column(self.input_column).combine_chunks().field("path").to_pylist()
        for row, image in zip(rows.tolist(), inputs, strict=False):
            images[row] = encode_png(image)
            paths[row] = None
        image_type = self.table.schema.field(self.input_column).type
        column = pa.StructArray.from_arrays([pa.array(images, pa.binary()), pa.array(paths, pa.string())],
                                            fields=[image_type.field("bytes"), image_type.field("path")])
        new_labels = self.labels.copy()
        new_labels[rows] = labels
        label_type = self.table.schema.field(self.label_column).type
        table = self.table.set_column(self.table.column_names.index(self.input_column),
                                      self.table.schema.field(self.input_column), column)
        table = table.set_column(table.column_names.index(self.label_column),
                                 self.table.schema.field(self.label_column), pa.array(new_labels, label_type))
        out = ArrowRecords(table.replace_schema_metadata(self.table.schema.metadata),
                           where=f"{self.where}[watermarked]", source_format=self.source_format,
                           input_column=self.input_column, label_column=self.label_column)
        if self._decoded is not None:
            decoded = self._decoded.copy()
            decoded[rows] = inputs
            out._decoded = decoded
        return out

    def save(self, path: str | os.PathLike, *, overwrite: bool = False, journal: Journal | None = None) -> None:
        """Write a Parquet file, or an Arrow folder if the data came from one, atomically (see Records.save)."""
        folder = self.source_format == "arrow"
        with atomic_path(path, overwrite=overwrite, directory=folder, what="dataset", journal=journal) as tmp:
            if folder:
                _import_datasets().Dataset(self.table).save_to_disk(str(tmp))
            else:
                pq.write_table(self.table, tmp)

    @classmethod
    def load(cls, path: str | os.PathLike, **columns) -> ArrowRecords:
        path = Path(path)
        if path.is_dir():
            datasets = _import_datasets()
            try:
                ds = datasets.load_from_disk(str(path))
            except Exception as err:
                raise DataFormatError(f"Cannot read the Arrow dataset folder '{path}': {err}.") from err
            if isinstance(ds, datasets.DatasetDict):
                raise DataFormatError(f"'{path}' holds several splits {list(ds)}; pass one split's folder.")
            return cls.from_hf(ds, where=f"'{path}'", source_format="arrow", **columns)
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as err:
            raise DataFormatError(f"Cannot read '{path}' as Parquet: {err}.") from err
        return cls(table, where=f"'{path}'", source_format="parquet", **columns)

    @classmethod
    def from_hf(cls, dataset, *, where: str = "(Hugging Face dataset)", source_format: str = "arrow",
                **columns) -> ArrowRecords:
        """Wrap an in-memory ``datasets.Dataset`` (its Arrow table is shared, not copied)."""
        table = dataset.with_format(None).data.table
        if dataset._indices is not None:
            table = dataset.flatten_indices().data.table
        return cls(table, where=where, source_format=source_format, **columns)

    def to_hf(self):
        """This table as a ``datasets.Dataset`` (features and class names preserved)."""
        return _import_datasets().Dataset(self.table)


def _import_datasets():
    try:
        import datasets
    except ImportError as err:
        raise ImportError("Reading and writing Hugging Face Arrow folders needs the 'datasets' package: "
                          "pip install \"datamark[hf]\".") from err
    return datasets
