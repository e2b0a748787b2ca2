"""A submission over SMTP is DKIM-signed once, like a drop (README "Deliverability"):
after the headers Volley adds, the signature on top, and an independent verifier
(mailauth) passes it on what the receiver got, a dot-stuffed line included."""

from __future__ import annotations

import smtplib
from pathlib import Path

from engine.auth.dkim import load_key
from engine.auth.keygen import keygen
from tests.support.dkim_check import mailauth_verify, publish_key
from tests.support.net import wait_for
from tests.support.submit import listening, port_of


def test_listener_mail_is_signed_and_verifies(net, volley, tmp_path: Path) -> None:
    key = keygen("sender.test", "smtp2026", "rsa", 2048, tmp_path)
    publish_key(net.dns, load_key(key, "sender.test", "smtp2026"))
    rx = net.domain("dest.test")[0]
    config = listening()
    config["dkim"] = {"sender.test": {"selector": "smtp2026", "key": str(key)}}
    v = volley(workers=2, config=config)
    text = (
        b"From: News <news@sender.test>\r\nTo: ann@dest.test\r\nSubject: signed\r\n"
        b"MIME-Version: 1.0\r\n\r\nHello\r\n.a line that starts with a dot\r\nbye\r\n"
    )
    with smtplib.SMTP("127.0.0.1", port_of(v)) as s:
        assert s.sendmail("bounce@sender.test", ["ann@dest.test"], text) == {}
    wait_for(lambda: len(rx.messages) == 1, timeout=30)
    got = rx.messages[0].data
    assert got.startswith(b"DKIM-Signature: ") and got.count(b"DKIM-Signature:") == 1
    assert b"\r\nReceived: from " in got  # the trace header under the signature
    assert b"\r\n.a line that starts with a dot\r\n" in got
    results = mailauth_verify(got, net.dns)
    assert [(r.selector, r.result) for r in results] == [("smtp2026", "pass")], results
    assert v.stop() == 0
