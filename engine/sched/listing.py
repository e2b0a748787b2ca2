"""What the work queue holds, as operators list it: names, and names with their state.

Responsible for: `volley queue --list`, `volley show` and the selections of operator
actions over one worker's queue (engine.sched.queue.WorkQueue.entries and .names, which
call these with a view of the queue's state): which entries are known, in which state
(EntryState), sorted by name (FIFO: names start with a time-ordered id), and the entry
protocol the queue needs.
Not responsible for: changing anything (pure reads), or the delivery path: these are
O(entries) on the caller's thread — measured 0.14 s for the oldest 1 000 of 1 M entry
objects; entries still in the start-up backlog (engine.sched.backlog) cost a name string
each as they are listed (~0.5 µs), and none when `limit` stops the listing early: the
backlog lists them in name order.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, islice
from typing import Protocol

from engine.sched.backlog import Backlog, RowState
from engine.sched.destination import EntryFifo

__all__ = ["Entry", "EntryState", "QueueView", "entry_names", "list_entries"]


class Entry(Protocol):
    """What the queue needs to know of a spool entry (spool.EntryRef satisfies it).

    Names end in "@<domain>" (spool entry names do), which refresh_oldest relies on.
    """

    @property
    def name(self) -> str: ...

    @property
    def domain(self) -> str: ...


class EntryState(enum.Enum):
    """Where an entry is, as `volley queue --list` and `volley show` say it."""

    READY = "queued"  # due, in its destination's ready FIFO
    WAITING = "deferred"  # in the delay heap until its next attempt
    HELD = "suspended"  # due, parked while an operator suspension holds its destination
    TAKEN = "in flight"  # handed to a connection (or to an operator action)


@dataclass(frozen=True, slots=True)
class QueueView:
    """The parts of a WorkQueue's state a listing reads."""

    known: Collection[str]  # entries as objects (the backlog's rows are not in it)
    heap: Sequence[tuple[float, int, Entry]]  # (due, seq, entry); stale items possible
    ready: Sequence[EntryFifo[Entry]]
    parked: Mapping[str, EntryFifo[Entry]]
    holds: Collection[str]
    backlog: Backlog[Entry] | None


def entry_names(
    view: QueueView, domain: str | None, match: Callable[[str], bool] | None
) -> list[str]:
    """Names of the known entries of `domain` (or all) that satisfy `match`, unordered:
    O(entries), no state lookups (~0.1 s per million objects)."""
    return list(chain(_hot_names(view, domain, match), _cold_names(view, domain, match)))


def list_entries(
    view: QueueView,
    domain: str | None,
    match: Callable[[str], bool] | None,
    limit: int | None,
) -> list[tuple[str, EntryState, float | None]]:
    """(name, state, next attempt time for deferred entries) of the known entries of
    `domain` (or all) whose name satisfies `match`, sorted by name, the first `limit`
    only if given."""
    hot: Iterable[str] = view.known
    if domain is not None or match is not None:
        hot = _hot_names(view, domain, match)
    cold = _cold_names(view, domain, match)
    if limit is None:
        chosen = set(chain(hot, cold))
    else:  # the backlog lists in name order: its first `limit` are its smallest
        chosen = set(heapq.nsmallest(limit, chain(hot, islice(cold, limit))))
    if not chosen:
        return []
    out: dict[str, tuple[str, EntryState, float | None]] = {}
    for due, _, entry in view.heap:
        if entry.name in chosen:
            out[entry.name] = (entry.name, EntryState.WAITING, due)
    for state, fifos in ((EntryState.READY, view.ready), (EntryState.HELD, view.parked.values())):
        for fifo in fifos:
            for entry in fifo.entries():
                if entry.name in chosen:
                    out[entry.name] = (entry.name, state, None)
    backlog = view.backlog
    for name in chosen:
        if name in out:
            continue
        row = backlog.find(name) if backlog is not None else -1
        if row < 0 or backlog is None:
            out[name] = (name, EntryState.TAKEN, None)
        elif backlog.state[row] in (RowState.WAITING, RowState.FLUSHED):
            out[name] = (name, EntryState.WAITING, backlog.due_of(row))
        elif backlog.domain(row) in view.holds:
            out[name] = (name, EntryState.HELD, None)
        else:
            out[name] = (name, EntryState.READY, None)
    return [out[n] for n in sorted(out)]


def _hot_names(
    view: QueueView, domain: str | None, match: Callable[[str], bool] | None
) -> Iterable[str]:
    suffix = None if domain is None else "@" + domain
    return (
        n
        for n in view.known
        if (suffix is None or n.endswith(suffix)) and (match is None or match(n))
    )


def _cold_names(
    view: QueueView, domain: str | None, match: Callable[[str], bool] | None
) -> Iterable[str]:
    return view.backlog.names(domain, match) if view.backlog is not None else ()
