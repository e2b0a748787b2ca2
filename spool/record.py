"""The on-disk format of one spool entry: a pure bytes <-> (meta, body) codec.

Responsible for: encoding an entry and refusing, with a precise reason, anything that is not
a complete, intact entry. Layout (all integers unsigned 32-bit big-endian):

    b"VLQ1"                              magic + format version
    length | crc32 | meta                meta = msgpack.packb(dict, use_bin_type=True)
    length | crc32 | body                body = the message bytes, untouched
    b"END!"                              trailer

Why we frame msgpack ourselves: msgpack's Unpacker silently stops at a truncated tail (it
waits for more data, dependency-facts §5), so a torn write would not be reported. The
explicit trailer follows Postfix: "every queue file must end with an explicit END record".
The CRCs catch bit rot inside a frame; the exact-length rule (magic + frames + trailer, and
nothing more) catches truncation, torn appends and damaged length fields. The tests check
that every truncation and every single-bit flip of a small record is reported.

Not responsible for: what the meta dict means (the engine fills it; keys must be str), any
file I/O or durability (`spool.atomic`), or compression.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import msgpack

from spool.errors import CorruptEntry

__all__ = ["MAGIC", "TRAILER", "decode", "decode_meta", "encode"]

MAGIC = b"VLQ1"
TRAILER = b"END!"
_FRAME = struct.Struct(">II")  # length, crc32
_MAX_FRAME = 0xFFFF_FFFF


def encode(meta: dict[str, Any], body: bytes) -> bytes:
    """Return the record for `meta` and `body`.

    The body is copied exactly once, by the final join (a 5 KB message costs one 5 KB
    allocation, not one per frame). Raises TypeError if msgpack cannot pack `meta`, and
    ValueError if a frame does not fit its 32-bit length.
    """
    packed = msgpack.packb(meta, use_bin_type=True)
    if len(packed) > _MAX_FRAME or len(body) > _MAX_FRAME:
        raise ValueError("spool record frame larger than 4 GiB")
    return b"".join(
        (
            MAGIC,
            _FRAME.pack(len(packed), zlib.crc32(packed)),
            packed,
            _FRAME.pack(len(body), zlib.crc32(body)),
            body,
            TRAILER,
        )
    )


def decode(data: bytes | bytearray | memoryview) -> tuple[dict[str, Any], bytes]:
    """Return (meta, body) from a complete record.

    `data` may be any of the three bytes-like types; the union is spelled out because a
    mypyc build (`make mypyc`) checks an argument's declared type at the call.

    Raises CorruptEntry for a bad magic, truncation, a length that overruns the record, a
    CRC mismatch (naming the frame), a missing or damaged trailer, bytes after the trailer,
    or meta that does not unpack to a map.
    """
    view = memoryview(data)
    meta_bytes, pos = _read_frame(view, _check_magic(view), "meta")
    body, pos = _read_frame(view, pos, "body")
    _check_trailer(view, pos)
    return _unpack_meta(meta_bytes), bytes(body)


def decode_meta(data: bytes | bytearray | memoryview) -> dict[str, Any]:
    """Return only the meta of a record, checking its frame but not the body's (for tools).

    Cheaper than `decode` for big bodies; it does not prove the body is intact.
    """
    view = memoryview(data)
    meta_bytes, _ = _read_frame(view, _check_magic(view), "meta")
    return _unpack_meta(meta_bytes)


def _check_magic(view: memoryview) -> int:
    head = bytes(view[: len(MAGIC)])
    if head != MAGIC:
        if MAGIC.startswith(head):
            raise CorruptEntry(f"truncated: {len(view)} bytes, shorter than the magic")
        raise CorruptEntry(f"bad magic {head!r}, expected {MAGIC!r}")
    return len(MAGIC)


def _read_frame(view: memoryview, pos: int, what: str) -> tuple[memoryview, int]:
    header_end = pos + _FRAME.size
    if len(view) < header_end:
        raise CorruptEntry(f"truncated in the {what} frame header at byte {len(view)}")
    length, crc = _FRAME.unpack(view[pos:header_end])
    end = header_end + length
    if end > len(view):
        raise CorruptEntry(
            f"{what} frame: length {length} overruns the record "
            f"({len(view) - header_end} bytes left; truncated or damaged length)"
        )
    payload = view[header_end:end]
    if zlib.crc32(payload) != crc:
        raise CorruptEntry(f"{what} frame: CRC mismatch")
    return payload, end


def _check_trailer(view: memoryview, pos: int) -> None:
    tail = bytes(view[pos:])
    if tail == TRAILER:
        return
    if len(tail) < len(TRAILER) and TRAILER.startswith(tail):
        raise CorruptEntry("truncated: missing END trailer")
    if tail.startswith(TRAILER):
        raise CorruptEntry(f"{len(tail) - len(TRAILER)} bytes of trailing junk after END")
    raise CorruptEntry(f"bad trailer {tail[: len(TRAILER)]!r}, expected {TRAILER!r}")


def _unpack_meta(meta_bytes: memoryview) -> dict[str, Any]:
    try:
        # raw=False: str comes back as str (the default since msgpack 1.0, spelled out).
        # strict_map_key stays True: the engine's keys are str, anything else is damage.
        meta = msgpack.unpackb(meta_bytes, raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        # ExtraData, FormatError, StackError, UnicodeDecodeError and "incomplete input" are
        # all ValueErrors in msgpack 1.2.4.
        raise CorruptEntry(f"meta does not unpack: {type(exc).__name__}: {exc}") from exc
    if not isinstance(meta, dict):
        raise CorruptEntry(f"meta is a {type(meta).__name__}, not a map")
    return meta
