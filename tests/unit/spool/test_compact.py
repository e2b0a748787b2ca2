from __future__ import annotations

from array import array

import pytest

from spool.compact import CompactIndex, split_name
from spool.ids import entry_id, id_time
from spool.layout import EntryRef
from tests.support.compact_rows import T0_NS, name
from tests.support.compact_rows import index_of as rows_of


def index_of(entries: list[tuple[str, float, int, int, int]]) -> CompactIndex:
    """An index of (name, due, seq, offset, length), sorted by name as spool.scan does."""
    ix = rows_of([(n, due) for n, due, *_ in entries])
    where = {n: loc for n, _, *loc in entries}
    seq, off, length = array("I"), array("I"), array("I")
    for row in range(len(ix)):
        s, o, ln = where[ix.name(row)]
        seq.append(s)
        off.append(o)
        length.append(ln)
    return CompactIndex(ix.domains, ix.t, ix.h, ix.dom, ix.due, seq, off, length)


def test_split_name_takes_only_names_this_spool_makes() -> None:
    n = name(1, "x.example")
    parts = split_name(n)
    assert parts is not None
    t, h, domain = parts
    assert (f"{t:013x}{h:016x}@{domain}", domain) == (n, "x.example")
    for other in ("a", "zz@x", n.upper(), n[:29] + "@", " " + n[1:], "+" + n[1:], n[:28] + "@x"):
        assert split_name(other) is None, other


def test_rows_answer_for_their_names_and_nothing_else() -> None:
    names = [name(i, d) for i in range(50) for d in ("a.test", "b.test")]
    ix = index_of([(n, 100.0 + i, 7, 10 * i, 3) for i, n in enumerate(names)])
    assert len(ix) == ix.live_count == 100
    assert [ix.name(r) for r in range(len(ix))] == sorted(names)
    for n in names:
        row = ix.row_of(n)
        assert row >= 0 and ix.name(row) == n and ix.live_row(n) == row
        assert ix.domain(row) == n.rpartition("@")[2]
        assert ix.born(row) == pytest.approx(id_time(n[:29]))
    for missing in (name(999), name(1, "c.test"), "a", name(1)[:-1], "f" * 29 + "@a.test"):
        assert ix.row_of(missing) == -1
    later = f"{entry_id(T0_NS * 2, b'x')}@a.test"  # after every row: turned away at once
    assert ix.row_of(later) == -1


def test_names_of_one_microsecond_are_told_apart_by_hash_and_domain() -> None:
    same = [name(i, d, at=5) for i in range(4) for d in ("a.test", "b.test")]
    ix = index_of([(n, 1.0, 1, i, 1) for i, n in enumerate(same)])
    assert sorted(ix.name(ix.row_of(n)) for n in same) == sorted(same)
    assert len({ix.row_of(n) for n in same}) == 8


def test_ref_location_and_kill() -> None:
    n = name(3, "x.example")
    ix = index_of([(n, 1234.5, 9, 100, 42), (name(4), 1.0, 9, 142, 1)])
    row = ix.row_of(n)
    assert ix.ref(row) == EntryRef(n, "x.example", 1234.5)
    assert ix.location(row) == (9, 100, 42)
    ix.kill(row)
    ix.kill(row)  # idempotent
    assert ix.live_count == 1 and ix.live_row(n) == -1 and ix.row_of(n) == row
    assert ix.live_rows() == [ix.row_of(name(4))]


def test_arrays_must_agree_in_length() -> None:
    with pytest.raises(ValueError, match="differ"):
        CompactIndex(
            ["a"],
            array("Q", [1]),
            array("Q"),
            array("I"),
            array("d"),
            array("I"),
            array("I"),
            array("I"),
        )


def test_an_empty_index_finds_nothing() -> None:
    ix = index_of([])
    assert len(ix) == 0 and ix.row_of(name(1)) == -1 and ix.live_rows() == []
