"""A parsed report -> the delivery-log records it makes (pure).

Responsible for: the records of one report that came back, each a plain (event, fields)
pair for engine.telemetry.eventlog:
  * `async_bounce`, one per recipient the DSN reports as failed: rcpt (the original
    recipient when the DSN has it, else the final one), final_rcpt, status, action,
    diagnostic, remote_mta, reporting_mta;
  * `delivery_notice`, one per recipient of a DSN block that is not a failure (delayed,
    relayed, delivered, expanded): the same fields;
  * `complaint`, one per complaining recipient (one with rcpt null when the report names
    none): feedback_type, rcpt, user_agent, source_ip, reported_domain, arrival_date,
    original_mail_from;
  * `feedback_rejected` for a message that is not a report, with the reason;
and in every one: msgid - the original message's Message-ID, the very key of its
`received` and `delivered` records, which links the report to the message Volley sent -
envid (the DSN's Original-Envelope-Id), report (the file in feedback/), report_from
(its envelope sender) and client.
Not responsible for: writing them (the caller's EventLog), deciding what to suppress
(a later suppression list consumes the same FeedbackReport values).
"""

from __future__ import annotations

from typing import Any

from engine.feedback.inbox import Stored
from engine.feedback.report import FeedbackKind, FeedbackReport
from engine.policy.classifier import Classifier, classify_dsn

__all__ = ["Record", "records", "rejected_record"]

Record = tuple[str, dict[str, Any]]


def records(
    stored: Stored, report: FeedbackReport, classifier: Classifier | None = None
) -> list[Record]:
    """The log records of `report`, parsed from `stored` (UNPARSEABLE: `rejected_record`).
    A failed recipient gets its bounce category (engine.policy: `classifier`, default the
    shipped rules), as the failures Volley meets itself do."""
    common = {
        "msgid": report.original_message_id,
        "envid": report.original_envelope_id,
        "report": stored.name,
        "report_from": stored.sender,
        "client": stored.client,
    }
    if report.kind is FeedbackKind.COMPLAINT and report.complaint is not None:
        c = report.complaint
        fields = {
            "feedback_type": c.feedback_type,
            "user_agent": c.user_agent,
            "source_ip": c.source_ip,
            "reported_domain": c.reported_domain,
            "arrival_date": c.arrival_date,
            "original_mail_from": c.original_mail_from,
        }
        rcpts: tuple[str | None, ...] = c.recipients or (None,)
        return [("complaint", {"rcpt": rcpt, **fields, **common}) for rcpt in rcpts]
    if report.kind is FeedbackKind.UNPARSEABLE:
        return [rejected_record(stored.name, report.reason or "unparseable", stored)]
    if report.kind is FeedbackKind.UNSUBSCRIBE:
        # Who it is for is the token's to say (engine.unsubscribe.mail), not the From's.
        return [("unsubscribe_mail", {"to": list(stored.recipients), **common})]
    out: list[Record] = []
    for item in report.items:
        event = "async_bounce" if item.failed else "delivery_notice"
        fields = {
            "rcpt": item.recipient,
            "final_rcpt": item.final_recipient,
            "status": item.status,
            "action": item.action,
            "diagnostic": item.diagnostic,
            "remote_mta": item.remote_mta,
            "reporting_mta": report.reporting_mta,
        }
        if item.failed:
            found = classify_dsn(item.status, item.diagnostic, classifier)
            fields.update(category=found.category.value, category_rule=found.rule)
        out.append((event, {**fields, **common}))
    return out


def rejected_record(name: str, reason: str, stored: Stored | None = None) -> Record:
    """The record of a stored message moved to feedback/rejected/ (`name` there)."""
    fields: dict[str, Any] = {"report": name, "reason": reason}
    if stored is not None:
        fields.update(report_from=stored.sender, client=stored.client)
    return ("feedback_rejected", fields)
