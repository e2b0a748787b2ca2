"""engine.feedback.arf: feedback reports shaped like Yahoo's, AOL's and Microsoft's JMRP."""

from __future__ import annotations

from pathlib import Path

from engine.feedback.parse import parse_report
from engine.feedback.report import Complaint, FeedbackKind, FeedbackReport

SAMPLES = Path(__file__).parent / "samples"


def _sample(name: str) -> FeedbackReport:
    return parse_report((SAMPLES / name).read_bytes())


def test_yahoo_cfl() -> None:
    r = _sample("yahoo_cfl.eml")
    assert r.kind is FeedbackKind.COMPLAINT and r.items == ()
    assert r.original_message_id == "<yahoo-orig-9@mta.example.com>"
    assert r.complaint == Complaint(
        feedback_type="abuse",
        user_agent="Yahoo!-Mail-Feedback/2.0",
        version="0.1",
        original_mail_from="bounces@bounces.example.com",
        original_rcpt_to=("reader.one@yahoo.com",),
        arrival_date="Thu, 26 Nov 2026 12:00:05 +0000",  # its Received-Date
        reported_domain="example.com",
        source_ip=None,
        original_to="reader.one@yahoo.com",
    )
    assert r.complaint.recipients == ("reader.one@yahoo.com",)


def test_aol_without_original_rcpt_to_falls_back_to_the_returned_to() -> None:
    r = _sample("aol_redacted.eml")
    assert r.kind is FeedbackKind.COMPLAINT and r.complaint is not None
    c = r.complaint
    assert c.original_rcpt_to == () and c.recipients == ("reader.two@aol.com",)
    assert (c.user_agent, c.source_ip, c.original_mail_from) == ("AOL SComp", "198.51.100.7", None)
    assert r.original_message_id == "<aol-orig-3@mta.example.com>"


def test_microsoft_jmrp_with_headers_only() -> None:
    r = _sample("microsoft_jmrp.eml")
    assert r.kind is FeedbackKind.COMPLAINT and r.complaint is not None
    c = r.complaint
    assert (c.feedback_type, c.version, c.arrival_date) == (
        "abuse",
        "1",
        "Thu, 26 Nov 2026 04:00:05 -0800",
    )
    assert c.recipients == ("reader.three@outlook.com",)
    assert r.original_message_id == "<jmrp-orig-11@mta.example.com>"  # "Message-Id"


def _arf(fields: bytes) -> bytes:
    return (
        b"Content-Type: multipart/report; report-type=feedback-report; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nreport\r\n"
        b"--b\r\nContent-Type: message/feedback-report\r\n\r\n" + fields + b"\r\n--b--\r\n"
    )


def test_several_recipients_and_type_case() -> None:
    r = parse_report(
        _arf(
            b"Feedback-Type: Fraud\r\nUser-Agent: x/1\r\nVersion: 1\r\n"
            b"Original-Rcpt-To: a@x.example\r\nOriginal-Rcpt-To: <b@x.example>\r\n"
        )
    )
    assert r.complaint is not None and r.complaint.feedback_type == "fraud"
    assert r.complaint.recipients == ("a@x.example", "b@x.example")
    assert r.original_message_id is None  # no third part


def test_no_feedback_type_is_unparseable() -> None:
    r = parse_report(_arf(b"User-Agent: x/1\r\nVersion: 1\r\n"))
    assert (
        r.kind is FeedbackKind.UNPARSEABLE and r.reason == "feedback report without Feedback-Type"
    )
    assert parse_report(_arf(b"")).kind is FeedbackKind.UNPARSEABLE
