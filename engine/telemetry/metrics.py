"""Every Prometheus metric Volley exports, and how worker counts reach them.

Responsible for: the worker-side `Tally` that counts in plain dicts, checking a count
against the metric contract (engine.telemetry.catalog: names, help texts, labels,
buckets), and the bounded classes of drop rejections (`reject_class`).  The
supervisor side (`Exporter`, `TopDomains`) is engine.telemetry.export.
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
from collections.abc import Sequence
from typing import Any

from engine.telemetry.catalog import COUNTERS, GAUGES, HISTOGRAMS

__all__ = [
    "CheckedTally",
    "Tally",
    "counter_key",
    "reject_class",
    "reply_key",
    "reply_labels",
]

Key = tuple[str, tuple[str, ...]]


def reply_labels(code: int, enhanced: str | None) -> tuple[str, str]:
    """Labels of volley_smtp_replies: ("550", "5.1") for 550 5.1.1; "none" if no enhanced
    code.  Only class.subject: the detail digits would multiply the series by ~1000."""
    if not enhanced:
        return str(code), "none"
    cls, _, rest = enhanced.partition(".")
    subject = rest.partition(".")[0]
    return str(code), f"{cls}.{subject}" if subject else "none"


def counter_key(name: str, *labels: str) -> Key:
    """The key `Tally.inc(name, *labels)` counts under, for `Tally.bump` (build it once
    for a series counted per message)."""
    return (name, labels)


_REPLY_KEYS: dict[tuple[int, str | None], Key] = {}
_REPLY_KEYS_MAX = 4096  # distinct (code, enhanced) pairs: a few dozen in practice


def reply_key(code: int, enhanced: str | None) -> Key:
    """The volley_smtp_replies key of a reply, built once per distinct (code, enhanced):
    four replies per message made reply_labels + key tuples ~1 % of the delivery path."""
    key = _REPLY_KEYS.get((code, enhanced))
    if key is None:
        if len(_REPLY_KEYS) >= _REPLY_KEYS_MAX:
            _REPLY_KEYS.clear()  # a hostile server inventing codes: stay bounded
        key = _REPLY_KEYS[(code, enhanced)] = ("volley_smtp_replies", reply_labels(code, enhanced))
    return key


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

    def bump(self, key: Key, n: int = 1) -> None:
        """`inc` with a key built beforehand (`counter_key`, `reply_key`): no tuples."""
        counts = self._counts
        counts[key] = counts.get(key, 0) + n

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

    def bump(self, key: Key, n: int = 1) -> None:
        _raise_if(check("counter", key[0], key[1]))
        super().bump(key, n)

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
