"""engine.sendmail.session: the -bs dialogue, line by line (sans-IO) and over streams."""

from __future__ import annotations

import io

import pytest

from engine.sendmail.exits import Exit, Failure
from engine.sendmail.session import MAX_COMMAND_LINE, SmtpSession, State, run

Delivered = list[tuple[bytes, str, tuple[str, ...]]]


def _session(delivered: Delivered, *, fail: Failure | None = None) -> SmtpSession:
    def deliver(data: bytes, sender: str, rcpts: tuple[str, ...]) -> str:
        if fail is not None:
            raise fail
        delivered.append((data, sender, rcpts))
        return f"drop{len(delivered)}.eml"

    return SmtpSession("mta.example.com", max_size=200, max_recipients=2, deliver=deliver)


def _talk(s: SmtpSession, *lines: bytes) -> list[bytes]:
    return [s.feed(line) for line in lines]


def test_a_transaction_with_dot_unstuffing() -> None:
    got: Delivered = []
    s = _session(got)
    assert s.greeting() == b"220 mta.example.com ESMTP Volley (sendmail -bs)\r\n"
    ehlo = s.feed(b"EHLO client.example\r\n")
    assert ehlo.startswith(b"250-mta.example.com\r\n") and b"250 ENHANCEDSTATUSCODES\r\n" in ehlo
    assert b"SIZE 200" in ehlo and b"PIPELINING" in ehlo and b"8BITMIME" in ehlo
    replies = _talk(
        s,
        b"MAIL FROM:<news@example.com> BODY=8BITMIME SIZE=100\r\n",
        b"RCPT TO:<a@x.example>\r\n",
        b"rcpt to: <b@y.example>\n",  # any case, a space after the colon, LF only
        b"DATA\r\n",
        b"Subject: s\r\n",
        b"\r\n",
        b"..leading dot\r\n",
        b".\r\n",
    )
    assert replies == [
        b"250 2.1.0 Ok\r\n",
        b"250 2.1.5 Ok\r\n",
        b"250 2.1.5 Ok\r\n",
        b"354 End data with <CR><LF>.<CR><LF>\r\n",
        b"",
        b"",
        b"",
        b"250 2.0.0 Ok: queued as drop1.eml\r\n",
    ]
    assert got == [
        (b"Subject: s\r\n\r\n.leading dot\r\n", "news@example.com", ("a@x.example", "b@y.example"))
    ]
    assert s.state is State.COMMAND and s.accepted == 1
    assert _talk(s, b"MAIL FROM:<>\r\n", b"RCPT TO:<c@x.example>\r\n") == [
        b"250 2.1.0 Ok\r\n",
        b"250 2.1.5 Ok\r\n",
    ]
    assert s.in_transaction
    assert _talk(s, b"RSET\r\n", b"NOOP\r\n", b"QUIT\r\n") == [
        b"250 2.0.0 Ok\r\n",
        b"250 2.0.0 Ok\r\n",
        b"221 2.0.0 Bye\r\n",
    ]
    assert s.state is State.CLOSED and not s.in_transaction


@pytest.mark.parametrize(
    ("lines", "last"),
    [
        ([b"RCPT TO:<a@x.example>\r\n"], b"503 5.5.1"),
        ([b"DATA\r\n"], b"503 5.5.1"),
        ([b"MAIL FROM:<a@x.example>\r\n", b"MAIL FROM:<a@x.example>\r\n"], b"503 5.5.1"),
        ([b"MAIL FROM:<a@x.example>\r\n", b"DATA\r\n"], b"554 5.5.1"),
        ([b"MAIL FROM:<bad address>\r\n"], b"553 5.1.7"),
        ([b"MAIL FROM:<a@x.example> SIZE=999\r\n"], b"552 5.3.4"),
        ([b"MAIL FROM:<a@x.example> RET=HDRS\r\n"], b"555 5.5.4"),
        ([b"MAIL FROM:<a@x.example> BODY=BINARYMIME\r\n"], b"501 5.5.4"),
        ([b"MAIL FROM:<a@x.example>\r\n", b"RCPT TO:<>\r\n"], b"553 5.1.3"),
        ([b"MAIL FROM:<a@x.example>\r\n", b"RCPT TO:<a@[127.0.0.1]>\r\n"], b"553 5.1.3"),
        ([b"MAIL FROM:<a@x.example>\r\n", b"RCPT TO:<a@x.example> NOTIFY=NEVER\r\n"], b"555"),
        ([b"MAIL TO:<a@x.example>\r\n"], b"501 5.5.4"),
        ([b"EHLO\r\n"], b"501 5.5.4"),
        ([b"HELO\r\n"], b"501 5.5.4"),
        ([b"STARTTLS\r\n"], b"500 5.5.2"),
        ([b"\xff\xfe\r\n"], b"500 5.5.2"),
        ([b"NOOP " + b"x" * MAX_COMMAND_LINE + b"\r\n"], b"500 5.5.2 Error: command line too long"),
        ([b"VRFY root\r\n"], b"252 2.5.2"),
        ([b"HELP\r\n"], b"214 2.0.0"),
    ],
)
def test_errors_get_the_rfc_reply(lines: list[bytes], last: bytes) -> None:
    s = _session([])
    s.feed(b"HELO client\r\n")
    assert _talk(s, *lines)[-1].startswith(last)


def test_too_many_recipients_is_a_temporary_refusal() -> None:
    s = _session([])
    replies = _talk(
        s,
        b"MAIL FROM:<a@x.example>\r\n",
        b"RCPT TO:<r1@x.example>\r\n",
        b"RCPT TO:<r2@x.example>\r\n",
        b"RCPT TO:<r3@x.example>\r\n",
    )
    assert replies[-1] == b"452 4.5.3 Error: too many recipients\r\n"


def test_an_oversized_message_is_read_to_its_end_and_refused() -> None:
    got: Delivered = []
    s = _session(got)
    _talk(s, b"MAIL FROM:<a@x.example>\r\n", b"RCPT TO:<r@x.example>\r\n", b"DATA\r\n")
    replies = _talk(s, *[b"x" * 60 + b"\r\n"] * 5, b".\r\n", b"NOOP\r\n")
    assert replies[-2] == b"552 5.3.4 Message size exceeds fixed limit\r\n"
    assert replies[-1] == b"250 2.0.0 Ok\r\n" and got == []


@pytest.mark.parametrize(
    ("code", "reply"),
    [(Exit.DATAERR, b"554 5.6.0 refused: x\r\n"), (Exit.TEMPFAIL, b"451 4.3.0 refused: x\r\n")],
)
def test_a_refused_drop_is_answered_not_fatal(code: Exit, reply: bytes) -> None:
    s = _session([], fail=Failure(code, "refused:\n x"))
    _talk(s, b"MAIL FROM:<a@x.example>\r\n", b"RCPT TO:<r@x.example>\r\n", b"DATA\r\n")
    assert s.feed(b".\r\n") == reply
    assert s.feed(b"NOOP\r\n") == b"250 2.0.0 Ok\r\n"


def test_run_over_streams_and_its_exit_status() -> None:
    got: Delivered = []
    out = io.BytesIO()
    script = b"EHLO c\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<r@x.example>\r\nDATA\r\n"
    script += b"S: x\r\n\r\nb\r\n.\r\nQUIT\r\nNOOP\r\n"
    assert run(_session(got), io.BytesIO(script), out) is Exit.OK
    lines = out.getvalue().split(b"\r\n")
    assert lines[0].startswith(b"220 ") and lines[-2] == b"221 2.0.0 Bye" and len(got) == 1
    # EOF in the middle of DATA: nothing was accepted, the caller must know.
    cut = b"HELO c\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<r@x.example>\r\nDATA\r\nS: x\r\n.\r"
    assert run(_session([]), io.BytesIO(cut), io.BytesIO()) is Exit.TEMPFAIL
    assert run(_session([]), io.BytesIO(b"HELO c\r\n"), io.BytesIO()) is Exit.OK
