"""What a report that came back adds to the suppression list (worker 0's feedback processor).

Responsible for: `report_hook` (what worker 0's feedback processor calls for every
parsed report), `complaint_entries` - an ARF complaint (engine.feedback.report) -> an
entry per complaining recipient, scoped to the sender domain the complaint is about -
and `failed_recipients`, an asynchronous bounce's failed recipients for the rules
(engine.suppress.feed.observe_report: the same categories as a synchronous bounce, by
the DSN's status code).
Not responsible for: parsing reports (engine.feedback) or storing (the supervisor,
through engine.suppress.client).

The sender domain of a complaint (engine.suppress.model: the From domain), first found
of: the From of the returned message or headers (ARF's third part), Reported-Domain,
Original-Mail-From's domain.  None of them (a fully redacted report): the entry is
global - a reader who pressed "spam" is not mailed again by anyone sending through this
Volley, rather than by nobody.
Feedback types `not-spam` (the reader rescued a message) and `auth-failure` (a DKIM or
SPF failure report, RFC 6591: nothing the reader did) add nothing.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
from collections.abc import Callable
from email.message import Message

from engine.auth.dkim import from_domain
from engine.feedback.inbox import Stored
from engine.feedback.report import FeedbackKind, FeedbackReport
from engine.suppress.client import SuppressClient
from engine.suppress.feed import BounceFeed
from engine.suppress.model import (
    GLOBAL,
    BadEntry,
    Entry,
    Source,
    address_key,
    clean_reason,
    domain_key,
)
from engine.suppress.service import unsubscribe_entry
from engine.telemetry.metrics import Tally
from engine.unsubscribe.mail import claim_from_mail
from engine.unsubscribe.token import Keyring, TokenError

__all__ = [
    "NOT_COMPLAINTS",
    "complaint_entries",
    "complaint_scope",
    "failed_recipients",
    "report_hook",
]

NOT_COMPLAINTS = frozenset({"not-spam", "auth-failure"})
RETURNED = ("message/rfc822", "text/rfc822-headers")


def _returned_from(raw: bytes) -> str | None:
    msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw)
    for part in msg.walk():
        if part.get_content_type() not in RETURNED:
            continue
        payload = part.get_payload()
        inner: Message | None = None
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            inner = payload[0]
        elif isinstance(payload, str):
            inner = email.parser.HeaderParser(policy=email.policy.compat32).parsestr(payload)
        value = inner.get("From") if inner is not None else None
        if value:
            return from_domain(str(value).encode("utf-8", "replace"))
    return None


def _domain(text: str | None) -> str | None:
    if not text:
        return None
    text = text.strip().strip("<>").rpartition("@")[2]
    try:
        return domain_key(text)
    except BadEntry:
        return None


def complaint_scope(raw: bytes, report: FeedbackReport) -> str:
    c = report.complaint
    for candidate in (
        _returned_from(raw),
        c.reported_domain if c else None,
        c.original_mail_from if c else None,
    ):
        domain = _domain(candidate)
        if domain is not None:
            return domain
    return GLOBAL


def complaint_entries(raw: bytes, report: FeedbackReport, now: float) -> list[Entry]:
    """The entries a complaint adds ([] for anything else)."""
    c = report.complaint
    if report.kind is not FeedbackKind.COMPLAINT or c is None:
        return []
    if c.feedback_type in NOT_COMPLAINTS or not c.recipients:
        return []
    scope = complaint_scope(raw, report)
    agent = f" via {c.user_agent}" if c.user_agent else ""
    reason = clean_reason(f"complaint: {c.feedback_type}{agent}")
    out: list[Entry] = []
    for address in c.recipients:
        try:
            out.append(Entry(address_key(address), scope, reason, Source.COMPLAINT, now, None))
        except BadEntry:
            continue
    return out


def failed_recipients(report: FeedbackReport) -> list[tuple[str, str, str]]:
    """(address, status, diagnostic) of a DSN's failed recipients."""
    if report.kind is not FeedbackKind.ASYNC_BOUNCE:
        return []
    return [
        (item.recipient, item.status, item.diagnostic or "")
        for item in report.failed
        if item.recipient
    ]


def report_hook(
    client: SuppressClient,
    feed: BounceFeed,
    wall: Callable[[], float],
    ring: Keyring | None = None,
    tally: Tally | None = None,
) -> Callable[[Stored, FeedbackReport], asyncio.Future[None] | None]:
    """engine.feedback.service's `on_report` for worker 0: async bounces go to the rules,
    complaints and `mailto:` unsubscribes (verified against `ring`, the keys of
    `[unsubscribe]`) to the supervisor, acknowledged (the report file waits for the
    commit)."""

    def on_report(stored: Stored, report: FeedbackReport) -> asyncio.Future[None] | None:
        now = wall()
        if report.kind is FeedbackKind.UNSUBSCRIBE:
            return _unsubscribe(stored, now)
        failed = failed_recipients(report)
        if failed:
            feed.observe_report(failed, report.original_message_id or stored.name, now)
        entries = complaint_entries(stored.raw, report, now)
        return client.add(entries) if entries else None

    def _unsubscribe(stored: Stored, now: float) -> asyncio.Future[None] | None:
        """The token in the Subject decides (engine.unsubscribe.mail); a forged or
        missing one suppresses nothing, as for a one-click POST."""
        if ring is None:
            return None
        try:
            claim = claim_from_mail(stored.raw, ring)
        except TokenError as e:
            if tally is not None:
                tally.inc("volley_unsubscribe_requests", e.kind)  # malformed / forged
            return None
        if tally is not None:
            tally.inc("volley_unsubscribe_requests", "unsubscribed")
        return client.add([unsubscribe_entry(claim, now, "mailto")])

    return on_report
