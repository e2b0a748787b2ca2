"""engine.feedback.dsn: DSNs shaped like Postfix's, Exim's, Gmail's and Microsoft's."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.feedback.parse import parse_report
from engine.feedback.report import FeedbackKind, FeedbackReport, RecipientStatus

SAMPLES = Path(__file__).parent / "samples"


def _sample(name: str, crlf: bool = False) -> FeedbackReport:
    raw = (SAMPLES / name).read_bytes()
    return parse_report(raw.replace(b"\n", b"\r\n") if crlf else raw)


@pytest.mark.parametrize("crlf", [False, True])  # as stored (LF) and as received (CRLF)
def test_postfix_user_unknown(crlf: bool) -> None:
    r = _sample("postfix_user_unknown.eml", crlf)
    assert r.kind is FeedbackKind.ASYNC_BOUNCE
    assert r.original_message_id == "<5f0c1a2b3c4d5e6f@mta.example.com>"
    assert r.reporting_mta == "mx.example.net" and r.original_envelope_id is None
    assert r.items == (
        RecipientStatus(
            final_recipient="gone@example.net",
            original_recipient="gone@example.net",
            action="failed",
            status="5.1.1",
            diagnostic="550 5.1.1 <gone@example.net>: Recipient address rejected: "
            "User unknown in virtual mailbox table",
            diagnostic_type="smtp",
            remote_mta="mail.example.net",
        ),
    )
    assert r.failed == r.items


def test_postfix_delay_warning_is_a_notice_not_a_bounce() -> None:
    r = _sample("postfix_delayed.eml")
    assert r.kind is FeedbackKind.DELIVERY_NOTICE and r.failed == ()
    [item] = r.items
    assert (item.recipient, item.action, item.status) == ("slow@example.net", "delayed", "4.4.1")
    assert item.diagnostic_type == "x-postfix"
    assert item.diagnostic == "connect to mail.example.net[192.0.2.25]:25: Connection timed out"
    assert r.original_message_id == "<slow-7d1e@mta.example.com>"


def test_exim_two_recipients_status_comment_and_no_diagnostic() -> None:
    r = _sample("exim_two_recipients.eml")
    assert r.kind is FeedbackKind.ASYNC_BOUNCE
    assert r.original_message_id == "<a1b2c3d4e5@mta.example.com>"  # from message/rfc822
    full, nobody = r.items
    assert (full.recipient, full.status, full.remote_mta) == (
        "full@exim.example.org",
        "5.0.0",
        "mx.exim.example.org",
    )
    assert full.diagnostic == "552 5.2.2 Mailbox full"
    assert (nobody.recipient, nobody.status, nobody.diagnostic) == (
        "nobody@exim.example.org",
        "5.0.0",  # "5.0.0 (permanent failure)"
        None,
    )


def test_gmail_folded_diagnostic_and_remote_mta_comment() -> None:
    r = _sample("gmail_no_such_user.eml")
    assert r.kind is FeedbackKind.ASYNC_BOUNCE
    [item] = r.items
    assert item.recipient == "no.such.user.42@gmail.com" and item.status == "5.1.1"
    assert item.diagnostic is not None
    assert item.diagnostic.startswith("550-5.1.1 The email account that you tried to reach does")
    assert "\n" not in item.diagnostic and "NoSuchUser" in item.diagnostic
    assert item.remote_mta is not None
    assert item.remote_mta.endswith(
        ".l.google.com. (2607:f8b0:4864:20::52a, the server for the domain gmail.com.)"
    )
    assert r.original_message_id == "<gmail-orig-42@mta.example.com>"
    assert r.reporting_mta == "googlemail.com"


def test_microsoft_original_and_final_recipient_differ() -> None:
    r = _sample("microsoft_mailbox_full.eml")
    assert r.kind is FeedbackKind.ASYNC_BOUNCE
    full, moved = r.items
    assert (full.recipient, full.status) == ("someone@contoso.example", "5.2.2")
    assert full.diagnostic is not None and full.diagnostic.startswith("554 5.2.2 mailbox full;")
    # The address we sent to is the original one; the final one is where it led.
    assert moved.recipient == "left@contoso.example"
    assert moved.final_recipient == "left.company@fabrikam.example"
    assert moved.status == "5.1.10"
    assert r.original_message_id == "<ms-orig-0077@mta.example.com>"
    assert r.reporting_mta == "DM6PR11MB1234.namprd11.prod.outlook.com"


def _dsn(status_part: bytes, returned: bytes = b"") -> bytes:
    parts = [
        b"Content-Type: text/plain\r\n\r\nfailed\r\n",
        b"Content-Type: message/delivery-status\r\n\r\n" + status_part,
    ]
    if returned:
        parts.append(returned)
    body = b"".join(b"--b\r\n" + p + b"\r\n" for p in parts) + b"--b--\r\n"
    head = b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"
    return head + body


def test_envelope_id_utf8_address_and_x_actual_recipient() -> None:
    r = parse_report(
        _dsn(
            b"Reporting-MTA: dns; mx.example\r\nOriginal-Envelope-Id: ENV-77\r\n\r\n"
            b"Final-Recipient: utf-8; j\\x{F6}rg@b\\x{FC}cher.example\r\n"
            b"Action: failed\r\nStatus: 5.1.1\r\n\r\n"
            b"X-Actual-Recipient: rfc822; alias@example.org\r\n"
            b"action: FAILED\r\nstatus: 5.7.1\r\n",
            b"Content-Type: message/rfc822\r\n\r\nMessage-ID:  <m1@x.example>  \r\n\r\nb\r\n",
        )
    )
    assert r.kind is FeedbackKind.ASYNC_BOUNCE and r.original_envelope_id == "ENV-77"
    assert [i.recipient for i in r.items] == ["jörg@bücher.example", "alias@example.org"]
    assert [i.status for i in r.items] == ["5.1.1", "5.7.1"]
    assert r.original_message_id == "<m1@x.example>"


def test_without_a_per_message_block_every_block_is_a_recipient() -> None:
    r = parse_report(
        _dsn(b"Final-Recipient: rfc822; a@x.example\r\nAction: failed\r\nStatus: 5.0.0\r\n")
    )
    assert [i.recipient for i in r.items] == ["a@x.example"] and r.reporting_mta is None
    assert r.original_message_id is None  # no returned part: nothing to link


def test_unusable_blocks_are_skipped_or_are_the_reason() -> None:
    good = b"Final-Recipient: rfc822; a@x.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    bad_status = b"Final-Recipient: rfc822; b@x.example\r\nAction: failed\r\nStatus: bounced\r\n"
    head = b"Reporting-MTA: dns; mx.example\r\n\r\n"
    r = parse_report(_dsn(head + bad_status + b"\r\n" + good))
    assert [i.recipient for i in r.items] == ["a@x.example"]  # the bad block is skipped
    only_bad = parse_report(_dsn(head + bad_status))
    assert only_bad.kind is FeedbackKind.UNPARSEABLE
    assert (
        only_bad.reason is not None and "'bounced' is not a class.subject.detail" in only_bad.reason
    )
    no_action = parse_report(
        _dsn(head + b"Final-Recipient: rfc822; c@x.example\r\nStatus: 5.1.1\r\n")
    )
    assert no_action.reason is not None and "Action" in no_action.reason
    empty = parse_report(_dsn(head))
    assert empty.reason is not None and "no per-recipient block" in empty.reason
    assert parse_report(_dsn(b"")).reason == "delivery-status part is empty"
