from __future__ import annotations

from engine.sched.backlog import Backlog
from engine.sched.destination import EntryFifo
from engine.sched.listing import Entry, EntryState, QueueView, entry_names, list_entries
from spool.layout import EntryRef
from tests.support.compact_rows import index_of, name

NOW = 1_000.0


def view(
    hot_ready: list[EntryRef],
    heap: list[tuple[float, int, Entry]],
    rows: list[tuple[str, float]],
    holds: set[str] = frozenset(),  # type: ignore[assignment]
    taken: list[str] = (),  # type: ignore[assignment]
) -> QueueView:
    known = [e.name for e in hot_ready] + [e.name for _, _, e in heap] + list(taken)
    ready: EntryFifo[Entry] = EntryFifo(hot_ready)
    backlog: Backlog[Entry] = Backlog(index_of(rows), NOW)
    return QueueView(known, heap, [ready], {}, holds, backlog)


def test_rows_and_objects_are_listed_together_in_name_order_with_their_states() -> None:
    n = [name(i, "x.test" if i != 4 else "h.test") for i in range(6)]
    hot = EntryRef(n[1], "x.test", 0.0)
    waiting = EntryRef(n[3], "x.test", 0.0)
    v = view(
        [hot],
        [(NOW + 50, 1, waiting)],
        [(n[0], NOW), (n[2], NOW + 90), (n[4], NOW)],
        holds={"h.test"},
        taken=[n[5]],
    )
    assert list_entries(v, None, None, None) == [
        (n[0], EntryState.READY, None),
        (n[1], EntryState.READY, None),
        (n[2], EntryState.WAITING, NOW + 90),
        (n[3], EntryState.WAITING, NOW + 50),
        (n[4], EntryState.HELD, None),
        (n[5], EntryState.TAKEN, None),
    ]
    assert [x[0] for x in list_entries(v, None, None, 2)] == n[:2]  # the oldest two
    assert [x[0] for x in list_entries(v, "h.test", None, None)] == [n[4]]
    assert list_entries(v, None, lambda s: s == n[2], None) == [
        (n[2], EntryState.WAITING, NOW + 90)
    ]
    assert sorted(entry_names(v, None, None)) == n
    assert sorted(entry_names(v, "x.test", lambda s: s != n[0])) == [n[1], n[2], n[3], n[5]]


def test_the_limit_takes_the_smallest_names_whichever_side_they_are_on() -> None:
    n = [name(i) for i in range(10)]
    v = view(
        [EntryRef(n[i], "a.test", 0.0) for i in (0, 5)],
        [],
        [(n[i], NOW) for i in range(1, 10) if i != 5],
    )
    assert [x[0] for x in list_entries(v, None, None, 3)] == n[:3]
    assert [x[0] for x in list_entries(v, "a.test", None, 7)] == n[:7]


def test_nothing_listed_when_nothing_matches() -> None:
    v = view([], [], [(name(1), NOW)])
    assert (
        list_entries(v, "nope.test", None, None) == [] and entry_names(v, "nope.test", None) == []
    )
