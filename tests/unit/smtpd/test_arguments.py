"""MAIL FROM / RCPT TO arguments: paths, parameters, source routes."""

from __future__ import annotations

import pytest

from engine.smtpd import replies as R
from engine.smtpd.arguments import ArgumentError, MailArgs, parse_mail, parse_rcpt


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FROM:<a@b.test>", MailArgs("a@b.test", False)),
        ("from: <a@b.test>", MailArgs("a@b.test", False)),
        ("FROM:<>", MailArgs("", False)),
        ("FROM:<a@b.test> SIZE=100 BODY=8BITMIME SMTPUTF8", MailArgs("a@b.test", True)),
        ("FROM:<a@b.test> AUTH=<>", MailArgs("a@b.test", False)),
        ("FROM:<@r1.test,@r2.test:a@b.test>", MailArgs("a@b.test", False)),
    ],
)
def test_mail(text: str, expected: MailArgs) -> None:
    assert parse_mail(text, 1000) == expected


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("FROM:a@b.test", R.SYNTAX_MAIL),
        ("FROM:<a<b@c.test>", R.SYNTAX_MAIL),
        ("TO:<a@b.test>", R.SYNTAX_MAIL),
        ("FROM:<a@b.test> SIZE=1001", R.TOO_BIG),
        ("FROM:<a@b.test> RET=HDRS", b"555 5.5.4 Unsupported option: RET\r\n"),
        ("FROM:<a@b.test> BODY=BINARYMIME", b"555 5.5.4 Unsupported option: BODY\r\n"),
    ],
)
def test_mail_refused(text: str, reply: bytes) -> None:
    got = parse_mail(text, 1000)
    assert isinstance(got, ArgumentError) and got.reply == reply


def test_rcpt() -> None:
    assert parse_rcpt("TO:<x@y.test>") == "x@y.test"
    assert parse_rcpt("To: <@hop.test:x@y.test>") == "x@y.test"
    no_brackets = parse_rcpt("TO:x@y.test")
    assert isinstance(no_brackets, ArgumentError) and no_brackets.reply == R.SYNTAX_RCPT
    bad = parse_rcpt("TO:<x@y.test> NOTIFY=NEVER")
    assert isinstance(bad, ArgumentError) and bad.reply.startswith(b"555 5.5.4")
