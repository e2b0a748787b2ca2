"""ClientProtocol driven with bytes, no sockets (h11 style): legal sequences, illegal use,
pipelined reply matching, the RFC 2920 cleanup rules, and reusability after failures."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterable
from typing import cast

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.smtp import (
    ClientProtocol,
    Command,
    LocalProtocolError,
    RemoteProtocolError,
    Reply,
    ReplyEvent,
    State,
)
from engine.smtp.protocol import MAX_EHLO_EXTENSIONS
from engine.smtp.replies import MAX_REPLY_BYTES, MAX_REPLY_LINE
from engine.smtp.transaction import Txn

ALL_EXT = ("PIPELINING", "SIZE 10240000", "8BITMIME", "SMTPUTF8", "STARTTLS")
LOCKSTEP_EXT = ("SIZE 10240000", "8BITMIME")
BODY = b"Subject: hi\r\n\r\n..dot-stuffed\r\n"
WIRE = BODY + b".\r\n"


def ehlo_reply(extensions: Iterable[str]) -> bytes:
    lines = ["mx.example.net greets you", *extensions]
    out = b"".join(b"250-" + line.encode() + b"\r\n" for line in lines[:-1])
    return out + b"250 " + lines[-1].encode() + b"\r\n"


def ready(extensions: Iterable[str] = ALL_EXT) -> ClientProtocol:
    p = ClientProtocol()
    assert p.awaiting() is Command.GREETING
    p.receive_data(b"220 mx.example.net ESMTP\r\n")
    assert p.state is State.GREETED
    assert p.send_ehlo("client.example") == b"EHLO client.example\r\n"
    p.receive_data(ehlo_reply(extensions))
    assert p.state is State.READY
    assert p.is_reusable()
    return p


def codes(events: list[ReplyEvent]) -> list[tuple[Command | None, int]]:
    return [(e.command, e.reply.code) for e in events]


# ---------------------------------------------------------------- session setup


def test_ehlo_keywords_are_parsed_upper_case_with_params() -> None:
    p = ready(("pipelining", "Size 5000", "AUTH PLAIN LOGIN", "8BITMIME"))
    assert p.extensions == {
        "PIPELINING": "",
        "SIZE": "5000",
        "AUTH": "PLAIN LOGIN",
        "8BITMIME": "",
    }
    assert p.supports("size") and p.supports("Pipelining") and p.pipelining
    assert not p.supports("SMTPUTF8")
    assert p.size_limit == 5000
    assert p.greeting == Reply(220, ("mx.example.net ESMTP",))


@pytest.mark.parametrize(
    ("line", "limit"),
    # "SIZE \u00b2" (a superscript two) once escaped as a ValueError from int() (issue #14).
    [("SIZE", None), ("SIZE 0", None), ("SIZE x", None), ("SIZE \u00b2", None),
     ("SIZE 1" + "0" * 40, None)],
)  # fmt: skip
def test_size_without_usable_limit_means_no_limit(line: str, limit: int | None) -> None:
    assert ready((line,)).size_limit == limit


def test_ehlo_refused_with_5xx_allows_helo() -> None:
    p = ClientProtocol()
    p.receive_data(b"220 old.example\r\n")
    p.send_ehlo("client.example")
    p.receive_data(b"502 5.5.2 command not recognized\r\n")
    assert p.state is State.GREETED
    assert p.send_helo("client.example") == b"HELO client.example\r\n"
    p.receive_data(b"250 old.example\r\n")
    assert p.state is State.READY
    assert p.extensions == {}
    assert not p.pipelining


def test_ehlo_and_helo_refused_leaves_only_quit() -> None:
    p = ClientProtocol()
    p.receive_data(b"220 x\r\n")
    p.send_ehlo("c.example")
    p.receive_data(b"550 go away\r\n")
    p.send_helo("c.example")
    p.receive_data(b"550 still no\r\n")
    assert p.state is State.REJECTED
    assert not p.is_reusable()
    with pytest.raises(LocalProtocolError):
        p.begin_transaction("a@b.c", ["d@e.f"], BODY)
    assert p.send_quit() == b"QUIT\r\n"
    p.receive_data(b"221 bye\r\n")
    assert p.state is State.CLOSED


@pytest.mark.parametrize(
    ("greeting", "state"),
    [(b"554 no service\r\n", State.REJECTED), (b"421 too busy\r\n", State.CLOSED)],
)
def test_non_2xx_greeting(greeting: bytes, state: State) -> None:
    p = ClientProtocol()
    (event,) = p.receive_data(greeting)
    assert event.command is Command.GREETING
    assert p.state is state
    assert not p.is_reusable()
    with pytest.raises(LocalProtocolError):
        p.send_ehlo("c.example")


def test_multi_line_greeting_split_across_chunks() -> None:
    p = ClientProtocol()
    assert p.receive_data(b"220-mx.example.net\r\n220-") == []
    assert p.awaiting() is Command.GREETING
    (event,) = p.receive_data(b"more text\r\n220 ready\r\n")
    assert event.reply.lines == ("mx.example.net", "more text", "ready")


def test_illegal_calls_raise_and_change_nothing() -> None:
    p = ClientProtocol()
    with pytest.raises(LocalProtocolError, match="cannot send EHLO in state await-greeting"):
        p.send_ehlo("c.example")
    with pytest.raises(LocalProtocolError):
        p.begin_transaction("a@b.c", ["d@e.f"], BODY)
    with pytest.raises(LocalProtocolError):
        p.tls_established()
    assert p.state is State.AWAIT_GREETING
    p.receive_data(b"220 x\r\n")
    p.send_ehlo("c.example")
    with pytest.raises(LocalProtocolError):
        p.send_quit()  # a reply is outstanding
    with pytest.raises(LocalProtocolError):
        p.send_ehlo("c.example")
    assert p.state is State.AWAIT_EHLO
    assert p.awaiting() is Command.EHLO


def test_starttls_only_when_offered() -> None:
    with pytest.raises(LocalProtocolError, match="STARTTLS"):
        ready(("PIPELINING",)).send_starttls()


# ---------------------------------------------------------------- STARTTLS


def test_starttls_220_then_handshake_then_ehlo_again() -> None:
    p = ready()
    assert p.send_starttls() == b"STARTTLS\r\n"
    assert p.state is State.AWAIT_STARTTLS
    p.receive_data(b"220 2.0.0 go ahead\r\n")
    assert p.state is State.TLS_HANDSHAKE
    assert p.awaiting() is None
    p.tls_established()
    assert p.state is State.GREETED
    assert p.extensions == {}  # RFC 3207 §4.2: forget what was learnt in plaintext
    p.send_ehlo("c.example")
    p.receive_data(ehlo_reply(("PIPELINING",)))
    assert p.state is State.READY
    assert p.extensions == {"PIPELINING": ""}


def test_starttls_refused_continues_in_plaintext() -> None:
    p = ready()
    p.send_starttls()
    p.receive_data(b"454 4.7.0 TLS not available\r\n")
    assert p.state is State.READY
    assert p.is_reusable()


@pytest.mark.parametrize("extra", [b"250 injected\r\n", b"250-partial"])
def test_bytes_after_220_to_starttls_are_an_injection(extra: bytes) -> None:
    p = ready()
    p.send_starttls()
    with pytest.raises(RemoteProtocolError):
        p.receive_data(b"220 go ahead\r\n" + extra)
    assert p.state is State.BROKEN


# ---------------------------------------------------------------- AUTH (RFC 4954)

AUTH_EXT = ("PIPELINING", "AUTH LOGIN PLAIN", "8BITMIME")


def test_auth_plain_one_round_trip_then_transactions() -> None:
    p = ready(AUTH_EXT)
    line = p.send_auth("user", "pw")
    assert line == b"AUTH PLAIN " + base64.b64encode(b"\0user\0pw") + b"\r\n"
    assert (p.state, p.awaiting()) == (State.AWAIT_AUTH, Command.AUTH)
    assert not p.is_reusable()
    events = p.receive_data(b"235 2.7.0 Authentication successful\r\n")
    assert codes(events) == [(Command.AUTH, 235)]
    assert p.authenticated and p.is_reusable() and p.data_to_send() == b""
    assert p.begin_transaction("s@b.example", ["r@d.example"], BODY).startswith(b"MAIL FROM:")


def test_auth_login_answers_each_334_from_data_to_send() -> None:
    p = ready(("AUTH LOGIN",))
    assert p.send_auth("user", "pw") == b"AUTH LOGIN\r\n"
    p.receive_data(b"334 VXNlcm5hbWU6\r\n")
    assert p.data_to_send() == base64.b64encode(b"user") + b"\r\n"
    assert (p.state, p.awaiting()) == (State.AWAIT_AUTH, Command.AUTH)
    p.receive_data(b"334 UGFzc3dvcmQ6\r\n")
    assert p.data_to_send() == base64.b64encode(b"pw") + b"\r\n"
    p.receive_data(b"235 2.7.0 ok\r\n")
    assert p.authenticated and p.is_reusable()


@pytest.mark.parametrize("refusal", [b"535 5.7.8 bad credentials", b"454 4.7.0 try later"])
def test_auth_refused_leaves_the_session_ready_for_quit(refusal: bytes) -> None:
    p = ready(AUTH_EXT)
    p.send_auth("user", "wrong")
    p.receive_data(refusal + b"\r\n")
    assert not p.authenticated
    assert p.state is State.READY and p.last_reply is not None
    assert p.last_reply.code == int(refusal[:3])
    assert p.send_quit() == b"QUIT\r\n"


def test_a_third_challenge_gets_a_cancel() -> None:
    p = ready(("AUTH PLAIN",))
    p.send_auth("user", "pw")
    p.receive_data(b"334 \r\n")  # PLAIN already sent everything it has
    assert p.data_to_send() == b"*\r\n"
    p.receive_data(b"501 5.7.0 cancelled\r\n")
    assert not p.authenticated and p.state is State.READY


def test_auth_421_closes() -> None:
    p = ready(AUTH_EXT)
    p.send_auth("user", "pw")
    p.receive_data(b"421 4.7.0 go away\r\n")
    assert p.state is State.CLOSED and not p.authenticated
    assert p.closing_command is Command.AUTH


def test_auth_250_is_not_an_answer() -> None:
    p = ready(AUTH_EXT)
    p.send_auth("user", "pw")
    with pytest.raises(RemoteProtocolError, match="AUTH"):
        p.receive_data(b"250 ok\r\n")
    assert p.state is State.BROKEN and not p.authenticated


@pytest.mark.parametrize("extensions", [("PIPELINING",), ("AUTH CRAM-MD5",)])
def test_auth_without_a_mechanism_we_speak_raises_before_anything(
    extensions: tuple[str, ...],
) -> None:
    p = ready(extensions)
    with pytest.raises(LocalProtocolError, match="PLAIN, LOGIN"):
        p.send_auth("user", "pw")
    assert p.state is State.READY and p.awaiting() is None


def test_auth_only_when_ready() -> None:
    p = ClientProtocol()
    p.receive_data(b"220 hi\r\n")
    p.extensions = {"AUTH": "PLAIN"}
    with pytest.raises(LocalProtocolError):
        p.send_auth("user", "pw")


# ---------------------------------------------------------------- pipelined transactions


def test_pipelined_group_is_one_write_and_replies_match_in_order() -> None:
    p = ready()
    out = p.begin_transaction("a@b.example", ["x@d.example", "y@d.example"], BODY)
    assert out == (
        b"MAIL FROM:<a@b.example> SIZE=%d\r\n" % len(BODY)
        + b"RCPT TO:<x@d.example>\r\nRCPT TO:<y@d.example>\r\nDATA\r\n"
    )
    assert p.state is State.IN_TRANSACTION
    assert p.awaiting() is Command.MAIL
    assert not p.is_reusable()
    events = p.receive_data(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 unknown\r\n354 go\r\n")
    assert codes(events) == [
        (Command.MAIL, 250),
        (Command.RCPT, 250),
        (Command.RCPT, 550),
        (Command.DATA, 354),
    ]
    assert p.data_to_send() == WIRE
    assert p.data_to_send() == b""
    assert p.state is State.AWAIT_DATA_DONE
    assert p.awaiting() is Command.END_OF_DATA
    (event,) = p.receive_data(b"250 2.0.0 queued as 123\r\n")
    assert event.command is Command.END_OF_DATA
    assert p.state is State.READY and p.is_reusable()
    t = p.transaction()
    assert t is not None
    assert t.complete and t.delivered and t.accepted == 1
    assert t.mail == Reply(250, ("2.1.0 ok",))
    assert [r.code if r else None for r in t.rcpts] == [250, 550]
    assert t.data is not None and t.data.code == 354
    assert t.final == Reply(250, ("2.0.0 queued as 123",))
    assert not p.rset_owed


def test_pipelined_replies_byte_by_byte() -> None:
    p = ready()
    p.begin_transaction("a@b.example", ["x@d.example", "y@d.example"], BODY)
    stream = b"250 ok\r\n250-multi\r\n250 line\r\n451 later\r\n354 go\r\n"
    seen: list[tuple[Command | None, int]] = []
    for i in range(len(stream)):
        seen += codes(p.receive_data(stream[i : i + 1]))
        if i < len(stream) - 1:
            assert p.data_to_send() == b""  # nothing is due before the 354 is complete
    assert seen == [
        (Command.MAIL, 250),
        (Command.RCPT, 250),
        (Command.RCPT, 451),
        (Command.DATA, 354),
    ]
    assert p.data_to_send() == WIRE


def test_parameters_follow_ehlo() -> None:
    p = ready(("PIPELINING", "8BITMIME", "SMTPUTF8"))  # no SIZE
    out = p.begin_transaction("ä@b.example", ["x@d.example"], BODY, body_8bit=True, smtputf8=True)
    assert out.startswith("MAIL FROM:<ä@b.example> BODY=8BITMIME SMTPUTF8\r\n".encode())
    p2 = ready(("PIPELINING",))  # 8BITMIME not offered: no BODY= (RFC 6152 param unknown)
    assert p2.begin_transaction("a@b.example", ["x@d.example"], BODY, body_8bit=True).startswith(
        b"MAIL FROM:<a@b.example>\r\n"
    )


def test_all_recipients_refused_after_354_sends_a_lone_dot() -> None:
    # RFC 2920 §3.1: DATA got 354 although no RCPT succeeded: send "." alone.
    p = ready()
    p.begin_transaction("a@b.example", ["x@d.example", "y@d.example"], BODY)
    p.receive_data(b"250 ok\r\n550 no\r\n450 later\r\n354 go\r\n")
    assert p.data_to_send() == b".\r\n"
    assert p.awaiting() is Command.END_OF_DATA
    p.receive_data(b"554 no valid recipients\r\n")
    assert p.is_reusable()
    assert not p.rset_owed  # the "." ended the server's transaction
    t = p.transaction()
    assert t is not None
    assert [r.code if r else None for r in t.rcpts] == [550, 450]
    assert t.data is None and t.final is None  # echoes of the refusals, not facts
    assert not t.delivered


def test_all_recipients_refused_and_data_refused_owes_a_pipelined_rset() -> None:
    p = ready()
    p.begin_transaction("a@b.example", ["x@d.example"], BODY)
    p.receive_data(b"250 ok\r\n550 no\r\n503 5.5.1 need RCPT\r\n")
    assert p.data_to_send() == b""
    assert p.is_reusable() and p.rset_owed
    t = p.transaction()
    assert t is not None and t.data is None and t.complete
    out = p.begin_transaction("a@b.example", ["z@d.example"], BODY)
    assert out.startswith(b"RSET\r\nMAIL FROM:<a@b.example>")
    assert p.awaiting() is Command.RSET
    assert p.state is State.IN_TRANSACTION
    events = p.receive_data(b"250 reset\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    assert codes(events)[0] == (Command.RSET, 250)
    assert p.data_to_send() == WIRE
    p.receive_data(b"250 queued\r\n")
    t = p.transaction()
    assert t is not None and t.delivered and t.rset == Reply(250, ("reset",))
    assert not p.rset_owed


def test_refused_mail_ignores_the_echoed_rcpt_and_data_replies() -> None:
    p = ready()
    p.begin_transaction("a@b.example", ["x@d.example", "y@d.example"], BODY)
    p.receive_data(b"552 5.3.4 too big\r\n503 need MAIL\r\n503 need MAIL\r\n503 need RCPT\r\n")
    assert p.data_to_send() == b""
    t = p.transaction()
    assert t is not None
    assert t.mail is not None and t.mail.code == 552
    assert t.rcpts == (None, None) and t.data is None and t.final is None
    assert p.is_reusable() and p.rset_owed


def test_data_refused_with_accepted_recipients_is_recorded_and_owes_rset() -> None:
    p = ready()
    p.begin_transaction("a@b.example", ["x@d.example"], BODY)
    p.receive_data(b"250 ok\r\n250 ok\r\n451 4.3.0 try later\r\n")
    t = p.transaction()
    assert t is not None and t.data == Reply(451, ("4.3.0 try later",)) and t.final is None
    assert p.is_reusable() and p.rset_owed


def test_final_reply_refusal_needs_no_rset() -> None:
    p = ready()
    p.begin_transaction("a@b.example", ["x@d.example"], BODY)
    p.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    p.data_to_send()
    p.receive_data(b"554 5.7.1 spam\r\n")
    t = p.transaction()
    assert t is not None and t.final is not None and t.final.code == 554 and not t.delivered
    assert p.is_reusable() and not p.rset_owed


def test_pipelined_rset_refused_breaks_the_session_after_the_transaction() -> None:
    p = ready()
    p.begin_transaction("a@b.example", ["x@d.example"], BODY)
    p.receive_data(b"250 ok\r\n250 ok\r\n503 no\r\n")  # owes RSET now
    p.begin_transaction("a@b.example", ["x@d.example"], BODY)
    p.receive_data(b"500 what\r\n503 nested MAIL\r\n503 need MAIL\r\n503 need RCPT\r\n")
    assert p.state is State.BROKEN
    assert not p.is_reusable()
    t = p.transaction()
    assert t is not None and t.rset is not None and t.rset.code == 500
    assert not t.complete


# ---------------------------------------------------------------- lock-step


def test_lockstep_sends_one_command_per_reply() -> None:
    p = ready(LOCKSTEP_EXT)
    out = p.begin_transaction("a@b.example", ["x@d.example", "y@d.example"], BODY)
    assert out == b"MAIL FROM:<a@b.example> SIZE=%d\r\n" % len(BODY)
    assert p.awaiting() is Command.MAIL
    p.receive_data(b"250 ok\r\n")
    assert p.data_to_send() == b"RCPT TO:<x@d.example>\r\n"
    assert p.awaiting() is Command.RCPT
    p.receive_data(b"550 no\r\n")
    assert p.data_to_send() == b"RCPT TO:<y@d.example>\r\n"
    p.receive_data(b"250 ok\r\n")
    assert p.data_to_send() == b"DATA\r\n"
    assert p.awaiting() is Command.DATA
    p.receive_data(b"354 go\r\n")
    assert p.data_to_send() == WIRE
    p.receive_data(b"250 queued\r\n")
    assert p.data_to_send() == b""
    assert p.is_reusable()
    t = p.transaction()
    assert t is not None and t.delivered and [r.code if r else 0 for r in t.rcpts] == [550, 250]


def test_lockstep_mail_refused_sends_nothing_more_then_rset_alone() -> None:
    p = ready(LOCKSTEP_EXT)
    p.begin_transaction("a@b.example", ["x@d.example"], BODY)
    p.receive_data(b"451 greylisted\r\n")
    assert p.data_to_send() == b""
    assert p.is_reusable() and p.rset_owed
    t = p.transaction()
    assert t is not None and t.rcpts == (None,)
    # Without PIPELINING the RSET goes alone and MAIL waits for its reply.
    assert p.begin_transaction("a@b.example", ["x@d.example"], BODY) == b"RSET\r\n"
    assert p.state is State.AWAIT_RSET
    p.receive_data(b"250 ok\r\n")
    assert p.data_to_send().startswith(b"MAIL FROM:")
    assert p.state is State.IN_TRANSACTION


def test_lockstep_all_recipients_refused_skips_data() -> None:
    p = ready(LOCKSTEP_EXT)
    p.begin_transaction("a@b.example", ["x@d.example"], BODY)
    p.receive_data(b"250 ok\r\n")
    p.data_to_send()
    p.receive_data(b"550 no\r\n")
    assert p.data_to_send() == b""
    assert p.is_reusable() and p.rset_owed


def test_lockstep_rset_refused_is_broken_and_mail_never_sent() -> None:
    p = ready(LOCKSTEP_EXT)
    p.begin_transaction("a@b.example", ["x@d.example"], BODY)
    p.receive_data(b"451 no\r\n")
    p.begin_transaction("a@b.example", ["x@d.example"], BODY)
    p.receive_data(b"500 RSET? never heard of it\r\n")
    assert p.data_to_send() == b""
    assert p.state is State.BROKEN
    t = p.transaction()
    assert t is not None and t.mail is None and t.rset is not None


# ---------------------------------------------------------------- 421, EOF, garbage


def test_421_mid_group_closes_and_ignores_what_follows() -> None:
    p = ready()
    p.begin_transaction("a@b.example", ["x@d.example", "y@d.example"], BODY)
    events = p.receive_data(b"250 ok\r\n421 4.3.2 shutting down\r\n503 x\r\n")
    assert codes(events) == [(Command.MAIL, 250), (Command.RCPT, 421)]
    assert p.state is State.CLOSED
    assert p.closing_reply == Reply(421, ("4.3.2 shutting down",))
    assert p.closing_command is Command.RCPT
    assert p.data_to_send() == b""
    assert p.awaiting() is None
    assert p.receive_data(b"250 late\r\n") == []
    t = p.transaction()
    assert t is not None and [r.code if r else None for r in t.rcpts] == [421, None]
    assert not p.is_reusable()


def test_unsolicited_421_while_idle_closes() -> None:
    p = ready()
    (event,) = p.receive_data(b"421 idle timeout\r\n")
    assert event.command is None and p.closing_command is None
    assert p.state is State.CLOSED and not p.is_reusable()


def test_unsolicited_other_reply_is_a_remote_error() -> None:
    p = ready()
    with pytest.raises(RemoteProtocolError, match="unsolicited"):
        p.receive_data(b"250 surprise\r\n")
    assert p.state is State.BROKEN


def test_garbage_during_transaction_breaks_it_and_keeps_earlier_replies() -> None:
    p = ready()
    p.begin_transaction("a@b.example", ["x@d.example"], BODY)
    p.receive_data(b"250 ok\r\n")
    with pytest.raises(RemoteProtocolError):
        p.receive_data(b"HTTP/1.1 400 Bad Request\r\n")
    assert p.state is State.BROKEN
    t = p.transaction()
    assert t is not None and t.mail is not None and not t.complete


def test_eof_idle_is_closed_and_eof_mid_transaction_is_broken() -> None:
    p = ready()
    p.receive_eof()
    assert p.state is State.CLOSED
    p = ready()
    p.begin_transaction("a@b.example", ["x@d.example"], BODY)
    p.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    p.receive_eof()
    assert p.state is State.BROKEN
    t = p.transaction()
    assert t is not None and t.data is not None and t.final is None and not t.complete


def test_abort_breaks_for_good() -> None:
    p = ready()
    p.begin_transaction("a@b.example", ["x@d.example"], BODY)
    p.abort()
    assert p.state is State.BROKEN and p.awaiting() is None
    assert p.receive_data(b"250 ok\r\n") == []
    with pytest.raises(LocalProtocolError):
        p.send_quit()


def test_quit() -> None:
    p = ready()
    assert p.send_quit() == b"QUIT\r\n"
    assert p.awaiting() is Command.QUIT
    p.receive_data(b"221 2.0.0 bye\r\n")
    assert p.state is State.CLOSED


# ---------------------------------------------------------------- begin_transaction checks


@pytest.mark.parametrize(
    ("sender", "rcpts", "body", "kwargs", "match"),
    [
        ("a@b.example", ["x@d.example"], BODY, {"smtputf8": True}, "SMTPUTF8"),
        ("a@b.example", [], BODY, {}, "at least one"),
        ("a@b.example", ["ok@d.example", "x@d>\r\nRSET"], BODY, {}, "forbidden"),
        ("a@b.example", ["ok@d.example"], b"no final crlf", {}, "CRLF"),
        ("jörg@b.example", ["x@d.example"], BODY, {}, "SMTPUTF8"),
    ],
)
def test_bad_transactions_are_refused_before_any_byte(
    sender: str, rcpts: list[str], body: bytes, kwargs: dict[str, bool], match: str
) -> None:
    p = ready(("PIPELINING", "SIZE 100"))
    with pytest.raises(LocalProtocolError, match=match):
        p.begin_transaction(sender, rcpts, body, **kwargs)
    assert p.is_reusable() and not p.rset_owed and p.transaction() is None
    assert p.data_to_send() == b""


def test_empty_body_sends_just_the_dot() -> None:
    p = ready()
    p.begin_transaction("", ["x@d.example"], b"")
    p.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    assert p.data_to_send() == b".\r\n"


# ---------------------------------------------------------------- reusability matrix


def _run(p: ClientProtocol, *chunks: bytes) -> None:
    p.begin_transaction("a@b.example", ["x@d.example", "y@d.example"], BODY)
    for chunk in chunks:
        p.receive_data(chunk)
        p.data_to_send()


@pytest.mark.parametrize("pipelining", [True, False])
@pytest.mark.parametrize(
    ("replies", "reusable", "rset_owed"),
    [
        ([b"250 a\r\n", b"250 b\r\n", b"250 c\r\n", b"354 d\r\n", b"250 e\r\n"], True, False),
        ([b"550 mail refused\r\n"], True, True),
        ([b"250 a\r\n", b"550 b\r\n", b"550 c\r\n"], True, True),  # lock-step: no DATA
        ([b"250 a\r\n", b"250 b\r\n", b"250 c\r\n", b"554 data refused\r\n"], True, True),
        ([b"250 a\r\n", b"250 b\r\n", b"250 c\r\n", b"354 d\r\n", b"554 final\r\n"], True, False),
        ([b"250 a\r\n", b"421 bye\r\n"], False, True),
        ([b"250 a\r\n", b"250 b\r\n", b"250 c\r\n", b"354 d\r\n", b"421 bye\r\n"], False, False),
    ],
)
def test_reusability_after_every_outcome(
    pipelining: bool, replies: list[bytes], reusable: bool, rset_owed: bool
) -> None:
    p = ready(ALL_EXT if pipelining else LOCKSTEP_EXT)
    if pipelining and replies == [b"550 mail refused\r\n"]:
        replies = [*replies, b"503 a\r\n", b"503 b\r\n", b"503 c\r\n"]
    if pipelining and replies == [b"250 a\r\n", b"550 b\r\n", b"550 c\r\n"]:
        replies = [*replies, b"503 need RCPT\r\n"]
    _run(p, *replies)
    assert p.awaiting() is None
    assert p.is_reusable() is reusable
    assert p.rset_owed is rset_owed


# ---------------------------------------------------------------- the adapter's fast paths


@settings(max_examples=200, deadline=None)
@given(
    cuts=st.lists(st.integers(0, 200), max_size=8),
    final=st.sampled_from([b"250 2.0.0 queued\r\n", b"451 4.3.0 later\r\n", b"421 bye\r\n"]),
    pipelining=st.booleans(),
)
def test_feed_is_receive_data_without_the_events(
    cuts: list[int], final: bytes, pipelining: bool
) -> None:
    stream = b"250 2.1.0 ok\r\n250-multi\r\n250 line\r\n550 5.1.1 no\r\n354 go\r\n" + final
    ext = ALL_EXT if pipelining else LOCKSTEP_EXT
    a, b = ready(ext), ready(ext)
    out_a = a.begin_transaction("s@b.example", ["x@d.example", "y@d.example"], BODY)
    out_b = b.begin_transaction("s@b.example", ["x@d.example", "y@d.example"], BODY)
    assert out_a == out_b
    bounds = sorted({0, len(stream), *(min(c, len(stream)) for c in cuts)})
    for start, end in itertools.pairwise(bounds):
        chunk = stream[start:end]
        try:
            events = a.receive_data(chunk)
        except RemoteProtocolError:
            # Lock-step: a chunk holding a reply to a command not yet written (both
            # replies in one chunk) is refused by both paths alike.
            with pytest.raises(RemoteProtocolError):
                b.feed(chunk)
            assert a.state is b.state is State.BROKEN
            return
        assert b.feed(chunk) == len(events)
        assert (a.state, a.awaiting(), a.data_to_send()) == (
            b.state,
            b.awaiting(),
            b.data_to_send(),
        )
    assert a.transaction() == b.transaction()
    assert a.is_reusable() == b.is_reusable()


def test_mail_lines_follow_each_size_and_a_bad_sender_fails_every_time() -> None:
    p = ready(("PIPELINING", "SIZE 10240000"))
    for size in (10, 11, 10):
        body = b"x" * (size - 2) + b"\r\n"
        out = p.begin_transaction("a@b.example", ["x@d.example"], body)
        assert out.startswith(b"MAIL FROM:<a@b.example> SIZE=%d\r\n" % size)
        p.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
        assert p.data_to_send() == body + b".\r\n"
        p.receive_data(b"250 queued\r\n")
        assert p.is_reusable()
    for _ in range(2):  # never cached: the check runs again
        with pytest.raises(LocalProtocolError, match="forbidden"):
            p.begin_transaction("a b@b.example", ["x@d.example"], BODY)
    assert p.is_reusable() and p.transaction() is not None and p.transaction().delivered


def test_size_limit_follows_each_ehlo() -> None:
    p = ready(("SIZE 5000", "STARTTLS"))
    assert p.size_limit == 5000
    p.send_starttls()
    p.receive_data(b"220 go ahead\r\n")
    p.tls_established()
    assert p.size_limit is None  # forgotten with the rest (RFC 3207 §4.2)
    p.send_ehlo("c.example")
    p.receive_data(ehlo_reply(("SIZE 100",)))
    assert p.size_limit == 100


# ------------------------------------------------- replies of a class the command cannot get


@pytest.mark.parametrize(
    ("reply", "command"),
    [
        (b"354 go ahead\r\n", Command.MAIL),  # RFC 5321 §4.3.2: MAIL is 2xx or a refusal
        (b"250 2.0.0 ok\r\n", Command.DATA),  # DATA must get 354: no content would be sent
        (b"334 what?\r\n", Command.RCPT),
    ],
)
def test_a_reply_the_command_cannot_get_breaks_the_session(reply: bytes, command: Command) -> None:
    """Finding 4 of issue #14: such a reply is never read as success."""
    p = ready()
    p.begin_transaction("s@a.test", ["r@b.test"], BODY)
    good = {Command.MAIL: b"", Command.RCPT: b"250 ok\r\n", Command.DATA: b"250 ok\r\n250 ok\r\n"}
    with pytest.raises(RemoteProtocolError, match=f"unexpected reply to {command.value}"):
        p.receive_data(good[command] + reply)
    assert p.state is State.BROKEN and not p.is_reusable()
    assert p.broken_at is command
    txn = p.transaction()
    assert txn is not None and not txn.delivered and txn.final is None


def test_a_3xx_to_end_of_data_is_not_delivered() -> None:
    p = ready()
    p.begin_transaction("s@a.test", ["r@b.test"], BODY)
    p.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    assert p.data_to_send() == WIRE
    with pytest.raises(RemoteProtocolError):
        p.receive_data(b"354 again\r\n")
    txn = p.transaction()
    assert txn is not None and not txn.delivered


@pytest.mark.parametrize("greeting", [b"354 hi\r\n", b"334 hi\r\n"])
def test_a_3xx_greeting_is_a_protocol_error(greeting: bytes) -> None:
    p = ClientProtocol()
    with pytest.raises(RemoteProtocolError):
        p.receive_data(greeting)
    assert p.state is State.BROKEN and p.broken_at is Command.GREETING


# -- hostile servers (issue #11) ------------------------------------------------------------


def test_a_250_to_end_of_data_before_the_content_was_taken_is_refused() -> None:
    """ "354" and "250" in one chunk: the 250 cannot answer content not yet written."""
    p = ready()
    p.begin_transaction("s@b.example", ["x@d.example"], BODY)
    with pytest.raises(RemoteProtocolError, match="before the content was sent"):
        p.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n250 2.0.0 queued\r\n")
    assert p.state is State.BROKEN
    txn = p.transaction()
    assert txn is not None and not txn.delivered and txn.final is None


def test_a_reply_to_a_lock_step_command_not_yet_written_is_refused() -> None:
    p = ready(LOCKSTEP_EXT)
    p.begin_transaction("s@b.example", ["x@d.example"], BODY)
    with pytest.raises(RemoteProtocolError, match="before RCPT was sent"):
        p.receive_data(b"250 mail ok\r\n250 rcpt ok\r\n")
    assert p.state is State.BROKEN


def test_a_250_to_data_is_a_protocol_error_not_a_delivery() -> None:
    p = ready()
    p.begin_transaction("s@b.example", ["x@d.example"], BODY)
    with pytest.raises(RemoteProtocolError, match="unexpected reply to DATA"):
        p.receive_data(b"250 ok\r\n250 ok\r\n250 ok\r\n")
    assert p.data_to_send() == b""  # the content is never sent


def test_garbage_after_a_pipelined_group_breaks_the_session() -> None:
    p = ready()
    p.begin_transaction("s@b.example", ["x@d.example"], BODY)
    p.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    assert p.data_to_send() == WIRE
    with pytest.raises(RemoteProtocolError, match="unsolicited"):
        p.receive_data(b"250 queued\r\n250 extra\r\n")
    assert p.state is State.BROKEN


def test_bytes_before_the_greeting_break_the_session() -> None:
    p = ClientProtocol()
    with pytest.raises(RemoteProtocolError, match="malformed"):
        p.receive_data(b"\x16\x03\x01 hello\r\n220 mx ESMTP\r\n")


def test_an_ehlo_over_the_extension_limit_is_refused() -> None:
    p = ClientProtocol()
    p.receive_data(b"220 mx ESMTP\r\n")
    p.send_ehlo("client.example")
    many = [f"X-EXT{i}" for i in range(MAX_EHLO_EXTENSIONS + 1)]
    with pytest.raises(RemoteProtocolError, match="extensions"):
        p.receive_data(ehlo_reply(many))
    q = ClientProtocol()
    q.receive_data(b"220 mx ESMTP\r\n")
    q.send_ehlo("client.example")
    q.receive_data(ehlo_reply(many[:MAX_EHLO_EXTENSIONS]))
    assert q.is_reusable() and len(q.extensions) == MAX_EHLO_EXTENSIONS


def test_a_5000_line_ehlo_is_refused_at_the_reply_line_limit() -> None:
    p = ClientProtocol()
    p.receive_data(b"220 mx ESMTP\r\n")
    p.send_ehlo("client.example")
    with pytest.raises(RemoteProtocolError, match="lines"):
        p.receive_data(ehlo_reply([f"X-{i}" for i in range(5000)]))


# -- fuzz: adversarial byte streams against the client (issue #11) ------------------------
#
# A model server reads what the client wrote and answers each command with a reply whose
# text names it ("RCPT#3"); an adversary interleaves random bytes, replies to nothing,
# endless multi-line replies and reordered answers, and cuts the stream anywhere.  The
# client must: raise nothing but RemoteProtocolError, hold bounded buffers, and never
# attribute a reply to any command but the one it names — in particular never to a
# command whose bytes it had not yet handed out.  The client keeps up to `depth`
# transactions in flight (engine.smtp.pipeline), so the stream crosses transactions: a
# reply must also land in the transaction it answers, in order, and a transaction still
# waiting behind another gets no reply at all.

_CODES = {
    "EHLO": (250, 250, 550),
    "MAIL": (250, 250, 451, 550),
    "RCPT": (250, 250, 250, 450, 550),
    "DATA": (354, 354, 451, 554),
    ".": (250, 250, 451, 552),
    "RSET": (250,),
    "QUIT": (221,),
}
_HELD_MAX = MAX_REPLY_BYTES + MAX_REPLY_LINE + 1


class ModelServer:
    """Parses the client's output into commands, in order, each with its tag."""

    def __init__(self, pipelining: bool) -> None:
        self.pipelining = pipelining
        self.seen: list[str] = []  # tags of commands the client has written, unanswered
        self.counts: dict[str, int] = {}
        self._buf = b""
        self._in_content = False

    def client_wrote(self, data: bytes) -> None:
        self._buf += data
        while b"\r\n" in self._buf:
            line, self._buf = self._buf.split(b"\r\n", 1)
            if self._in_content:
                if line == b".":
                    self._in_content = False
                    self._add(".")
                continue
            verb = line.split(b" ", 1)[0].split(b":", 1)[0].decode().upper()
            self._add(verb)

    def _add(self, verb: str) -> None:
        n = self.counts[verb] = self.counts.get(verb, 0) + 1
        self.seen.append(f"{verb}#{n}")

    def answer(self, code: int | None, index: int = 0) -> bytes:
        tag = self.seen.pop(index)
        verb = tag.split("#")[0]
        if code is None:
            code = _CODES[verb][0]
        if verb == "DATA" and code == 354:
            self._in_content = True
        if verb == "EHLO" and code == 250:
            pipelining = "250-PIPELINING\r\n" if self.pipelining else ""
            return f"250-{tag}\r\n{pipelining}250 SIZE 1000000\r\n".encode()
        return f"{code} {tag}\r\n".encode()


_ADVERSARY = st.one_of(
    st.tuples(st.just("deliver"), st.just(0)),
    st.tuples(st.just("deliver"), st.just(0)),
    st.tuples(st.just("answer"), st.integers(0, 4)),
    st.tuples(st.just("answer"), st.integers(0, 4)),
    # A mostly sane server answers every command it has read, as a pipelining one does:
    # transactions complete, so the pipeline crosses from one to the next.
    st.tuples(st.just("answer_all"), st.integers(0, 7)),
    st.tuples(st.just("answer_all"), st.integers(0, 7)),
    st.tuples(st.just("reorder"), st.integers(1, 3)),
    st.tuples(st.just("noise"), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("unsolicited"), st.sampled_from([250, 354, 421, 550])),
    st.tuples(st.just("flood"), st.integers(1, 500)),
    st.tuples(st.just("endless"), st.integers(150, 400)),
)


class Ledger:
    """What the client has written and what it has taken as answers, per command."""

    def __init__(self) -> None:
        self.sent: dict[str, int] = {"GREETING": 1}
        self.answered: dict[str, int] = {}
        self.in_sync = True  # no lie (untagged or reordered reply) taken yet

    def check(self, p: ClientProtocol, events: list[ReplyEvent]) -> None:
        for event in events:
            if event.command is None:
                assert event.reply.code == 421  # the one reply that may come unasked
                continue
            verb = event.command.value.upper()
            n = self.answered[verb] = self.answered.get(verb, 0) + 1
            # Whatever the server says, no reply is ever taken for a command whose bytes
            # the client had not handed out yet.
            assert n <= self.sent.get(verb, 0), f"reply taken for {verb} #{n} before it was sent"
            tag = event.reply.text.split(" ")[0].split("-")[0]
            if "#" not in tag:
                self.in_sync = False  # a lie the client cannot tell from an answer
            elif self.in_sync:
                assert tag == f"{verb}#{n}", f"{tag} taken for {verb}#{n}"
        assert p._parser.held <= _HELD_MAX
        assert len(p.extensions) <= MAX_EHLO_EXTENSIONS
        txn = p.transaction()
        if txn is not None and self.in_sync:
            tags = [r.text.split(" ")[0] for r in txn.rcpts if r is not None]
            numbers = [int(t.split("#")[1]) for t in tags if t.startswith("RCPT#")]
            assert len(numbers) == len(tags) and numbers == sorted(numbers)

    def check_txns(self, txns: list[Txn]) -> None:
        """Across transactions, in the order they were begun: replies in increasing
        order, none for a transaction that was never written."""
        last: dict[str, int] = {}
        dots = 0  # "."s written so far, in transaction order
        for txn in txns:
            if not txn.written:
                assert txn.mail is None and txn.rcpt_seen == 0 and txn.final is None
                continue
            if txn.done and txn.result is not None and txn.result.complete and txn.content_sent:
                assert txn.final is not None, "finished without the reply to its content"
            dots += txn.eod_sent
            if self.in_sync and txn.final is not None and txn.final.code != 421:
                assert txn.final.text.split(" ")[0] == f".#{dots}", "another one's final reply"
            if not self.in_sync:
                continue
            replies = [txn.rset, txn.mail, *txn.rcpts, txn.data, txn.final]
            for reply in replies:
                if reply is None or reply.code == 421:
                    continue
                verb, _, n = reply.text.split(" ")[0].partition("#")
                if n.isdigit():
                    assert int(n) > last.get(verb, 0), f"{verb}#{n} out of order"
                    last[verb] = int(n)


_PREMATURE = [  # "354" and a lie in one chunk: the lie must not answer the content
    ("answer", 0),
    ("deliver", 0),
    ("answer", 0),
    ("deliver", 0),
    ("answer", 0),
    ("answer", 0),
    ("answer", 0),
    ("unsolicited", 250),
    ("deliver", 0),
]


@settings(max_examples=600, deadline=None)
@example(actions=_PREMATURE, cuts=[64], rcpts=1, pipelining=True, depth=1)
@example(actions=_PREMATURE, cuts=[64], rcpts=1, pipelining=True, depth=2)
@given(
    actions=st.lists(_ADVERSARY, min_size=1, max_size=40),
    cuts=st.lists(st.integers(1, 64), min_size=1, max_size=8),
    rcpts=st.integers(1, 5),
    pipelining=st.booleans(),
    depth=st.integers(1, 3),
)
def test_fuzzed_server_streams_never_misattribute_or_grow(
    actions: list[tuple[str, object]], cuts: list[int], rcpts: int, pipelining: bool, depth: int
) -> None:
    fuzz_session(actions, cuts, rcpts, pipelining, depth)


# A mostly sane pipelining server, now and then lying or closing: transactions complete,
# so up to `depth` of them cross on the wire, and the lies land mid-pipeline.
_SANE_MOVES = ["answer_all"] * 6 + ["deliver"] * 6 + ["answer", "reorder", "unsolicited", "noise"]


def _sane_move(move: tuple[str, int]) -> tuple[str, object]:
    verb, arg = move
    if verb == "unsolicited":
        return verb, (421, 250, 354, 550)[arg % 4]
    if verb == "noise":
        return verb, b"\xff garbage"[: arg + 1]
    return verb, arg


_MOSTLY_SANE = st.tuples(st.sampled_from(_SANE_MOVES), st.integers(0, 7)).map(_sane_move)


@settings(max_examples=400, deadline=None)
@given(
    actions=st.lists(_MOSTLY_SANE, min_size=10, max_size=80),
    cuts=st.lists(st.integers(1, 200), min_size=1, max_size=8),
    rcpts=st.integers(1, 3),
    depth=st.integers(2, 3),
)
def test_fuzzed_pipelines_cross_transactions_in_order(
    actions: list[tuple[str, object]], cuts: list[int], rcpts: int, depth: int
) -> None:
    fuzz_session(actions, cuts, rcpts, True, depth)


def fuzz_session(
    actions: list[tuple[str, object]], cuts: list[int], rcpts: int, pipelining: bool, depth: int
) -> None:
    """Drive a ClientProtocol against ModelServer as `actions` say; assert the Ledger's
    rules after every chunk."""
    p = ClientProtocol()
    txns: list[Txn] = []
    server = ModelServer(pipelining)
    server.seen.append("GREETING#1")
    ledger = Ledger()
    cut = itertools.cycle(cuts)

    def write(data: bytes) -> None:
        server.client_wrote(data)
        ledger.sent.update(server.counts)

    def deliver(data: bytes) -> bool:
        """Hand `data` to the client in random cuts, taking its output after each, as the
        wire does; False once the client has broken or closed."""
        while data:
            size = next(cut)
            chunk, data = data[:size], data[size:]
            try:
                events = p.receive_data(chunk)
            except RemoteProtocolError:
                assert p.state is State.BROKEN
                assert p._parser.held <= _HELD_MAX
                return False
            ledger.check(p, events)
            ledger.check_txns(txns)
            out = p.data_to_send()
            if out:
                write(out)
            if p.state in (State.BROKEN, State.CLOSED):
                assert all(t.done for t in txns) and p.in_flight == 0
                return False
        return True

    pending = b""
    for action, arg in actions:
        if p.state in (State.BROKEN, State.CLOSED):
            break
        # The client's own moves: EHLO after the greeting, a transaction when ready.
        if p.state is State.GREETED and not p.awaiting():
            write(p.send_ehlo("client.example"))
        else:
            while p.can_begin() and p.in_flight < depth:
                to = [f"r{i}@d.example" for i in range(rcpts)]
                txns.append(p.start_transaction("s@b.example", to, BODY))
                out = p.data_to_send()
                if out:
                    write(out)
        if action == "answer" and server.seen:
            verb = server.seen[0].split("#")[0].replace("GREETING", "EHLO")
            codes = (220,) if server.seen[0].startswith("GREETING") else _CODES[verb]
            code = codes[int(cast(int, arg)) % len(codes)]
            if server.seen[0].startswith("GREETING"):
                server.seen.pop(0)
                pending += b"220 GREETING#1\r\n"
            else:
                pending += server.answer(code)
        elif action == "answer_all":
            while server.seen:
                if server.seen[0].startswith("GREETING"):
                    server.seen.pop(0)
                    pending += b"220 GREETING#1\r\n"
                    continue
                verb = server.seen[0].split("#")[0]
                # Mostly the first (success) code; arg picks which command is refused.
                index = 0 if len(server.seen) % 8 != int(cast(int, arg)) else 2
                pending += server.answer(_CODES[verb][index % len(_CODES[verb])])
        elif action == "reorder" and len(server.seen) > 1:
            ledger.in_sync = False  # RFC 2920 §3.1 wants replies in order; this is a lie
            pending += server.answer(None, min(int(cast(int, arg)), len(server.seen) - 1))
        elif action == "noise":
            pending += cast(bytes, arg)
        elif action == "unsolicited":
            pending += f"{arg} UNSOLICITED\r\n".encode()
        elif action == "flood":
            pending += b"250 UNSOLICITED\r\n" * int(cast(int, arg))
        elif action == "endless":
            pending += b"250-UNSOLICITED xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n" * int(
                cast(int, arg)
            )
        if action == "deliver" or len(pending) > 4096:
            if not deliver(pending):
                return
            pending = b""
    deliver(pending)
