"""Feedback reports (ARF, RFC 5965, in RFC 6522 multipart/report) -> a complaint report.

Responsible for: reading the message/feedback-report part - Feedback-Type (required),
User-Agent, Version, Original-Mail-From, Original-Rcpt-To (any number), Arrival-Date
(or the older Received-Date), Reported-Domain, Source-IP - and the original Message-ID
and To from the returned message or headers (the third part), into a COMPLAINT report;
UNPARSEABLE with the reason when the part has no Feedback-Type.
Not responsible for: finding out that a message is a feedback report
(engine.feedback.parse), checking the reporter (anyone may send one: what it is worth is
the operator's decision), or acting on it.

Shapes seen from mailbox providers: Yahoo's and AOL's (Verizon Media) CFL and
Microsoft's JMRP send ARF with the whole original message; many redact the recipient
(RFC 6590: Original-Rcpt-To absent, the To replaced), so `Complaint.recipients` falls
back to the returned message's To; older reports say "Version: 0.1".
"""

from __future__ import annotations

from email.message import Message
from email.utils import getaddresses

from engine.feedback.fields import blocks, returned_message_id, text, typed
from engine.feedback.report import Complaint, FeedbackKind, FeedbackReport, unparseable

__all__ = ["ARF_TYPE", "parse_arf"]

ARF_TYPE = "message/feedback-report"
MAX_RCPT_TO = 100  # Original-Rcpt-To fields kept (RFC 5965 lets a report carry many)


def parse_arf(report: Message, feedback_part: Message) -> FeedbackReport:
    """The report of ARF message `report` whose feedback-report part is `feedback_part`."""
    fields = blocks(feedback_part)
    if not fields:
        return unparseable("feedback-report part is empty")
    f = fields[0]
    ftype = _one(f, "Feedback-Type")
    if not ftype:
        return unparseable("feedback report without Feedback-Type")
    rcpts = tuple(
        addr
        for raw in (f.get_all("Original-Rcpt-To") or [])[:MAX_RCPT_TO]
        if (addr := typed(raw)[1])
    )
    msgid, to = returned_message_id(report)
    mail_from = _one(f, "Original-Mail-From")
    complaint = Complaint(
        feedback_type=ftype.lower().split(" ")[0],
        user_agent=_one(f, "User-Agent"),
        version=_one(f, "Version"),
        original_mail_from=(typed(mail_from)[1] or None) if mail_from else None,
        original_rcpt_to=rcpts,
        arrival_date=_one(f, "Arrival-Date") or _one(f, "Received-Date"),
        reported_domain=_one(f, "Reported-Domain"),
        source_ip=_one(f, "Source-IP"),
        original_to=_first_address(to),
    )
    return FeedbackReport(
        kind=FeedbackKind.COMPLAINT, original_message_id=msgid, complaint=complaint
    )


def _one(block: Message, name: str) -> str | None:
    value = block.get(name)
    return (text(value) or None) if value is not None else None


def _first_address(value: str | None) -> str | None:
    if not value:
        return None
    try:
        pairs = getaddresses([value])
    except Exception:  # a hostile To (deep nesting): no stand-in, not a failure
        return None
    return next((addr for _name, addr in pairs if "@" in addr), None)
