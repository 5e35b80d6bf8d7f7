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
  10240-byte record; otherwise its original ending is kept. Compressed tars are refused.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .._io import Journal, atomic_path
from ..exceptions import DataFormatError, ParameterError
from ..modalities import Modality, get_modality
from .records import StoredRecords

BLOCK = tarfile.BLOCKSIZE    # 512: tar headers and data are laid out in blocks
RECORD = tarfile.RECORDSIZE  # 10240: what tar writers pad an archive to
TEXT_FIELDS = ("txt", "text")
ZERO_BLOCK = bytes(BLOCK)
USTAR_MAGIC = (b"ustar\x00", b"ustar ")  # POSIX (Python's default, pax without extended headers) and GNU
REGULAR_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
#: Header types the fast parser reads itself: files, links, directories, devices, FIFOs (no pax or GNU extensions).
PLAIN_TYPES = (*REGULAR_TYPES, tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.DIRTYPE,
               tarfile.FIFOTYPE)


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


class Member(NamedTuple):
    """What datamark needs of a tar member: its name, where its data starts, its size, whether it is a regular
    file, and whether it can be rewritten in place (not sparse, not sized by a pax header)."""

    name: str
    offset_data: int
    size: int
    regular: bool
    plain: bool = True


def members_of(path: Path, raw: bytes | None = None) -> list[Member]:
    """The members of the tar at ``path`` (its bytes ``raw`` when already read; else its headers are read and its
    data skipped): plain ustar and GNU headers are parsed here, several times faster than :mod:`tarfile`; any other
    header (pax, GNU long names, base-256 sizes, old v7 tars) hands the archive to :mod:`tarfile`, which also names
    what is wrong with a damaged one."""
    try:
        if raw is None:
            with open(path, "rb") as f:
                members = _parse(lambda at: (f.seek(at), f.read(BLOCK))[1], path, None)
                end = max((m.offset_data + _padded(m.size) for m in members), default=0)
                f.seek(end)
                tail = f.read()
        else:
            members = _parse(lambda at: raw[at:at + BLOCK], path, raw)
            end = max((m.offset_data + _padded(m.size) for m in members), default=0)
            tail = raw[end:]
    except OSError as err:
        raise DataFormatError(f"Cannot read '{path}': {err}.") from err
    if tail.strip(b"\0"):  # tarfile stops at the first zero or damaged header: never drop what follows silently
        raise DataFormatError(f"'{path}' holds data after its last readable member (at byte {end}: a damaged header, "
                              f"or tars concatenated); repair or re-create the shard (the input is never modified).")
    return members


def _parse(block_at: Any, path: Path, raw: bytes | None) -> list[Member]:
    """The headers' walk behind :func:`members_of`: ``block_at(offset)`` reads one 512-byte block. With ``raw``,
    the checksums are verified at the end, vectorised; else block by block."""
    members: list[Member] = []
    heads, sums = [], []
    position = 0
    while True:
        block = block_at(position)
        if len(block) < BLOCK or block == ZERO_BLOCK:
            if len(block) != BLOCK and (block or not members):
                return _tarfile_members(path)  # truncated, or empty: tarfile says which
            break
        size_field, kind = block[124:136], block[156:157]
        if block[257:263] not in USTAR_MAGIC or size_field[0] & 0x80 or kind not in PLAIN_TYPES:
            return _tarfile_members(path)
        stored = int(block[148:156].split(b"\0", 1)[0].strip() or b"0", 8)
        if raw is None and stored != 256 + sum(block[:148]) + sum(block[156:]):  # checksum field as 8 spaces
            raise _damaged(path, position)
        heads.append(position)
        sums.append(stored)
        size = int(size_field.split(b"\0", 1)[0].strip() or b"0", 8)
        name = _field(block[0:100])
        prefix = _field(block[345:500])
        regular = kind in REGULAR_TYPES and not (kind == b"\0" and name.endswith("/"))
        if not regular and size:
            return _tarfile_members(path)
        members.append(Member(f"{prefix}/{name}" if prefix else name, position + BLOCK, size, regular))
        position += BLOCK + _padded(size)
    if raw is not None:
        bad = _bad_checksum(raw, heads, sums)
        if bad is not None:
            raise _damaged(path, bad)
    return members


def _damaged(path: Path, offset: int) -> DataFormatError:
    return DataFormatError(f"The tar '{path}' has a damaged header (bad checksum) at byte {offset}; replace the shard "
                           f"(the input is never modified).")


def _bad_checksum(raw: bytes, heads: list[int], sums: list[int], chunk: int = 4096) -> int | None:
    """The offset of the first header of ``heads`` in ``raw`` whose bytes do not sum to its stored checksum (the
    field itself counted as 8 spaces), ``chunk`` headers at a time; None when all match."""
    data = np.frombuffer(raw, dtype=np.uint8)
    offsets = np.arange(BLOCK)
    for start in range(0, len(heads), chunk):
        at = np.asarray(heads[start:start + chunk])
        blocks = data[at[:, None] + offsets].astype(np.int64)
        wrong = np.flatnonzero(256 + blocks[:, :148].sum(axis=1) + blocks[:, 156:].sum(axis=1)
                               != np.asarray(sums[start:start + chunk]))
        if len(wrong):
            return int(at[wrong[0]])
    return None


def _tarfile_members(path: Path) -> list[Member]:
    try:
        with tarfile.open(path, "r:") as tar:
            infos = tar.getmembers()
    except (tarfile.TarError, OSError) as err:
        raise DataFormatError(f"Cannot read '{path}' as an uncompressed tar: {err}. Decompress or replace the shard "
                              f"(the input is never modified).") from err
    return [Member(m.name, m.offset_data, m.size, m.isfile(), not m.issparse() and "size" not in m.pax_headers)
            for m in infos]


def _field(data: bytes) -> str:
    return data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


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
                data_of = [_member_bytes(raw, members[sample.fields[n]]) for n in (field, want)]
                values.append(_stored(data_of[0], kind, f"'{path}:{members[sample.fields[field]].name}'"))
                labels.append(parse_label(data_of[1], f"'{path}:{members[sample.fields[want]].name}'"))
                label_bytes.append(data_of[1])
                shard.append(k)
                inputs.append(sample.fields[field])
                label_members.append(sample.fields[want])
        if not values and (modality is None or class_names is None):  # one empty shard of many is fine
            raise DataFormatError(f"The WebDataset shards {where} hold no samples (members named KEY.FIELD).")
        labels_array = np.asarray(labels, dtype=np.int64)
        if class_names is None:
            class_names = [str(c) for c in range(int(labels_array.max()) + 1)]
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


def _member_bytes(raw: bytes, member: Member) -> bytes:
    return raw[member.offset_data:member.offset_data + member.size]


def _stored(data: bytes, kind: str, where: str) -> Any:
    """A member's bytes as a modality stores a value: a string (text) or a ``{"bytes", "path"}`` struct."""
    if kind != "text":
        return {"bytes": data, "path": None}
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataFormatError(f"The text member {where} is not UTF-8 ({err.reason} at byte {err.start}); re-encode "
                              f"it as UTF-8.") from None


def rewrite_tar(source: Path, target: Path, replacements: dict[int, bytes], members: list[Member] | None = None
                ) -> None:
    """Copy the tar ``source`` to ``target`` byte for byte, except that member ``i`` of ``replacements`` gets the new
    data: its own header with the size and checksum updated. See the module docstring for the archive's end."""
    members = members_of(source) if members is None else members  # those read with the shard, else its headers
    with open(source, "rb") as src, open(target, "wb") as out:
        position = 0
        for index in sorted(replacements):
            member = members[index]
            if not member.plain:
                raise DataFormatError(f"The member '{member.name}' of '{source}' is sparse or sized by a pax header; "
                                      f"datamark rewrites plain members only. Repack the shard with plain members.")
            header_at = member.offset_data - BLOCK
            _copy(src, out, position, header_at)
            src.seek(header_at)
            data = replacements[index]
            out.write(_header(bytearray(src.read(BLOCK)), len(data)))
            out.write(data + b"\0" * (_padded(len(data)) - len(data)))
            position = member.offset_data + _padded(member.size)
        end = max((m.offset_data + _padded(m.size) for m in members), default=0)
        _copy(src, out, position, end)
        size = src.seek(0, os.SEEK_END)
        if out.tell() == end:  # same length: the archive's own ending
            _copy(src, out, end, size)
        else:
            length = out.tell() + 2 * BLOCK
            out.write(b"\0" * (2 * BLOCK + (-length) % RECORD))


def _header(header: bytearray, size: int) -> bytes:
    """A ustar/GNU header block with its size field set to ``size`` and its checksum recomputed."""
    if size >= 8 ** 11:
        raise DataFormatError(f"A rewritten tar member of {size} bytes does not fit a tar header's size field.")
    header[124:136] = b"%011o\0" % size
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def _padded(size: int) -> int:
    return size + (-size) % BLOCK


def _copy(src: Any, out: Any, start: int, stop: int, chunk: int = 1 << 20) -> None:
    src.seek(start)
    left = stop - start
    while left > 0:
        block = src.read(min(chunk, left))
        if not block:
            raise DataFormatError(f"The tar '{src.name}' ended early (truncated); replace the damaged shard.")
        out.write(block)
        left -= len(block)
