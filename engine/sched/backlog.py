"""The work queue's view of the start-up index: entries found at start, kept as rows.

Responsible for: the entries a worker found on disk at start, for as long as the queue has
not handed them out — per row its queue state (a byte: queued, waiting, gone), per domain
its rows in name order (for the oldest-age gauge, listings and flush), and the waiting rows
in time order (buckets of BUCKET seconds, each sorted only when it comes next), so that
`release` finds what is due without a heap item per entry. A row becomes an entry object
(`claim`) only when the queue hands it out; from then on engine.sched.queue tracks it like
any entry added at run time, and the row here is gone.
Not responsible for: ready FIFOs, holds and suspensions (engine.sched.queue, which puts
the queued rows in its FIFOs: engine.sched.fifo), or what the spool still holds (the
index's own `live` flags, read once here at start).

Why: a deferred entry as a heap item cost 104 bytes (tuple, seq int, float) on top of its
EntryRef (56) and its name (90) — 1 M deferred entries at start ~ 300 MB. Here a row
costs 1 byte of state and 4 of its domain's row list (8 if deferred: the time bucket),
on top of the index's 41. KumoMTA's timeq keeps only the near future in a wheel for the
same reason. Pure: every method takes `now` where time matters.
"""

from __future__ import annotations

import enum
import heapq
import math
from array import array
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from itertools import compress
from typing import Generic, Protocol, TypeVar

__all__ = ["BUCKET", "Backlog", "RowState", "Rows"]

BUCKET = 60.0  # seconds per time bucket: sorting one is O(its rows), done when it is next

E = TypeVar("E")
E_co = TypeVar("E_co", covariant=True)


class Rows(Protocol[E_co]):
    """What the backlog reads of the start-up index (spool.compact.CompactIndex)."""

    @property
    def domains(self) -> Sequence[str]: ...
    @property
    def dom(self) -> Sequence[int]: ...
    @property
    def due(self) -> Sequence[float]: ...
    @property
    def live(self) -> bytearray: ...
    def __len__(self) -> int: ...
    def row_of(self, name: str) -> int: ...
    def name(self, row: int) -> str: ...
    def born(self, row: int) -> float: ...
    def ref(self, row: int) -> E_co: ...


class RowState(enum.IntEnum):
    """A row's state in the backlog (one byte per row)."""

    GONE = 0  # handed out (an entry object now), or never queued here
    QUEUED = 1  # due: in its domain's ready or parked FIFO, as part of a run
    WAITING = 2  # in a time bucket until its next attempt
    FLUSHED = 3  # made due by an operator's flush: released by the next `release`


_GONE, _QUEUED, _WAITING, _FLUSHED = (
    RowState.GONE,
    RowState.QUEUED,
    RowState.WAITING,
    RowState.FLUSHED,
)


class Backlog(Generic[E]):
    """Rows of one start-up index (see the module docstring)."""

    def __init__(self, rows: Rows[E], now: float, skip: Collection[int] = ()) -> None:
        """Rows the spool still holds become QUEUED (due by `now`) or WAITING, except the
        rows in `skip` (already queued as entries)."""
        self.rows = rows
        self._dnum = {name: i for i, name in enumerate(rows.domains)}
        due = rows.due
        dom = rows.dom
        state = bytearray(rows.live)  # 1 = QUEUED for every live row, to start with
        for row in skip:
            state[row] = _GONE
        self.state = state
        self.by_domain: dict[int, array[int]] = {}
        self._first: dict[int, int] = {}  # domain -> index in by_domain of its oldest row
        self.count: dict[int, int] = {}  # domain -> rows QUEUED or WAITING
        self.total = 0
        self._buckets: dict[int, array[int]] = {}
        self._keys: list[int] = []
        self._head: array[int] = array("I")  # the next bucket, sorted by due
        self._head_at = 0
        self._flushed: list[tuple[float, str, array[int]]] = []  # (when, domain, rows)
        by_domain = self.by_domain
        waiting: dict[int, int] = {}
        for row in compress(range(len(state)), state):
            d = dom[row]
            of_d = by_domain.get(d)
            if of_d is None:
                of_d = by_domain[d] = array("I")
            of_d.append(row)
            t = due[row]
            if t > now:
                state[row] = _WAITING
                waiting[d] = waiting.get(d, 0) + 1
                key = int(t // BUCKET)
                bucket = self._buckets.get(key)
                if bucket is None:
                    bucket = self._buckets[key] = array("I")
                    self._keys.append(key)
                bucket.append(row)
        heapq.heapify(self._keys)
        # The rows due at start, per domain, for the queue's FIFOs (runs: read only).
        self.ready: dict[str, array[int]] = {}
        for d, of_d in by_domain.items():
            self._first[d] = 0
            self.count[d] = len(of_d)
            self.total += len(of_d)
            if not waiting.get(d):
                self.ready[rows.domains[d]] = of_d  # the run is the row list itself
            elif waiting[d] < len(of_d):
                self.ready[rows.domains[d]] = array("I", (r for r in of_d if state[r] == _QUEUED))

    # -- lookups -------------------------------------------------------------------------
    def domain(self, row: int) -> str:
        return self.rows.domains[self.rows.dom[row]]

    def domain_no(self, domain: str) -> int:
        """The number of `domain` among the index's domains; -1 if it has no rows."""
        return self._dnum.get(domain, -1)

    def find(self, name: str) -> int:
        """The row of `name` if it is still here (queued or waiting), else -1."""
        row = self.rows.row_of(name)
        return row if row >= 0 and self.state[row] != _GONE else -1

    # -- handing out ---------------------------------------------------------------------
    def claim(self, row: int) -> E | None:
        """The entry of a QUEUED row, which is gone from here; None if it is not queued."""
        if self.state[row] != _QUEUED:
            return None
        return self.take(row)

    def take(self, row: int) -> E:
        """The entry of a row still here (queued or waiting): it is gone from here."""
        self.state[row] = _GONE
        d = self.rows.dom[row]
        self.count[d] -= 1
        self.total -= 1
        return self.rows.ref(row)

    def extract(self, names: Iterable[str]) -> Iterator[tuple[int, E, bool]]:
        """(row, entry, whether it was QUEUED) for each of `names` still here; they are
        gone from here (an operator action takes them)."""
        for name in names:
            row = self.find(name)
            if row >= 0:
                queued = self.state[row] == _QUEUED
                yield row, self.take(row), queued

    # -- time ----------------------------------------------------------------------------
    def release(self, now: float, limit: int) -> dict[str, array[int]]:
        """Up to `limit` rows due by `now` (waiting ones and flushed batches, in time
        order), by domain, each domain's in that order; they are QUEUED now (the caller
        puts them in their domains' FIFOs)."""
        out: dict[str, array[int]] = {}
        state = self.state
        due = self.rows.due
        released = 0
        while released < limit:
            row = self._peek()
            at = math.inf if row < 0 else due[row]
            flushed = self._flushed[0][0] if self._flushed else math.inf
            if min(at, flushed) > now:
                break
            if flushed <= at:
                _, domain, batch = self._flushed.pop(0)
                for r in batch:
                    if state[r] == _FLUSHED:
                        state[r] = _QUEUED
                        out.setdefault(domain, array("I")).append(r)
                        released += 1
                continue
            self._head_at += 1
            state[row] = _QUEUED
            out.setdefault(self.domain(row), array("I")).append(row)
            released += 1
        return out

    def next_due(self) -> float | None:
        """When the next WAITING row is due (None: none waits)."""
        row = self._peek()
        nxt = None if row < 0 else self.rows.due[row]
        if self._flushed and (nxt is None or self._flushed[0][0] < nxt):
            nxt = self._flushed[0][0]
        return nxt

    def due_of(self, row: int) -> float:
        """When a row still waiting is due (a flushed one: when it was flushed)."""
        if self.state[row] == _FLUSHED:
            for when, _, rows in self._flushed:
                if row in rows:
                    return when
        return self.rows.due[row]

    def _peek(self) -> int:
        state = self.state
        while True:
            head = self._head
            while self._head_at < len(head):
                row = head[self._head_at]
                if state[row] == _WAITING:
                    return row
                self._head_at += 1
            if not self._keys:
                return -1
            bucket = self._buckets.pop(heapq.heappop(self._keys))
            self._head = array("I", sorted(bucket, key=self.rows.due.__getitem__))
            self._head_at = 0

    def flush(self, domain: str | None, now: float) -> int:
        """Make the WAITING rows (of `domain`, or all) due at `now`, as an operator's
        "retry now": the next `release` by `now` gives them, in name order per domain.
        Returns how many. The time buckets keep them and skip them when their time comes."""
        wanted = self.by_domain
        if domain is not None:
            d = self.domain_no(domain)
            wanted = {d: self.by_domain[d]} if d in self.by_domain else {}
        state = self.state
        n = 0
        for d, rows in wanted.items():
            due_now = array("I")
            for r in rows[self._first[d] :]:
                if state[r] == _WAITING:
                    state[r] = _FLUSHED
                    due_now.append(r)
                elif state[r] == _FLUSHED:
                    n += 1  # flushed before, not released yet: still deferred, due already
            if due_now:
                self._flushed.append((now, self.rows.domains[d], due_now))
                n += len(due_now)
        self._flushed.sort(key=lambda batch: batch[0])
        return n

    # -- listings and gauges ---------------------------------------------------------------
    def oldest(self, domain: str) -> float | None:
        """When the oldest row of `domain` still here was created (its id's time)."""
        d = self.domain_no(domain)
        rows = self.by_domain.get(d)
        if rows is None or not self.count.get(d):
            return None
        i = self._first[d]
        state = self.state
        while i < len(rows) and state[rows[i]] == _GONE:
            i += 1
        self._first[d] = i  # rows before i are gone for good: never rescanned
        return self.rows.born(rows[i]) if i < len(rows) else None

    def oldests(self) -> Iterator[tuple[str, float]]:
        """(domain, when its oldest row still here was created) for every domain with
        rows: O(domains), a cursor per domain skips the rows gone since the last call."""
        for domain, _ in self.counts():
            born = self.oldest(domain)
            if born is not None:
                yield domain, born

    def counts(self) -> Iterator[tuple[str, int]]:
        """(domain, rows still here) for every domain with some."""
        for d, n in self.count.items():
            if n:
                yield self.rows.domains[d], n

    def names(self, domain: str | None, match: Callable[[str], bool] | None) -> Iterator[str]:
        """Names of the rows still here (of `domain`, or all) that satisfy `match`, in
        name order. O(rows); an operator's listing."""
        if domain is None:
            rows: Iterator[int] = compress(range(len(self.state)), self.state)
        else:
            d = self.domain_no(domain)
            all_rows = self.by_domain.get(d, array("I"))
            rows = (r for r in all_rows[self._first.get(d, 0) :] if self.state[r] != _GONE)
        name = self.rows.name
        for row in rows:
            n = name(row)
            if match is None or match(n):
                yield n
