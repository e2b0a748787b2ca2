"""Segment files: many spool entries in one immutable file, written with one fsync.

Responsible for: the bytes of a segment (build one from entry records, read back its index
and refuse, with a reason, one that is not intact) and segment file names. Layout (integers
unsigned 32-bit big-endian):

    b"VLS1"                          magic + format version
    index_length | crc32(index)
    index                            msgpack list of [name, not_before, offset, length]
    record 0 | record 1 | ...        spool.record.encode(meta, body), each with its own CRCs

`offset` counts from the first byte after the index, so the index can be built before its
own size is known. `not_before` is the entry's first attempt time (epoch seconds): the
index alone answers "what is queued here and when is it due" (a restart reads only the
index, never a body).

Why segments instead of one file per entry (the format until 2026-11-26): one file per
entry cost an O_EXCL create, a write, an fsync, a link and an unlink at intake plus an
unlink after delivery, ~30 % of all CPU at ~1 ms a message (bench/README.md). Measured
here (ext4, 256 x 5 KB): create+write+fsync per file 125-150 µs wall / 45-71 µs CPU, and
the unlink of a synced file 45 µs; one 1.3 MB segment with one fsync 5-6 µs a message.
Not responsible for: which entries of a segment are still live (spool.shard keeps that),
durability (spool.atomic writes the file), what meta means.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from spool.errors import CorruptEntry

__all__ = [
    "MAGIC",
    "IndexItem",
    "build",
    "check_rows",
    "parse_segment_name",
    "read_index",
    "read_rows",
    "segment_name",
]

MAGIC = b"VLS1"
_HEADER = struct.Struct(">4sII")  # magic, index length, index crc32
_FIRST_READ = 64 * 1024  # one read holds the index of ~1 000 entries
_NAME_RE = re.compile(r"([0-9a-f]{16})\.seg")
SUFFIX = ".seg"


@dataclass(frozen=True, slots=True)
class IndexItem:
    """One entry of a segment: where its record lies (absolute offset) and when it is due."""

    name: str
    not_before: float
    offset: int
    length: int


def segment_name(seq: int) -> str:
    """`<seq as 16 hex digits>.seg`: names sort in write order."""
    return f"{seq:016x}{SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    """The sequence number of a segment file name; None if `name` is not one."""
    m = _NAME_RE.fullmatch(name)
    return int(m[1], 16) if m else None


def build(entries: Sequence[tuple[str, float, bytes]]) -> tuple[bytes, list[IndexItem]]:
    """The segment for `entries` = (name, not_before, record bytes), and its index with
    absolute offsets (what the caller keeps in memory to read a record back)."""
    offsets: list[int] = []
    pos = 0
    for _, _, rec in entries:
        offsets.append(pos)
        pos += len(rec)
    index = msgpack.packb(
        [[name, nb, off, len(rec)] for (name, nb, rec), off in zip(entries, offsets, strict=True)],
        use_bin_type=True,
    )
    base = _HEADER.size + len(index)
    header = _HEADER.pack(MAGIC, len(index), zlib.crc32(index))
    data = b"".join([header, index, *(rec for _, _, rec in entries)])
    items = [
        IndexItem(name, nb, base + off, len(rec))
        for (name, nb, rec), off in zip(entries, offsets, strict=True)
    ]
    return data, items


def read_index(fd: int) -> list[IndexItem]:
    """The index of the segment open on `fd`. Raises CorruptEntry with a reason if the
    header, the index or the file size do not agree (a damaged or foreign file)."""
    base, size, rows = read_rows(fd)
    check_rows(rows, base, size)
    return [IndexItem(r[0], r[1], base + r[2], r[3]) for r in rows]


def read_rows(fd: int) -> tuple[int, int, list[Any]]:
    """The index of the segment open on `fd` as it decodes: (base, file size, rows), each
    row [name, not_before, offset from base, length] if the segment is intact. Checks the
    header, the CRC and the decoding, not the rows: `check_rows` does (read_index calls
    it; the start-up scan checks a million rows in bulk instead, spool.scan)."""
    head = os.pread(fd, _FIRST_READ, 0)
    if len(head) < _HEADER.size:
        raise CorruptEntry(f"segment shorter than its header ({len(head)} bytes)")
    magic, length, crc = _HEADER.unpack_from(head)
    if magic != MAGIC:
        raise CorruptEntry(f"bad segment magic {magic!r}")
    end = _HEADER.size + length
    raw = head[_HEADER.size : end]
    if len(raw) < length:
        raw += os.pread(fd, end - len(head), len(head))
    if len(raw) != length:
        raise CorruptEntry(f"segment index truncated ({len(raw)} of {length} bytes)")
    if zlib.crc32(raw) != crc:
        raise CorruptEntry("segment index CRC mismatch")
    try:
        rows = msgpack.unpackb(raw, raw=False, use_list=True)
    except (ValueError, TypeError, msgpack.UnpackException) as e:
        raise CorruptEntry(f"segment index does not decode: {e}") from e
    if not isinstance(rows, list):
        raise CorruptEntry("segment index is not a list")
    return end, os.fstat(fd).st_size, rows


def check_rows(rows: list[Any], base: int, size: int) -> None:
    """Raise CorruptEntry unless every row is [str, number, offset >= 0, length >= 0] and
    every record ends within the file's `size`; not_before becomes a float."""
    if not all(map(_good_row, rows)):
        raise CorruptEntry("segment index has malformed rows")
    for r in rows:
        if type(r[1]) is int:
            r[1] = float(r[1])
    if rows and base + max(r[2] + r[3] for r in rows) > size:
        raise CorruptEntry(f"segment truncated: records end past its {size} bytes")


def _good_row(r: Any) -> bool:
    return (
        type(r) is list
        and len(r) == 4
        and type(r[0]) is str
        and type(r[1]) in (float, int)
        and type(r[2]) is int
        and type(r[3]) is int
        and r[2] >= 0
        and r[3] >= 0
    )
