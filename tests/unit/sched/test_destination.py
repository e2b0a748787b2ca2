from __future__ import annotations

from array import array
from collections.abc import Callable

from engine.sched.destination import DomainState, EntryFifo, ideal_connections


def claim_from(gone: set[int] | None = None) -> tuple[list[int], Callable[[int], str | None]]:
    """A claim that makes row r the entry f"r{r}" unless r is in `gone`; logs its calls."""
    calls: list[int] = []
    dead = gone or set()

    def claim(row: int) -> str | None:
        calls.append(row)
        return None if row in dead else f"r{row}"

    return calls, claim


def test_entries_and_runs_come_out_in_order_and_len_counts_entries() -> None:
    f: EntryFifo[str] = EntryFifo(["a"])
    f.add_run(array("I", [1, 2, 3]), 3)
    f.append("b")
    f.add_run(array("I", [4]), 1)
    assert len(f) == 6 and f
    _, claim = claim_from()
    got = [f.popleft(claim) for _ in range(7)]
    assert got == ["a", "r1", "r2", "r3", "b", "r4", None]
    assert len(f) == 0 and not f


def test_rows_gone_meanwhile_are_skipped_and_counted_out_by_whoever_took_them() -> None:
    f: EntryFifo[str] = EntryFifo()
    f.add_run(array("I", [1, 2, 3]), 3)
    f.forget()  # row 2 was extracted by an operator action
    calls, claim = claim_from(gone={2})
    assert len(f) == 2
    assert f.drain(claim) == ["r1", "r3"]
    assert calls == [1, 2, 3] and len(f) == 0


def test_a_run_is_read_not_changed_and_an_empty_run_adds_nothing() -> None:
    rows = array("I", [7, 8])
    f: EntryFifo[str] = EntryFifo()
    f.add_run(rows, 2)
    f.add_run(array("I"), 0)
    _, claim = claim_from()
    assert f.popleft(claim) == "r7"
    f.appendleft("back")
    assert [f.popleft(claim) for _ in range(3)] == ["back", "r8", None]
    assert list(rows) == [7, 8]


def test_extend_moves_everything_and_keep_filters_entries_only() -> None:
    a: EntryFifo[str] = EntryFifo(["x", "y"])
    b: EntryFifo[str] = EntryFifo(["z"])
    b.add_run(array("I", [1]), 1)
    a.extend(b)
    assert len(a) == 4 and len(b) == 0 and not b
    a.keep(lambda e: e != "y")
    assert len(a) == 3 and list(a.entries()) == ["x", "z"]
    _, claim = claim_from()
    assert a.drain(claim) == ["x", "z", "r1"]


def test_equality_is_by_content() -> None:
    assert EntryFifo[str]() == EntryFifo[str]()
    assert EntryFifo(["a"]) == EntryFifo(["a"]) != EntryFifo(["b"])
    assert DomainState("d").ready == EntryFifo()


def test_domain_backlog_counts_ready_and_taken() -> None:
    d = DomainState("d")
    d.ready.add_run(array("I", [1, 2]), 2)
    d.taken = 3
    assert d.backlog == 5
    assert ideal_connections(d.backlog, 10, 2) == 3
