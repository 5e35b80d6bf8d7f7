"""Delimited text files (TSV / CSV with a header row): one text column, one label column, any other columns.

Rows are kept as their fields; writing uses the file's own delimiter and header, so unchanged rows are written
back as they were read and only marked rows (their text and label fields) change. Labels may be integers or
class names; with names, the classes are the sorted distinct names (or ``class_names`` when given).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._io import Journal, atomic_path
from ..exceptions import DataError, DataFormatError
from ..modalities import get_modality
from .records import Records

#: Column names tried, in order, when no text column is named.
TEXT_COLUMNS = ("sentence", "text", "content", "review", "document", "title")


def _dialect(path: Path) -> tuple[str, int]:
    """Delimiter and quoting for ``path``: TSV files are read verbatim (PTB text holds quote characters)."""
    if path.suffix.lower() in (".tsv", ".tab"):
        return "\t", csv.QUOTE_NONE
    return ",", csv.QUOTE_MINIMAL


def _looks_numeric(values: Sequence[str]) -> bool:
    def number(v: str) -> bool:
        try:
            float(v)
            return True
        except ValueError:
            return False
    sample = [v for v in values[:1000] if v.strip()]
    return bool(sample) and sum(number(v) for v in sample) >= 0.9 * len(sample)


class DelimitedRecords(Records):
    """A TSV/CSV file of text examples. ``rows`` are the data rows' fields; ``header`` the column names."""

    def __init__(self, header: list[str], rows: list[list[str]], *, delimiter: str, quoting: int, where: str,
                 text_column: str, label_column: str, class_names: Sequence[str] | None = None,
                 label_offset: int = 0) -> None:
        self.header, self.rows, self.delimiter, self.quoting = header, rows, delimiter, quoting
        self.text_column, self.label_column, self.label_offset = text_column, label_column, label_offset
        self.source_format = "tsv" if delimiter == "\t" else "csv"
        for name, role, option in ((label_column, "label", "label"), (text_column, "text", "input")):
            if name not in header:
                raise DataError(f"The dataset {where} has no {role} column '{name}'; its columns are {header}. "
                                f"Pass {option}_column= (--{option}-column).")
        self._text_at, self._label_at = header.index(text_column), header.index(label_column)
        for i, fields in enumerate(rows):
            if len(fields) != len(header):
                raise DataFormatError(f"Row {i + 1} of {where} has {len(fields)} fields but the header has "
                                      f"{len(header)}; fix the file (a stray delimiter or quote).")
        raw_labels = [fields[self._label_at] for fields in rows]
        self._named = not all(v.strip().lstrip("-").isdigit() for v in raw_labels)
        if self._named:
            names = list(class_names) if class_names is not None else sorted(set(raw_labels))
            index = {n: i for i, n in enumerate(names)}
            unknown = [v for v in raw_labels if v not in index]
            if unknown:
                raise DataError(f"The label '{unknown[0]}' in {where} is not one of the classes {names}.")
            labels = np.array([index[v] for v in raw_labels], dtype=np.int64)
        else:
            labels = np.array([int(v) for v in raw_labels], dtype=np.int64) - label_offset
            names = list(class_names) if class_names is not None else [
                str(c) for c in range(int(labels.max()) + 1 if len(labels) else 0)]
        texts = [fields[self._text_at] for fields in rows]
        if _looks_numeric(texts):
            raise DataError(f"The column '{text_column}' of {where} holds numbers, not text; name the text column "
                            f"with input_column= (--input-column).")
        super().__init__(labels, names, where, get_modality("text"))
        self._texts = self.modality.batch(texts, where)

    @classmethod
    def load(cls, path: str | os.PathLike, *, input_column: str | None = None, label_column: str = "label",
             class_names: Sequence[str] | None = None) -> DelimitedRecords:
        path = Path(path)
        delimiter, quoting = _dialect(path)
        try:
            with open(path, encoding="utf-8", newline="") as f:
                table = list(csv.reader(f, delimiter=delimiter, quoting=quoting))
        except UnicodeDecodeError as err:
            raise DataFormatError(f"'{path}' is not UTF-8 text ({err.reason} at byte {err.start}); re-encode it, "
                                  f"e.g. iconv -f latin1 -t utf-8.") from err
        if not table:
            raise DataError(f"'{path}' is empty; a delimited dataset needs a header row and data rows.")
        header, rows = table[0], [r for r in table[1:] if r]
        if input_column is None:
            found = [c for c in TEXT_COLUMNS if c in header]
            if not found:
                raise DataError(f"Cannot tell which column of '{path}' holds the text (columns: {header}); pass "
                                f"input_column= (--input-column).")
            input_column = found[0]
        return cls(header, rows, delimiter=delimiter, quoting=quoting, where=f"'{path}'", text_column=input_column,
                   label_column=label_column, class_names=class_names)

    def _compute_ids(self) -> list[str]:
        return [self.modality.stored_id(t) for t in self._texts]

    def inputs(self) -> np.ndarray:
        return self._texts

    def replace(self, rows: np.ndarray, inputs: np.ndarray, labels: np.ndarray) -> DelimitedRecords:
        new_rows = list(self.rows)
        for row, text, label in zip(np.asarray(rows).tolist(), inputs, np.asarray(labels).tolist(), strict=True):
            fields = list(new_rows[row])
            fields[self._text_at] = str(text)
            fields[self._label_at] = self.class_names[label] if self._named else str(int(label) + self.label_offset)
            new_rows[row] = fields
        return DelimitedRecords(self.header, new_rows, delimiter=self.delimiter, quoting=self.quoting,
                                where=f"{self.where}[watermarked]", text_column=self.text_column,
                                label_column=self.label_column, class_names=self.class_names,
                                label_offset=self.label_offset)

    def _write(self, path: str | os.PathLike, *, overwrite: bool = False, journal: Journal | None = None) -> None:
        """Write the file with its own delimiter and header, atomically (see :meth:`Records.save`)."""
        if self.quoting == csv.QUOTE_NONE:
            bad = [i for i, r in enumerate(self.rows) if any(self.delimiter in f or "\n" in f for f in r)]
            if bad:
                raise DataError(f"Row {bad[0]} of {self.where} holds a tab or newline inside a field, which a TSV "
                                f"file cannot store; write it as .csv or parquet instead.")
        with atomic_path(path, overwrite=overwrite, what="dataset", journal=journal) as tmp:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                writer = csv.writer(f, delimiter=self.delimiter, quoting=self.quoting, lineterminator="\n")
                writer.writerow(self.header)
                writer.writerows(self.rows)
