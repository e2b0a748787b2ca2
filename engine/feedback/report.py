"""What a report that came back to a bounce domain says, as values (engine.feedback).

Responsible for: the types the parsers return and the rest of Volley consumes - the
delivery log's records now, suppressions later - `FeedbackReport` with its `kind`
(`FeedbackKind`), one `RecipientStatus` per recipient block of a delivery status
notification (RFC 3464 §2.3), and the `Complaint` of a feedback report (RFC 5965 §3.1).
All frozen; an unparseable report is a value too (kind UNPARSEABLE with its reason).
Not responsible for: parsing (engine.feedback.dsn, .arf, .parse), storing or logging
(engine.feedback.inbox, .records).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Complaint", "FeedbackKind", "FeedbackReport", "RecipientStatus", "unparseable"]


class FeedbackKind(enum.Enum):
    """What a message to a bounce domain turned out to be."""

    ASYNC_BOUNCE = "async_bounce"  # a DSN with at least one recipient whose Action is failed
    DELIVERY_NOTICE = "delivery_notice"  # a DSN without failures: delayed, relayed, ...
    COMPLAINT = "complaint"  # an ARF feedback report (abuse, fraud, ...)
    UNSUBSCRIBE = "unsubscribe"  # mail to the List-Unsubscribe mailto: (RFC 2369) address
    UNPARSEABLE = "unparseable"  # none of those: `FeedbackReport.reason` says why


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    """One per-recipient block of message/delivery-status (RFC 3464 §2.3)."""

    final_recipient: str | None  # the address, its type ("rfc822;") removed
    original_recipient: str | None  # the ORCPT the sender gave, when the report has it
    action: str  # failed | delayed | delivered | relayed | expanded (lower case)
    status: str  # RFC 3463 class.subject.detail, e.g. "5.1.1"
    diagnostic: str | None = None  # Diagnostic-Code text, its type ("smtp;") removed
    diagnostic_type: str | None = None  # "smtp", "x-postfix", ...
    remote_mta: str | None = None  # Remote-MTA, its type ("dns;") removed

    @property
    def recipient(self) -> str | None:
        """The address Volley sent to: the original recipient when reported (the final one
        may be where a forward led), else the final one."""
        return self.original_recipient or self.final_recipient

    @property
    def failed(self) -> bool:
        return self.action == "failed"


@dataclass(frozen=True, slots=True)
class Complaint:
    """The fields of message/feedback-report (RFC 5965 §3.1) Volley keeps."""

    feedback_type: str  # abuse | fraud | virus | other | not-spam | auth-failure | ...
    user_agent: str | None = None
    version: str | None = None
    original_mail_from: str | None = None
    original_rcpt_to: tuple[str, ...] = ()  # often redacted or absent (RFC 6590)
    arrival_date: str | None = None
    reported_domain: str | None = None
    source_ip: str | None = None
    original_to: str | None = None  # To of the returned message: Original-Rcpt-To's stand-in

    @property
    def recipients(self) -> tuple[str, ...]:
        """Who complained: Original-Rcpt-To, else the To of the returned message."""
        if self.original_rcpt_to:
            return self.original_rcpt_to
        return (self.original_to,) if self.original_to else ()


@dataclass(frozen=True, slots=True)
class FeedbackReport:
    kind: FeedbackKind
    reason: str | None = None  # UNPARSEABLE only: why
    original_message_id: str | None = None  # Message-ID of the returned message or headers
    original_envelope_id: str | None = None  # DSN Original-Envelope-Id (RFC 3461 ENVID)
    reporting_mta: str | None = None  # DSN Reporting-MTA, its type removed
    items: tuple[RecipientStatus, ...] = ()  # DSN: every recipient block, in order
    complaint: Complaint | None = None  # COMPLAINT only

    @property
    def failed(self) -> tuple[RecipientStatus, ...]:
        """The recipients the DSN reports as failed (each one an async bounce)."""
        return tuple(item for item in self.items if item.failed)


def unparseable(reason: str) -> FeedbackReport:
    return FeedbackReport(kind=FeedbackKind.UNPARSEABLE, reason=reason)
