"""A worker's gauges: the queue's and its connections' state, as a snapshot for /metrics.

Responsible for: setting the entry-state gauges (ready, waiting, inflight) on every flush,
and the per-destination gauges (depth, oldest entry's age, open and idle connections) as
a full snapshot, so a destination that emptied drops out of /metrics.
Not responsible for: when to flush (the worker's flush loop), exporting (the supervisor,
engine.telemetry.export), or the queue's bookkeeping itself (engine.sched.queue).
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.sched.queue import WorkQueue
from engine.telemetry.catalog import ALL
from engine.telemetry.metrics import Tally

__all__ = ["set_domain_gauges", "set_entry_gauges"]

_PER_DOMAIN = (
    "volley_queue_depth",
    "volley_queue_oldest_age_seconds",
    "volley_connections_open",
    "volley_connections_idle",
)


def set_entry_gauges(t: Tally, queue: WorkQueue) -> None:
    ready, waiting, inflight = queue.counts()
    t.set("volley_queue_entries", ready, "ready")
    t.set("volley_queue_entries", waiting, "waiting")
    t.set("volley_queue_entries", inflight, "inflight")


def set_domain_gauges(
    t: Tally,
    queue: WorkQueue,
    open_sessions: Mapping[str, int],
    idle_sessions: Mapping[str, int],
    now: float,
) -> None:
    """Per-destination gauges: a full snapshot (domains that emptied are dropped)."""
    t.clear_gauges(*_PER_DOMAIN)
    oldest_all = 0.0
    for domain, (depth, born) in queue.depths().items():
        age = max(0.0, now - born)
        oldest_all = max(oldest_all, age)
        t.set("volley_queue_depth", depth, domain)
        t.set("volley_queue_oldest_age_seconds", age, domain)
    t.set("volley_queue_oldest_age_seconds", oldest_all, ALL)
    for domain, n in open_sessions.items():
        if n:
            t.set("volley_connections_open", n, domain)
    for domain, n in idle_sessions.items():
        if n:
            t.set("volley_connections_idle", n, domain)
