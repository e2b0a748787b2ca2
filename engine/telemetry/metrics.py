"""Every Prometheus metric Volley exports, and how worker counts reach them.

Responsible for: the metric contract (names, help texts, labels, buckets: grafana/ and
deploy/ depend on it, docs/metrics.md lists it), the worker-side `Tally` that counts in
plain dicts, and the bounded classes of drop rejections (`reject_class`).  The
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
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ALL",
    "BY_DOMAIN",
    "BY_DOMAIN_CATEGORY",
    "COUNTERS",
    "FEEDBACK_KINDS",
    "GAUGES",
    "HISTOGRAMS",
    "OPERATOR_ACTIONS",
    "OTHER",
    "REJECT_CLASSES",
    "SMTPD_REFUSALS",
    "SUPPRESSION_SOURCES",
    "UNSUBSCRIBE_HEADERS",
    "UNSUBSCRIBE_RESULTS",
    "Agg",
    "CheckedTally",
    "Tally",
    "counter_key",
    "reject_class",
    "reply_key",
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
    # For a counter whose first label is `domain`: the values of the other labels of the
    # series created (at 0) for a destination when it enters the top set.
    admit: tuple[str, ...] = ()


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

OPERATOR_ACTIONS: tuple[str, ...] = ("suspend", "resume", "flush", "bounce", "delete")
# engine.feedback.report.FeedbackKind's values (a test checks they agree).
FEEDBACK_KINDS: tuple[str, ...] = (
    "async_bounce",
    "delivery_notice",
    "complaint",
    "unsubscribe",
    "unparseable",
)

# engine.suppress.model.Source's values (a test checks they agree).
SUPPRESSION_SOURCES: tuple[str, ...] = ("manual", "bounce", "complaint", "unsubscribe", "import")
# engine.unsubscribe.server's request results and engine.suppress.gate.HEADER_RESULTS.
UNSUBSCRIBE_RESULTS: tuple[str, ...] = (
    "unsubscribed",
    "page",
    "malformed",
    "forged",
    "not_found",
    "bad_request",
    "error",
)
UNSUBSCRIBE_HEADERS: tuple[str, ...] = ("added", "present", "several_recipients", "unusable")

# engine.model.FailureKind values the peer or the network can cause (not cancelled, local).
CONNECTION_ERROR_KINDS: tuple[str, ...] = ("timeout", "refused", "closed", "protocol", "tls")

# The listener's refusal reasons: engine.smtpd.replies.Refusal's values (a test holds
# them equal; telemetry does not import the listener).
SMTPD_REFUSALS: tuple[str, ...] = tuple(
    "auth_required relay_denied bad_sender bad_recipient too_many_recipients too_big "
    "bare_newline nul line_too_long syntax bad_sequence unknown_command too_many_errors "
    "timeout tls_required auth_failed auth_limited connection_limit spool_full "
    "local_error".split()
)

BY_DOMAIN = ("domain",)
_OTHER_ONLY = ((OTHER,),)
# Failures carry their bounce category (engine.policy.categories.Category: 29 names, a
# fixed set).  Series exist only for the (domain, category) pairs that happened: a
# destination fails in a handful of ways, so ~51 domains x a few categories, bounded by
# 51 x 29 in the worst case.  A zero series per destination is "Uncategorized".
BY_DOMAIN_CATEGORY = ("domain", "category")
UNCATEGORIZED = "Uncategorized"
_OTHER_UNCATEGORIZED = ((OTHER, UNCATEGORIZED),)

# Counters: prometheus-client appends "_total".
COUNTERS: dict[str, CounterSpec] = {
    "volley_received": CounterSpec(
        "Recipients taken into the queue, from drop files and the SMTP listener.",
        BY_DOMAIN,
        _OTHER_ONLY,
    ),
    "volley_delivered": CounterSpec(
        "Recipients the destination accepted (2xx after the data).", BY_DOMAIN, _OTHER_ONLY
    ),
    "volley_deferred": CounterSpec(
        "Delivery attempts that failed temporarily, per recipient, by bounce category.",
        BY_DOMAIN_CATEGORY,
        _OTHER_UNCATEGORIZED,
        (UNCATEGORIZED,),
    ),
    "volley_bounced": CounterSpec(
        "Recipients that failed permanently (5xx, null MX, no such domain), by bounce category.",
        BY_DOMAIN_CATEGORY,
        _OTHER_UNCATEGORIZED,
        (UNCATEGORIZED,),
    ),
    "volley_expired": CounterSpec(
        "Recipients given up on after max_age of temporary failures (category MessageExpired).",
        BY_DOMAIN_CATEGORY,
        _OTHER_UNCATEGORIZED,
        (UNCATEGORIZED,),
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
    "volley_connection_errors": CounterSpec(
        "SMTP connections the peer or the network ended, by kind: timeout (a phase's deadline"
        " or the connection's lifetime), refused, closed (closed or reset), protocol (not SMTP,"
        " a reply over its limits, a reply to nothing), tls.",
        ("kind",),
        tuple((k,) for k in CONNECTION_ERROR_KINDS),
    ),
    "volley_transactions": CounterSpec("SMTP mail transactions attempted (MAIL FROM sent)."),
    "volley_dns_lookups": CounterSpec(
        "MX resolutions by result: hit (cache), miss (queried), failure.",
        ("result",),
        (("hit",), ("miss",), ("failure",)),
    ),
    "volley_worker_restarts": CounterSpec("Worker processes restarted after dying."),
    "volley_internal_errors": CounterSpec(
        "Errors in Volley's own code met while delivering (each also logged with a traceback);"
        " the entries involved are deferred, never lost."
    ),
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
    "volley_smtpd_sessions": CounterSpec(
        "SMTP listener sessions: accepted (greeted), refused (421 at connect: the "
        "per-client limit, or shutting down).",
        ("result",),
        (("accepted",), ("refused",)),
    ),
    "volley_smtpd_messages": CounterSpec(
        "Messages the SMTP listener accepted (250): queued for delivery, or local (for a "
        "bounce domain); a message with both kinds of recipient counts once in each.",
        ("result",),
        (("queued",), ("local",)),
    ),
    "volley_smtpd_rejected": CounterSpec(
        "Commands, messages and sessions the SMTP listener refused, by reason.",
        ("reason",),
        tuple((r,) for r in SMTPD_REFUSALS),
    ),
    "volley_smtpd_auth_failures": CounterSpec(
        "Failed SMTP AUTH attempts (wrong user or password)."
    ),
    "volley_smtpd_bytes": CounterSpec("Message bytes the SMTP listener accepted (as received)."),
    # Counted by the supervisor, one per admin API call that changes something.
    "volley_operator_actions": CounterSpec(
        "Operator queue actions through the admin API: suspend, resume, flush, bounce, delete.",
        ("action",),
        tuple((a,) for a in OPERATOR_ACTIONS),
    ),
    "volley_feedback_reports": CounterSpec(
        "Messages to the bounce domains by kind: async_bounce (a DSN with a failed "
        "recipient), delivery_notice (a DSN without one), complaint (ARF), unparseable.",
        ("kind",),
        tuple((k,) for k in FEEDBACK_KINDS),
    ),
    "volley_suppressed": CounterSpec(
        "Recipients not queued because the suppression list holds them, by the source of the"
        " entry that matched (manual, bounce, complaint, unsubscribe, import).",
        ("source",),
        tuple((s,) for s in SUPPRESSION_SOURCES),
    ),
    # Counted by the supervisor (the list's one writer).
    "volley_suppressions_added": CounterSpec(
        "Entries added to the suppression list (or made longer), by source.",
        ("source",),
        tuple((s,) for s in SUPPRESSION_SOURCES),
    ),
    "volley_unsubscribe_requests": CounterSpec(
        "Requests to the one-click unsubscribe endpoint by result: unsubscribed (a valid"
        " POST), page (a GET: confirmation page only), malformed / forged (bad token),"
        " not_found, bad_request, error (the list could not be written).",
        ("result",),
        tuple((r,) for r in UNSUBSCRIBE_RESULTS),
    ),
    "volley_unsubscribe_headers": CounterSpec(
        "Queue entries by what intake did about List-Unsubscribe: added, present (the sender"
        " set one), several_recipients (none: a token names one recipient), unusable.",
        ("result",),
        tuple((r,) for r in UNSUBSCRIBE_HEADERS),
    ),
    "volley_operator_removed": CounterSpec(
        "Recipients removed from the queue by an operator's bounce (with a DSN) or delete.",
        ("action",),
        (("bounce",), ("delete",)),
    ),
}

GAUGES: dict[str, GaugeSpec] = {
    "volley_queue_entries": GaugeSpec(
        "Queue entries (message x destination) by state: ready, waiting (deferred or on a "
        "suspended destination), inflight.",
        ("state",),
        Agg.SUM,
        (("ready",), ("waiting",), ("inflight",)),
    ),
    "volley_queue_depth": GaugeSpec(
        "Queue entries per destination, any state.", BY_DOMAIN, Agg.SUM, _OTHER_ONLY
    ),
    "volley_queue_oldest_age_seconds": GaugeSpec(
        'Age of the oldest queued entry per destination; domain="_all": the whole queue.',
        BY_DOMAIN,
        Agg.MAX,
        ((OTHER,), (ALL,)),
    ),
    "volley_connections_open": GaugeSpec(
        "SMTP connections currently open, per destination.", BY_DOMAIN, Agg.SUM, _OTHER_ONLY
    ),
    "volley_connections_idle": GaugeSpec(
        "Open SMTP connections waiting for work, per destination.",
        BY_DOMAIN,
        Agg.SUM,
        _OTHER_ONLY,
    ),
    "volley_smtpd_sessions_open": GaugeSpec("SMTP listener sessions open now.", (), Agg.SUM, ((),)),
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
        BY_DOMAIN,
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
