"""The metric contract: every Prometheus metric Volley exports, as data.

Responsible for: names, help texts, label names, the label values that exist from the
first scrape, and histogram buckets (grafana/ and deploy/ depend on them;
docs/metrics.md lists them; a test checks the three agree).
Not responsible for: counting (engine.telemetry.metrics.Tally), exporting
(engine.telemetry.export) or reading /metrics back (engine.telemetry.top).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "ALL",
    "BY_DOMAIN",
    "BY_DOMAIN_CATEGORY",
    "CONNECTION_ERROR_KINDS",
    "COUNTERS",
    "FEEDBACK_KINDS",
    "GAUGES",
    "HISTOGRAMS",
    "OPERATOR_ACTIONS",
    "OTHER",
    "REJECT_CLASSES",
    "SMTPD_REFUSALS",
    "STS_MODES",
    "STS_RESULTS",
    "SUPPRESSION_SOURCES",
    "TLS_POLICIES",
    "TLS_RESULTS",
    "UNCATEGORIZED",
    "UNSUBSCRIBE_HEADERS",
    "UNSUBSCRIBE_RESULTS",
    "Agg",
    "CounterSpec",
    "GaugeSpec",
    "HistogramSpec",
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
CONNECTION_ERROR_KINDS: tuple[str, ...] = (
    "timeout",
    "refused",
    "closed",
    "protocol",
    "tls",
    "auth",
)

# volley_tls_sessions: engine.model.TlsPolicy values that try TLS, and
# engine.net.tls.TlsResult values (a test holds them equal).
TLS_POLICIES: tuple[str, ...] = ("opportunistic", "required", "verify")
TLS_RESULTS: tuple[str, ...] = ("ok", "verify_failed", "unavailable", "handshake_failed")
# volley_mta_sts_results: the policy modes that count (engine.sched.mta_sts.StsMode less
# "none", plus engine.net.sts.UNKNOWN_MODE: a fetch failure with no policy cached) and
# engine.sched.mta_sts.StsResult values.
STS_MODES: tuple[str, ...] = ("enforce", "testing", "unknown")
STS_RESULTS: tuple[str, ...] = (
    "success",
    "policy_fetch_error",
    "policy_invalid",
    "mx_mismatch",
    "cert_invalid",
    "starttls_missing",
    "handshake_failed",
)
_STS_INITIAL = tuple(
    (m, r) for m in STS_MODES for r in STS_RESULTS if (m == "unknown") == r.startswith("policy_")
)

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
    "volley_tls_sessions": CounterSpec(
        "Outbound connection attempts by TLS policy (opportunistic, required, verify) and"
        " what TLS did: ok, verify_failed (certificate not valid for the MX host name),"
        " unavailable (STARTTLS not offered or refused), handshake_failed.",
        ("policy", "result"),
        tuple((p, r) for p in TLS_POLICIES for r in TLS_RESULTS),
    ),
    "volley_mta_sts_results": CounterSpec(
        "MTA-STS (RFC 8461) results, TLSRPT-style, by policy mode: success (verified TLS to"
        " a listed MX host), mx_mismatch (an MX host the policy does not list), cert_invalid,"
        " starttls_missing, handshake_failed; policy_fetch_error and policy_invalid (mode"
        " 'unknown' when no policy was cached).  Under testing these are what enforce would"
        " have refused; the mail went as usual.",
        ("mode", "result"),
        _STS_INITIAL,
    ),
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
    "volley_throttling_replies": CounterSpec(
        "Replies from receivers that say 'slow down' (421, 4xx with 4.7.x, 451/452 about"
        " rates or limits: engine/shaping/rules.toml [throttling]), by where they came:"
        " connect (greeting or set-up) or transaction.",
        ("stage",),
        (("connect",), ("transaction",)),
    ),
    # Counted by the supervisor (engine.runtime.shaping_service).
    "volley_shaping_actions": CounterSpec(
        "Changes adaptive shaping made, by kind: decrease / increase (AIMD), rule (a rule"
        " reduced limits), suspend, resume, bounce, expire.",
        ("kind",),
        tuple(
            (k,) for k in ("decrease", "increase", "rule", "suspend", "resume", "bounce", "expire")
        ),
    ),
    # One series per [egress.sources.NAME]: a bounded set the operator configured.
    "volley_egress_messages": CounterSpec(
        "Messages sent per egress source ([egress.sources.NAME]), counted when their"
        " connection ends.",
        ("source",),
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
    "volley_queue_throttled": GaugeSpec(
        "Ready entries held back by a limit, per destination and reason: rate (waiting for"
        " the site's next send instant under max_message_rate / max_connection_rate),"
        " connection (waiting for a slot of the site or its provider), shaping (adaptive"
        " shaping suspended the site or its provider), warmup (every egress source of its"
        " pool has sent its warm-up quota for the day).",
        ("domain", "reason"),
        Agg.SUM,
        ((OTHER, "rate"), (OTHER, "connection"), (OTHER, "shaping"), (OTHER, "warmup")),
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
