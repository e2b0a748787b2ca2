"""Every Prometheus metric Volley exports, and how worker counts reach them.

Responsible for: metric names, help texts and labels (the contract grafana/ and deploy/
rely on), the worker-side `Tally` that counts in plain dicts, and the supervisor-side
`Exporter` that applies the workers' deltas to ordinary prometheus-client metrics.
Not responsible for: deciding what happened (callers say) or serving HTTP (supervisor).

Why not prometheus-client's multiprocess mode (dependency-facts §3): it makes every inc()
2.5-3x slower (mmap + lock), cannot do Info or process collectors, and a scrape over 64
process files x 1 000 domains took 13.5 s, past Prometheus's 10 s default timeout; dead
workers' files pile up.  Instead workers count in dicts (~130 ns per event) and send the
deltas every 250 ms over the control socket; the supervisor owns one normal registry.
The cost: a worker killed with -9 loses at most its last 250 ms of counts.

Cardinality: per-domain series exist for at most `domain_label_limit` domains (first come);
every further domain is counted under domain="other".
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Info

__all__ = ["OTHER", "Exporter", "Tally"]

OTHER = "other"

# name -> (help, label names).  Counters get "_total" appended by prometheus-client.
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "volley_received": ("Recipients accepted from drop files into the queue.", ("domain",)),
    "volley_delivered": (
        "Recipients the destination accepted (2xx after end of data).",
        ("domain",),
    ),
    "volley_deferred": ("Delivery attempts that failed temporarily, per recipient.", ("domain",)),
    "volley_bounced": (
        "Recipients that failed permanently (5xx, null MX, no such domain).",
        ("domain",),
    ),
    "volley_expired": ("Recipients given up on after max_age of temporary failures.", ("domain",)),
    "volley_drops_rejected": (
        "Drop files moved to rejected/ (unparseable, no recipients, too big...).",
        (),
    ),
    "volley_dsns": ("Bounce reports (RFC 3464 DSNs) queued to senders.", ()),
    "volley_smtp_replies": ("SMTP replies received, by basic code.", ("code",)),
    "volley_connections": ("SMTP connection attempts by result: opened, failed.", ("result",)),
    "volley_connection_reuses": ("Transactions sent on an already used connection.", ()),
    "volley_transactions": ("SMTP mail transactions attempted.", ()),
    "volley_dns_lookups": (
        "MX resolutions by result: hit (cache), miss (queried), failure.",
        ("result",),
    ),
    "volley_worker_restarts": ("Worker processes restarted after dying.", ()),
}

# Gauges are per worker and summed over live workers by the exporter.
GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "volley_queue_entries": (
        "Spool entries (message x destination) by state: ready, waiting (deferred), inflight.",
        ("state",),
    ),
    "volley_connections_open": ("SMTP connections currently open.", ()),
    "volley_connections_idle": ("Open SMTP connections waiting for work.", ()),
}

Key = tuple[str, tuple[str, ...]]


class Tally:
    """Worker side: counts in dicts, flushed as one message of deltas."""

    def __init__(self) -> None:
        self._counts: defaultdict[Key, int] = defaultdict(int)
        self.gauges: dict[Key, float] = {}

    def inc(self, name: str, *labels: str, n: int = 1) -> None:
        self._counts[(name, labels)] += n

    def set(self, name: str, value: float, *labels: str) -> None:
        self.gauges[(name, labels)] = value

    def drain(self) -> tuple[list[list[Any]], list[list[Any]]]:
        """(counter deltas, gauge values) as msgpack-friendly lists; resets the deltas."""
        counts = [[n, list(lbl), v] for (n, lbl), v in self._counts.items() if v]
        self._counts.clear()
        gauges = [[n, list(lbl), v] for (n, lbl), v in self.gauges.items()]
        return counts, gauges


class Exporter:
    """Supervisor side: one ordinary registry fed by every worker's deltas."""

    def __init__(self, *, domain_label_limit: int = 100, version: str = "0") -> None:
        self.registry = CollectorRegistry()
        self._limit = domain_label_limit
        self._domains: set[str] = set()
        self._counters = {
            name: Counter(name, help_, labels, registry=self.registry)
            for name, (help_, labels) in COUNTERS.items()
        }
        self._gauges = {
            name: Gauge(name, help_, labels, registry=self.registry)
            for name, (help_, labels) in GAUGES.items()
        }
        self.workers_alive = Gauge(
            "volley_workers_alive", "Worker processes running.", registry=self.registry
        )
        Info("volley_build", "Volley version.", registry=self.registry).info({"version": version})
        self._worker_gauges: dict[int, dict[Key, float]] = {}

    def _labels(self, name: str, labels: list[str]) -> tuple[str, ...]:
        names = COUNTERS.get(name, GAUGES.get(name, ("", ())))[1]
        out = list(labels)
        if "domain" in names:
            i = names.index("domain")
            d = out[i]
            if d not in self._domains:
                if len(self._domains) < self._limit:
                    self._domains.add(d)
                else:
                    out[i] = OTHER
        return tuple(out)

    def apply(self, worker: int, counts: list[list[Any]], gauges: list[list[Any]]) -> None:
        for name, labels, value in counts:
            c = self._counters.get(name)
            if c is None:
                continue
            lbl = self._labels(name, labels)
            (c.labels(*lbl) if lbl else c).inc(value)
        mine = self._worker_gauges.setdefault(worker, {})
        for name, labels, value in gauges:
            mine[(name, tuple(labels))] = value
        self._refresh_gauges()

    def count(self, name: str, *labels: str, n: int = 1) -> None:
        """Counters the supervisor itself owns (e.g. worker restarts)."""
        c = self._counters[name]
        (c.labels(*labels) if labels else c).inc(n)

    def worker_gone(self, worker: int) -> None:
        self._worker_gauges.pop(worker, None)
        self._refresh_gauges()

    def _refresh_gauges(self) -> None:
        totals: defaultdict[Key, float] = defaultdict(float)
        for values in self._worker_gauges.values():
            for key, v in values.items():
                totals[key] += v
        for (name, labels), v in totals.items():
            g = self._gauges.get(name)
            if g is not None:
                (g.labels(*labels) if labels else g).set(v)
