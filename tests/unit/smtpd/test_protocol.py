"""ServerProtocol fed with bytes, no sockets: sequencing, pipelining, the end of DATA and
the smuggling probes, the size and line limits, relay rules, AUTH, STARTTLS, error
counting; and a property: any split of the input gives the same replies and events."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.smtpd.events import (
    Authenticate,
    AuthResult,
    Close,
    Event,
    MessageReceived,
    Peer,
    Refused,
    Send,
    ServerPolicy,
    StartTls,
    State,
)
from engine.smtpd.protocol import ServerProtocol
from engine.smtpd.replies import Refusal

POLICY = ServerPolicy(hostname="mx.volley.test", max_message_size=10_000, max_recipients=3)
TRUSTED = Peer("127.0.0.1", trusted=True, loopback=True)
STRANGER = Peer("192.0.2.7", trusted=False, loopback=False)
MESSAGE = b"From: a@sender.test\r\nSubject: hi\r\n\r\nbody\r\n..dot line\r\n"


def sent(events: list[Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Send))


def codes(events: list[Event]) -> list[str]:
    return [line[:3].decode() for line in sent(events).split(b"\r\n") if line[3:4] == b" "]


def refusals(events: list[Event]) -> list[Refusal]:
    return [e.reason for e in events if isinstance(e, Refused)]


def session(policy: ServerPolicy = POLICY, peer: Peer = TRUSTED) -> ServerProtocol:
    p = ServerProtocol(policy, peer)
    assert p.greeting() == f"220 {policy.hostname} ESMTP Volley\r\n".encode()
    assert codes(p.feed(b"EHLO client.test\r\n")) == ["250"]
    return p


def received(events: list[Event]) -> MessageReceived:
    (msg,) = [e for e in events if isinstance(e, MessageReceived)]
    return msg


def test_a_transaction_hands_out_the_message_in_wire_form_and_answers_what_it_is_told() -> None:
    p = session()
    assert codes(p.feed(b"MAIL FROM:<a@sender.test>\r\n")) == ["250"]
    assert codes(p.feed(b"RCPT TO:<b@dest.test>\r\n")) == ["250"]
    assert codes(p.feed(b"DATA\r\n")) == ["354"]
    events = p.feed(MESSAGE + b".\r\n")
    msg = received(events)
    assert msg.data == MESSAGE  # still dot-stuffed: the spool's wire form
    env = msg.envelope
    assert (env.sender, env.recipients, env.local_recipients) == (
        "a@sender.test",
        ("b@dest.test",),
        (),
    )
    assert (env.helo, env.esmtp, env.tls, env.auth_user, env.client) == (
        "client.test",
        True,
        False,
        None,
        "127.0.0.1",
    )
    assert p.state is State.WAIT
    assert p.feed(b"NOOP\r\n") == []  # read, not handled while the message is answered
    done = p.finish_message(b"250 2.0.0 Ok: queued as X\r\n", accepted=True)
    assert sent(done) == b"250 2.0.0 Ok: queued as X\r\n250 2.0.0 Ok\r\n"
    assert p.state is State.COMMAND


def test_a_pipelined_group_gets_its_replies_in_order_in_one_write() -> None:
    p = session()
    events = p.feed(
        b"MAIL FROM:<a@sender.test>\r\nRCPT TO:<b@dest.test>\r\nRCPT TO:<bad>\r\n"
        b"RCPT TO:<c@dest.test>\r\nDATA\r\n"
    )
    assert [e for e in events if isinstance(e, Send)] == [events[-1]]
    assert codes(events) == ["250", "250", "553", "250", "354"]
    assert received(p.feed(b"x\r\n.\r\n")).envelope.recipients == ("b@dest.test", "c@dest.test")


def test_ehlo_offers_starttls_with_a_certificate_and_auth_only_over_tls_or_loopback() -> None:
    policy = ServerPolicy("mx", 100, 10, auth_enabled=True, starttls=True)
    remote = ServerProtocol(policy, STRANGER).feed(b"EHLO c\r\n")
    text = sent(remote).decode()
    for keyword in ("PIPELINING", "SIZE 100", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"):
        assert keyword in text
    assert "STARTTLS" in text and "AUTH" not in text
    local = sent(ServerProtocol(policy, TRUSTED).feed(b"EHLO c\r\n")).decode()
    assert "AUTH PLAIN LOGIN" in local
    implicit = Peer("192.0.2.7", trusted=False, loopback=False, tls=True)
    over_tls = sent(ServerProtocol(policy, implicit).feed(b"EHLO c\r\n")).decode()
    assert "AUTH PLAIN LOGIN" in over_tls and "STARTTLS" not in over_tls
    assert sent(ServerProtocol(policy, STRANGER).feed(b"HELO c\r\n")) == b"250 mx\r\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"hello\r\n.\r\n", b"hello\r\n"),
        (b".\r\n", b""),  # an empty message: the terminator's CRLF is the DATA line's
        (b"\r\n.\r\n", b"\r\n"),
        (b"..\r\n.\r\n", b"..\r\n"),
        (b"a\r\n..\r\nb\r\n.\r\n", b"a\r\n..\r\nb\r\n"),
    ],
)
def test_only_crlf_dot_crlf_ends_the_message(text: bytes, expected: bytes) -> None:
    p = session()
    p.feed(b"MAIL FROM:<>\r\nRCPT TO:<b@dest.test>\r\nDATA\r\n")
    assert received(p.feed(text)).data == expected


@pytest.mark.parametrize(
    "probe",
    [
        b"a\n.\nMAIL FROM:<x@evil.test>\r\n",  # the classic: "\n.\n" must not end DATA
        b"a\r\n.\nRCPT TO:<x@evil.test>\r\n",
        b"a\n.\r\nb\r\n",
        b"a\r.\rb\r\n",
        b"bare\nLF\r\n",
        b"bare\rCR\r\n",
    ],
)
def test_a_bare_cr_or_lf_in_the_text_is_refused_and_nothing_smuggled_runs(probe: bytes) -> None:
    p = session()
    p.feed(b"MAIL FROM:<a@sender.test>\r\nRCPT TO:<b@dest.test>\r\nDATA\r\n")
    events = p.feed(probe)
    assert not [e for e in events if isinstance(e, MessageReceived)]
    assert codes(events) == []  # still reading the text: none of it was a command
    events = p.feed(b".\r\nRSET\r\n")
    assert codes(events) == ["550", "250"]
    assert b"550 5.5.2" in sent(events)
    assert refusals(events) == [Refusal.BARE_NEWLINE]
    assert not [e for e in events if isinstance(e, MessageReceived)]


def test_the_terminator_may_arrive_one_byte_at_a_time() -> None:
    p = session()
    p.feed(b"MAIL FROM:<>\r\nRCPT TO:<b@dest.test>\r\nDATA\r\n")
    events: list[Event] = []
    for byte in b"text\r\n.\r\n":
        events += p.feed(bytes([byte]))
    assert received(events).data == b"text\r\n"


def test_a_command_line_over_512_octets_ends_the_session() -> None:
    p = session()
    ok = b"NOOP " + b"x" * (512 - 7) + b"\r\n"
    assert len(ok) == 512 and codes(p.feed(ok)) == ["250"]
    events = p.feed(b"NOOP " + b"x" * 600)  # no CRLF yet: it cannot be a command line
    assert b"500 5.5.2" in sent(events)
    assert isinstance(events[-1], Close) and p.state is State.CLOSED
    assert refusals(events) == [Refusal.LINE_TOO_LONG]
    assert p.feed(b"\r\nNOOP\r\n") == []


def test_a_bare_lf_ends_no_command() -> None:
    p = session()
    events = p.feed(b"NOOP\nNOOP\r\n")
    assert codes(events) == ["500", "250"] and refusals(events) == [Refusal.BARE_NEWLINE]


def test_text_over_the_size_limit_is_dropped_as_it_comes_and_gets_552() -> None:
    p = session()
    p.feed(b"MAIL FROM:<>\r\nRCPT TO:<b@dest.test>\r\nDATA\r\n")
    for _ in range(50):
        assert p.feed(b"y" * 998 + b"\r\n") == []
        assert p.buffered <= POLICY.max_message_size + 1000 + 4
    events = p.feed(b".\r\n")
    assert codes(events) == ["552"] and refusals(events) == [Refusal.TOO_BIG]
    assert codes(p.feed(b"MAIL FROM:<a@sender.test> SIZE=10001\r\n")) == ["552"]
    assert codes(p.feed(b"MAIL FROM:<a@sender.test> SIZE=10000 BODY=8BITMIME\r\n")) == ["250"]


def test_recipients_past_the_limit_get_452_and_duplicates_count_once() -> None:
    p = session()
    p.feed(b"MAIL FROM:<a@sender.test>\r\n")
    got = codes(
        p.feed(
            b"RCPT TO:<b@dest.test>\r\nRCPT TO:<b@DEST.test>\r\nRCPT TO:<c@dest.test>\r\n"
            b"RCPT TO:<d@dest.test>\r\nRCPT TO:<e@dest.test>\r\n"
        )
    )
    assert got == ["250", "250", "250", "250", "452"]
    p.feed(b"DATA\r\n")
    assert received(p.feed(b"x\r\n.\r\n")).envelope.recipients == (
        "b@dest.test",
        "c@dest.test",
        "d@dest.test",
    )


def test_a_stranger_cannot_relay_and_is_told_to_authenticate_at_mail() -> None:
    p = session(peer=STRANGER)
    events = p.feed(b"MAIL FROM:<a@sender.test>\r\nRCPT TO:<b@dest.test>\r\nDATA\r\n")
    assert codes(events) == ["530", "503", "503"]
    assert Refusal.AUTH_REQUIRED in refusals(events)


def test_bounce_domains_take_mail_from_anyone_and_nothing_else() -> None:
    policy = ServerPolicy("mx", 10_000, 10, bounce_domains=frozenset({"bounces.test"}))
    p = session(policy, STRANGER)
    events = p.feed(
        b"MAIL FROM:<>\r\nRCPT TO:<b@dest.test>\r\nRCPT TO:<x@Bounces.Test>\r\nDATA\r\n"
    )
    assert codes(events) == ["250", "554", "250", "354"]
    env = received(p.feed(b"report\r\n.\r\n")).envelope
    assert env.recipients == () and env.local_recipients == ("x@Bounces.Test",)
    # A trusted client's mail to a bounce domain is local too, never relayed.
    q = session(policy, TRUSTED)
    q.feed(b"MAIL FROM:<a@s.test>\r\nRCPT TO:<b@dest.test>\r\nRCPT TO:<y@bounces.test>\r\nDATA\r\n")
    env = received(q.feed(b"x\r\n.\r\n")).envelope
    assert (env.recipients, env.local_recipients) == (("b@dest.test",), ("y@bounces.test",))


def _auth_session(peer: Peer = TRUSTED) -> ServerProtocol:
    return session(ServerPolicy("mx", 10_000, 10, auth_enabled=True), peer)


def test_auth_plain_with_an_initial_response_then_relay_as_that_user() -> None:
    p = _auth_session(Peer("192.0.2.7", trusted=False, loopback=False, tls=True))
    token = base64.b64encode(b"\0alice\0s3cret")
    events = p.feed(b"AUTH PLAIN " + token + b"\r\nMAIL FROM:<a@s.test>\r\n")
    assert events == [Authenticate("PLAIN", "alice", b"s3cret")]
    events = p.finish_auth(AuthResult.OK)
    assert codes(events) == ["235", "250"]
    p.feed(b"RCPT TO:<b@dest.test>\r\nDATA\r\n")
    assert received(p.feed(b"x\r\n.\r\n")).envelope.auth_user == "alice"
    p.finish_message(b"250 ok\r\n", accepted=True)
    assert codes(p.feed(b"AUTH PLAIN " + token + b"\r\n")) == ["503"]


def test_auth_login_step_by_step_and_failures() -> None:
    p = _auth_session()
    assert sent(p.feed(b"AUTH LOGIN\r\n")) == b"334 VXNlcm5hbWU6\r\n"
    assert sent(p.feed(base64.b64encode(b"bob") + b"\r\n")) == b"334 UGFzc3dvcmQ6\r\n"
    assert p.feed(base64.b64encode(b"pw") + b"\r\n") == [Authenticate("LOGIN", "bob", b"pw")]
    events = p.finish_auth(AuthResult.BAD)
    assert codes(events) == ["535"] and refusals(events) == [Refusal.AUTH_FAILED]
    assert sent(p.feed(b"AUTH PLAIN\r\n")) == b"334 \r\n"
    assert codes(p.feed(b"*\r\n")) == ["501"]
    assert codes(p.feed(b"AUTH PLAIN !!!notbase64\r\n")) == ["501"]
    assert codes(p.feed(b"AUTH CRAM-MD5\r\n")) == ["504"]
    p.feed(b"AUTH PLAIN " + base64.b64encode(b"\0bob\0pw") + b"\r\n")
    assert codes(p.finish_auth(AuthResult.LIMITED)) == ["454"]


def test_auth_needs_tls_off_loopback_and_is_refused_inside_a_transaction() -> None:
    policy = ServerPolicy("mx", 10_000, 10, auth_enabled=True)
    events = session(policy, STRANGER).feed(b"AUTH PLAIN AGFAYg==\r\n")
    assert codes(events) == ["538"] and refusals(events) == [Refusal.TLS_REQUIRED]
    p = session(policy, TRUSTED)
    p.feed(b"MAIL FROM:<a@s.test>\r\n")
    assert codes(p.feed(b"AUTH PLAIN AGFAYg==\r\n")) == ["503"]
    assert codes(session().feed(b"AUTH PLAIN AGFAYg==\r\n")) == ["503"]  # no users file


def test_starttls_throws_away_plaintext_sent_behind_it_and_starts_afresh() -> None:
    policy = ServerPolicy("mx", 10_000, 10, starttls=True)
    p = session(policy, STRANGER)
    events = p.feed(b"STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n")
    assert sent(events) == b"220 2.0.0 Ready to start TLS\r\n"
    assert isinstance(events[-1], StartTls) and p.state is State.TLS and p.buffered == 0
    p.tls_started()
    assert p.tls
    assert codes(p.feed(b"MAIL FROM:<a@s.test>\r\n")) == ["503"]  # EHLO again first
    text = sent(p.feed(b"EHLO c\r\n"))
    assert b"STARTTLS" not in text
    assert codes(p.feed(b"STARTTLS\r\n")) == ["503"]
    assert codes(session().feed(b"STARTTLS\r\n")) == ["454"]  # no certificate


def test_too_many_errors_end_the_session_and_a_message_resets_the_count() -> None:
    policy = ServerPolicy("mx", 10_000, 10, max_errors=3, max_unknown_commands=10)
    p = session(policy)
    p.feed(b"RCPT TO:<x@y.test>\r\nRCPT TO:<x@y.test>\r\n")
    p.feed(b"MAIL FROM:<a@s.test>\r\nRCPT TO:<b@d.test>\r\nDATA\r\n")
    p.feed(b"x\r\n.\r\n")
    p.finish_message(b"250 ok\r\n", accepted=True)
    p.feed(b"RCPT TO:<x@y.test>\r\nRCPT TO:<x@y.test>\r\n")
    events = p.feed(b"RCPT TO:<x@y.test>\r\nNOOP\r\n")
    assert codes(events) == ["503", "421"] and isinstance(events[-1], Close)
    assert refusals(events)[-1] is Refusal.TOO_MANY_ERRORS


def test_unknown_commands_past_the_limit_end_the_session() -> None:
    p = session(ServerPolicy("mx", 10_000, 10, max_unknown_commands=2))
    events = p.feed(b"GET / HTTP/1.1\r\nHost: x\r\nNOOP\r\n")
    assert codes(events) == ["500", "500", "421"]
    assert p.state is State.CLOSED


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"MAIL FROM:<a@s.test> RET=FULL", "555"),
        (b"MAIL FROM:a@s.test", "501"),
        (b"MAIL FROM:<not an address>", "553"),
        (b"MAIL FROM:<j\xc3\xb6rg@s.test>", "553"),  # non-ASCII without SMTPUTF8
        (b"MAIL FROM:<j\xc3\xb6rg@s.test> SMTPUTF8", "250"),
        (b"MAIL FROM:<@relay.test:a@s.test>", "250"),  # a source route is ignored
        (b"MAIL FROM:<a@s.test> AUTH=<>", "250"),
        (b"MAIL FROM:<\xff@s.test>", "500"),
        (b"EHLO", "501"),
        (b"EHLO bad(name)", "501"),
        (b"VRFY x", "252"),
        (b"EXPN x", "502"),
        (b"HELP", "214"),
    ],
)
def test_command_syntax(line: bytes, code: str) -> None:
    assert codes(session().feed(line + b"\r\n")) == [code]


def test_sequence_errors() -> None:
    p = ServerProtocol(POLICY, TRUSTED)
    assert codes(p.feed(b"MAIL FROM:<a@s.test>\r\n")) == ["503"]  # EHLO first
    p = session()
    assert codes(p.feed(b"DATA\r\nRCPT TO:<b@d.test>\r\n")) == ["503", "503"]
    p.feed(b"MAIL FROM:<a@s.test>\r\n")
    assert codes(p.feed(b"MAIL FROM:<a@s.test>\r\nDATA\r\n")) == ["503", "503"]
    assert codes(p.feed(b"RCPT TO:<x>\r\nRCPT TO: b@d.test\r\nDATA\r\n")) == ["553", "501", "554"]
    assert codes(p.feed(b"RCPT TO:<b@d.test> NOTIFY=NEVER\r\n")) == ["555"]


def test_nul_in_the_text_is_refused() -> None:
    p = session()
    p.feed(b"MAIL FROM:<>\r\nRCPT TO:<b@d.test>\r\nDATA\r\n")
    assert codes(p.feed(b"a\0b\r\n.\r\n")) == ["554"]


def test_quit_timeout_and_shutdown_close_with_their_replies() -> None:
    p = session()
    events = p.feed(b"QUIT\r\nNOOP\r\n")
    assert sent(events) == b"221 2.0.0 Bye\r\n" and isinstance(events[-1], Close)
    events = session().timed_out()
    assert sent(events).startswith(b"421 mx.volley.test 4.4.2")
    assert refusals(events) == [Refusal.TIMEOUT] and isinstance(events[-1], Close)
    assert sent(session().shutting_down()).startswith(b"421 mx.volley.test 4.3.2")


def test_answers_are_only_taken_when_one_is_awaited() -> None:
    p = session()
    with pytest.raises(RuntimeError):
        p.finish_message(b"250 ok\r\n", accepted=True)
    with pytest.raises(RuntimeError):
        p.tls_started()


SCRIPT = (
    b"EHLO client.test\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<b@d.test>\r\nRCPT TO:<bad>\r\n"
    b"DATA\r\nSubject: x\r\n\r\n..one\r\ntwo\r\n.\r\nNOOP\r\nMAIL FROM:<>\r\n"
    b"RCPT TO:<c@d.test>\r\nDATA\r\nbare\nlf\r\n.\r\nFOO\r\nRSET\r\nQUIT\r\n"
)


def _run(chunks: list[bytes]) -> tuple[bytes, list[object]]:
    """Feed the chunks, answering every message with 250; all bytes sent, other events."""
    p = ServerProtocol(POLICY, TRUSTED)
    out = [p.greeting()]
    other: list[object] = []

    def take(events: list[Event]) -> None:
        for e in events:
            if isinstance(e, Send):
                out.append(e.data)
            else:
                other.append(e)
                if isinstance(e, MessageReceived):
                    take(p.finish_message(b"250 queued\r\n", accepted=True))

    for chunk in chunks:
        take(p.feed(chunk))
    return b"".join(out), other


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(SCRIPT) - 1), max_size=40))
def test_any_split_of_the_input_gives_the_same_session(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [SCRIPT[a:b] for a, b in zip([0, *points], [*points, len(SCRIPT)], strict=True)]
    assert _run(chunks) == _run([SCRIPT])


def test_the_reference_session_does_what_it_says() -> None:
    out, other = _run([SCRIPT])
    replies = [line[:3] for line in out.split(b"\r\n") if line[3:4] == b" "]
    assert replies == [
        b"220", b"250", b"250", b"250", b"553", b"354", b"250", b"250", b"250",
        b"250", b"354", b"550", b"500", b"250", b"221",
    ]  # fmt: skip
    (msg,) = [e for e in other if isinstance(e, MessageReceived)]
    assert msg.data == b"Subject: x\r\n\r\n..one\r\ntwo\r\n"
