"""engine.feedback.records: which records a report makes, with which fields."""

from __future__ import annotations

from pathlib import Path

from engine.feedback.inbox import Stored
from engine.feedback.parse import parse_report
from engine.feedback.records import records, rejected_record
from engine.feedback.report import unparseable

SAMPLES = Path(__file__).parent / "samples"


def _stored(name: str) -> Stored:
    return Stored(
        name="0001-aa.msg",
        raw=(SAMPLES / name).read_bytes(),
        sender="",
        recipients=("b@bounces.example.com",),
        client="192.0.2.9",
        received=1.0,
    )


def _records(name: str) -> list[tuple[str, dict[str, object]]]:
    stored = _stored(name)
    return records(stored, parse_report(stored.raw))


def test_one_async_bounce_per_failed_recipient_linked_by_message_id() -> None:
    recs = _records("microsoft_mailbox_full.eml")
    assert [e for e, _ in recs] == ["async_bounce", "async_bounce"]
    first = recs[0][1]
    assert first == {
        "rcpt": "someone@contoso.example",
        "final_rcpt": "someone@contoso.example",
        "status": "5.2.2",
        "action": "failed",
        "diagnostic": first["diagnostic"],
        "remote_mta": None,
        "reporting_mta": "DM6PR11MB1234.namprd11.prod.outlook.com",
        "msgid": "<ms-orig-0077@mta.example.com>",
        "envid": None,
        "report": "0001-aa.msg",
        "report_from": "",
        "client": "192.0.2.9",
        # Classified like Volley's own failures (engine.policy): 5.2.2 is a full mailbox.
        "category": "QuotaIssues",
        "category_rule": first["category_rule"],
    }
    assert str(first["diagnostic"]).startswith("554 5.2.2 mailbox full;")
    assert recs[1][1]["rcpt"] == "left@contoso.example"


def test_a_delay_is_a_notice() -> None:
    [(event, fields)] = _records("postfix_delayed.eml")
    assert event == "delivery_notice" and fields["action"] == "delayed"


def test_one_complaint_per_recipient_or_one_without() -> None:
    [(event, fields)] = _records("yahoo_cfl.eml")
    assert event == "complaint"
    assert fields["rcpt"] == "reader.one@yahoo.com" and fields["feedback_type"] == "abuse"
    assert fields["msgid"] == "<yahoo-orig-9@mta.example.com>"
    assert fields["user_agent"] == "Yahoo!-Mail-Feedback/2.0"
    assert fields["original_mail_from"] == "bounces@bounces.example.com"
    stored = _stored("yahoo_cfl.eml")
    nobody = parse_report(
        b"Content-Type: multipart/report; boundary=b\r\n\r\n--b\r\nContent-Type: "
        b"message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n\r\n--b--\r\n"
    )
    [(_, anon)] = records(stored, nobody)
    assert anon["rcpt"] is None and anon["msgid"] is None


def test_unparseable_and_rejected_records() -> None:
    stored = _stored("vacation_reply.eml")
    assert records(stored, unparseable("why")) == [
        (
            "feedback_rejected",
            {"report": "0001-aa.msg", "reason": "why", "report_from": "", "client": "192.0.2.9"},
        )
    ]
    assert rejected_record("x.msg", "no envelope") == (
        "feedback_rejected",
        {"report": "x.msg", "reason": "no envelope"},
    )
