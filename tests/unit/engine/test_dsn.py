"""Tests for engine.dsn: RFC 3464 delivery status notifications."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage, Message, MIMEPart

import pytest

from engine.drop.parse import DropEnvelope, parse_drop
from engine.dsn import FailedRecipient, build_dsn

ORIGINAL = (
    b"From: News <news@example.com>\r\n"
    b"To: jane@example.org\r\n"
    b"Subject: Weekly digest\r\n"
    b"Message-ID: <orig.1@example.com>\r\n"
    b"\r\n"
    b"SECRET BODY TEXT\r\n"
)
ARRIVAL = 1_790_000_000.0  # Mon, 21 Sep 2026 14:13:20 +0000
NOW = 1_790_003_600.0  # one hour later


def _build(**overrides: object) -> bytes:
    args: dict[str, object] = {
        "reporting_mta": "mx.volley.test",
        "original_sender": "bounce@example.com",
        "original_message": ORIGINAL,
        "failed": [
            FailedRecipient(
                recipient="jane@example.org",
                status="5.1.1",
                diagnostic="smtp; 550 5.1.1 <jane@example.org>: no such user",
                remote_mta="mx1.example.org",
            )
        ],
        "arrival_date": ARRIVAL,
        "now": NOW,
        "message_id": "<dsn.1@mx.volley.test>",
    }
    args.update(overrides)
    return build_dsn(**args)  # type: ignore[arg-type]


def _parse(dsn: bytes) -> EmailMessage:
    msg = email.message_from_bytes(dsn, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def _part(msg: EmailMessage, index: int) -> MIMEPart:
    return list(msg.iter_parts())[index]


def _blocks(msg: EmailMessage) -> list[Message]:
    status = _part(msg, 1)
    assert status.get_content_type() == "message/delivery-status"
    blocks = status.get_payload()
    assert isinstance(blocks, list)
    assert all(isinstance(block, Message) for block in blocks)
    return [block for block in blocks if isinstance(block, Message)]


def test_structure_and_top_level_headers() -> None:
    dsn = _build()
    msg = _parse(dsn)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@mx.volley.test>"
    assert msg["To"] == "bounce@example.com"
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["Date"] == "Mon, 21 Sep 2026 15:13:20 +0000"
    assert msg["Message-ID"] == "<dsn.1@mx.volley.test>"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["MIME-Version"] == "1.0"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    assert not msg.defects
    assert all(not p.defects for p in parts)


def test_crlf_line_endings_and_line_lengths() -> None:
    dsn = _build()
    assert b"\n" not in dsn.replace(b"\r\n", b"")
    assert b"\r" not in dsn.replace(b"\r\n", b"")
    assert max(len(line) for line in dsn.split(b"\r\n")) <= 998
    assert dsn.isascii()


def test_human_readable_part_lists_each_recipient() -> None:
    failed = [
        FailedRecipient("jane@example.org", "5.1.1", "smtp; 550 5.1.1 no such user", "mx1.ex.org"),
        FailedRecipient("joe@example.net", "5.4.4", None, None),
    ]
    text = _part(_parse(_build(failed=failed)), 0).get_content()
    assert "mx.volley.test" in text
    assert "<jane@example.org> (host mx1.ex.org said): smtp; 550 5.1.1 no such user" in text
    assert "<joe@example.net>: status 5.4.4" in text


def test_human_readable_part_names_each_failures_category() -> None:
    failed = [
        FailedRecipient("jane@example.org", "5.1.1", "smtp; 550 no", "mx1.ex.org",
                        category="InvalidRecipient"),
        FailedRecipient("joe@example.net", "5.4.4", None, None),  # none known: no line
        FailedRecipient("jim@example.net", "5.7.1", None, None, category="Spam\r\nBcc: x"),
    ]  # fmt: skip
    dsn = _build(failed=failed)
    lines = _part(_parse(dsn), 0).get_content().splitlines()
    i = lines.index("<jane@example.org> (host mx1.ex.org said): smtp; 550 no")
    assert lines[i + 1] == "    Category: InvalidRecipient"
    assert lines[i + 2] == "<joe@example.net>: status 5.4.4"
    assert lines[i + 4] == "    Category: Spam Bcc: x"  # one line, whatever it holds
    assert b"Category" not in dsn.split(b"message/delivery-status")[1]  # the human part only


def test_per_message_and_per_recipient_fields() -> None:
    failed = [
        FailedRecipient(
            "jane@example.org", "5.1.1", "smtp; 550 5.1.1 no such user", "mx1.example.org"
        ),
        FailedRecipient("joe@example.net", "5.4.4", None, None),
    ]
    blocks = _blocks(_parse(_build(failed=failed, envelope_id="ENV-42")))
    assert len(blocks) == 3
    per_message, jane, joe = blocks
    assert per_message["Original-Envelope-Id"] == "ENV-42"
    assert per_message["Reporting-MTA"] == "dns; mx.volley.test"
    assert per_message["Arrival-Date"] == "Mon, 21 Sep 2026 14:13:20 +0000"
    assert jane["Final-Recipient"] == "rfc822; jane@example.org"
    assert jane["Action"] == "failed"
    assert jane["Status"] == "5.1.1"
    assert jane["Remote-MTA"] == "dns; mx1.example.org"
    assert jane["Diagnostic-Code"] == "smtp; 550 5.1.1 no such user"
    assert jane["Last-Attempt-Date"] == "Mon, 21 Sep 2026 15:13:20 +0000"
    assert joe["Final-Recipient"] == "rfc822; joe@example.net"
    assert joe["Status"] == "5.4.4"
    assert joe["Remote-MTA"] is None
    assert joe["Diagnostic-Code"] is None


def test_no_original_envelope_id_unless_given() -> None:
    per_message = _blocks(_parse(_build()))[0]
    assert per_message["Original-Envelope-Id"] is None


def test_original_headers_only_never_the_body() -> None:
    dsn = _build()
    part = _part(_parse(dsn), 2)
    content = part.get_payload(decode=True)
    assert content == ORIGINAL.split(b"\r\n\r\n")[0] + b"\r\n"
    assert b"SECRET BODY TEXT" not in dsn


def test_original_without_body_is_all_headers() -> None:
    original = b"From: f@example.com\nTo: r@example.org\nSubject: no body"
    part = _part(_parse(_build(original_message=original)), 2)
    assert (
        part.get_payload(decode=True)
        == b"From: f@example.com\r\nTo: r@example.org\r\nSubject: no body\r\n"
    )


def test_remote_diagnostic_cannot_inject_headers_or_fields() -> None:
    failed = [
        FailedRecipient(
            "jane@example.org",
            "5.1.1",
            "smtp; 550 no such user\r\nBcc: victim@example.net\r\n\r\nAction: delivered\x00\x1b",
            "mx1.example.org\r\nX-Injected: yes",
        )
    ]
    dsn = _build(failed=failed)
    msg = _parse(dsn)
    assert msg["Bcc"] is None
    blocks = _blocks(msg)
    assert len(blocks) == 2
    rcpt = blocks[1]
    assert rcpt.get_all("Action") == ["failed"]
    assert rcpt["X-Injected"] is None
    assert rcpt["Remote-MTA"] == "dns; mx1.example.org"
    diagnostic = rcpt["Diagnostic-Code"]
    assert diagnostic == "smtp; 550 no such user Bcc: victim@example.net Action: delivered"
    assert b"\x00" not in dsn and b"\x1b" not in dsn
    assert not re.search(rb"\r\n(Bcc|X-Injected):", dsn)


def test_untyped_and_long_diagnostics() -> None:
    failed = [FailedRecipient("a@example.org", "5.0.0", "free text " + "w" * 2000, None)]
    rcpt = _blocks(_parse(_build(failed=failed)))[1]
    diagnostic = str(rcpt["Diagnostic-Code"])
    assert diagnostic.startswith("X-Volley; free text www")
    assert len(diagnostic) <= 920


def test_non_ascii_diagnostic_is_escaped_in_the_report() -> None:
    failed = [FailedRecipient("a@example.org", "5.1.1", "smtp; 550 Benutzer unbekannt: Jörg", None)]
    dsn = _build(failed=failed)
    rcpt = _blocks(_parse(dsn))[1]
    assert rcpt["Diagnostic-Code"] == "smtp; 550 Benutzer unbekannt: J\\xf6rg"


def test_non_ascii_recipient_uses_utf8_address_type() -> None:
    failed = [FailedRecipient("jörg+x@bücher.example", "5.1.1", None, None)]
    dsn = _build(failed=failed)
    rcpt = _blocks(_parse(dsn))[1]
    # RFC 6533 utf-8-addr-xtext: non-ASCII, "+", "=" and "\" as \x{HEX}.
    assert rcpt["Final-Recipient"] == "utf-8; j\\x{F6}rg\\x{2B}x@b\\x{FC}cher.example"
    assert dsn.isascii()  # the human part is quoted-printable
    text = _part(_parse(dsn), 0).get_content()
    assert "<jörg+x@bücher.example>" in text


def test_non_ascii_sender_gets_a_raw_utf8_to_field() -> None:
    dsn = _build(original_sender="jörg@bücher.example")
    assert "To: jörg@bücher.example\r\n".encode() in dsn
    assert _parse(dsn)["To"] == "jörg@bücher.example"


def test_non_ascii_original_headers() -> None:
    original = "From: Jörg <jörg@bücher.example>\r\nSubject: Grüße\r\n\r\nbody".encode()
    part = _part(_parse(_build(original_message=original)), 2)
    assert part.get_content_type() == "text/rfc822-headers"
    assert part.get_content_charset() == "utf-8"
    assert part.get_payload(decode=True) == original.split(b"\r\n\r\n")[0] + b"\r\n"


def test_time_is_taken_from_the_arguments_only() -> None:
    first = _build(now=0.0, arrival_date=0.0)
    msg = _parse(first)
    assert msg["Date"] == "Thu, 01 Jan 1970 00:00:00 +0000"
    assert _blocks(msg)[0]["Arrival-Date"] == "Thu, 01 Jan 1970 00:00:00 +0000"
    # Same arguments, same message apart from the MIME boundary.
    boundary = re.compile(rb"=+\d+==")
    assert boundary.sub(b"B", first) == boundary.sub(b"B", _build(now=0.0, arrival_date=0.0))


def test_dsn_passes_our_own_drop_parser() -> None:
    # A DSN must be a message we would accept ourselves: clean header section, valid To.
    result = parse_drop(_build(), max_recipients=10)
    assert isinstance(result, DropEnvelope)
    assert result.recipients == ("bounce@example.com",)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"original_sender": ""}, "null reverse-path"),
        ({"original_sender": "not an address"}, "invalid original_sender"),
        ({"failed": []}, "at least one recipient"),
        ({"failed": [FailedRecipient("a@example.org", "5.1", None, None)]}, "invalid DSN status"),
        (
            {"failed": [FailedRecipient("a@example.org", "5.1.1", None, None, action="lost")]},
            "invalid DSN action",
        ),
    ],
)
def test_caller_errors_raise_value_error(overrides: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _build(**overrides)
