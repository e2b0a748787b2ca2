"""One destination's queue state: its FIFO of due entries, counters and window.

Responsible for: DomainState (a worker's state for one destination domain: its ready FIFO,
entries taken, connections, automatic suspension, concurrency window), how many
connections its backlog should have (`ideal_connections`), and EntryFifo: the order and
the count of one domain's ready (or parked) entries, where
an item is either an entry object or a run of rows of the start-up index
(engine.sched.backlog) that become entry objects only when they reach the head
(`popleft`), so 1 M due entries at start cost 4 bytes each here instead of an EntryRef
(56 bytes) and a deque slot. `len` counts entries, not items, and is exact: a row taken
from a run elsewhere (an operator's extract) is discounted by whoever took it (`forget`).
Not responsible for: what a row is or whether it is still queued (the `claim` callable
given to `popleft`/`drain` answers: an entry, or None for a row gone meanwhile), which
FIFO a domain's entries are in, or any decision across domains (engine.sched.queue).
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ["DomainState", "EntryFifo", "Run", "ideal_connections"]

T = TypeVar("T")


class Run:
    """Rows of the start-up index, consumed from `at` on (the array is shared, read only)."""

    __slots__ = ("at", "rows")

    def __init__(self, rows: array[int]) -> None:
        self.rows = rows
        self.at = 0

    def __repr__(self) -> str:
        return f"Run({len(self.rows) - self.at} rows)"


class EntryFifo(Generic[T]):
    """FIFO of entries and runs of rows (see the module docstring)."""

    __slots__ = ("_items", "_n")

    def __init__(self, entries: Iterable[T] = ()) -> None:
        self._items: deque[T | Run] = deque(entries)
        self._n = len(self._items)

    def __len__(self) -> int:
        return self._n

    def __bool__(self) -> bool:
        return self._n > 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EntryFifo):
            return NotImplemented
        return self._n == other._n and list(self._items) == list(other._items)

    def __repr__(self) -> str:
        return f"EntryFifo({list(self._items)!r})"

    # -- entries -----------------------------------------------------------------------
    def append(self, entry: T) -> None:
        self._items.append(entry)
        self._n += 1

    def appendleft(self, entry: T) -> None:
        self._items.appendleft(entry)
        self._n += 1

    def entries(self) -> Iterator[T]:
        """The entry objects in order (rows not included: their owner lists those)."""
        for item in self._items:
            if not isinstance(item, Run):
                yield item

    def keep(self, wanted: Callable[[T], bool]) -> None:
        """Drop the entry objects for which `wanted` is False (runs stay)."""
        kept: deque[T | Run] = deque()
        for item in self._items:
            if isinstance(item, Run) or wanted(item):
                kept.append(item)
            else:
                self._n -= 1
        self._items = kept

    # -- rows --------------------------------------------------------------------------
    def add_run(self, rows: array[int], count: int) -> None:
        """Append a run of rows (read, never changed) holding `count` queued rows."""
        if count:
            self._items.append(Run(rows))
            self._n += count

    def forget(self, n: int = 1) -> None:
        """`n` rows of this FIFO's runs left it by another way (their claim now gives
        None): count them out."""
        self._n -= n

    # -- both --------------------------------------------------------------------------
    def popleft(self, claim: Callable[[int], T | None]) -> T | None:
        """The first entry (a row made an entry by `claim`), or None when empty."""
        items = self._items
        while items:
            head = items[0]
            if not isinstance(head, Run):
                items.popleft()
                self._n -= 1
                return head
            rows = head.rows
            while head.at < len(rows):
                row = rows[head.at]
                head.at += 1
                entry = claim(row)
                if entry is not None:
                    self._n -= 1
                    if head.at == len(rows):
                        items.popleft()
                    return entry
            items.popleft()
        return None

    def drain(self, claim: Callable[[int], T | None]) -> list[T]:
        """Every entry, in order, the rows made entries; the FIFO is empty after."""
        out: list[T] = []
        while self._n > 0:
            entry = self.popleft(claim)
            if entry is None:
                break
            out.append(entry)
        self.clear()
        return out

    def extend(self, other: EntryFifo[T]) -> None:
        """Move `other`'s items to the end of this FIFO (`other` is left empty)."""
        self._items.extend(other._items)
        self._n += other._n
        other.clear()

    def clear(self) -> None:
        self._items.clear()
        self._n = 0


def ideal_connections(backlog: int, max_connections: int, per_connection: int) -> int:
    """Connections a destination should have open for `backlog` messages.

    Just enough that every connection carries a full `max_messages_per_connection`
    (1 000 messages at 100 per connection -> 10), never above the destination's limit.
    This maximises reuse (the peers' users complain of one connection per message)
    while still sending a large backlog in parallel.
    """
    if backlog <= 0:
        return 0
    return min(max_connections, math.ceil(backlog / per_connection))


@dataclass(slots=True)
class DomainState:
    domain: str
    ready: EntryFifo[Any] = field(default_factory=EntryFifo)
    taken: int = 0  # entries handed to a connection, not yet done
    connections: int = 0  # connection tasks alive (waiting for a lease, connecting, or open)
    suspended_until: float = 0.0  # after a whole-destination failure (all MX hosts failed)
    # Concurrency window: connections this worker may have to the domain now, under the
    # policy's max_connections (applied where it is used, so a reload that changes the
    # limit takes effect at once).  It starts at 1 and engine.runtime.delivery doubles it
    # per session that reaches READY (slow start) and lowers it when a connection fails
    # (Postfix qmgr_queue_throttle: negative feedback), so a broken destination sees one
    # connection attempt per worker per retry step, never max_connections at once.
    window: int = 1

    @property
    def backlog(self) -> int:
        return len(self.ready) + self.taken
