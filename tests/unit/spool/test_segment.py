from __future__ import annotations

import os
from pathlib import Path

import pytest

from spool import segment
from spool.errors import CorruptEntry
from spool.record import decode, encode


def write(tmp_path: Path, data: bytes) -> int:
    path = tmp_path / "s.seg"
    path.write_bytes(data)
    return os.open(path, os.O_RDONLY)


def test_names_sort_in_write_order_and_parse_back() -> None:
    assert segment.segment_name(1) == "0000000000000001.seg"
    assert segment.segment_name(0xABC) < segment.segment_name(0x1000)
    assert segment.parse_segment_name(segment.segment_name(77)) == 77
    for other in ("1.seg", "0000000000000001.seg.tmp", "removed", "000000000000000G.seg"):
        assert segment.parse_segment_name(other) is None


def test_build_then_read_index_and_records(tmp_path: Path) -> None:
    records = [(f"name{i}", 1000.5 + i, encode({"i": i}, b"x" * (i * 100))) for i in range(5)]
    data, items = segment.build(records)
    fd = write(tmp_path, data)
    try:
        assert segment.read_index(fd) == items
        assert [(i.name, i.not_before) for i in items] == [(n, t) for n, t, _ in records]
        for item, (_, _, rec) in zip(items, records, strict=True):
            assert os.pread(fd, item.length, item.offset) == rec
            assert decode(rec)[0]["i"] == int(item.name[4:])
    finally:
        os.close(fd)


def test_a_big_index_needs_a_second_read(tmp_path: Path) -> None:
    records = [(f"{i:029x}@example.com", float(i), encode({}, b"")) for i in range(3000)]
    data, items = segment.build(records)
    fd = write(tmp_path, data)
    try:
        assert segment.read_index(fd) == items
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda d: d[:7], "shorter than its header"),
        (lambda d: b"XXXX" + d[4:], "bad segment magic"),
        (lambda d: d[:12] + bytes([d[12] ^ 1]) + d[13:], "CRC mismatch"),
        (lambda d: d[:-1], "truncated"),
        (lambda d: d[:20], "truncated"),
    ],
)
def test_damage_is_refused_with_a_reason(tmp_path: Path, damage: object, reason: str) -> None:
    data, _ = segment.build([("a", 1.0, encode({}, b"hello")), ("b", 2.0, encode({}, b"!"))])
    fd = write(tmp_path, damage(data))  # type: ignore[operator]
    try:
        with pytest.raises(CorruptEntry, match=reason):
            segment.read_index(fd)
    finally:
        os.close(fd)
