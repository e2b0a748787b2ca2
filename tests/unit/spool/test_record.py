from __future__ import annotations

import struct
import tracemalloc
import zlib
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spool.errors import CorruptEntry
from spool.record import MAGIC, TRAILER, decode, decode_meta, encode

META: dict[str, Any] = {
    "sender": "bounce@example.org",
    "rcpts": ["a@example.com", "b@example.com"],
    "attempts": 0,
    "next_try": 1795704371.25,
}
BODY = b"Subject: hi\r\n\r\nhello\r\n"


def _frame(payload: bytes, crc: int | None = None) -> bytes:
    return struct.pack(">II", len(payload), zlib.crc32(payload) if crc is None else crc) + payload


def _record(meta_bytes: bytes, body: bytes) -> bytes:
    return MAGIC + _frame(meta_bytes) + _frame(body) + TRAILER


def test_exact_layout() -> None:
    packed = msgpack.packb(META, use_bin_type=True)
    assert encode(META, BODY) == _record(packed, BODY)


def test_round_trip() -> None:
    meta, body = decode(encode(META, BODY))
    assert meta == META
    assert body == BODY
    assert type(body) is bytes


def test_round_trip_empty_meta_and_body() -> None:
    assert decode(encode({}, b"")) == ({}, b"")


def test_msgpack_gotchas() -> None:
    # dependency-facts §5: tuples come back as lists, bytes stay bytes (use_bin_type),
    # non-ASCII str stays str (raw=False).
    meta = {"t": (1, 2), "b": b"\xff\x00", "s": "Grüße", "f": 1.5, "none": None}
    got, _ = decode(encode(meta, b"x"))
    assert got == {"t": [1, 2], "b": b"\xff\x00", "s": "Grüße", "f": 1.5, "none": None}


def test_encode_refuses_what_msgpack_cannot_pack() -> None:
    with pytest.raises(TypeError):
        encode({"when": object()}, b"")


def test_8bit_body_untouched() -> None:
    body = bytes(range(256)) * 20 + b"\r\n.\r\n"
    assert decode(encode(META, body))[1] == body


def test_body_is_copied_once() -> None:
    body = b"x" * 5_000_000
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        out = encode(META, body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(out) == len(body) + 4 + 8 + len(msgpack.packb(META)) + 8 + 4
    # One copy of the body (the result) plus small change; a second copy would be 2x.
    assert peak - before < len(body) * 1.1


def test_every_truncation_is_detected() -> None:
    data = encode(META, BODY)
    for cut in range(len(data)):
        with pytest.raises(CorruptEntry):
            decode(data[:cut])


def test_every_single_bit_flip_is_detected() -> None:
    data = encode(META, BODY)
    undetected = []
    for bit in range(len(data) * 8):
        damaged = bytearray(data)
        damaged[bit // 8] ^= 1 << (bit % 8)
        try:
            decode(bytes(damaged))
        except CorruptEntry:
            continue
        undetected.append(bit)
    assert undetected == []


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"VL", "truncated"),
        (b"VLQ2" + b"\0" * 30, "bad magic b'VLQ2'"),
        (b"From foo@bar\n", "bad magic"),
        (MAGIC + b"\0\0\0", "truncated in the meta frame header"),
        (MAGIC + _frame(b"\x80")[:8], "meta frame: length 1 overruns"),
        (MAGIC + _frame(b"\x80"), "truncated in the body frame header"),
        (MAGIC + _frame(b"\x80") + _frame(b"body")[:-1], "body frame: length 4 overruns"),
        (MAGIC + _frame(b"\x80") + _frame(b"body"), "truncated: missing END trailer"),
        (MAGIC + _frame(b"\x80") + _frame(b"body") + b"EN", "truncated: missing END trailer"),
        (MAGIC + _frame(b"\x80") + _frame(b"body") + b"FIN!", "bad trailer b'FIN!'"),
        (_record(b"\x80", b"body") + b"\n", "1 bytes of trailing junk after END"),
        (_record(b"\x80", b"body") + TRAILER, "4 bytes of trailing junk after END"),
        (MAGIC + _frame(b"\x80", crc=0) + _frame(b"x") + TRAILER, "meta frame: CRC mismatch"),
        (MAGIC + _frame(b"\x80") + _frame(b"x", crc=0) + TRAILER, "body frame: CRC mismatch"),
    ],
)
def test_reasons(data: bytes, reason: str) -> None:
    with pytest.raises(CorruptEntry) as info:
        decode(data)
    assert reason in info.value.reason


@pytest.mark.parametrize(
    ("meta_bytes", "reason"),
    [
        (msgpack.packb([1, 2]), "meta is a list, not a map"),
        (msgpack.packb("text"), "meta is a str, not a map"),
        (msgpack.packb({1: "int key"}), "meta does not unpack"),  # strict_map_key
        (b"\x81\xa1k\xa1\xff", "meta does not unpack: UnicodeDecodeError"),
        (b"\xc1", "meta does not unpack"),  # never-used msgpack byte
        (b"\x81\xa1k", "meta does not unpack"),  # incomplete map, CRC fine
        (msgpack.packb({}) + b"\x01", "meta does not unpack: ExtraData"),
        (b"", "meta does not unpack"),
    ],
)
def test_meta_must_unpack_to_a_map(meta_bytes: bytes, reason: str) -> None:
    data = _record(meta_bytes, b"body")
    for fn in (decode, decode_meta):
        with pytest.raises(CorruptEntry) as info:
            fn(data)
        assert reason in info.value.reason


def test_decode_meta_skips_the_body_check() -> None:
    data = bytearray(encode(META, BODY))
    data[-6] ^= 0x01  # inside the body
    assert decode_meta(bytes(data)) == META
    with pytest.raises(CorruptEntry, match="body frame: CRC mismatch"):
        decode(bytes(data))


def test_decode_accepts_bytearray_and_memoryview() -> None:
    data = encode(META, BODY)
    assert decode(bytearray(data)) == (META, BODY)
    assert decode(memoryview(data)) == (META, BODY)


_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)


@given(meta=st.dictionaries(st.text(), _values, max_size=6), body=st.binary(max_size=2000))
def test_round_trip_property(meta: dict[str, Any], body: bytes) -> None:
    assert decode(encode(meta, body)) == (meta, body)
