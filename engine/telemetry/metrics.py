"""Every Prometheus metric Volley exports, and how worker counts reach them.

Responsible for: the metric contract (names, help texts, labels, buckets: grafana/ and
deploy/ depend on it, docs/metrics.md lists it), the worker-side `Tally` that counts in
plain dicts, the supervisor-side `Exporter` that turns every worker's deltas into one
registry, bounded destination cardinality (`TopDomains`), and the bounded classes of drop
rejections (`reject_class`).
Not responsible for: deciding what happened (callers say), serving HTTP (supervisor), or
reading /metrics back (engine.telemetry.top).

Why not prometheus-client's multiprocess mode (dependency-facts §3): it makes every inc()
2.5-3x slower (mmap + lock), cannot do Info or process collectors, and a scrape over 64
process files x 1 000 domains took 13.5 s, past Prometheus's 10 s default timeout; dead
workers' files pile up.  Instead workers count in dicts (~130 ns per event against
0.3-0.6 us for Counter.inc) and send the deltas every 250 ms over the control socket
(exact in a 2 M-event test); the supervisor owns one normal registry.  The cost: a worker
killed with -9 loses at most its last 250 ms of counts.

Wire format of one flush, `["metrics", counters, gauges, histograms]`, all msgpack lists:
  counters    [[name, [label, ...], n], ...]                  deltas since the last flush
  gauges      [[name, [label, ...], value], ...]              the worker's whole gauge state
  histograms  [[name, [label, ...], [c0..cK], sum, count]]    deltas; c_i = observations in
              (bounds[i-1], bounds[i]], c_K = above the last bound (+Inf)

Cardinality: a `domain` label carries one of the top `top_domains` destinations by
volume (recipients received, decayed with a 10 min half-life, re-ranked every 30 s) or
"other".  A domain that drops out of the top set loses its series (remove()); its later
counts go to "other".  Labels of known values (results, reasons) start at 0, so every
series exists from the first scrape and dashboards never show "no data" for "none yet".
"""

from __future__ import annotations

import bisect
import enum
import math
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Info
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric

__all__ = [
    "ALL",
    "COUNTERS",
    "GAUGES",
    "HISTOGRAMS",
    "OTHER",
    "REJECT_CLASSES",
    "Agg",
    "CheckedTally",
    "Exporter",
    "Tally",
    "TopDomains",
    "reject_class",
    "reply_labels",
]

OTHER = "other"  # every destination outside the top set
ALL = "_all"  # volley_queue_oldest_age_seconds over the whole queue


class Agg(enum.Enum):
    """How the exporter combines one gauge over live workers (and over folded domains)."""

    SUM = "sum"  # counts: entries, connections
    MAX = "max"  # ages, flags


@dataclass(frozen=True, slots=True)
class CounterSpec:
    help: str
    labels: tuple[str, ...] = ()
    initial: tuple[tuple[str, ...], ...] = ()  # label values that exist (at 0) from start


@dataclass(frozen=True, slots=True)
class GaugeSpec:
    help: str
    labels: tuple[str, ...]
    agg: Agg
    initial: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True, slots=True)
class HistogramSpec:
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...]  # upper bounds, ascending; +Inf is implied
    initial: tuple[tuple[str, ...], ...] = ()


REJECT_CLASSES: tuple[str, ...] = tuple(
    "symlink not_regular too_big empty no_recipients too_many_recipients bad_address "
    "bad_headers unparseable other".split()
)

_D = ("domain",)
_OTHER_ONLY = ((OTHER,),)

# Counters: prometheus-client appends "_total".
COUNTERS: dict[str, CounterSpec] = {
    "volley_received": CounterSpec(
        "Recipients taken from drop files into the queue.", _D, _OTHER_ONLY
    ),
    "volley_delivered": CounterSpec(
        "Recipients the destination accepted (2xx after the data).", _D, _OTHER_ONLY
    ),
    "volley_deferred": CounterSpec(
        "Delivery attempts that failed temporarily, per recipient.", _D, _OTHER_ONLY
    ),
    "volley_bounced": CounterSpec(
        "Recipients that failed permanently (5xx, null MX, no such domain).", _D, _OTHER_ONLY
    ),
    "volley_expired": CounterSpec(
        "Recipients given up on after max_age of temporary failures.", _D, _OTHER_ONLY
    ),
    "volley_drops_rejected": CounterSpec(
        "Drop files moved to rejected/, by class of reason.",
        ("reason",),
        tuple((r,) for r in REJECT_CLASSES),
    ),
    "volley_dsns": CounterSpec("Bounce reports (RFC 3464 DSNs) queued to senders."),
    "volley_smtp_replies": CounterSpec(
        "SMTP replies received, by code and enhanced status class.subject ('none' if absent).",
        ("code", "enhanced"),
    ),
    "volley_connections": CounterSpec(
        "SMTP connections: opened, reused (a transaction on an already used connection), failed.",
        ("result",),
        (("opened",), ("reused",), ("failed",)),
    ),
    "volley_transactions": CounterSpec("SMTP mail transactions attempted (MAIL FROM sent)."),
    "volley_dns_lookups": CounterSpec(
        "MX resolutions by result: hit (cache), miss (queried), failure.",
        ("result",),
        (("hit",), ("miss",), ("failure",)),
    ),
    "volley_worker_restarts": CounterSpec("Worker processes restarted after dying."),
    "volley_quarantined": CounterSpec(
        "Spool entries moved to corrupt/: corrupt (failed checksum), poison (kept crashing).",
        ("reason",),
        (("corrupt",), ("poison",)),
    ),
    "volley_intake_pauses": CounterSpec(
        "Times intake stopped taking drops (disk_full: the spool's disk is out of space).",
        ("reason",),
        (("disk_full",),),
    ),
}

GAUGES: dict[str, GaugeSpec] = {
    "volley_queue_entries": GaugeSpec(
        "Queue entries (message x destination) by state: ready, waiting (deferred), inflight.",
        ("state",),
        Agg.SUM,
        (("ready",), ("waiting",), ("inflight",)),
    ),
    "volley_queue_depth": GaugeSpec(
        "Queue entries per destination, any state.", _D, Agg.SUM, _OTHER_ONLY
    ),
    "volley_queue_oldest_age_seconds": GaugeSpec(
        'Age of the oldest queued entry per destination; domain="_all": the whole queue.',
        _D,
        Agg.MAX,
        ((OTHER,), (ALL,)),
    ),
    "volley_connections_open": GaugeSpec(
        "SMTP connections currently open, per destination.", _D, Agg.SUM, _OTHER_ONLY
    ),
    "volley_connections_idle": GaugeSpec(
        "Open SMTP connections waiting for work, per destination.", _D, Agg.SUM, _OTHER_ONLY
    ),
    "volley_intake_paused": GaugeSpec(
        "1 while intake is paused, by reason (disk_full).",
        ("reason",),
        Agg.MAX,
        (("disk_full",),),
    ),
}

_LATENCY = "0.05 0.1 0.25 0.5 1 2.5 5 10 30 60 120 300 600 1800 3600 7200 14400 43200 86400"

HISTOGRAMS: dict[str, HistogramSpec] = {
    # 50 ms (a drop delivered straight away on a LAN) to 1 day (deep in the retry
    # schedule); past a day the bucket says nothing more useful than "+Inf".
    "volley_delivery_latency_seconds": HistogramSpec(
        "Time from drop to delivery of each delivered recipient.",
        _D,
        tuple(float(s) for s in _LATENCY.split()),
        _OTHER_ONLY,
    ),
    # 1 ms (loopback) to 60 s (a tarpit, or a 10 min data_done timeout seen as +Inf).
    "volley_smtp_transaction_seconds": HistogramSpec(
        "Duration of one SMTP transaction, MAIL FROM to the final reply.",
        (),
        (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        ((),),
    ),
}

Key = tuple[str, tuple[str, ...]]


def reply_labels(code: int, enhanced: str | None) -> tuple[str, str]:
    """Labels of volley_smtp_replies: ("550", "5.1") for 550 5.1.1; "none" if no enhanced
    code.  Only class.subject: the detail digits would multiply the series by ~1000."""
    if not enhanced:
        return str(code), "none"
    cls, _, rest = enhanced.partition(".")
    subject = rest.partition(".")[0]
    return str(code), f"{cls}.{subject}" if subject else "none"


# First match wins; the texts are engine.drop's (read.py, parse.py, address.py).
_REJECT_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("symlink", ("symbolic link",)),
    ("not_regular", ("not a regular file",)),
    ("too_big", ("exceeds spool.max_message_size",)),
    ("empty", ("empty file", "empty message")),
    ("no_recipients", ("no recipients",)),
    ("too_many_recipients", ("too many recipients",)),
    ("bad_address", ("address", "no sender", "empty x-receiver", "parenthes", "nested too")),
    ("bad_headers", ("header", "x-sender", "x-receiver", "bare cr")),
    ("unparseable", ("nul byte", "not a text message", "error while parsing")),
)


def reject_class(reason: str) -> str:
    """The bounded class (REJECT_CLASSES) of a drop rejection's reason text."""
    text = reason.lower()
    for cls, words in _REJECT_RULES:
        if any(w in text for w in words):
            return cls
    return "other"


def check(kind: str, name: str, labels: Sequence[Any]) -> str | None:
    """Why (name, labels) breaks the contract for a metric of `kind`, or None."""
    tables: dict[str, dict[str, Any]] = {
        "counter": COUNTERS,
        "gauge": GAUGES,
        "histogram": HISTOGRAMS,
    }
    spec = tables[kind].get(name)
    if spec is None:
        return f"unknown {kind} {name!r}"
    if len(labels) != len(spec.labels) or not all(isinstance(v, str) for v in labels):
        return f"{name} takes labels {spec.labels}, got {tuple(labels)!r}"
    return None


class _Hist:
    __slots__ = ("count", "counts", "sum")

    def __init__(self, n: int) -> None:
        self.counts = [0] * n
        self.sum = 0.0
        self.count = 0


class Tally:
    """Worker side: counts in dicts, flushed as one message of deltas.

    Gauges keep their last value until set again; drain() sends the worker's whole gauge
    state every time.  A family re-set as a whole (per-destination values) is cleared
    first with clear_gauges(), so a destination that emptied disappears.
    No validation here (hot path): the exporter drops and reports entries that break the
    contract; tests use CheckedTally, which raises at the call site.
    """

    def __init__(self) -> None:
        self._counts: dict[Key, int] = {}
        self._gauges: dict[Key, float] = {}
        self._hists: dict[Key, _Hist] = {}

    def inc(self, name: str, *labels: str, n: int = 1) -> None:
        key = (name, labels)
        self._counts[key] = self._counts.get(key, 0) + n

    def set(self, name: str, value: float, *labels: str) -> None:
        self._gauges[(name, labels)] = value

    def clear_gauges(self, *names: str) -> None:
        """Forget every series of the named gauges (before setting a family afresh)."""
        drop = set(names)
        self._gauges = {k: v for k, v in self._gauges.items() if k[0] not in drop}

    def observe(self, name: str, value: float, *labels: str) -> None:
        """Raises KeyError for a name not in HISTOGRAMS (its buckets are unknown)."""
        bounds = HISTOGRAMS[name].buckets
        key = (name, labels)
        h = self._hists.get(key)
        if h is None:
            h = self._hists[key] = _Hist(len(bounds) + 1)
        h.counts[bisect.bisect_left(bounds, value)] += 1  # le: value == bound is inside
        h.sum += value
        h.count += 1

    def drain(self) -> tuple[list[list[Any]], list[list[Any]], list[list[Any]]]:
        """(counter deltas, gauge state, histogram deltas), msgpack-friendly; resets deltas."""
        counts = [[n, list(lbl), v] for (n, lbl), v in self._counts.items() if v]
        self._counts.clear()
        gauges = [[n, list(lbl), v] for (n, lbl), v in self._gauges.items()]
        hists = [
            [n, list(lbl), h.counts, h.sum, h.count]
            for (n, lbl), h in self._hists.items()
            if h.count
        ]
        self._hists.clear()
        return counts, gauges, hists


class CheckedTally(Tally):
    """A Tally that raises ValueError at once on a name or label count outside the
    contract: for tests of the code that counts (each check costs ~0.3 us)."""

    def inc(self, name: str, *labels: str, n: int = 1) -> None:
        _raise_if(check("counter", name, labels))
        super().inc(name, *labels, n=n)

    def set(self, name: str, value: float, *labels: str) -> None:
        _raise_if(check("gauge", name, labels))
        super().set(name, value, *labels)

    def clear_gauges(self, *names: str) -> None:
        for name in names:
            if name not in GAUGES:
                raise ValueError(f"unknown gauge {name!r}")
        super().clear_gauges(*names)

    def observe(self, name: str, value: float, *labels: str) -> None:
        _raise_if(check("histogram", name, labels))
        super().observe(name, value, *labels)


def _raise_if(problem: str | None) -> None:
    if problem is not None:
        raise ValueError(problem)


class TopDomains:
    """Which destinations get their own series.  Pure: `now` is passed in.

    Volume is recipients received, decayed with a half-life (600 s) so a campaign that
    ended gives way to the current ones, but not so fast that series churn every 30 s.
    Between re-rankings a new domain takes a free place at once (first come), so a small
    installation never waits 30 s to see its destinations.
    """

    def __init__(self, limit: int, *, every: float = 30.0, half_life: float = 600.0) -> None:
        self.limit = max(0, limit)
        self.every = every
        self.half_life = half_life
        self.members: set[str] = set()
        self._volume: dict[str, float] = {}
        self._last: float | None = None
        # Volume is remembered for at most this many domains (the largest); beyond the
        # top N only the next few hundred candidates matter.  ~100 B each: 1 MB at 10 000.
        self._keep = max(10 * self.limit, 10_000)

    def add_volume(self, domain: str, n: float) -> None:
        self._volume[domain] = self._volume.get(domain, 0.0) + n

    def label(self, domain: str) -> str:
        """`domain` if it has (or now takes) a place in the top set, else OTHER."""
        if domain in self.members:
            return domain
        if domain in (OTHER, ALL) or len(self.members) >= self.limit:
            return OTHER
        self.members.add(domain)
        return domain

    def is_due(self, now: float) -> bool:
        return self._last is None or now - self._last >= self.every

    def rerank(self, now: float) -> set[str]:
        """Recompute the top set from the decayed volumes; returns the domains dropped."""
        if self._last is not None:
            factor = 0.5 ** (max(0.0, now - self._last) / self.half_life)
            self._volume = {d: v * factor for d, v in self._volume.items() if v * factor >= 0.01}
        self._last = now
        if len(self._volume) > self._keep:
            kept = sorted(self._volume.items(), key=lambda kv: -kv[1])[: self._keep]
            self._volume = dict(kept)
        members = self.members
        candidates = set(self._volume) | members
        # Ties keep current members (no churn), then the name decides (deterministic).
        ranked = sorted(candidates, key=lambda d: (-self._volume.get(d, 0.0), d not in members, d))
        new = set(ranked[: self.limit])
        self.members = new  # one rebind: the scrape thread sees the old or the new set
        return members - new


class Exporter:
    """Supervisor side: one ordinary registry fed by every worker's flushes.

    Counters are prometheus-client Counters.  Gauges and histograms are collectors over
    the workers' data, computed at scrape time (see _WorkerGauges, _Histograms): gauges
    are per-worker states combined over live workers, and prometheus-client's Histogram
    has no public way to add pre-bucketed counts.
    apply()/count() run on the event loop; collect() on the HTTP server's thread.
    """

    def __init__(
        self,
        *,
        top_domains: int = 50,
        version: str = "0",
        clock: Callable[[], float] = time.monotonic,
        rerank_every: float = 30.0,
    ) -> None:
        self.registry = CollectorRegistry()
        self.top = TopDomains(top_domains, every=rerank_every)
        self._clock = clock
        self._warned: set[str] = set()
        self._counters: dict[str, Counter] = {}
        for name, spec in COUNTERS.items():
            c = Counter(name, spec.help, spec.labels, registry=self.registry)
            for values in spec.initial:
                c.labels(*values)
            self._counters[name] = c
        self._gauges = _WorkerGauges(self.top)
        self.registry.register(self._gauges)
        self._hists = _Histograms(self.top)
        self.registry.register(self._hists)
        self.workers_alive = Gauge(
            "volley_workers_alive", "Worker processes running.", registry=self.registry
        )
        self._spool_used = Gauge(
            "volley_spool_bytes", "Bytes used on the spool's filesystem.", registry=self.registry
        )
        self._spool_free = Gauge(
            "volley_spool_free_bytes",
            "Bytes available to Volley on the spool's filesystem.",
            registry=self.registry,
        )
        self._spool_total = Gauge(
            "volley_spool_capacity_bytes",
            "Size of the spool's filesystem in bytes.",
            registry=self.registry,
        )
        Info("volley_build", "Volley version.", registry=self.registry).info({"version": version})

    # -- the supervisor's own numbers ---------------------------------------------------
    def count(self, name: str, *labels: str, n: int = 1) -> None:
        """Counters the supervisor itself owns (e.g. worker restarts)."""
        self._count(name, labels, n, source="supervisor")

    def set_spool_usage(self, used_bytes: int, free_bytes: int, total_bytes: int) -> None:
        self._spool_used.set(used_bytes)
        self._spool_free.set(free_bytes)
        self._spool_total.set(total_bytes)

    def worker_gone(self, worker: int) -> None:
        """A dead worker's gauges disappear (its counters stay: they are totals)."""
        self._gauges.forget(worker)

    # -- worker flushes --------------------------------------------------------------------
    def apply(
        self,
        worker: int,
        counters: Iterable[Sequence[Any]],
        gauges: Iterable[Sequence[Any]],
        histograms: Iterable[Sequence[Any]] = (),
    ) -> None:
        """Apply one flush of worker `worker`.  Never raises on bad entries: a worker's
        bug must not take the supervisor down; each bad name is reported once on stderr."""
        now = self._clock()
        if self.top.is_due(now):
            before = set(self.top.members)
            gone = self.top.rerank(now)
            self._forget_domains(gone)
            for domain in self.top.members - before:
                self._admitted(domain)
        source = f"worker {worker}"
        for entry in counters:
            if len(entry) == 3:
                self._count(entry[0], entry[1], entry[2], source=source)
            else:
                self._warn(f"malformed counter entry {entry!r}", source)
        state: list[tuple[str, tuple[str, ...], float]] = []
        for entry in gauges:
            problem = _entry_problem("gauge", entry, 3)
            if problem is None and not _is_number(entry[2]):
                problem = f"{entry[0]}: value {entry[2]!r} is not a number"
            if problem is not None:
                self._warn(problem, source)
                continue
            name, labels = entry[0], tuple(entry[1])
            if "domain" in GAUGES[name].labels:
                self._domain(labels[GAUGES[name].labels.index("domain")])  # admission
            state.append((name, labels, float(entry[2])))
        self._gauges.replace(worker, state)
        good: list[tuple[str, tuple[str, ...], list[int], float]] = []
        for entry in histograms:
            problem = _entry_problem("histogram", entry, 5)
            if problem is None:
                name, labels, buckets, total = entry[0], entry[1], entry[2], entry[3]
                if len(buckets) != len(HISTOGRAMS[name].buckets) + 1 or not all(
                    isinstance(c, int) and c >= 0 for c in buckets
                ):
                    problem = f"{name}: bucket counts {buckets!r} do not match its buckets"
                elif not _is_number(total):
                    problem = f"{name}: sum {total!r} is not a number"
            if problem is not None:
                self._warn(problem, source)
                continue
            good.append(
                (name, tuple(self._mapped(HISTOGRAMS[name].labels, labels)), buckets, total)
            )
        self._hists.add(good)

    def _count(self, name: Any, labels: Sequence[Any], n: Any, *, source: str) -> None:
        problem = check("counter", name, labels) if isinstance(name, str) else f"name {name!r}"
        if problem is None and not (_is_number(n) and n >= 0):
            problem = f"{name}: increment {n!r} is not a non-negative number"
        if problem is not None:
            self._warn(problem, source)
            return
        spec = COUNTERS[name]
        if name == "volley_received":
            self.top.add_volume(labels[0], n)
        c = self._counters[name]
        (c.labels(*self._mapped(spec.labels, labels)) if spec.labels else c).inc(n)

    def _mapped(self, names: tuple[str, ...], labels: Sequence[str]) -> list[str]:
        out = list(labels)
        if "domain" in names:
            i = names.index("domain")
            out[i] = self._domain(out[i])
        return out

    def _domain(self, domain: str) -> str:
        if domain in self.top.members:
            return domain
        got = self.top.label(domain)
        if got != OTHER:
            self._admitted(got)
        return got

    def _admitted(self, domain: str) -> None:
        """A domain's per-destination counters all exist (at 0) from its admission, so
        ratios like deferred / (delivered + deferred + bounced) match on every domain."""
        for name, spec in COUNTERS.items():
            if spec.labels == _D:
                self._counters[name].labels(domain)

    def _forget_domains(self, gone: set[str]) -> None:
        for domain in gone:
            for name, spec in COUNTERS.items():
                if spec.labels == _D:
                    self._counters[name].remove(domain)
        self._hists.forget_domains(gone)

    def _warn(self, problem: str, source: str) -> None:
        if problem not in self._warned:
            self._warned.add(problem)
            print(f"volley: metrics from {source}: ignored: {problem}", file=sys.stderr)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _entry_problem(kind: str, entry: Sequence[Any], size: int) -> str | None:
    if (
        len(entry) != size
        or not isinstance(entry[0], str)
        or not isinstance(entry[1], list | tuple)
    ):
        return f"malformed {kind} entry {entry!r}"
    return check(kind, entry[0], entry[1])


class _WorkerGauges:
    """Collector: each live worker's last gauge state, combined at scrape time.

    Combining at scrape rather than at every flush: W workers flush 4x a second each, so
    eager aggregation would cost O(W x series) per flush; a scrape comes every 15-60 s.
    """

    def __init__(self, top: TopDomains) -> None:
        self._top = top
        self._states: dict[int, list[tuple[str, tuple[str, ...], float]]] = {}

    def replace(self, worker: int, state: list[tuple[str, tuple[str, ...], float]]) -> None:
        self._states[worker] = state  # one store: the scrape sees the old or the new list

    def forget(self, worker: int) -> None:
        self._states.pop(worker, None)

    def describe(self) -> Iterator[Metric]:
        for name, spec in GAUGES.items():
            yield GaugeMetricFamily(name, spec.help, labels=spec.labels)

    def collect(self) -> Iterator[Metric]:
        members = self._top.members
        totals: dict[str, dict[tuple[str, ...], float]] = {
            name: dict.fromkeys(spec.initial, 0.0) for name, spec in GAUGES.items()
        }
        for state in list(self._states.values()):
            for name, labels, value in state:
                spec = GAUGES[name]
                if "domain" in spec.labels:
                    i = spec.labels.index("domain")
                    d = labels[i]
                    if name == "volley_queue_oldest_age_seconds":
                        _combine(totals[name], (ALL,), value, spec.agg)
                    if d not in members and d != ALL:
                        labels = (*labels[:i], OTHER, *labels[i + 1 :])
                _combine(totals[name], labels, value, spec.agg)
        for name, spec in GAUGES.items():
            fam = GaugeMetricFamily(name, spec.help, labels=spec.labels)
            for labels, value in totals[name].items():
                fam.add_metric(list(labels), value)
            yield fam


def _combine(into: dict[tuple[str, ...], float], key: tuple[str, ...], v: float, agg: Agg) -> None:
    old = into.get(key)
    if old is None:
        into[key] = v
    elif agg is Agg.SUM:
        into[key] = old + v
    else:
        into[key] = max(old, v)


class _Histograms:
    """Collector: cumulative histograms built from the workers' bucket deltas."""

    def __init__(self, top: TopDomains) -> None:
        self._top = top
        self._lock = threading.Lock()  # add() on the loop, collect() on the HTTP thread
        self._data: dict[str, dict[tuple[str, ...], tuple[list[int], list[float]]]] = {
            name: {lbl: ([0] * (len(spec.buckets) + 1), [0.0]) for lbl in spec.initial}
            for name, spec in HISTOGRAMS.items()
        }

    def add(self, entries: Iterable[tuple[str, tuple[str, ...], list[int], float]]) -> None:
        with self._lock:
            for name, labels, buckets, total in entries:
                series = self._data[name]
                got = series.get(labels)
                if got is None:
                    got = series[labels] = ([0] * len(buckets), [0.0])
                counts, acc = got
                for i, c in enumerate(buckets):
                    counts[i] += c
                acc[0] += total

    def forget_domains(self, gone: set[str]) -> None:
        with self._lock:
            for name, spec in HISTOGRAMS.items():
                if "domain" in spec.labels:
                    i = spec.labels.index("domain")
                    series = self._data[name]
                    for labels in [lbl for lbl in series if lbl[i] in gone]:
                        del series[labels]

    def describe(self) -> Iterator[Metric]:
        for name, spec in HISTOGRAMS.items():
            yield HistogramMetricFamily(name, spec.help, labels=spec.labels)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            copy = {
                name: [(lbl, list(c), s[0]) for lbl, (c, s) in series.items()]
                for name, series in self._data.items()
            }
        for name, spec in HISTOGRAMS.items():
            fam = HistogramMetricFamily(name, spec.help, labels=spec.labels)
            # repr(float): "0.05", "1.0": what prometheus-client's own Histogram writes.
            les = [repr(float(b)) for b in spec.buckets] + ["+Inf"]
            for labels, counts, total in copy[name]:
                cumulative, acc = [], 0
                for le, c in zip(les, counts, strict=True):
                    acc += c
                    cumulative.append((le, float(acc)))
                fam.add_metric(list(labels), cumulative, total)
            yield fam
