"""The supervisor side of metrics: every worker's deltas -> one Prometheus registry.

Responsible for: the `Exporter` (ordinary counters, plus collectors that combine the live
workers' gauges and histograms at scrape time), the bounded destination label set
(`TopDomains`: the busiest `top_domains` destinations keep their own series, the rest are
"other"), spool disk usage and build info.
Not responsible for: the metric contract or worker-side counting (engine.telemetry.metrics),
or serving HTTP (the supervisor starts prometheus-client's server on this registry).
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Info
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric

from engine.telemetry.catalog import ALL, BY_DOMAIN, COUNTERS, GAUGES, HISTOGRAMS, OTHER, Agg
from engine.telemetry.metrics import check

__all__ = ["Exporter", "TopDomains"]


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
        # The series of each destination in counters with labels besides `domain`
        # (failures by category), so they can all go when it leaves the top set.
        self._domain_series: dict[str, set[tuple[str, tuple[str, ...]]]] = {}
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
        # Operator suspensions (engine.admin): few, chosen by a person, so the domain label
        # is the real one, outside the top-N folding of the delivery metrics.
        self._suspended = Gauge(
            "volley_suspended_destinations",
            "Destinations an operator suspended (volley suspend), in effect now.",
            registry=self.registry,
        )
        self._suspension_end = Gauge(
            "volley_suspension_end_timestamp_seconds",
            "When each operator suspension ends by itself (Unix time), per destination.",
            ("domain",),
            registry=self.registry,
        )
        # Adaptive shaping (engine.shaping.adaptive): only sites (and providers) it holds
        # state for, a set bounded by the receivers that ever pushed back.
        self._shaping_conns = Gauge(
            "volley_shaping_connections",
            "Connection limit in force per site (or provider:NAME) under adaptive shaping.",
            ("site",),
            registry=self.registry,
        )
        self._shaping_rate = Gauge(
            "volley_shaping_message_rate",
            "Messages per second in force per site (or provider:NAME) under adaptive shaping.",
            ("site",),
            registry=self.registry,
        )
        self._shaping_until = Gauge(
            "volley_shaping_suspended_until_timestamp_seconds",
            "When a shaping suspension of a site or provider ends (Unix time).",
            ("site",),
            registry=self.registry,
        )
        # The supervisor keeps the warm-up quota (engine.shaping.quota): one series per
        # egress source in warm-up today, a set the operator configured.
        self._quota_used = Gauge(
            "volley_egress_quota_used",
            "Messages of today's (UTC) warm-up quota granted to connections of each egress"
            " source and not given back.",
            ("source",),
            registry=self.registry,
        )
        self._quota_left = Gauge(
            "volley_egress_quota_left",
            "Messages left of today's (UTC) warm-up quota of each egress source.",
            ("source",),
            registry=self.registry,
        )

    # -- the supervisor's own numbers ---------------------------------------------------
    def count(self, name: str, *labels: str, n: int = 1) -> None:
        """Counters the supervisor itself owns (e.g. worker restarts)."""
        self._count(name, labels, n, source="supervisor")

    def set_spool_usage(self, used_bytes: int, free_bytes: int, total_bytes: int) -> None:
        self._spool_used.set(used_bytes)
        self._spool_free.set(free_bytes)
        self._spool_total.set(total_bytes)

    def set_suspensions(self, items: Iterable[tuple[str, float]]) -> None:
        """The operator suspensions in effect: (domain, end time) each, the whole set."""
        items = list(items)
        self._suspension_end.clear()
        for domain, until in items:
            self._suspension_end.labels(domain).set(until)
        self._suspended.set(len(items))

    def set_shaping(self, snapshot: Mapping[str, Mapping[str, object]]) -> None:
        """Adaptive shaping's limits in force, per site (or provider:NAME) it holds state
        for: the whole set each time, so a site whose state went drops out."""
        for g in (self._shaping_conns, self._shaping_rate, self._shaping_until):
            g.clear()
        for key, st in snapshot.items():
            conns, rate, until = st.get("connections"), st.get("rate"), st.get("suspended_until")
            if isinstance(conns, int):
                self._shaping_conns.labels(key).set(conns)
            if isinstance(rate, float | int):
                self._shaping_rate.labels(key).set(rate)
            if isinstance(until, float | int):
                self._shaping_until.labels(key).set(until)

    def set_egress_quota(self, rows: Iterable[tuple[str, int, int]]) -> None:
        """Today's warm-up quota: (source, used, left) for every source in warm-up, the
        whole set (a source past its warm-up drops out)."""
        self._quota_used.clear()
        self._quota_left.clear()
        for source, used, left in rows:
            self._quota_used.labels(source).set(used)
            self._quota_left.labels(source).set(left)

    def gauge_sum(self, name: str, *labels: str) -> float:
        """One gauge series summed over the live workers' last flushes (what the
        supervisor says about a drain: entries in flight, connections open)."""
        return self._gauges.total(name, labels)

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
        if not spec.labels:
            c.inc(n)
            return
        mapped = self._mapped(spec.labels, labels)
        c.labels(*mapped).inc(n)
        if len(spec.labels) > 1 and spec.labels[0] == "domain" and mapped[0] != OTHER:
            self._domain_series.setdefault(mapped[0], set()).add((name, tuple(mapped)))

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
            if spec.labels[:1] == BY_DOMAIN:
                self._counters[name].labels(domain, *spec.admit)
                if spec.admit:
                    series = (name, (domain, *spec.admit))
                    self._domain_series.setdefault(domain, set()).add(series)

    def _forget_domains(self, gone: set[str]) -> None:
        for domain in gone:
            for name, spec in COUNTERS.items():
                if spec.labels == BY_DOMAIN:
                    self._counters[name].remove(domain)
            for name, labels in self._domain_series.pop(domain, ()):
                self._counters[name].remove(*labels)
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

    def total(self, name: str, labels: tuple[str, ...]) -> float:
        return sum(
            value
            for state in list(self._states.values())
            for n, lbls, value in state
            if n == name and tuple(lbls) == labels
        )

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
