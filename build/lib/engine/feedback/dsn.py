"""Delivery status notifications (RFC 3464, in RFC 6522 multipart/report) -> a report.

Responsible for: reading the message/delivery-status part of a parsed DSN: the
per-message block (Reporting-MTA, Original-Envelope-Id) and every per-recipient block
(Original-Recipient, Final-Recipient, Action, Status, Diagnostic-Code, Remote-MTA); the
original Message-ID from the returned message or headers; and the verdict: a DSN with a
failed recipient is an ASYNC_BOUNCE, one without is a DELIVERY_NOTICE (delay warnings),
one without a usable recipient block is UNPARSEABLE with the reason.
Not responsible for: finding out that a message is a DSN (engine.feedback.parse), raw
bytes, or acting on the result.

Tolerance, from what MTAs send (Postfix, Exim, Gmail, Microsoft, Sendmail): field names
in any case; Final-Recipient missing but Original-Recipient there (and the reverse);
X-Actual-Recipient as Final-Recipient's stand-in (Sendmail); a Status with a trailing
comment ("5.0.0 (permanent failure)"); folded Diagnostic-Code lines; blocks separated
by whitespace-only lines; message/global-delivery-status (RFC 6533) like the ASCII one.
A block without Action or a valid Status is skipped when others are usable, and is the
reason when none is.
"""

from __future__ import annotations

import re
from email.message import Message

from engine.feedback.fields import blocks, returned_message_id, text, typed
from engine.feedback.report import (
    FeedbackKind,
    FeedbackReport,
    RecipientStatus,
    unparseable,
)

__all__ = ["DSN_TYPES", "parse_dsn"]

DSN_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
_STATUS = re.compile(r"\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_ACTIONS = frozenset({"failed", "delayed", "delivered", "relayed", "expanded"})
# Recipient blocks kept per report: a DSN from a list server can name thousands.
MAX_RECIPIENTS = 1000


def parse_dsn(report: Message, status_part: Message) -> FeedbackReport:
    """The report of DSN `report` whose message/delivery-status part is `status_part`."""
    fields = blocks(status_part)
    if not fields:
        return unparseable("delivery-status part is empty")
    head = fields[0]
    has_head = _get(head, "Reporting-MTA") is not None or _get(head, "Action") is None
    per_message = head if has_head else None
    items: list[RecipientStatus] = []
    problems: list[str] = []
    for block in fields[1:] if has_head else fields:
        item = _recipient(block)
        if isinstance(item, str):
            problems.append(item)
        elif len(items) < MAX_RECIPIENTS:
            items.append(item)
    if not items:
        why = problems[0] if problems else "no per-recipient block"
        return unparseable(f"delivery status notification without a usable recipient: {why}")
    msgid, _to = returned_message_id(report)
    kind = (
        FeedbackKind.ASYNC_BOUNCE if any(i.failed for i in items) else FeedbackKind.DELIVERY_NOTICE
    )
    envid = _get(per_message, "Original-Envelope-Id") if per_message is not None else None
    mta = _get(per_message, "Reporting-MTA") if per_message is not None else None
    return FeedbackReport(
        kind=kind,
        original_message_id=msgid,
        original_envelope_id=(text(envid) or None) if envid is not None else None,
        reporting_mta=_value(mta),
        items=tuple(items),
    )


def _recipient(block: Message) -> RecipientStatus | str:
    """One per-recipient block, or why it is unusable."""
    final = _get(block, "Final-Recipient") or _get(block, "X-Actual-Recipient")
    original = _get(block, "Original-Recipient")
    if final is None and original is None:
        return "a block without Final-Recipient"
    action_raw = _get(block, "Action")
    action = text(action_raw).lower().split(" ")[0] if action_raw is not None else ""
    if action not in _ACTIONS:
        return f"Action {text(action_raw or '')[:40]!r} is not one of RFC 3464's"
    status_raw = _get(block, "Status")
    m = _STATUS.match(text(status_raw)) if status_raw is not None else None
    if m is None:
        return f"Status {text(status_raw or '')[:40]!r} is not a class.subject.detail code"
    diag_type: str | None = None
    diagnostic: str | None = None
    diag_raw = _get(block, "Diagnostic-Code")
    if diag_raw is not None:
        diag_type, diagnostic = typed(diag_raw)
    remote = _get(block, "Remote-MTA")
    return RecipientStatus(
        final_recipient=_value(final),
        original_recipient=_value(original),
        action=action,
        status=".".join(m.groups()),
        diagnostic=diagnostic or None,
        diagnostic_type=diag_type,
        remote_mta=_value(remote),
    )


def _get(block: Message, name: str) -> str | None:
    value = block.get(name)
    return None if value is None else str(value)


def _value(raw: str | None) -> str | None:
    """A typed field's value without its type; None when absent or empty."""
    return (typed(raw)[1] or None) if raw is not None else None
