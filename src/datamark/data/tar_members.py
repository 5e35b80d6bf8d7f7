"""The tar layer of WebDataset shards: read a tar's member headers fast (plain ustar/GNU headers parsed here,
anything else through :mod:`tarfile`), and rewrite a tar byte for byte with some members' data replaced.

Every malformed archive is a one-line error naming the shard: a damaged header, data after the last readable member
(where :mod:`tarfile` would stop silently and members would be lost), a truncated file.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..exceptions import DataFormatError

BLOCK = tarfile.BLOCKSIZE    # 512: tar headers and data are laid out in blocks
RECORD = tarfile.RECORDSIZE  # 10240: what tar writers pad an archive to
ZERO_BLOCK = bytes(BLOCK)
USTAR_MAGIC = (b"ustar\x00", b"ustar ")  # POSIX (Python's default, pax without extended headers) and GNU
REGULAR_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
#: Header types the fast parser reads itself: files, links, directories, devices, FIFOs (no pax or GNU extensions).
PLAIN_TYPES = (*REGULAR_TYPES, tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.DIRTYPE,
               tarfile.FIFOTYPE)


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


def member_bytes(raw: bytes, member: Member) -> bytes:
    """The data of ``member`` in the tar bytes ``raw``."""
    return raw[member.offset_data:member.offset_data + member.size]


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
