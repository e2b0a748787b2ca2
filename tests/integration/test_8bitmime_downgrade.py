"""Issue #10 §5 (RFC 6152 §3): a message with an 8-bit body going to a server that does
not offer 8BITMIME is never sent as 8-bit.  A text message (DKIM-signed at intake) arrives
as quoted-printable, decodes to the same text and still passes an independent DKIM
verifier (mailauth: Volley signed the 7-bit copy again); a multipart one has each 8-bit
part converted; one with 8-bit bytes in a header cannot be converted and is bounced
5.6.3 with the reason, in the log and in the sender's DSN."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

from engine.auth.dkim import load_key
from engine.auth.keygen import keygen
from tests.support.dkim_check import mailauth_verify, publish_key
from tests.support.net import wait_for

TEXT = "Grüße aus Köln — ½ € für alle.\r\n.a line that starts with a dot\r\n"


def eight_bit(rcpt: str, subject: str = "Hello", sender: str = "news@sender.test") -> bytes:
    return (
        f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
        "Date: Thu, 26 Nov 2026 12:00:00 +0000\r\n"
        f"Message-ID: <{rcpt.replace('@', '.')}@sender.test>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n" + TEXT
    ).encode()


def multipart(rcpt: str) -> bytes:
    return (
        f"From: news@other.test\r\nTo: {rcpt}\r\nSubject: parts\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n"
        "--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        "\r\n" + TEXT + "--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>" + TEXT
        + "</p>\r\n--b1--\r\n"
    ).encode()  # fmt: skip


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_8bit_mail_to_a_7bit_server_is_converted_or_bounced(net, volley, tmp_path: Path) -> None:
    key_path = keygen("sender.test", "s8bit", "ed25519", 0, tmp_path)
    publish_key(net.dns, load_key(key_path, "sender.test", "s8bit"))
    (rx,) = net.domain("dest.test", eightbitmime=False)
    (sender_rx,) = net.domain("sender.test")  # gets the bounce report
    v = volley(config={"dkim": {"sender.test": {"selector": "s8bit", "key": str(key_path)}}})
    v.drop(eight_bit("ann@dest.test"))
    v.drop(multipart("bob@dest.test"))
    v.drop(eight_bit("cy@dest.test", subject="Grüße"))  # a raw 8-bit header field
    wait_for(
        lambda: len(rx.messages) == 2 and v.count("bounced") == 1,
        timeout=30,
        message=lambda: f"{rx!r}\n{v.log()}",
    )
    for m in rx.messages:
        assert m.data.isascii(), m.data  # never 8-bit to a server without 8BITMIME
        assert not any(o.startswith("BODY=") for o in m.mail_options)

    (signed,) = rx.delivered_to("ann@dest.test")
    assert b"Content-Transfer-Encoding: quoted-printable\r\n" in signed.data
    assert parse(signed.data).get_content() == TEXT  # CRLFs and the dot line included
    assert signed.data.count(b"DKIM-Signature:") == 1  # renewed, not added to
    results = mailauth_verify(signed.data, net.dns)
    assert [(r.selector, r.result) for r in results] == [("s8bit", "pass")], results

    (parts,) = rx.delivered_to("bob@dest.test")
    plain, html = (p.get_content() for p in parse(parts.data).iter_parts())
    # A part's last CRLF belongs to the boundary line that follows it (RFC 2046 §5.1.1).
    assert (plain, html) == (TEXT[:-2], f"<p>{TEXT}</p>")

    (bounced,) = v.events("bounced")
    assert (bounced["rcpt"], bounced["code"], bounced["enhanced"]) == ("cy@dest.test", 554, "5.6.3")
    assert bounced["text"] == (
        "conversion required but not supported: the receiving server does not offer 8BITMIME"
        " (RFC 6152) and the message cannot be made 7-bit: 8-bit bytes in a header field"
        " (RFC 6532: only with SMTPUTF8)"
    )
    assert rx.delivered_to("cy@dest.test") == []
    wait_for(lambda: sender_rx.messages, timeout=30, message=lambda: f"{sender_rx!r} {v.log()}")
    (dsn,) = sender_rx.messages
    assert b"5.6.3" in dsn.data and b"cy@dest.test" in dsn.data
    assert v.stop() == 0
