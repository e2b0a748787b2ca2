"""A message that came back to a bounce domain -> one `FeedbackReport` value.

Responsible for: `parse_report(raw)`, the one entry point: parse the bytes with the
standard library's `email` (compat32: it keeps report fields as the sender wrote them),
find the first report part - message/delivery-status or message/global-delivery-status
(engine.feedback.dsn), message/feedback-report (engine.feedback.arf) - and return what it
says; anything else (an auto-reply, a human's answer, a plain-text bounce without a
report part, garbage) is UNPARSEABLE with the reason.  It never raises: a bug or a
hostile MIME tree costs one report (kept, with the reason), not the processor.
Not responsible for: storing the message or acting on the report (engine.feedback.inbox,
engine.feedback.records, engine.feedback.service).

Cost: the stdlib parser is written in Python, ~0.3 ms for a 5 KB DSN on this VM; reports
are a few per thousand messages sent, so a hand-written reader would not pay for itself.
"""

from __future__ import annotations

import logging
from email import message_from_bytes, policy

from engine.feedback.arf import ARF_TYPE, parse_arf
from engine.feedback.dsn import DSN_TYPES, parse_dsn
from engine.feedback.report import FeedbackReport, unparseable

__all__ = ["parse_report"]

_log = logging.getLogger(__name__)


def parse_report(raw: bytes) -> FeedbackReport:
    """What `raw` (a whole message, as received) reports.  Never raises."""
    try:
        return _parse(raw)
    except Exception as e:  # email's parser on hostile input, or a bug of ours
        _log.exception("parse_report failed on a %d-byte message", len(raw))
        return unparseable(f"internal error while parsing the report: {type(e).__name__}")


def _parse(raw: bytes) -> FeedbackReport:
    if not raw.strip():
        return unparseable("empty message")
    message = message_from_bytes(raw, policy=policy.compat32)
    # Depth first, in order: the report's own parts come before those of the message it
    # returns, so a returned message that is itself a report is never read instead.
    for part in message.walk():
        ctype = part.get_content_type()
        if ctype in DSN_TYPES:
            return parse_dsn(message, part)
        if ctype == ARF_TYPE:
            return parse_arf(message, part)
    ctype = message.get_content_type()
    if ctype == "multipart/report":
        kind = message.get_param("report-type")
        return unparseable(
            f"multipart/report (report-type {str(kind)[:40]!r}) without a delivery-status "
            "or feedback-report part"
        )
    return unparseable(
        f"not a delivery status notification or feedback report (Content-Type {ctype[:80]})"
    )
