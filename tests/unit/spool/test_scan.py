from __future__ import annotations

from pathlib import Path

from spool import record, segment
from spool.scan import JOURNAL, pack, read_shard, unpack


def write_segment(d: Path, seq: int, names: list[str], nb: float = 10.0) -> None:
    data, _ = segment.build([(n, nb, record.encode({"n": n}, b"x")) for n in names])
    (d / segment.segment_name(seq)).write_bytes(data)


def test_a_missing_or_empty_directory_has_nothing_live(tmp_path: Path) -> None:
    assert read_shard(tmp_path / "nope").live == []
    assert read_shard(tmp_path).live == []


def test_the_latest_version_wins_unless_a_removal_covers_it(tmp_path: Path) -> None:
    write_segment(tmp_path, 1, ["a", "b", "c"], nb=1.0)
    write_segment(tmp_path, 2, ["b"], nb=2.0)  # b rewritten
    write_segment(tmp_path, 3, ["a"], nb=3.0)  # a queued again after its removal below
    (tmp_path / JOURNAL).write_text("1 a\n2 b\n1 c\n")
    state = read_shard(tmp_path)
    assert [(e.name, e.seq, e.not_before) for e in state.live] == [("a", 3, 3.0)]
    assert state.segments == {3: 1}
    assert state.dead == [1, 2]
    assert state.removals == []  # no live segment holds what they kill
    assert state.max_seq == 3


def test_removals_still_needed_and_damaged_segments_are_reported(tmp_path: Path) -> None:
    write_segment(tmp_path, 1, ["a", "b"])
    (tmp_path / segment.segment_name(2)).write_bytes(b"VLS1 not a segment")
    (tmp_path / JOURNAL).write_text("1 a\nzz not-a-line\n1 torn-without-newline")
    state = read_shard(tmp_path)
    assert [e.name for e in state.live] == ["b"]
    assert state.removals == [(1, "a")]  # segment 1 lives on: the line must stay
    assert [seq for seq, _ in state.corrupt] == [2] and state.dead == []
    [b] = state.live
    assert unpack(pack(b.seq, b.offset, b.length)) == (1, b.offset, b.length)
    data = (tmp_path / segment.segment_name(1)).read_bytes()[b.offset : b.offset + b.length]
    assert record.decode(data) == ({"n": "b"}, b"x")
