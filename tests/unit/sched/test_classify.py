"""engine.sched.classify: verdicts from replies and failures, the enhanced-code cache."""

from __future__ import annotations

import pytest

from engine.model import (
    ConnectFailure,
    Disposition,
    FailureKind,
    Origin,
    Phase,
    Reply,
    Transaction,
    TransportFailure,
    TxnResult,
)
from engine.net.mx import RouteFailure, RouteFailureKind
from engine.sched.classify import (
    classify_connect_failure,
    classify_route_failure,
    classify_txn,
    expire,
    precheck,
)

D = Disposition
OK = Reply(250, ("2.1.0 ok",))
GO = Reply(354, ("go ahead",))
QUEUED = Reply(250, ("2.0.0 queued",))
TXN = Transaction("s@a.test", ("r1@b.test", "r2@b.test", "r3@b.test"), b"x\r\n")


def disps(outs: list) -> list[tuple[str, Disposition, int, str]]:
    return [(o.recipient, o.disposition, o.code, o.enhanced) for o in outs]


def test_all_accepted_and_queued_is_delivered() -> None:
    r = TxnResult(OK, (OK, OK, OK), GO, QUEUED)
    assert [o.disposition for o in classify_txn(TXN, r)] == [D.DELIVERED] * 3


def test_mixed_rcpt_replies_are_per_recipient() -> None:
    r = TxnResult(OK, (OK, Reply(450, ("4.2.0 busy",)), Reply(550, ("5.1.1 unknown",))), GO, QUEUED)
    assert disps(classify_txn(TXN, r)) == [
        ("r1@b.test", D.DELIVERED, 250, "2.0.0"),
        ("r2@b.test", D.DEFERRED, 450, "4.2.0"),
        ("r3@b.test", D.BOUNCED, 550, "5.1.1"),
    ]


def test_final_reply_decides_for_accepted_recipients_only() -> None:
    r = TxnResult(OK, (OK, Reply(550, ("5.1.1 unknown",)), OK), GO, Reply(554, ("5.6.0 content",)))
    assert [o.disposition for o in classify_txn(TXN, r)] == [D.BOUNCED] * 3
    r = TxnResult(OK, (OK, Reply(550, ("5.1.1 no",)), OK), GO, Reply(451, ("4.3.0 later",)))
    assert [o.disposition for o in classify_txn(TXN, r)] == [D.DEFERRED, D.BOUNCED, D.DEFERRED]


def test_mail_refused_applies_to_everyone_and_503_never_bounces() -> None:
    r = TxnResult(Reply(550, ("5.7.1 sender blocked",)), (None, None, None), None, None)
    assert [o.disposition for o in classify_txn(TXN, r)] == [D.BOUNCED] * 3
    # "503 nested MAIL": our session out of step, not a verdict on the message.
    r = TxnResult(Reply(503, ("5.5.1 nested MAIL command",)), (None, None, None), None, None)
    outs = classify_txn(TXN, r)
    assert [o.disposition for o in outs] == [D.DEFERRED] * 3
    assert all(o.enhanced.startswith("4.") for o in outs)


def test_data_command_refused_decides_for_accepted() -> None:
    r = TxnResult(OK, (OK, OK, OK), Reply(452, ("4.3.1 full",)), None)
    assert [o.disposition for o in classify_txn(TXN, r)] == [D.DEFERRED] * 3


def test_connection_lost_after_data_defers_with_duplicate_warning() -> None:
    lost = TransportFailure(Phase.BODY, FailureKind.CLOSED, "EOF")
    r = TxnResult(OK, (OK, Reply(550, ("5.1.1 no",)), OK), GO, None, lost)
    outs = classify_txn(TXN, r)
    assert [o.disposition for o in outs] == [D.DEFERRED, D.BOUNCED, D.DEFERRED]
    assert "may have been delivered" in outs[0].text and outs[0].remote is False


def test_timeout_before_rcpt_replies_defers_everyone() -> None:
    t = TransportFailure(Phase.RCPT, FailureKind.TIMEOUT, "no reply in 300s")
    r = TxnResult(OK, (OK, None, None), None, None, t)
    outs = classify_txn(TXN, r)
    assert [o.disposition for o in outs] == [D.DEFERRED] * 3
    assert outs[1].enhanced == "4.4.2"
    r = TxnResult(
        None,
        (None, None, None),
        None,
        None,
        TransportFailure(Phase.MAIL, FailureKind.CANCELLED, ""),
    )
    assert [o.disposition for o in classify_txn(TXN, r)] == [D.DEFERRED] * 3


def test_421_on_rcpt_defers() -> None:
    r = TxnResult(
        OK,
        (Reply(421, ("4.4.2 closing",)), None, None),
        None,
        None,
        TransportFailure(Phase.RCPT, FailureKind.CLOSED, "closed after 421"),
    )
    assert [o.disposition for o in classify_txn(TXN, r)] == [D.DEFERRED] * 3


def test_route_failures() -> None:
    rc = ["a@x.test"]
    null = classify_route_failure(rc, RouteFailure("x.test", RouteFailureKind.NULL_MX, ""))
    assert disps(null) == [("a@x.test", D.BOUNCED, 556, "5.1.10")]
    nx = classify_route_failure(
        rc, RouteFailure("x.test", RouteFailureKind.NO_SUCH_DOMAIN, "NXDOMAIN")
    )
    assert nx[0].disposition is D.BOUNCED and nx[0].enhanced == "5.1.2"
    temp = classify_route_failure(
        rc, RouteFailure("x.test", RouteFailureKind.TEMPORARY, "SERVFAIL")
    )
    assert temp[0].disposition is D.DEFERRED and "SERVFAIL" in temp[0].text


def test_connect_failures_always_defer_even_on_a_5xx_greeting() -> None:
    """Finding 5 of issue #14: "554 ... blocked using zen.spamhaus.org" is about the sending
    IP, usually temporary; Postfix (smtp_skip_5xx_greeting = yes) defers it."""
    refused = ConnectFailure(
        "mx.x.test",
        "127.0.0.9",
        failure=TransportFailure(Phase.CONNECT, FailureKind.REFUSED, "ECONNREFUSED"),
    )
    out = classify_connect_failure(["a@x.test"], refused)
    assert out[0].disposition is D.DEFERRED and "127.0.0.9" in out[0].text
    busy = ConnectFailure("mx.x.test", "127.0.0.9", reply=Reply(421, ("4.3.2 busy",)))
    assert classify_connect_failure(["a@x.test"], busy)[0].disposition is D.DEFERRED
    blocked = Reply(554, ("5.7.1 Service unavailable; blocked using zen.spamhaus.org",))
    no = ConnectFailure("mx.x.test", "127.0.0.9", reply=blocked)
    (out1, out2) = classify_connect_failure(["a@x.test", "b@x.test"], no)
    assert disps([out1]) == [("a@x.test", D.DEFERRED, 554, "4.7.1")]
    assert "mx.x.test[127.0.0.9] refused the session: 554 5.7.1" in out1.text
    assert out2.disposition is D.DEFERRED
    bare = ConnectFailure("mx.x.test", "127.0.0.9", reply=Reply(550, ("go away",)))
    assert disps(classify_connect_failure(["a@x.test"], bare)) == [
        ("a@x.test", D.DEFERRED, 550, "4.0.0")
    ]


def test_only_2xx_is_success() -> None:
    """Finding 4 of issue #14: a 3xx to MAIL, a 2xx to DATA (no content sent) and a 3xx
    to end of data are failures of the transaction, never deliveries (RFC 5321 §4.3.2)."""
    odd = Reply(354, ("go ahead?",))
    r = TxnResult(odd, (None, None, None), None, None)
    assert [o.disposition for o in classify_txn(TXN, r)] == [D.DEFERRED] * 3
    r = TxnResult(OK, (OK, odd, OK), GO, QUEUED)
    assert [o.disposition for o in classify_txn(TXN, r)] == [D.DELIVERED, D.DEFERRED, D.DELIVERED]
    r = TxnResult(OK, (OK, OK, OK), Reply(250, ("2.0.0 ok",)), None)
    outs = classify_txn(TXN, r)
    assert [o.disposition for o in outs] == [D.DEFERRED] * 3
    assert "no content sent" in outs[0].text
    r = TxnResult(OK, (OK, OK, OK), GO, Reply(354, ("more?",)))
    assert [o.disposition for o in classify_txn(TXN, r)] == [D.DEFERRED] * 3
    one = Transaction("s@a.test", ("r1@b.test",), b"x\r\n")
    assert classify_txn(one, TxnResult(OK, (OK,), GO, Reply(354, ("x",))))[0].disposition is (
        D.DEFERRED
    )


def test_precheck_smtputf8_and_size() -> None:
    utf = Transaction("s@a.test", ("ü@b.test",), b"x\r\n", smtputf8=True)
    out = precheck(utf, smtputf8=False, size_limit=None)
    assert out is not None and disps(out) == [("ü@b.test", D.BOUNCED, 553, "5.6.7")]
    assert "SMTPUTF8" in out[0].text
    assert precheck(utf, smtputf8=True, size_limit=None) is None
    big = Transaction("s@a.test", ("r@b.test",), b"x" * 100)
    out = precheck(big, smtputf8=True, size_limit=99)
    assert out is not None and out[0].enhanced == "5.3.4"
    assert precheck(big, smtputf8=True, size_limit=100) is None
    assert precheck(big, smtputf8=True, size_limit=0) is None  # SIZE 0 = no limit


def test_precheck_bounces_what_cannot_be_made_7bit_as_5_6_3() -> None:
    """RFC 6152 §3: no 8-bit content to a server without 8BITMIME; RFC 3463 X.6.3."""
    out = precheck(TXN, smtputf8=True, size_limit=None, unconvertible="a part is binary")
    assert out is not None
    assert disps(out) == [(r, D.BOUNCED, 554, "5.6.3") for r in TXN.recipients]
    assert out[0].text == (
        "conversion required but not supported: the receiving server does not offer"
        " 8BITMIME (RFC 6152) and the message cannot be made 7-bit: a part is binary"
    )
    assert out[0].origin is Origin.LOCAL
    assert precheck(TXN, smtputf8=True, size_limit=None, unconvertible=None) is None


def test_a_refused_relay_login_defers_whatever_the_code() -> None:
    """RFC 4954 §6: 535 5.7.8 (wrong password) and 454 4.7.0 (try later) are the relay's
    trouble, not the message's: deferred, never bounced."""
    for reply in ("535 5.7.8 Authentication credentials invalid", "454 4.7.0 try later"):
        failure = TransportFailure(
            Phase.AUTH, FailureKind.AUTH, f"AUTH PLAIN as 'u' refused: {reply}"
        )
        (o,) = classify_connect_failure(
            ["r@b.test"], ConnectFailure("relay.test", "192.0.2.5", failure=failure)
        )
        assert disps([o]) == [("r@b.test", D.DEFERRED, 451, "4.7.8")]
        where = "authentication failed during auth: relay.test[192.0.2.5]"
        assert o.text == f"{where}: AUTH PLAIN as 'u' refused: {reply}"
        assert (o.origin, o.kind) == (Origin.CONNECTION, "auth")


def test_expire_keeps_last_error() -> None:
    r = TxnResult(OK, (Reply(450, ("4.2.0 busy",)),), GO, None)
    (o,) = classify_txn(Transaction("s@a", ("r@b",), b""), r)
    e = expire(o, 5 * 86400)
    assert e.disposition is D.EXPIRED and "5 days" in e.text and "busy" in e.text
    assert (e.origin, e.remote) == (Origin.REPLY, True)  # the last error's origin stays


def test_outcomes_say_where_their_code_and_text_come_from() -> None:
    """The facts the bounce classifier (engine.policy) matches a rule's origin and kind on;
    no category yet (engine.runtime.outcome gives it)."""
    r = TxnResult(OK, (Reply(550, ("5.1.1 no",)),), GO, None)
    (o,) = classify_txn(Transaction("s@a", ("r@b",), b""), r)
    assert (o.origin, o.kind, o.remote, o.classification) == (Origin.REPLY, "", True, None)
    (o,) = classify_route_failure(["r@b"], RouteFailure("b", RouteFailureKind.NULL_MX, ""))
    assert (o.origin, o.kind, o.remote) == (Origin.ROUTE, "null_mx", False)
    failure = TransportFailure(Phase.GREETING, FailureKind.TIMEOUT, "5m")
    (o,) = classify_connect_failure(["r@b"], ConnectFailure("mx.b", "192.0.2.1", failure=failure))
    assert (o.origin, o.kind, o.remote) == (Origin.CONNECTION, "timeout", False)
    assert o.text.startswith("timed out during greeting")  # what volley-no-answer matches
    refused = precheck(TXN, smtputf8=True, size_limit=1)
    assert refused is not None and {(x.origin, x.kind) for x in refused} == {(Origin.LOCAL, "")}


# -- the cached enhanced code and the one-recipient fast path ---------------------------------
# Arabic-Indic 2, 4, 0 (escaped: the lint flags the glyphs): the regex \d matches them.


@pytest.mark.parametrize(
    "final",
    [QUEUED, Reply(250, ("queued",)), Reply(451, ("4.3.0 later",)), Reply(554, ("5.6.0 no",)),
     Reply(503, ("5.5.1 sequence",)), Reply(552, ("",)), Reply(354, ("3xx",))],
)  # fmt: skip
def test_one_recipient_fast_path_gives_the_general_verdict(final: Reply) -> None:
    one = Transaction("s@a.test", ("r1@b.test",), b"x\r\n")
    fast = classify_txn(one, TxnResult(OK, (OK,), GO, final))
    # The same recipient first of two goes the general way.
    two = Transaction("s@a.test", ("r1@b.test", "r2@b.test"), b"x\r\n")
    general = classify_txn(two, TxnResult(OK, (OK, OK), GO, final))[0]
    assert fast == [general]
