"""What attackers probe, byte by byte: SMTP smuggling (a bare LF or CR around the dot
that would end DATA for a sloppier parser), an over-long command line, a message over
max_message_size, too many recipients.  Each gets its RFC reply, none of the smuggled
commands runs, and only the one honest message of the scenario is delivered."""

from __future__ import annotations

from tests.support.net import wait_for
from tests.support.submit import RawSession, listening, port_of

SMUGGLE = (
    b"From: a@sender.test\r\nTo: b@dest.test\r\nSubject: first\r\n\r\nhello\r\n"
    b"\n.\n"  # the CVE-2023-51764 probe; "\r\n.\n", "\n.\r\n" and "\r.\r" below
    b"MAIL FROM:<admin@bank.test>\r\nRCPT TO:<victim@dest.test>\r\nDATA\r\n"
    b"From: admin@bank.test\r\nSubject: smuggled\r\n\r\npay now\r\n"
)


def transaction(s: RawSession, rcpt: bytes = b"b@dest.test") -> None:
    assert s.cmd(b"MAIL FROM:<a@sender.test>").startswith(b"250")
    assert s.cmd(b"RCPT TO:<" + rcpt + b">").startswith(b"250")
    assert s.cmd(b"DATA").startswith(b"354")


def test_smuggling_and_oversize_probes_are_refused(net, volley) -> None:
    rx = net.domain("dest.test")[0]
    v = volley(workers=2, config=listening(max_message_size=20_000, max_recipients=3))
    port = port_of(v)
    with RawSession(port) as s:
        assert s.reply().startswith(b"220 volley.test ESMTP")
        assert s.cmd(b"EHLO probe.test").startswith(b"250-volley.test")
        for dot in (b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r"):
            transaction(s)
            s.send(SMUGGLE.replace(b"\n.\n", dot) + b".\r\n")
            # One reply for all of it: the "commands" were message text, then refused.
            assert (
                s.reply()
                == b"550 5.5.2 Error: bare <CR> or <LF> in message text (SMTP smuggling)\r\n"
            )
            assert s.cmd(b"NOOP") == b"250 2.0.0 Ok\r\n"

        # Over max_message_size: announced with SIZE, or just sent.
        assert s.cmd(b"MAIL FROM:<a@sender.test> SIZE=20001").startswith(b"552 5.3.4")
        transaction(s)
        s.send(b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 30 + b".\r\n")
        assert s.reply() == b"552 5.3.4 Message size exceeds fixed limit\r\n"

        # The fourth recipient of a transaction: 452, the client sends it again later.
        assert s.cmd(b"MAIL FROM:<a@sender.test>").startswith(b"250")
        for i in range(3):
            assert s.cmd(b"RCPT TO:<r%d@dest.test>" % i).startswith(b"250")
        assert s.cmd(b"RCPT TO:<r3@dest.test>") == b"452 4.5.3 Error: too many recipients\r\n"
        assert s.cmd(b"RSET").startswith(b"250")

        # An honest message on the same session still goes through.
        transaction(s, b"honest@dest.test")
        s.send(b"Subject: honest\r\n\r\nfine\r\n.\r\n")
        assert s.reply().startswith(b"250 2.0.0 Ok: queued as ")

        # A command line over 512 octets: 500, and the session ends.
        s.send(b"NOOP " + b"x" * 600 + b"\r\n")
        assert s.reply() == b"500 5.5.2 Error: line too long (512 octets at most)\r\n"
        assert s.closed()

    wait_for(lambda: len(rx.messages) >= 1, timeout=20)
    wait_for(lambda: v.queued() == [], timeout=10)
    assert [list(m.rcpt_tos) for m in rx.messages] == [["honest@dest.test"]]
    assert not rx.delivered_to("victim@dest.test")
    assert v.count("received") == 1 and v.stop() == 0
