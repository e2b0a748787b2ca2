"""One worker's in-memory queue state: deferred entries by time, ready entries by domain.

Responsible for: the delay queue (KumoMTA's timeq: "what is due now, else how long to
sleep"), a FIFO of due entries per destination domain, the count of entries taken by
connections, and how many connections a domain should have for its backlog; and the
operator's queue controls on that state: holding a destination (`hold`/`unhold`), making
deferred entries due now (`flush`), handing chosen entries to an operator action
(`extract`, and `mark` for those in flight), and listing them (`entries`: engine.sched
.listing).  The entries found at start stay rows of the spool's start-up index until
handed out (`add_backlog`, engine.sched.backlog): ~50 bytes an entry instead of ~390.
Not responsible for: I/O, leases, or the meaning of failures.  Every method takes `now`
instead of reading a clock, so thousands of entries over hundreds of domains are
simulated in milliseconds (tests/unit/sched/test_queue.py).

Invariants: an entry is in exactly one place — the delay heap (or the backlog's time
buckets), one domain's ready FIFO, a held domain's parked FIFO, or "taken" (in flight, or
handed to an operator action) — or nowhere once done.  A held domain's ready FIFO is empty.

Two kinds of suspension, kept apart on purpose:
  * automatic (`DomainState.suspended_until`, `suspend`): the delivery code's "dead
    destination" after every MX host failed; its entries are deferred (rewritten) and
    wait in the heap.  `flush` clears it: the operator says "try now".
  * operator (`hold`): `volley suspend`.  Due entries are parked in memory as they are
    (no spool write per entry) and come back in their order on `unhold` or when the
    hold ends (`release_due` lifts expired holds).  Kept outside DomainState so that
    forgetting an idle domain's state can never lift one, and so that `unhold` never
    lifts an automatic suspension (entries of a domain that is both wait for its end).
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping

from engine.sched.backlog import Backlog, Rows
from engine.sched.destination import DomainState, EntryFifo, ideal_connections
from engine.sched.listing import Entry, EntryState, QueueView, entry_names, list_entries

__all__ = ["DomainState", "Entry", "EntryState", "WorkQueue", "ideal_connections"]

# Backlog rows made ready per release_due call (~50 ms for 65 536 here): a million due at
# once never hold the event loop for seconds; the dispatcher comes back at once for the rest.
RELEASE_BATCH = 65_536


class WorkQueue:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Entry]] = []
        self._seq = 0
        self._domains: dict[str, DomainState] = {}
        self._known: dict[str, float] = {}  # entry name -> when it was queued (drop time)
        self._depth: Counter[str] = Counter()  # known entries per domain
        self._oldest: dict[str, float] = {}  # per domain; may be stale-old until refreshed
        # Domains that may have ready entries: every one that gained some since it was last
        # found empty.  ready_domains() runs on every dispatch wake-up; iterating every
        # known domain there made a 20 000-domain run ~8x slower (bench/soak_domains.py).
        self._maybe_ready: set[str] = set()
        self._holds: dict[str, float] = {}  # operator suspensions: domain -> until
        # Destinations whose ready entries wait for their site (a rate limit's next
        # instant, a shaping suspension): domain -> (until, reason).  Nothing is deferred.
        self._pauses: dict[str, tuple[float, str]] = {}
        self._parked: dict[str, EntryFifo[Entry]] = {}  # due entries of held domains
        self._backlog: Backlog[Entry] | None = None  # entries found at start, as rows
        self._marks: dict[str, object] = {}  # taken entries an operator action waits for
        self._claimed: list[tuple[Entry, object]] = []
        # Called when a marked entry's attempt ends with something left to do (the entry
        # is then in `claimed()`); the worker schedules the operator action from it.
        self.on_claim: Callable[[], None] | None = None

    # -- intake ------------------------------------------------------------------
    def add(self, entry: Entry, due: float, now: float, born: float | None = None) -> bool:
        """Queue an entry; returns False when it is already known (a re-taken drop or an
        entry seen by both the startup scan and intake).  `born` is when the message
        entered the queue (for the oldest-age gauge; default `now`)."""
        if entry.name in self:
            return False
        born = now if born is None else born
        self._known[entry.name] = born
        domain = entry.domain
        self._depth[domain] += 1
        if born < self._oldest.get(domain, math.inf):
            self._oldest[domain] = born
        d = self.domain(domain)
        if due <= now and d.suspended_until <= now:
            self._make_ready(d, entry)
        else:
            self._push(max(due, d.suspended_until), entry)
        return True

    def add_backlog(self, rows: Rows[Entry], now: float) -> int:
        """Queue the entries of a start-up index (spool.compact.CompactIndex) as rows, not
        objects: each becomes an entry only when `take` hands it out (engine.sched.backlog).
        Rows whose names are queued already (re-taken by an interrupted intake batch) are
        skipped. Returns how many were queued. Once per queue, at start."""
        if self._backlog is not None:
            raise RuntimeError("the work queue has its start-up backlog already")
        skip = [r for r in map(rows.row_of, self._known) if r >= 0]
        backlog = Backlog(rows, now, skip)
        if not backlog.total:
            return 0
        self._backlog = backlog
        for domain, n in backlog.counts():
            self._depth[domain] += n
        for domain, born in backlog.oldests():
            self._oldest[domain] = min(born, self._oldest.get(domain, math.inf))
        queued = backlog.total
        for domain, run in backlog.ready.items():
            self._rows_due(domain, run, now)
        backlog.ready.clear()
        return queued

    def _rows_due(self, domain: str, rows: array[int], now: float) -> bool:
        """Backlog rows of `domain` are due: to its FIFO (parked while held), or to the
        heap as entries while an automatic suspension lasts.  True if it gained work."""
        until = self.domain(domain).suspended_until
        if until > now:
            for entry in filter(None, map(self._claim, rows)):
                self._push(until, entry)
            return False
        self._fifo_of(domain).add_run(rows, len(rows))
        if domain not in self._holds:
            self._maybe_ready.add(domain)
        return domain not in self._holds

    def _fifo_of(self, domain: str) -> EntryFifo[Entry]:
        """Where a due entry of `domain` waits: its ready FIFO, or parked while held."""
        if domain in self._holds:
            parked = self._parked.get(domain)
            if parked is None:
                parked = self._parked[domain] = EntryFifo()
            return parked
        return self.domain(domain).ready

    def _claim(self, row: int) -> Entry | None:
        """A queued row of the backlog as an entry, known from now on like any other."""
        backlog = self._backlog
        entry = backlog.claim(row) if backlog is not None else None
        if entry is not None and backlog is not None:
            self._adopt(backlog, row, entry)
        return entry

    def _adopt(self, backlog: Backlog[Entry], row: int, entry: Entry) -> None:
        self._known[entry.name] = backlog.rows.born(row)
        if not backlog.total:
            self._backlog = None  # its arrays go with the spool's index

    def _make_ready(self, d: DomainState, entry: Entry) -> bool:
        """Append a due entry to its domain's ready FIFO, or park it if the domain is held;
        True if it became ready."""
        self._fifo_of(d.domain).append(entry)
        if d.domain not in self._holds:
            self._maybe_ready.add(d.domain)
        return d.domain not in self._holds

    def _push(self, due: float, entry: Entry) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, entry))

    def domain(self, name: str) -> DomainState:
        d = self._domains.get(name)
        if d is None:
            d = self._domains[name] = DomainState(name)
        return d

    # -- time ---------------------------------------------------------------------
    def release_due(self, now: float) -> set[str]:
        """Lift the operator holds that ended by `now`, then move every entry due at `now`
        to its domain's ready FIFO (parked instead, if held); returns the domains that
        gained work."""
        woken: set[str] = set()
        for domain in [d for d, until in self._holds.items() if until <= now]:
            if self.unhold(domain, now):
                woken.add(domain)
        for domain in [d for d, (until, _) in self._pauses.items() if until <= now]:
            del self._pauses[domain]
            woken.add(domain)
            self._maybe_ready.add(domain)
        heap = self._heap
        budget = RELEASE_BATCH
        while True:
            top = heap[0][0] if heap else math.inf
            # Backlog rows due first, up to the heap's next entry (on a tie, rows first:
            # they were queued before anything the heap holds).
            backlog = self._backlog
            row_due = backlog.next_due() if backlog is not None and budget > 0 else None
            if backlog is not None and row_due is not None and row_due <= min(now, top):
                for domain, rows in backlog.release(min(now, top), budget).items():
                    budget -= len(rows)
                    if self._rows_due(domain, rows, now):
                        woken.add(domain)
                continue
            if top > now:
                return woken
            _, _, entry = heapq.heappop(heap)
            if entry.name not in self._known:
                continue  # removed while waiting
            d = self.domain(entry.domain)
            if d.suspended_until > now:
                self._push(d.suspended_until, entry)
                continue
            if self._make_ready(d, entry):
                woken.add(d.domain)

    def next_due(self) -> float | None:
        """When release_due next has something to do (None: nothing is waiting)."""
        ends = [*self._holds.values(), *(until for until, _ in self._pauses.values())]
        if self._heap:
            ends.append(self._heap[0][0])
        if self._backlog is not None and (row_due := self._backlog.next_due()) is not None:
            ends.append(row_due)
        return min(ends, default=None)

    # -- connections ----------------------------------------------------------------
    def take(self, domain: str) -> Entry | None:
        """Hand the oldest ready entry of `domain` to a connection."""
        d = self._domains.get(domain)
        if d is None or not d.ready:
            return None
        entry = d.ready.popleft(self._claim)
        if entry is not None:
            d.taken += 1
        return entry

    def done(self, entry: Entry, *, retry_at: float | None, now: float) -> None:
        """A taken entry is finished: delivered/bounced (retry_at None) or deferred.

        A deferred entry that an operator action marked (`mark`) is not rescheduled: it
        stays taken, now by that action, and goes to `claimed()`."""
        d = self.domain(entry.domain)
        tag = self._marks.pop(entry.name, None) if self._marks else None
        if retry_at is None:
            d.taken -= 1
            if self._known.pop(entry.name, None) is not None:
                self._depth[entry.domain] -= 1
                if not self._depth[entry.domain]:
                    del self._depth[entry.domain]
                    self._oldest.pop(entry.domain, None)
        elif tag is not None:
            self._claimed.append((entry, tag))
            if self.on_claim is not None:
                self.on_claim()
        else:
            d.taken -= 1
            self._push(retry_at, entry)

    def untake(self, entry: Entry) -> None:
        """Give a taken entry back untouched (the connection closed before using it).
        A mark stays: the operator action applies when its next attempt ends."""
        d = self.domain(entry.domain)
        d.taken -= 1
        self._fifo_of(d.domain).appendleft(entry)
        if d.domain not in self._holds:
            self._maybe_ready.add(d.domain)

    def suspend(self, domain: str, until: float) -> list[Entry]:
        """The whole destination failed: stop handing out its entries until `until`.
        Returns the ready entries, which the caller defers one by one."""
        d = self.domain(domain)
        d.suspended_until = max(d.suspended_until, until)
        return self.take_all(domain)

    def take_all(self, domain: str) -> list[Entry]:
        """Hand every ready entry of `domain` to the caller (a permanent route failure)."""
        d = self.domain(domain)
        out = d.ready.drain(self._claim)
        d.taken += len(out)
        return out

    def connections_wanted(self, domain: str, max_connections: int, per_connection: int) -> int:
        """How many more connection tasks to start for `domain` now."""
        d = self._domains.get(domain)
        if d is None or not d.ready or domain in self._pauses:
            return 0
        limit = min(d.window, max_connections)
        return max(0, ideal_connections(d.backlog, limit, per_connection) - d.connections)

    def ready_domains(self) -> Iterable[str]:
        """Domains with ready entries: O(domains that gained work), not O(domains)."""
        out: list[str] = []
        domains = self._domains
        for name in list(self._maybe_ready):
            d = domains.get(name)
            if d is not None and d.ready:
                out.append(name)
            else:
                self._maybe_ready.discard(name)
        return out

    def pause(self, domain: str, until: float, reason: str) -> None:
        """Start no connection to `domain` before `until`: its entries stay ready (no
        attempt, no deferral); `reason` says why, for `volley queue` and metrics."""
        self._pauses[domain] = (until, reason)

    def unpause(self, reason: str) -> list[str]:
        """End every pause for `reason` now (what it waits for may have changed: a reload
        that gives warm-up sources more quota); returns the domains it ended for."""
        ended = [d for d, (_, why) in self._pauses.items() if why == reason]
        for domain in ended:
            del self._pauses[domain]
            self._maybe_ready.add(domain)
        return ended

    def paused(self, domain: str) -> str | None:
        p = self._pauses.get(domain)
        return p[1] if p else None

    # -- operator controls ----------------------------------------------------------------
    def hold(self, domain: str, until: float) -> int:
        """Operator suspension of `domain` until `until` (replacing an earlier one): its
        ready entries are parked and no entry becomes ready until it ends.  Returns how
        many entries were parked now.  Open connections find no work and close; entries
        already taken finish their attempt."""
        self._holds[domain] = until
        d = self._domains.get(domain)
        if d is None or not d.ready:
            return 0
        n = len(d.ready)
        self._fifo_of(domain).extend(d.ready)
        return n

    def unhold(self, domain: str, now: float) -> bool:
        """End the operator suspension of `domain`: parked entries become ready in their
        order (or wait in the heap while an automatic suspension lasts).  True if the
        domain gained ready work."""
        if self._holds.pop(domain, None) is None:
            return False
        parked = self._parked.pop(domain, None)
        if not parked:
            return False
        d = self.domain(domain)
        if d.suspended_until > now:
            for entry in parked.drain(self._claim):
                self._push(d.suspended_until, entry)
            return False
        d.ready.extend(parked)
        self._maybe_ready.add(domain)
        return True

    def set_holds(self, holds: Mapping[str, float], now: float) -> set[str]:
        """Make the operator holds exactly `holds` (domain -> until), as the supervisor
        sends them; returns the domains that gained ready work (holds lifted)."""
        woken = {d for d in list(self._holds) if d not in holds and self.unhold(d, now)}
        for domain, until in holds.items():
            self.hold(domain, until)
        return woken

    @property
    def holds(self) -> Mapping[str, float]:
        return self._holds

    def flush(self, domain: str | None, now: float) -> int:
        """Make every deferred entry (of `domain`, or all) due at `now` and end automatic
        suspensions ("retry now"); returns how many entries were deferred.  An operator
        hold stays: a held domain's flushed entries are parked.  O(heap), an operator's
        occasional action.  In memory only: the spool keeps each entry's next attempt
        time until the attempt rewrites it (a restart before that restores the old time)."""
        n = 0
        heap: list[tuple[float, int, Entry]] = []
        for due, seq, entry in self._heap:
            if entry.name in self._known and (domain is None or entry.domain == domain):
                n += 1
                due = min(due, now)
            heap.append((due, seq, entry))
        heapq.heapify(heap)
        self._heap = heap
        for d in self._domains.values() if domain is None else [self.domain(domain)]:
            d.suspended_until = 0.0
        return n + (self._backlog.flush(domain, now) if self._backlog is not None else 0)

    def extract(self, names: Collection[str]) -> tuple[list[Entry], list[str]]:
        """Hand the waiting entries among `names` (ready, parked or deferred) to the
        caller, counted as taken (finish each with `done`); returns them and the names
        that are in flight (taken already).  Names not queued are ignored."""
        want = {n for n in names if n in self}
        got: list[Entry] = []
        if not want:
            return got, []
        seen: set[str] = set()
        backlog = self._backlog
        if backlog is not None:
            for row, entry, queued in backlog.extract(want):
                if queued:  # its FIFO's run holds the row: count it out there
                    self._fifo_of(entry.domain).forget()
                self._adopt(backlog, row, entry)
                seen.add(entry.name)
                got.append(entry)

        def keep(entry: Entry) -> bool:
            if entry.name in want and entry.name not in seen:
                seen.add(entry.name)
                got.append(entry)
                return False
            return True

        for d in self._domains.values():
            if d.ready:
                d.ready.keep(keep)
        for parked in self._parked.values():
            parked.keep(keep)
        # A stale heap item (its name already done) may share a name; keep() only takes
        # live ones because `want` holds known names and each name is taken once.
        heap = [item for item in self._heap if keep(item[2])]
        if len(heap) != len(self._heap):
            heapq.heapify(heap)
            self._heap = heap
        for entry in got:
            self.domain(entry.domain).taken += 1
        return got, sorted(want - seen)

    def mark(self, name: str, tag: object) -> None:
        """An operator action waits for the taken entry `name`: when its attempt ends
        with recipients left, `done` hands it to `claimed()` with `tag` instead of
        rescheduling it (a delivered entry just leaves: nothing is left to act on)."""
        if name in self._known:
            self._marks[name] = tag

    def claimed(self) -> list[tuple[Entry, object]]:
        """Marked entries whose attempt ended, with their tags (each returned once; they
        are taken until the caller's `done`)."""
        out, self._claimed = self._claimed, []
        return out

    def entries(
        self,
        domain: str | None = None,
        match: Callable[[str], bool] | None = None,
        limit: int | None = None,
    ) -> list[tuple[str, EntryState, float | None]]:
        """(name, state, next attempt time for deferred entries) of the known entries of
        `domain` (or all) whose name satisfies `match`, sorted by name, the first `limit`
        only if given (engine.sched.listing)."""
        return list_entries(self._view(), domain, match, limit)

    def names(
        self, domain: str | None = None, match: Callable[[str], bool] | None = None
    ) -> list[str]:
        """Names of the known entries of `domain` (or all) that satisfy `match`, unordered
        (engine.sched.listing)."""
        return entry_names(self._view(), domain, match)

    def _view(self) -> QueueView:
        ready = [d.ready for d in self._domains.values()]
        return QueueView(self._known, self._heap, ready, self._parked, self._holds, self._backlog)

    def count(self, domain: str | None = None) -> int:
        """Entries known (of `domain`, or all): O(1)."""
        return len(self) if domain is None else self._depth.get(domain, 0)

    def __contains__(self, name: object) -> bool:
        if name in self._known:
            return True
        backlog = self._backlog
        return backlog is not None and isinstance(name, str) and backlog.find(name) >= 0

    # -- introspection (metrics, `volley queue`) -------------------------------------
    def counts(self) -> tuple[int, int, int]:
        """(ready, waiting for retry, in flight) entries."""
        ready = sum(len(d.ready) for d in self._domains.values())
        taken = sum(d.taken for d in self._domains.values())
        return ready, len(self) - ready - taken, taken

    def __len__(self) -> int:
        backlog = self._backlog
        return len(self._known) + (backlog.total if backlog is not None else 0)

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
        for domain, born in self._backlog.oldests() if self._backlog is not None else ():
            oldest[domain] = min(born, oldest.get(domain, math.inf))
        self._oldest = oldest

    def forget_idle_domains(self, now: float) -> list[str]:
        """Drop the state of domains with nothing queued, nothing in flight, no connection
        and no automatic suspension still running; returns their names.  A long-running
        engine sending to hundreds of thousands of distinct domains must not keep a
        DomainState (~300 bytes) for each forever.  What is lost is a concurrency window,
        which slow start rebuilds."""
        gone = [
            name
            for name, d in self._domains.items()
            if not d.backlog and not d.connections and d.suspended_until <= now
        ]
        for name in gone:
            del self._domains[name]
        return gone
