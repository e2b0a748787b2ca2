"""An application submits over SMTP (smtplib, from loopback, no AUTH): every message
reaches its receiver as sent, with Volley's Received: on top, the envelope taken from
MAIL FROM / RCPT TO (not the headers, Bcc left as sent), Date and Message-ID added where
missing, and `received` records that say where it came from."""

from __future__ import annotations

import smtplib

from tests.support.internet import message
from tests.support.net import wait_for
from tests.support.submit import listening, port_of


def test_smtplib_submits_through_to_the_receivers(net, volley) -> None:
    one = net.domain("one.test")[0]
    two = net.domain("two.test")[0]
    v = volley(workers=2, config=listening())
    sent: dict[str, bytes] = {}
    with smtplib.SMTP("127.0.0.1", port_of(v), local_hostname="app.client.test") as s:
        code, text = s.ehlo()
        assert code == 250 and b"PIPELINING" in text and b"SIZE 52428800" in text
        for i in range(20):
            rcpt = f"user{i}@{'one' if i % 2 else 'two'}.test"
            data = message("news@sender.test", [rcpt], seq=i)
            assert s.sendmail("bounce+x@sender.test", [rcpt], data) == {}
            sent[rcpt] = data
        # The envelope is MAIL FROM / RCPT TO: the Bcc header is neither read nor removed.
        bcc = b"From: a@sender.test\r\nTo: list@one.test\r\nBcc: hidden@two.test\r\n\r\nhi\r\n"
        assert s.sendmail("a@sender.test", ["real@one.test"], bcc) == {}
    wait_for(lambda: len(one.messages) + len(two.messages) >= 21, timeout=30)
    got = {m.rcpt_tos[0]: m for m in one.messages + two.messages}
    assert len(one.messages) + len(two.messages) == 21  # each once
    for rcpt, data in sent.items():
        m = got[rcpt]
        assert m.mail_from == "bounce+x@sender.test"
        head, _, rest = m.data.partition(b"\r\nFrom: ")
        assert head.startswith(b"Received: from app.client.test ([127.0.0.1])\r\n\tby volley.test")
        assert b"From: " + rest == data  # byte for byte, dot-stuffed line included
    plain = got["real@one.test"].data
    assert b"Bcc: hidden@two.test\r\n" in plain and not two.delivered_to("hidden@two.test")
    assert b"\r\nDate: " in plain and b"\r\nMessage-ID: <" in plain  # added, as for drops
    wait_for(lambda: v.count("delivered") == 21, timeout=10)
    rec = next(r for r in v.events("received") if r["rcpt"] == "user1@one.test")
    assert (rec["via"], rec["client"], rec["auth"]) == ("smtp", "127.0.0.1", None)
    assert rec["sender"] == "bounce+x@sender.test" and rec["msgid"].startswith("<m1.")
    assert v.queued() == [] and v.stop() == 0
