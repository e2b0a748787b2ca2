"""A worker's gauges: the queue's and its connections' state, as a snapshot for /metrics.

Responsible for: setting the entry-state gauges (ready, waiting, inflight) on every flush,
and the per-destination gauges (depth, oldest entry's age, open and idle connections,
ready entries held back by a limit and which) as a full snapshot, so a destination that
emptied drops out of /metrics.
Not responsible for: when to flush (the worker's flush loop), exporting (the supervisor,
engine.telemetry.export), or the queue's bookkeeping itself (engine.sched.queue).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from engine.sched.queue import WorkQueue
from engine.telemetry.catalog import ALL
from engine.telemetry.metrics import Tally

__all__ = ["Connections", "held_back", "set_domain_gauges", "set_entry_gauges"]

_PER_DOMAIN = (
    "volley_queue_depth",
    "volley_queue_oldest_age_seconds",
    "volley_connections_open",
    "volley_connections_idle",
    "volley_queue_throttled",
)


class Connections(Protocol):
    """What the deliverer knows of its connections, per destination."""

    @property
    def open_sessions(self) -> Mapping[str, int]: ...

    @property
    def idle_sessions(self) -> Mapping[str, int]: ...

    @property
    def rate_waits(self) -> Mapping[str, int]: ...

    @property
    def waiting_for_slot(self) -> Mapping[str, int]: ...


def held_back(queue: WorkQueue, c: Connections) -> dict[str, tuple[str, int]]:
    """Destinations whose ready entries wait for a limit: domain -> (reason, entries).

    rate: a connection waits for the site's next send instant, or the destination is
    paused until it; shaping: adaptive shaping suspended the site; connection: a
    connection waits for a slot of the site or its provider, and none is open.
    """
    out: dict[str, tuple[str, int]] = {}
    for domain in queue.ready_domains():
        reason = queue.paused(domain)
        if reason is None and c.rate_waits.get(domain):
            reason = "rate"
        elif reason is None and c.waiting_for_slot.get(domain):
            if not c.open_sessions.get(domain):
                reason = "connection"
        if reason is not None:
            out[domain] = (reason, len(queue.domain(domain).ready))
    return out


def set_entry_gauges(t: Tally, queue: WorkQueue) -> None:
    ready, waiting, inflight = queue.counts()
    t.set("volley_queue_entries", ready, "ready")
    t.set("volley_queue_entries", waiting, "waiting")
    t.set("volley_queue_entries", inflight, "inflight")


def set_domain_gauges(t: Tally, queue: WorkQueue, c: Connections, now: float) -> None:
    """Per-destination gauges: a full snapshot (domains that emptied are dropped)."""
    t.clear_gauges(*_PER_DOMAIN)
    oldest_all = 0.0
    for domain, (depth, born) in queue.depths().items():
        age = max(0.0, now - born)
        oldest_all = max(oldest_all, age)
        t.set("volley_queue_depth", depth, domain)
        t.set("volley_queue_oldest_age_seconds", age, domain)
    t.set("volley_queue_oldest_age_seconds", oldest_all, ALL)
    for domain, n in c.open_sessions.items():
        if n:
            t.set("volley_connections_open", n, domain)
    for domain, n in c.idle_sessions.items():
        if n:
            t.set("volley_connections_idle", n, domain)
    for domain, (reason, n) in held_back(queue, c).items():
        t.set("volley_queue_throttled", n, domain, reason)
