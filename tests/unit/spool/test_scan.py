from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spool import record, segment
from spool.ids import entry_id
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


# -- the compact form (names this spool makes) against the dict-per-name reference --------


def ref_read(directory: Path) -> tuple[dict[str, tuple[float, int]], dict[int, int], set[str]]:
    """The scan as it was written before the compact index (one dict entry per name):
    live name -> (due, seq), live entries per segment, and the names the journal kills."""
    removed: dict[str, int] = {}
    journal = directory / JOURNAL
    if journal.exists():
        for line in journal.read_bytes().split(b"\n")[:-1]:
            seq_hex, _, raw = line.partition(b" ")
            try:
                seq, n = int(seq_hex, 16), raw.decode("ascii")
            except ValueError:
                continue
            removed[n] = max(seq, removed.get(n, -1))
    live: dict[str, tuple[float, int]] = {}
    for path in sorted(directory.glob("*.seg")):
        seq = int(path.stem, 16)
        fd = os.open(path, os.O_RDONLY)
        try:
            items = segment.read_index(fd)
        finally:
            os.close(fd)
        for it in items:
            if removed.get(it.name, -1) < seq:
                live[it.name] = (it.not_before, seq)
    counts: dict[int, int] = {}
    for _, seq in live.values():
        counts[seq] = counts.get(seq, 0) + 1
    return live, counts, set(removed)


def eid(t: int, salt: int) -> str:
    return entry_id(1_795_704_371 * 10**9 + t * 1000, b"%d" % salt)


NAMES = [f"{eid(t, s)}@{d}" for t in range(6) for s in range(2) for d in ("a.t", "b.t")]
NAMES += ["odd", "other-shape@x"]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    segs=st.lists(
        st.lists(st.tuples(st.sampled_from(NAMES), st.integers(0, 5)), max_size=6),
        min_size=0,
        max_size=6,
    ),
    lines=st.lists(st.tuples(st.integers(0, 7), st.sampled_from(NAMES)), max_size=8),
)
def test_compact_scan_agrees_with_the_dict_scan(
    tmp_path_factory: pytest.TempPathFactory,
    segs: list[list[tuple[str, int]]],
    lines: list[tuple[int, str]],
) -> None:
    d = tmp_path_factory.mktemp("q")
    for seq, items in enumerate(segs, start=1):
        unique = list(dict(items).items())  # a name once per segment, as the writer ensures
        data, _ = segment.build([(n, float(v), record.encode({"v": v}, b"")) for n, v in unique])
        (d / segment.segment_name(seq)).write_bytes(data)
    (d / JOURNAL).write_text("".join(f"{s:x} {n}\n" for s, n in lines))
    live, counts, _ = ref_read(d)
    state = read_shard(d)
    assert {e.name: (e.not_before, e.seq) for e in state.live} == live
    assert [e.name for e in state.live] == sorted(live)
    assert state.segments == counts
    assert state.dead == [s for s in range(1, len(segs) + 1) if s not in counts]
    # The journal lines kept make the same entries dead once the dead segments are gone.
    for s in state.dead:
        (d / segment.segment_name(s)).unlink()
    (d / JOURNAL).write_text("".join(f"{s:x} {n}\n" for s, n in state.removals))
    assert {e.name for e in read_shard(d).live} == set(live)


def test_segments_out_of_name_order_come_back_sorted(tmp_path: Path) -> None:
    names = [f"{eid(t, t)}@x.t" for t in range(20)]
    write_segment(tmp_path, 1, names[10:])
    write_segment(tmp_path, 2, names[:10][::-1])
    write_segment(tmp_path, 3, [names[15]], nb=99.0)  # a rewrite: the newer version wins
    state = read_shard(tmp_path)
    assert [e.name for e in state.live] == names
    assert [(e.seq, e.not_before) for e in state.live if e.name == names[15]] == [(3, 99.0)]
    assert state.segments == {1: 9, 2: 10, 3: 1}


def test_one_drop_for_two_domains_shares_an_id(tmp_path: Path) -> None:
    same = eid(1, 1)
    write_segment(tmp_path, 1, [f"{same}@b.t", f"{same}@a.t", f"{eid(0, 0)}@a.t"])
    (tmp_path / JOURNAL).write_text(f"1 {same}@b.t\n")
    state = read_shard(tmp_path)
    assert [e.name for e in state.live] == [f"{eid(0, 0)}@a.t", f"{same}@a.t"]
    assert state.removals == [(1, f"{same}@b.t")]
