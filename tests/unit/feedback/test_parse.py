"""engine.feedback.parse: which part decides, what is not a report, and never raising."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.feedback import parse as parse_module
from engine.feedback.parse import parse_report
from engine.feedback.report import FeedbackKind, FeedbackReport

SAMPLES = Path(__file__).parent / "samples"
ALL_SAMPLES = sorted(p.name for p in SAMPLES.glob("*.eml"))


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("postfix_user_unknown.eml", FeedbackKind.ASYNC_BOUNCE),
        ("postfix_delayed.eml", FeedbackKind.DELIVERY_NOTICE),
        ("exim_two_recipients.eml", FeedbackKind.ASYNC_BOUNCE),
        ("gmail_no_such_user.eml", FeedbackKind.ASYNC_BOUNCE),
        ("microsoft_mailbox_full.eml", FeedbackKind.ASYNC_BOUNCE),
        ("yahoo_cfl.eml", FeedbackKind.COMPLAINT),
        ("aol_redacted.eml", FeedbackKind.COMPLAINT),
        ("microsoft_jmrp.eml", FeedbackKind.COMPLAINT),
        ("vacation_reply.eml", FeedbackKind.UNPARSEABLE),
        ("read_receipt.eml", FeedbackKind.UNPARSEABLE),
    ],
)
def test_every_sample_has_its_kind(name: str, kind: FeedbackKind) -> None:
    assert parse_report((SAMPLES / name).read_bytes()).kind is kind
    assert name in ALL_SAMPLES


def test_what_is_not_a_report_says_why() -> None:
    vacation = parse_report((SAMPLES / "vacation_reply.eml").read_bytes())
    assert vacation.reason == (
        "not a delivery status notification or feedback report (Content-Type text/plain)"
    )
    mdn = parse_report((SAMPLES / "read_receipt.eml").read_bytes())
    assert mdn.reason is not None and "'disposition-notification'" in mdn.reason
    assert parse_report(b"").reason == "empty message"
    assert parse_report(b" \r\n\r\n").reason == "empty message"


def test_a_report_returned_inside_a_report_is_not_read_instead() -> None:
    """A complaint about a DSN (the returned message is itself a report): the outer,
    first report part decides."""
    inner = (SAMPLES / "postfix_user_unknown.eml").read_bytes()
    outer = (
        b"Content-Type: multipart/report; report-type=feedback-report; boundary=o\r\n\r\n"
        b"--o\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n\r\n"
        b"--o\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--o--\r\n"
    )
    r = parse_report(outer)
    assert r.kind is FeedbackKind.COMPLAINT
    assert r.original_message_id == "<20261126120005.3F2A61C0D2@mx.example.net>"


def test_a_bug_is_a_value_not_an_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(raw: bytes) -> FeedbackReport:
        raise RuntimeError("bug")

    monkeypatch.setattr(parse_module, "_parse", broken)
    r = parse_report(b"anything")
    assert r.kind is FeedbackKind.UNPARSEABLE
    assert r.reason == "internal error while parsing the report: RuntimeError"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes_never_raise(raw: bytes) -> None:
    assert isinstance(parse_report(raw), FeedbackReport)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(ALL_SAMPLES),
    cut=st.integers(min_value=0, max_value=6000),
    junk=st.binary(max_size=64),
    at=st.integers(min_value=0, max_value=6000),
)
def test_damaged_real_reports_never_raise(name: str, cut: int, junk: bytes, at: int) -> None:
    """Truncated reports with bytes spliced in: what a broken MTA or a hostile sender
    sends looks like a report, not like random bytes."""
    raw = (SAMPLES / name).read_bytes()[:cut]
    raw = raw[:at] + junk + raw[at:]
    report = parse_report(raw)
    assert isinstance(report, FeedbackReport)
    if report.kind is FeedbackKind.UNPARSEABLE:
        assert report.reason
    for item in report.items:
        assert item.status.count(".") == 2 and "\n" not in (item.diagnostic or "")
