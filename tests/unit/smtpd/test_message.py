"""Received:, Date and Message-ID on a message the listener accepted."""

from __future__ import annotations

from dataclasses import replace

from engine.smtpd.events import Envelope
from engine.smtpd.message import prepare, received_field

ENV = Envelope(
    sender="a@sender.test",
    recipients=("b@dest.test",),
    local_recipients=(),
    smtputf8=False,
    helo="client.test",
    esmtp=True,
    tls=False,
    auth_user=None,
    client="192.0.2.5",
)
DATE = "Sun, 06 Dec 2026 12:00:00 +0000"
FULL = (
    b"From: a@sender.test\r\nDate: Thu, 26 Nov 2026 12:00:00 +0000\r\n"
    b"Message-Id: <abc@sender.test>\r\n\r\nbody\r\n..dot\r\n"
)


def test_received_names_the_client_the_protocol_and_the_id() -> None:
    text = received_field(ENV, hostname="mx.volley.test", key="K1", date=DATE).decode()
    assert text == (
        "Received: from client.test ([192.0.2.5])\r\n"
        "\tby mx.volley.test (Volley) with ESMTP id K1;\r\n"
        f"\t{DATE}\r\n"
    )


def test_protocol_names_follow_rfc_3848_and_6531() -> None:
    def proto(env: Envelope) -> str:
        return (
            received_field(env, hostname="h", key="k", date=DATE)
            .decode()
            .split(" with ")[1]
            .split()[0]
        )

    assert proto(replace(ENV, esmtp=False)) == "SMTP"
    assert proto(replace(ENV, tls=True)) == "ESMTPS"
    assert proto(replace(ENV, auth_user="alice")) == "ESMTPA"
    assert proto(replace(ENV, tls=True, auth_user="alice")) == "ESMTPSA"
    assert proto(replace(ENV, smtputf8=True, tls=True)) == "UTF8SMTPS"
    assert proto(replace(ENV, client="::1")) == "ESMTP"


def test_the_auth_user_is_shown_only_when_asked_and_never_raw() -> None:
    env = replace(ENV, auth_user="alice (x)\\")
    hidden = received_field(env, hostname="h", key="k", date=DATE)
    assert b"alice" not in hidden
    shown = received_field(env, hostname="h", key="k", date=DATE, show_auth=True).decode()
    assert "(Authenticated sender: alice??x??)" in shown
    assert (
        "[IPv6:::1]"
        in received_field(replace(ENV, client="::1"), hostname="h", key="k", date=DATE).decode()
    )


def test_a_complete_message_gets_received_only_and_keeps_its_message_id() -> None:
    got = prepare(ENV, FULL, hostname="h", key="K", date=DATE)
    assert got.body.endswith(FULL) and got.body.startswith(b"Received: ")
    assert got.message_id == "<abc@sender.test>"
    assert not got.body_8bit


def test_missing_date_and_message_id_are_added_at_the_end_of_the_header_section() -> None:
    data = b"From: a@sender.test\r\nSubject: x\r\n\r\nbody\r\n"
    got = prepare(ENV, data, hostname="mx.volley.test", key="K9", date=DATE)
    head, _, body = got.body.partition(b"\r\n\r\n")
    assert body == b"body\r\n"
    assert head.endswith(
        b"Subject: x\r\nDate: " + DATE.encode() + b"\r\nMessage-ID: <K9@mx.volley.test>"
    )
    assert got.message_id == "<K9@mx.volley.test>"


def test_a_message_without_a_header_section_gets_the_fields_first() -> None:
    got = prepare(ENV, b"\r\njust a body\r\n", hostname="h", key="K", date=DATE)
    assert got.body.endswith(b"Message-ID: <K@h>\r\n\r\njust a body\r\n")
    empty = prepare(ENV, b"", hostname="h", key="K", date=DATE)
    assert empty.body.endswith(b"Message-ID: <K@h>\r\n")


def test_a_folded_message_id_is_read_whole_and_8bit_is_seen() -> None:
    data = "Message-ID:\r\n <x@y>\r\nSubject: é\r\n\r\nb\r\n".encode()
    got = prepare(ENV, data, hostname="h", key="K", date=DATE)
    assert got.message_id == "<x@y>" and got.body_8bit
    assert got.body.count(b"Message-ID") == 1
