"""engine.smtp.pipeline: transactions pipelined behind each other's "." (RFC 2920), driven
with exact bytes, no sockets: what is written when, which transaction each reply lands
in, and how a refusal, a 421 or a close in the middle of the pipeline ends each one."""

from __future__ import annotations

import pytest

from engine.smtp import ClientProtocol, Command, LocalProtocolError, RemoteProtocolError, State
from engine.smtp.transaction import Txn
from tests.unit.smtp.test_protocol import LOCKSTEP_EXT, ready

BODY1 = b"Subject: one\r\n\r\nfirst\r\n"
BODY2 = b"Subject: two\r\n\r\nsecond\r\n"
BODY3 = b"Subject: three\r\n\r\nthird\r\n"
EXT = ("PIPELINING", "8BITMIME")  # no SIZE: shorter MAIL lines to compare


def env(sender: str, *rcpts: str) -> bytes:
    return (
        b"MAIL FROM:<%s>\r\n" % sender.encode()
        + b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in rcpts)
        + b"DATA\r\n"
    )


def start(p: ClientProtocol, rcpt: str, body: bytes) -> Txn:
    return p.start_transaction("s@a.example", [rcpt], body)


def codes(p: ClientProtocol, data: bytes) -> list[tuple[Command | None, int]]:
    return [(e.command, e.reply.code) for e in p.receive_data(data)]


def test_the_next_envelope_leaves_with_the_content_and_replies_land_in_order() -> None:
    p = ready(EXT)
    t1 = start(p, "x@d.example", BODY1)
    assert p.data_to_send() == env("s@a.example", "x@d.example")
    assert p.can_begin()  # PIPELINING: the next one may be begun before t1 ends
    t2 = start(p, "y@d.example", BODY2)
    assert p.data_to_send() == b""  # DATA is unanswered: nothing may follow it yet
    assert p.in_flight == 2
    assert codes(p, b"250 ok\r\n250 ok\r\n354 go\r\n") == [
        (Command.MAIL, 250),
        (Command.RCPT, 250),
        (Command.DATA, 354),
    ]
    # One write: t1's content and ".", then t2's MAIL, RCPT and DATA (RFC 2920 §3.1).
    assert p.data_to_send() == BODY1 + b".\r\n" + env("s@a.example", "y@d.example")
    assert p.state is State.IN_TRANSACTION and p.awaiting() is Command.END_OF_DATA
    # One read: t1's final reply and t2's three.
    got = codes(p, b"250 2.0.0 queued 1\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    assert got == [
        (Command.END_OF_DATA, 250),
        (Command.MAIL, 250),
        (Command.RCPT, 250),
        (Command.DATA, 354),
    ]
    assert t1.done and t1.result is not None and t1.result.delivered and t1.result.complete
    assert t1.result.final is not None and t1.result.final.text == "2.0.0 queued 1"
    assert not t2.done
    t3 = start(p, "z@d.example", BODY3)  # begun after t2's 354: joins t2's content
    assert p.data_to_send() == BODY2 + b".\r\n" + env("s@a.example", "z@d.example")
    codes(p, b"250 2.0.0 queued 2\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    assert t2.done and t2.result is not None and t2.result.delivered
    assert p.data_to_send() == BODY3 + b".\r\n"
    assert codes(p, b"250 2.0.0 queued 3\r\n") == [(Command.END_OF_DATA, 250)]
    assert t3.done and t3.result is not None and t3.result.delivered
    assert p.is_reusable() and p.state is State.READY and p.in_flight == 0


def test_begun_while_the_last_dot_is_out_goes_at_once() -> None:
    p = ready(EXT)
    start(p, "x@d.example", BODY1)
    p.data_to_send()
    p.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    assert p.data_to_send() == BODY1 + b".\r\n"
    t2 = start(p, "y@d.example", BODY2)  # t1's final reply still outstanding
    assert p.data_to_send() == env("s@a.example", "y@d.example")
    assert p.state is State.IN_TRANSACTION and p.awaiting() is Command.END_OF_DATA
    codes(p, b"250 queued\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    assert p.data_to_send() == BODY2 + b".\r\n"
    p.receive_data(b"250 queued\r\n")
    assert t2.done and t2.result is not None and t2.result.delivered and p.is_reusable()


def test_next_mail_refused_sends_no_content_and_the_one_after_starts_with_rset() -> None:
    p = ready(EXT)
    t1 = start(p, "x@d.example", BODY1)
    p.data_to_send()
    t2 = start(p, "y@d.example", BODY2)
    t3 = start(p, "z@d.example", BODY3)  # depth 3: two wait behind t1's DATA
    p.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    assert p.data_to_send() == BODY1 + b".\r\n" + env("s@a.example", "y@d.example")
    # t2's MAIL refused: the server echoes 503s to its RCPT and DATA, and no 354 comes.
    got = codes(p, b"250 queued\r\n550 5.7.1 sender blocked\r\n503 need MAIL\r\n503 need RCPT\r\n")
    assert [c for c, _ in got] == [Command.END_OF_DATA, Command.MAIL, Command.RCPT, Command.DATA]
    assert t1.result is not None and t1.result.delivered
    assert t2.done and t2.result is not None
    assert t2.result.mail is not None and t2.result.mail.code == 550
    assert t2.result.rcpts == (None,) and t2.result.data is None and t2.result.final is None
    assert t2.result.complete and not t2.result.delivered
    # No content for t2; t3 goes behind a RSET (t2 ended before its ".").
    assert p.data_to_send() == b"RSET\r\n" + env("s@a.example", "z@d.example")
    codes(p, b"250 reset\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    assert p.data_to_send() == BODY3 + b".\r\n"
    p.receive_data(b"250 queued\r\n")
    assert t3.result is not None and t3.result.delivered and t3.result.rset is not None
    assert p.is_reusable() and not p.rset_owed


def test_all_recipients_refused_data_554_no_content_then_rset() -> None:
    """RFC 2920 §3.1: DATA pipelined after every RCPT failed gets 554 "no valid
    recipients"; the client must not send the content."""
    p = ready(EXT)
    t1 = start(p, "x@d.example", BODY1)
    p.data_to_send()
    t2 = start(p, "bad@d.example", BODY2)
    t3 = start(p, "z@d.example", BODY3)
    p.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    p.data_to_send()
    p.receive_data(
        b"250 queued\r\n250 ok\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients\r\n"
    )
    assert t1.result is not None and t1.result.delivered
    assert t2.result is not None and t2.result.complete
    rcpt = t2.result.rcpts[0]
    assert rcpt is not None and rcpt.code == 550
    assert t2.result.data is None  # the echo of the refusals, not a verdict
    out = p.data_to_send()
    assert BODY2 not in out
    assert out == b"RSET\r\n" + env("s@a.example", "z@d.example")
    assert not t3.done


def test_data_354_with_no_recipient_accepted_sends_a_lone_dot_and_the_next_behind_it() -> None:
    p = ready(EXT)
    t1 = start(p, "bad@d.example", BODY1)
    p.data_to_send()
    start(p, "y@d.example", BODY2)
    p.receive_data(b"250 ok\r\n550 no\r\n354 go anyway\r\n")
    assert p.data_to_send() == b".\r\n" + env("s@a.example", "y@d.example")
    p.receive_data(b"554 no valid recipients\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    assert t1.result is not None and t1.result.final is None and not t1.result.delivered
    assert p.data_to_send() == BODY2 + b".\r\n"


def test_a_421_mid_pipeline_ends_every_transaction_once() -> None:
    p = ready(EXT)
    t1 = start(p, "x@d.example", BODY1)
    p.data_to_send()
    t2 = start(p, "y@d.example", BODY2)
    t3 = start(p, "z@d.example", BODY3)
    p.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    p.data_to_send()
    # t1 delivered, then the server closes in t2's RCPT; t3 was never written.
    got = codes(p, b"250 queued\r\n250 ok\r\n421 4.3.2 shutting down\r\n250 too late\r\n")
    assert got == [(Command.END_OF_DATA, 250), (Command.MAIL, 250), (Command.RCPT, 421)]
    assert p.state is State.CLOSED and p.closing_command is Command.RCPT
    assert t1.result is not None and t1.result.delivered and t1.result.complete
    assert t2.done and t2.result is not None and not t2.result.complete
    assert t2.result.rcpts[0] is not None and t2.result.rcpts[0].code == 421
    assert t2.result.cut_at is Command.DATA and t2.result.sent
    assert t3.done and t3.result is not None and not t3.result.sent
    assert t3.result.mail is None and t3.result.cut_at is None
    assert p.in_flight == 0 and not p.can_begin() and p.data_to_send() == b""


def test_a_421_instead_of_the_final_reply_cuts_the_next_at_its_mail() -> None:
    p = ready(EXT)
    t1 = start(p, "x@d.example", BODY1)
    p.data_to_send()
    t2 = start(p, "y@d.example", BODY2)
    p.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    p.data_to_send()
    p.receive_data(b"421 4.4.2 timeout\r\n")
    assert t1.result is not None and t1.result.final is not None
    assert t1.result.final.code == 421 and not t1.result.delivered
    assert t2.result is not None and t2.result.sent and t2.result.cut_at is Command.MAIL


@pytest.mark.parametrize("end", ["eof", "abort"])
def test_a_close_mid_pipeline_names_where_each_was_cut(end: str) -> None:
    p = ready(EXT)
    t1 = start(p, "x@d.example", BODY1)
    p.data_to_send()
    t2 = start(p, "y@d.example", BODY2)
    t3 = start(p, "z@d.example", BODY3)
    p.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    p.data_to_send()
    if end == "eof":
        p.receive_eof()
    else:
        p.abort()
    assert p.state is State.BROKEN
    assert t1.result is not None and t1.result.cut_at is Command.END_OF_DATA
    assert t1.result.final is None and t1.result.sent  # content out: may have arrived
    assert t2.result is not None and t2.result.cut_at is Command.MAIL and t2.result.sent
    assert t3.result is not None and not t3.result.sent


def test_a_reply_to_the_next_envelope_before_it_was_taken_is_refused() -> None:
    """t1's 354 makes its content and t2's envelope due; a reply arriving in the same
    chunk answers nothing that was written."""
    p = ready(EXT)
    start(p, "x@d.example", BODY1)
    p.data_to_send()
    start(p, "y@d.example", BODY2)
    with pytest.raises(RemoteProtocolError, match="before the content was sent"):
        p.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n")
    assert p.state is State.BROKEN


def test_without_pipelining_one_transaction_at_a_time() -> None:
    p = ready(LOCKSTEP_EXT)
    start(p, "x@d.example", BODY1)
    assert not p.can_begin()
    with pytest.raises(LocalProtocolError):
        start(p, "y@d.example", BODY2)
    assert p.in_flight == 1


def test_a_refused_rset_lets_nothing_more_go() -> None:
    p = ready(EXT)
    start(p, "x@d.example", BODY1)
    p.data_to_send()
    p.receive_data(b"250 ok\r\n250 ok\r\n451 later\r\n")  # RSET owed
    t2 = start(p, "y@d.example", BODY2)
    assert p.data_to_send().startswith(b"RSET\r\n")
    t3 = start(p, "z@d.example", BODY3)
    p.receive_data(b"500 what\r\n")
    assert not p.can_begin()
    p.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")  # a server out of step
    assert BODY3 not in p.data_to_send()  # t3 never follows an unknown state
    p.receive_data(b"250 queued\r\n")
    assert p.state is State.BROKEN
    assert t2.result is not None and not t2.result.complete
    assert t3.result is not None and not t3.result.sent
