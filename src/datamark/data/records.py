"""The in-memory view of a labelled dataset that methods, trainers and verifiers share.

A :class:`Records` object knows its examples (decoded lazily, as its :class:`~datamark.modalities.Modality`'s
batch: uint8 images, strings, ...), labels, class names, stable row ids and the format it came from;
:meth:`Records.replace` returns a *new* object with some rows changed (the original and its files are never
touched), and :meth:`Records.save` writes it back in its own format (or a Hugging Face layout), atomically.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from ..exceptions import DataError
from ..modalities import Modality, get_modality

if TYPE_CHECKING:
    from .._io import Journal
    from .arrays import ArrayRecords


class Records(ABC):
    """A labelled dataset of one modality. Subclasses are format adapters (numpy arrays, Arrow/Parquet tables,
    image folders, delimited text files); everything that depends on the kind of example is the modality's."""

    source_format: str = "numpy"

    def __init__(self, labels: Sequence[int] | np.ndarray, class_names: Sequence[str], where: str,
                 modality: Modality | str = "image") -> None:
        self.modality = get_modality(modality) if isinstance(modality, str) else modality
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = tuple(str(c) for c in class_names)
        self.where = where
        if len(self.class_names) < 2:
            raise DataError(f"The dataset {where} has {len(self.class_names)} class(es); a classifier needs >= 2.")
        bad = np.flatnonzero((self.labels < 0) | (self.labels >= len(self.class_names)))
        if bad.size:
            raise DataError(f"The dataset {where} has label {int(self.labels[bad[0]])} at row {int(bad[0])}, outside "
                            f"the {len(self.class_names)} classes 0..{len(self.class_names) - 1}; fix the labels or "
                            f"the class list.")

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(rows={len(self)}, classes={self.num_classes}, "
                f"input_shape={self.input_shape}, from={self.where!r})")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @cached_property
    def ids(self) -> list[str]:
        """Stable row ids: the SHA-256 of each example's stored bytes (see :func:`codec.content_id`)."""
        return self._compute_ids()

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 over the sorted (id, label) pairs: identifies the content, whatever the row order."""
        digest = hashlib.sha256()
        for row_id, label in sorted(zip(self.ids, self.labels.tolist(), strict=False)):
            digest.update(f"{row_id}:{label}\n".encode())
        return digest.hexdigest()

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one example: (H, W, C) for images, () for text."""
        return self.modality.example_shape(self.inputs())

    @abstractmethod
    def _compute_ids(self) -> list[str]: ...

    @abstractmethod
    def inputs(self) -> np.ndarray:
        """All examples decoded as the modality's batch (images validated: one shape, one mode)."""

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The examples at ``rows`` as a batch; adapters that decode lazily decode only these."""
        return self.inputs()[np.asarray(rows, dtype=np.int64)]

    @abstractmethod
    def replace(self, rows: np.ndarray, inputs: np.ndarray, labels: np.ndarray) -> Records:
        """A new dataset where ``rows`` hold ``inputs`` and ``labels``; every other row is bit-identical."""

    def map_rows(self, rows: np.ndarray, fn: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]], *,
                 shard_size: int = 1024) -> Records:
        """A new dataset where ``rows`` hold ``fn(examples, labels)``; only those rows are decoded and re-encoded,
        ``shard_size`` at a time, and every other row keeps its stored bytes."""
        rows = np.asarray(rows, dtype=np.int64)
        outputs, labels = [], []
        for start in range(0, len(rows), shard_size):
            shard = rows[start:start + shard_size]
            new_inputs, new_labels = fn(self.take(shard), self.labels[shard].copy())
            outputs.append(new_inputs)
            labels.append(np.asarray(new_labels, dtype=np.int64))
        if not outputs:
            return self.replace(rows, self.take(rows), self.labels[rows])
        return self.replace(rows, np.concatenate(outputs), np.concatenate(labels))

    def save(self, path: str | os.PathLike, *, format: str | None = None, split: str | None = None,
             overwrite: bool = False, journal: Journal | None = None) -> None:
        """Write the dataset atomically: in its own format (``format=None``), or as a Hugging Face layout.

        ``format`` is ``None`` (the format it was read in: modified images as PNG, text as UTF-8), ``"hf-disk"``
        (a ``datasets.save_to_disk`` folder), ``"parquet-shards"`` (a folder ``data/{split}-0000i-of-0000N.parquet``
        as the Hub lays it out, ready for ``push_to_hub`` / ``huggingface-cli upload``) or ``"parquet"`` (one
        file). A path whose suffix names another format (``x.npz`` for parquet data) is refused, never silently
        converted; ``split`` names the shards' split (default: the one read, else ``"train"``). See
        :mod:`datamark.data.output`. An existing ``path`` is replaced only with ``overwrite`` and only if it is an
        output of the same kind (a file, or a folder datamark wrote); ``journal`` lets a caller undo the write
        (see :mod:`datamark._io`).
        """
        from .output import save_records

        save_records(self, path, format=format, split=split, overwrite=overwrite, journal=journal)

    @abstractmethod
    def _write(self, path: str | os.PathLike, *, overwrite: bool = False, journal: Journal | None = None) -> None:
        """Write the dataset in its own format, atomically (the adapter's half of :meth:`save`)."""

    def stored_values(self) -> list | None:
        """Each row's stored value as an Arrow column holds it (a ``{"bytes", "path"}`` struct of the file's bytes,
        or a string), where the adapter keeps the stored form; None when only decoded examples exist. Writing a
        Hugging Face layout uses these, so unchanged rows keep their bytes and ids."""
        return None

    def to_hf(self):
        """This dataset as a ``datasets.Dataset`` (features and class names set; see :func:`output.arrow_table`)."""
        from .arrow import import_datasets
        from .output import arrow_table

        return import_datasets().Dataset(arrow_table(self))

    def subset(self, rows: np.ndarray) -> ArrayRecords:
        """The given rows as in-memory arrays (probe sets, test slices)."""
        from .arrays import ArrayRecords
        rows = np.asarray(rows, dtype=np.int64)
        return ArrayRecords(self.take(rows), self.labels[rows], self.class_names, where=f"{self.where}[subset]",
                            modality=self.modality)


class StoredRecords(Records):
    """Records over a list of stored values (a column's ``{"bytes", "path"}`` structs or strings, a tar's input
    members), decoded only when asked for: ids hash the stored values, and a replace re-encodes only the changed
    rows, so unchanged rows keep their bytes. The Arrow/Parquet and WebDataset adapters share it."""

    def __init__(self, values: list, labels: Sequence[int] | np.ndarray, class_names: Sequence[str], where: str,
                 modality: Modality) -> None:
        self._values = values
        self._decoded: np.ndarray | None = None
        super().__init__(labels, class_names, where, modality)
        if modality.name == "text":  # cheap to decode, and refusing empty or non-string rows early is clearer
            self.inputs()

    def _compute_ids(self) -> list[str]:
        return [self.modality.stored_id(v) for v in self._values]

    def stored_values(self) -> list:
        return self._values

    def inputs(self) -> np.ndarray:
        if self._decoded is None:
            self._decoded = self.modality.decode_stored(self._values, self.where)
        return self._decoded

    def take(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        if self._decoded is not None:
            return self._decoded[rows]
        return self.modality.decode_stored([self._values[r] for r in rows.tolist()], self.where)

    def _replaced_values(self, rows: np.ndarray, inputs: np.ndarray) -> list:
        """The stored values with ``rows`` re-encoded from ``inputs`` (each in the format of the value it replaces)."""
        values = list(self._values)
        for row, example in zip(rows.tolist(), inputs, strict=False):
            values[row] = self.modality.encode_stored(example, self._values[row])
        return values

    def _keep_decoded(self, out: StoredRecords, rows: np.ndarray, inputs: np.ndarray, values: list) -> StoredRecords:
        """Give ``out`` (this dataset with ``rows`` replaced) the decoded examples already in memory, the replaced
        rows as their stored values decode (so a later ``inputs()`` decodes nothing)."""
        if self._decoded is not None:
            decoded = self._decoded.copy()
            decoded[rows] = self.modality.as_stored(inputs, [values[r] for r in rows.tolist()], out.where)
            out._decoded = decoded
        return out
