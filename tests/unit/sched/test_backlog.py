from __future__ import annotations

import pytest

from engine.sched.backlog import BUCKET, Backlog, RowState
from spool.compact import CompactIndex
from spool.layout import EntryRef
from tests.support.compact_rows import index_of, name

NOW = 1_000_000.0


def backlog(entries: list[tuple[str, float]], skip: list[str] = ()) -> Backlog[EntryRef]:  # type: ignore[assignment]
    ix = index_of(entries)
    return Backlog(ix, NOW, [ix.row_of(n) for n in skip])


def test_due_rows_are_queued_in_name_order_per_domain_and_the_rest_wait() -> None:
    a = [name(i, "a.test") for i in range(5)]
    b = [name(i + 10, "b.test") for i in range(3)]
    bl = backlog(
        [(n, NOW - 1) for n in a] + [(n, NOW + 60) for n in b] + [(a[0][:-6] + "c.test", NOW)]
    )
    assert bl.total == 9
    assert dict(bl.counts()) == {"a.test": 5, "b.test": 3, "c.test": 1}
    run = bl.ready["a.test"]
    assert [bl.rows.name(r) for r in run] == a
    assert "b.test" not in bl.ready  # all three wait
    assert bl.next_due() == NOW + 60


def test_claim_makes_a_queued_row_an_entry_once() -> None:
    n = name(1)
    bl = backlog([(n, NOW)])
    (row,) = bl.ready["a.test"]
    entry = bl.claim(row)
    assert entry == EntryRef(n, "a.test", NOW)
    assert bl.claim(row) is None  # gone
    assert bl.total == 0 and bl.find(n) == -1 and bl.state[row] == RowState.GONE


def test_rows_the_spool_no_longer_holds_or_already_queued_are_left_out() -> None:
    names = [name(i) for i in range(4)]
    ix: CompactIndex = index_of([(n, NOW) for n in names])
    ix.kill(ix.row_of(names[0]))  # rewritten by the crash count, say
    bl = Backlog(ix, NOW, [ix.row_of(names[1])])  # re-taken by intake
    assert bl.total == 2 and bl.find(names[0]) == bl.find(names[1]) == -1
    assert [bl.rows.name(r) for r in bl.ready["a.test"] if bl.state[r]] == names[2:]


def test_release_gives_due_rows_in_time_order_across_buckets_up_to_a_limit() -> None:
    dues = [NOW + 5, NOW + 3, NOW + 3 * BUCKET, NOW + 1, NOW + BUCKET + 1]
    names = [name(i, "a.test" if i % 2 else "b.test") for i in range(len(dues))]
    bl = backlog(list(zip(names, dues, strict=True)))
    assert bl.release(NOW + 0.5, 10) == {}
    assert bl.next_due() == NOW + 1
    got = bl.release(NOW + 10, 10)
    assert {d: [bl.rows.name(r) for r in rows] for d, rows in got.items()} == {
        "a.test": [names[3], names[1]],  # by due, not by name
        "b.test": [names[0]],
    }
    assert bl.next_due() == NOW + BUCKET + 1
    assert sum(map(len, bl.release(NOW + 10 * BUCKET, 1).values())) == 1  # the limit
    assert bl.next_due() == NOW + 3 * BUCKET
    assert sum(map(len, bl.release(NOW + 10 * BUCKET, 1).values())) == 1
    assert bl.next_due() is None and bl.release(NOW + 1e9, 10) == {}


def test_rows_taken_while_waiting_are_skipped_by_release() -> None:
    names = [name(i) for i in range(3)]
    bl = backlog([(n, NOW + 10 + i) for i, n in enumerate(names)])
    [(_, entry, queued)] = list(bl.extract([names[0], "unknown"]))
    assert entry.name == names[0] and not queued and bl.total == 2
    assert bl.next_due() == NOW + 11
    assert [bl.rows.name(r) for r in bl.release(NOW + 100, 10)["a.test"]] == names[1:]


def test_flush_makes_every_waiting_row_of_a_domain_due_now() -> None:
    a = [name(i, "a.test") for i in range(3)]
    b = [name(i + 5, "b.test") for i in range(2)]
    bl = backlog([(n, NOW + 3600) for n in a + b] + [(name(9, "a.test"), NOW)])
    assert bl.flush("a.test", NOW + 1) == 3
    assert bl.flush("a.test", NOW + 1) == 3  # still deferred until released: counted again
    assert bl.flush("nope.test", NOW + 1) == 0
    assert bl.next_due() == NOW + 1 and bl.due_of(bl.find(a[0])) == NOW + 1
    assert bl.state[bl.find(a[0])] == RowState.FLUSHED
    got = bl.release(NOW + 1, 10)
    assert {d: [bl.rows.name(r) for r in rows] for d, rows in got.items()} == {"a.test": a}
    assert bl.next_due() == NOW + 3600  # b's rows still wait
    assert bl.flush(None, NOW + 2) == 2
    assert list(bl.release(NOW + 2, 10)) == ["b.test"]
    assert bl.next_due() is None and bl.release(NOW + 7200, 10) == {}


def test_oldest_follows_the_first_row_still_here() -> None:
    names = [name(i) for i in range(4)]
    bl = backlog([(n, NOW) for n in names] + [(name(7, "b.test"), NOW)])
    first = bl.rows.born(bl.rows.row_of(names[0]))
    assert dict(bl.oldests()) == {"a.test": first, "b.test": pytest.approx(first + 7e-6)}
    for n in names[:2]:
        bl.claim(bl.find(n))
    assert bl.oldest("a.test") == pytest.approx(first + 2e-6)
    for n in names[2:]:
        bl.claim(bl.find(n))
    assert bl.oldest("a.test") is None and "a.test" not in dict(bl.oldests())


def test_names_lists_rows_still_here_in_name_order() -> None:
    a = [name(i, "a.test") for i in range(4)]
    b = [name(i + 4, "b.test") for i in range(2)]
    bl = backlog([(n, NOW) for n in a + b])
    bl.claim(bl.find(a[1]))
    assert list(bl.names(None, None)) == [a[0], a[2], a[3], *b]
    assert list(bl.names("a.test", lambda n: n != a[3])) == [a[0], a[2]]
    assert list(bl.names("nope.test", None)) == []
