"""One worker's in-memory queue state: deferred entries by time, ready entries by domain.

Responsible for: the delay queue (KumoMTA's timeq: "what is due now, else how long to
sleep"), a FIFO of due entries per destination domain, the count of entries taken by
connections, and how many connections a domain should have for its backlog.
Not responsible for: I/O, leases, or the meaning of failures.  Every method takes `now`
instead of reading a clock, so thousands of entries over hundreds of domains are
simulated in milliseconds (tests/unit/sched/test_queue.py).

Invariants: an entry name is in exactly one place — the delay heap, one domain's ready
FIFO, or "taken" (in flight on a connection) — or nowhere once done.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol


class Entry(Protocol):
    """What the queue needs to know of a spool entry (spool.EntryRef satisfies it).

    Names end in "@<domain>" (spool entry names do), which refresh_oldest relies on.
    """

    @property
    def name(self) -> str: ...

    @property
    def domain(self) -> str: ...


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
    ready: deque[Entry] = field(default_factory=deque)
    taken: int = 0  # entries handed to a connection, not yet done
    connections: int = 0  # connection tasks alive (waiting for a lease, connecting, or open)
    suspended_until: float = 0.0  # after a whole-destination failure (all MX hosts failed)
    # Concurrency window: connections this worker may have to the domain now, under the
    # policy's max_connections.  It starts at 1 and engine.runtime.delivery doubles it
    # per session that reaches READY (slow start) and lowers it when a connection fails
    # (Postfix qmgr_queue_throttle: negative feedback), so a broken destination sees one
    # connection attempt per worker per retry step, never max_connections at once.
    window: int = 1

    @property
    def backlog(self) -> int:
        return len(self.ready) + self.taken


class WorkQueue:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Entry]] = []
        self._seq = 0
        self._domains: dict[str, DomainState] = {}
        self._known: dict[str, float] = {}  # entry name -> when it was queued (drop time)
        self._depth: Counter[str] = Counter()  # known entries per domain
        self._oldest: dict[str, float] = {}  # per domain; may be stale-old until refreshed

    # -- intake ------------------------------------------------------------------
    def add(self, entry: Entry, due: float, now: float, born: float | None = None) -> bool:
        """Queue an entry; returns False when it is already known (a re-taken drop or an
        entry seen by both the startup scan and intake).  `born` is when the message
        entered the queue (for the oldest-age gauge; default `now`)."""
        if entry.name in self._known:
            return False
        born = now if born is None else born
        self._known[entry.name] = born
        domain = entry.domain
        self._depth[domain] += 1
        if born < self._oldest.get(domain, math.inf):
            self._oldest[domain] = born
        if due <= now and not self._suspended(entry.domain, now):
            self.domain(entry.domain).ready.append(entry)
        else:
            self._push(max(due, self.domain(entry.domain).suspended_until), entry)
        return True

    def _push(self, due: float, entry: Entry) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, entry))

    def _suspended(self, domain: str, now: float) -> bool:
        d = self._domains.get(domain)
        return d is not None and d.suspended_until > now

    def domain(self, name: str) -> DomainState:
        d = self._domains.get(name)
        if d is None:
            d = self._domains[name] = DomainState(name)
        return d

    # -- time ---------------------------------------------------------------------
    def release_due(self, now: float) -> set[str]:
        """Move every entry due at `now` to its domain's ready FIFO; returns the domains
        that gained work."""
        woken: set[str] = set()
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, entry = heapq.heappop(heap)
            if entry.name not in self._known:
                continue  # removed while waiting
            d = self.domain(entry.domain)
            if d.suspended_until > now:
                self._push(d.suspended_until, entry)
                continue
            d.ready.append(entry)
            woken.add(d.domain)
        return woken

    def next_due(self) -> float | None:
        """When release_due next has something to do (None: nothing is waiting)."""
        return self._heap[0][0] if self._heap else None

    # -- connections ----------------------------------------------------------------
    def take(self, domain: str) -> Entry | None:
        """Hand the oldest ready entry of `domain` to a connection."""
        d = self._domains.get(domain)
        if d is None or not d.ready:
            return None
        d.taken += 1
        return d.ready.popleft()

    def done(self, entry: Entry, *, retry_at: float | None, now: float) -> None:
        """A taken entry is finished: delivered/bounced (retry_at None) or deferred."""
        d = self.domain(entry.domain)
        d.taken -= 1
        if retry_at is None:
            if self._known.pop(entry.name, None) is not None:
                self._depth[entry.domain] -= 1
                if not self._depth[entry.domain]:
                    del self._depth[entry.domain]
                    self._oldest.pop(entry.domain, None)
        else:
            self._push(retry_at, entry)

    def untake(self, entry: Entry) -> None:
        """Give a taken entry back untouched (the connection closed before using it)."""
        d = self.domain(entry.domain)
        d.taken -= 1
        d.ready.appendleft(entry)

    def suspend(self, domain: str, until: float) -> list[Entry]:
        """The whole destination failed: stop handing out its entries until `until`.
        Returns the ready entries, which the caller defers one by one."""
        d = self.domain(domain)
        d.suspended_until = max(d.suspended_until, until)
        out = list(d.ready)
        d.ready.clear()
        d.taken += len(out)
        return out

    def take_all(self, domain: str) -> list[Entry]:
        """Hand every ready entry of `domain` to the caller (a permanent route failure)."""
        d = self.domain(domain)
        out = list(d.ready)
        d.ready.clear()
        d.taken += len(out)
        return out

    def connections_wanted(self, domain: str, max_connections: int, per_connection: int) -> int:
        """How many more connection tasks to start for `domain` now."""
        d = self._domains.get(domain)
        if d is None or not d.ready:
            return 0
        limit = min(d.window, max_connections)
        return max(0, ideal_connections(d.backlog, limit, per_connection) - d.connections)

    def ready_domains(self) -> Iterable[str]:
        return [name for name, d in self._domains.items() if d.ready]

    # -- introspection (metrics, `volley queue`) -------------------------------------
    def counts(self) -> tuple[int, int, int]:
        """(ready, waiting for retry, in flight) entries."""
        ready = sum(len(d.ready) for d in self._domains.values())
        taken = sum(d.taken for d in self._domains.values())
        return ready, len(self._known) - ready - taken, taken

    def __len__(self) -> int:
        return len(self._known)

    def depths(self) -> dict[str, tuple[int, float]]:
        """Per domain: (entries known, when the oldest of them was queued).

        The oldest time is kept as a running minimum, so after the oldest entry leaves it
        overstates the age until `refresh_oldest` runs (O(entries); the worker calls it
        every few seconds rather than per message)."""
        return {d: (n, self._oldest.get(d, math.inf)) for d, n in self._depth.items()}

    def refresh_oldest(self) -> None:
        oldest: dict[str, float] = {}
        for name, born in self._known.items():
            domain = name.rpartition("@")[2]
            if born < oldest.get(domain, math.inf):
                oldest[domain] = born
        self._oldest = oldest

    def forget_idle_domains(self) -> None:
        """Drop state of domains with nothing queued, nothing in flight, no connection."""
        for name in [n for n, d in self._domains.items() if not d.backlog and not d.connections]:
            if self._domains[name].suspended_until == 0.0:
                del self._domains[name]
