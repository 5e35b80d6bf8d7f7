"""WebDataset tar shards: read them as :class:`Records` (in memory, or one shard at a time for sharded protect) and
write them back with only the marked samples' changed members re-encoded.

The format (https://github.com/webdataset/webdataset): uncompressed POSIX tar files; a **sample** is a run of
consecutive regular members sharing a key, the member name up to the first dot of its base name
(``train/000123.png``, ``train/000123.cls`` -> key ``train/000123``, fields ``png`` and ``cls``). Here:

* **input**: the field named by ``input_column`` (``"jpg"``, ``"wav"``, ``"txt"`` ...), else each sample's first
  field of the dataset's kind: image (``png``, ``jpg`` ...) if the first sample has one, else audio (``wav``),
  else text (``txt``); every sample must have one. Images and audio are the member's bytes, text its UTF-8 string.
* **label**: the integer text of the ``cls`` field (``label_column`` other than ``"label"`` names another field);
  class names are ``0 .. max label`` (tars carry no class list).
* **row id**: as for every other format, the SHA-256 of the input member's stored bytes, *not* the sample key: the
  same image has the same id (and so the same keyed selection) in a tar, a parquet file or a folder, and keys need
  not be unique across shards. A key may not reappear later in the same shard (a malformed WebDataset).
* **writing**: the output has the input's shard names; each tar is the input tar with every member's bytes
  (header and data) copied as they are, except the marked samples' changed members: the input member (a marked
  image as PNG bytes under its own name, so pipelines that select fields by extension still find it and decoders
  that sniff the content, as PIL does, read it losslessly; audio as WAV of the clip's own sample format; text as
  UTF-8) and the ``cls`` member when the label changed (the new integer, with the old value's trailing
  whitespace). A changed member keeps its own header -- name, mode, mtime, uid, gid, uname, gname -- with only
  its size and checksum updated. A tar whose length changed ends with the standard two zero blocks padded to a
  10240-byte record; otherwise its original ending is kept. Compressed tars are refused. The tar layer (reading
  member headers, rewriting members) is :mod:`datamark.data.tar_members`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .._io import Journal, atomic_path
from ..exceptions import DataFormatError, ParameterError
from ..modalities import Modality, get_modality
from .records import StoredRecords
from .tar_members import Member, member_bytes, members_of, rewrite_tar

TEXT_FIELDS = ("txt", "text")


def looks_like_webdataset(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding ``*.tar`` files (WebDataset shards; compressed ones too, to be refused
    with the fix) and no parquet ``data/`` folder."""
    path = Path(path)
    return path.is_dir() and not (path / "data").is_dir() and any(
        next(path.glob(pattern), None) is not None for pattern in ("*.tar", "*.tar.*", "*.tgz"))


def shard_paths(data: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """The tar shards of a folder (its ``*.tar`` files in name order) or of a list of paths, refusing compressed or
    missing shards and lists whose shards share a name (the output keeps the names)."""
    if isinstance(data, (str, os.PathLike)):
        folder = Path(data)
        paths = sorted(folder.glob("*.tar"))
        if not paths:
            packed = sorted(p.name for p in [*folder.glob("*.tar.*"), *folder.glob("*.tgz")])
            hint = f" (it holds compressed {packed[0]}: decompress the shards first)" if packed else ""
            raise DataFormatError(f"'{folder}' holds no WebDataset shards (*.tar){hint}.")
        return paths
    paths = [Path(p) for p in data]
    if not paths:
        raise DataFormatError("The list of WebDataset shards is empty; give at least one .tar file.")
    for path in paths:
        if path.suffix != ".tar" or not path.is_file():
            raise DataFormatError(f"'{path}' is not a WebDataset shard (an existing uncompressed .tar file).")
    names = [p.name for p in paths]
    clash = next((n for n in names if names.count(n) > 1), None)
    if clash is not None:
        raise DataFormatError(f"Two WebDataset shards are named '{clash}'; the output keeps the shards' names, so "
                              f"they must differ. Rename one.")
    return paths


def split_name(name: str) -> tuple[str, str] | None:
    """(key, field) of a member name as WebDataset groups it: the base name up to its first dot is the key's end,
    the rest (lower-cased) the field; None for names without one (not part of any sample)."""
    start = name.rfind("/") + 1
    dot = name.find(".", start)
    if dot <= start:
        return None
    return name[:dot], name[dot + 1:].lower()


@dataclass(frozen=True)
class Sample:
    """One sample of a tar: its key and the member index of each field."""

    key: str
    fields: dict[str, int]


def scan(path: Path, raw: bytes | None = None) -> tuple[list[Member], list[Sample]]:
    """The members and samples of the tar at ``path`` (its bytes ``raw`` when already read; else only its headers
    are read); a malformed tar is a one-line error."""
    members = members_of(path, raw)
    samples: list[Sample] = []
    seen: set[str] = set()
    for index, member in enumerate(members):
        parts = split_name(member.name) if member.regular else None
        if parts is None:
            continue  # directories, links, names without a field: copied as they are, part of no sample
        key, field = parts
        if samples and samples[-1].key == key:
            if field in samples[-1].fields:
                raise DataFormatError(f"The sample '{key}' of '{path}' has two '{field}' members; each field of a "
                                      f"sample must appear once.")
            samples[-1].fields[field] = index
            continue
        if key in seen:
            raise DataFormatError(f"The sample key '{key}' of '{path}' appears again after other samples; a "
                                  f"WebDataset sample's members must be consecutive. Rewrite the shard grouped by key.")
        seen.add(key)
        samples.append(Sample(key, {field: index}))
    return members, samples


def label_field(label_column: str) -> str:
    """The field holding labels: ``cls`` for the default ``label_column="label"``, else ``label_column`` itself."""
    return "cls" if label_column == "label" else label_column.lstrip(".").lower()


def parse_label(data: bytes, where: str) -> int:
    """The integer text of a label member."""
    try:
        value = int(data.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise DataFormatError(f"The label member {where} holds {data[:20]!r}, not an integer class index; name the "
                              f"label field with label_column= (--label-column).") from None
    if value < 0:
        raise DataFormatError(f"The label member {where} holds {value}; class indices are >= 0.")
    return value


@lru_cache(maxsize=1024)  # a dataset has a handful of distinct fields; asked once per sample
def field_kind(field: str) -> str | None:
    """The modality a field holds by its extension: ``image`` (png, jpg ...), ``audio`` (wav), ``text`` (txt)."""
    last = field.rsplit(".", 1)[-1]
    if "." + last in get_modality("image").file_suffixes:
        return "image"
    if "." + last in get_modality("audio").file_suffixes:
        return "audio"
    return "text" if last in TEXT_FIELDS else None


def input_kind(sample: Sample, input_column: str | None, where: str) -> str:
    """The dataset's modality, from its first sample: the kind of ``input_column`` if given, else image if the
    sample has an image field, else audio, else text."""
    if input_column is not None:
        field = input_column.lstrip(".").lower()
        if field_kind(field) is None:
            raise ParameterError(f"The input field '{field}' of {where} is not an image (png, jpg, ...), audio (wav) "
                                 f"or text (txt) field; name one of those with input_column= (--input-column).")
        return field_kind(field)
    for wanted in ("image", "audio", "text"):
        if any(field_kind(field) == wanted for field in sample.fields):
            return wanted
    raise DataFormatError(f"The first sample '{sample.key}' of {where} has no image, audio or text field (fields: "
                          f"{sorted(sample.fields)}); name the input field with input_column= (--input-column).")


def input_field(sample: Sample, input_column: str | None, kind: str, where: str) -> str:
    """A sample's input field: ``input_column`` if given, else its first field of ``kind`` (samples may differ:
    ``png`` in one, ``jpg`` in the next, as WebDataset's ``"jpg;png"`` selects)."""
    wanted = [input_column.lstrip(".").lower()] if input_column is not None else \
        [f for f in sample.fields if field_kind(f) == kind]
    if not wanted or wanted[0] not in sample.fields:
        what = f"'{wanted[0]}'" if wanted else f"{kind}"
        raise DataFormatError(f"The sample '{sample.key}' of {where} has no {what} member (fields: "
                              f"{sorted(sample.fields)}); every sample needs its input and label fields "
                              f"(--input-column and --label-column name them).")
    return wanted[0]


@dataclass(frozen=True)
class Layout:
    """Where each row of a :class:`WebDatasetRecords` lives, and what it held when read: what writing compares to
    decide which members changed."""

    paths: tuple[Path, ...]          # the input shards
    names: tuple[str, ...]           # their output names (the input's)
    shard: np.ndarray                # per row: its shard
    input_member: np.ndarray         # per row: the member index of its input field
    label_member: np.ndarray         # per row: the member index of its label field
    values: tuple[Any, ...]          # per row: the stored value read (bytes struct or string)
    labels: np.ndarray               # per row: the label read
    label_bytes: tuple[bytes, ...]   # per row: the label member's bytes
    members: tuple[list[Member], ...]  # per shard: its members, as read (what writing copies)


class WebDatasetRecords(StoredRecords):
    """Samples of WebDataset tar shards as one table: the input field (image, audio or text) and the label."""

    source_format = "webdataset"

    def __init__(self, values: list[Any], labels: np.ndarray, class_names: Sequence[str], where: str,
                 modality: Modality, layout: Layout) -> None:
        self.layout = layout
        super().__init__(values, labels, class_names, where, modality)

    @classmethod
    def load(cls, data: str | os.PathLike | Sequence[str | os.PathLike], *, split: str | None = None,
             input_column: str | None = None, label_column: str = "label", class_names: Sequence[str] | None = None,
             modality: Modality | None = None) -> WebDatasetRecords:
        """Read every sample of the shards of ``data`` (a folder of ``*.tar`` or a list of tar paths).
        ``class_names`` and ``modality`` (the whole dataset's, when reading one shard of many) default to
        ``0 .. max label`` and the input field's modality configured on the first sample."""
        if split is not None:
            raise ParameterError(f"split='{split}' picks a split of a Hugging Face layout; WebDataset shards hold one "
                                 f"split (give the folder or the list of that split's shards). Drop split=.")
        paths = shard_paths(data)
        where = f"'{data}'" if isinstance(data, (str, os.PathLike)) else f"'{paths[0]}'" + (
            f" and {len(paths) - 1} more" if len(paths) > 1 else "")
        want = label_field(label_column)
        values: list[Any] = []
        labels, label_bytes, shard, inputs, label_members, shard_members = [], [], [], [], [], []
        kind = None if modality is None else modality.name
        for k, path in enumerate(paths):
            raw = path.read_bytes()  # one shard at a time: each member's bytes are slices of it
            members, samples = scan(path, raw)
            shard_members.append(members)
            for sample in samples:
                kind = kind or input_kind(sample, input_column, f"'{path}'")
                field = input_field(sample, input_column, kind, f"'{path}'")
                input_field(sample, want, "label", f"'{path}'")
                data_of = [member_bytes(raw, members[sample.fields[n]]) for n in (field, want)]
                values.append(_stored(data_of[0], kind, f"'{path}:{members[sample.fields[field]].name}'"))
                labels.append(parse_label(data_of[1], f"'{path}:{members[sample.fields[want]].name}'"))
                label_bytes.append(data_of[1])
                shard.append(k)
                inputs.append(sample.fields[field])
                label_members.append(sample.fields[want])
        if not values and modality is None:  # one empty shard of many (modality given) is fine
            raise DataFormatError(f"The WebDataset shards {where} hold no samples (members named KEY.FIELD).")
        labels_array = np.asarray(labels, dtype=np.int64)
        if class_names is None:  # an empty shard of many: any two names (the sharded engine replaces them)
            class_names = [str(c) for c in range(int(labels_array.max()) + 1 if len(labels_array) else 2)]
        # the whole dataset's modality where given (one shard of many), else configured on the first sample (audio:
        # its sample rate), as for the other formats
        modality = modality or get_modality(kind).configured(values[:1], None, [f"{paths[0]} (first sample)"])
        layout = Layout(tuple(paths), tuple(p.name for p in paths), np.asarray(shard, dtype=np.int64),
                        np.asarray(inputs, dtype=np.int64), np.asarray(label_members, dtype=np.int64), tuple(values),
                        labels_array, tuple(label_bytes), tuple(shard_members))
        return cls(values, labels_array, class_names, where, modality, layout)

    def replace(self, rows: np.ndarray, inputs: np.ndarray, labels: np.ndarray) -> WebDatasetRecords:
        values = self._replaced_values(rows, inputs)
        new_labels = self.labels.copy()
        new_labels[rows] = labels
        out = type(self)(values, new_labels, self.class_names, f"{self.where}[watermarked]", self.modality,
                         self.layout)
        return self._keep_decoded(out, rows, inputs, values)

    def replacements(self, shard: int) -> dict[int, bytes]:
        """The new bytes of the members of shard ``shard`` that changed since reading (member index -> bytes)."""
        out: dict[int, bytes] = {}
        layout = self.layout
        for row in np.flatnonzero(layout.shard == shard).tolist():
            value = self._values[row]
            if value != layout.values[row]:
                data = value.encode("utf-8") if isinstance(value, str) else value["bytes"]
                out[int(layout.input_member[row])] = data
            if self.labels[row] != layout.labels[row]:
                old = layout.label_bytes[row]
                tail = old[len(old.rstrip()):]  # keep the member's own ending ("3\n" -> "7\n")
                out[int(layout.label_member[row])] = str(int(self.labels[row])).encode("ascii") + tail
        return out

    def write_shard(self, shard: int, path: Path) -> None:
        """Write shard ``shard`` at ``path``: its input tar with this dataset's changed members (see the module)."""
        rewrite_tar(self.layout.paths[shard], path, self.replacements(shard), self.layout.members[shard])

    def _write(self, path: str | os.PathLike, *, overwrite: bool = False, journal: Journal | None = None) -> None:
        """A folder of the input's shard names, each tar rewritten with the changed members only."""
        with atomic_path(path, overwrite=overwrite, directory=True, what="dataset", journal=journal) as tmp:
            for shard, name in enumerate(self.layout.names):
                self.write_shard(shard, tmp / name)


def _stored(data: bytes, kind: str, where: str) -> Any:
    """A member's bytes as a modality stores a value: a string (text) or a ``{"bytes", "path"}`` struct."""
    if kind != "text":
        return {"bytes": data, "path": None}
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataFormatError(f"The text member {where} is not UTF-8 ({err.reason} at byte {err.start}); re-encode "
                              f"it as UTF-8.") from None
