"""5xx -> bounced, and an RFC 3464 DSN reaches the sender's domain; a DSN never bounces."""

from __future__ import annotations

import email
from email import policy

from tests.support.internet import message
from tests.support.net import wait_for


def test_permanent_failure_bounces_with_dsn(net, volley) -> None:
    (rx,) = net.domain("dest.test")
    (sender_mx,) = net.domain("sender.test")
    v = volley(workers=2)
    v.drop(
        message(
            "news@sender.test", ["permfail-ann@dest.test", "bob@dest.test"], subject="Spring sale"
        )
    )
    wait_for(lambda: sender_mx.messages, timeout=30, message=lambda: f"{v.log()}")
    assert [m.rcpt_tos for m in rx.messages] == [("bob@dest.test",)]
    (dsn,) = sender_mx.messages
    assert dsn.mail_from == "<>" and dsn.rcpt_tos == ("news@sender.test",)  # null reverse-path
    msg = email.message_from_bytes(dsn.data, policy=policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["Auto-Submitted"] == "auto-replied"
    parts = [p.get_content_type() for p in msg.iter_parts()]
    assert parts == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
    status = dsn.data.decode()
    assert "Final-Recipient: rfc822; permfail-ann@dest.test" in status
    assert "Status: 5.1.1" in status and "Action: failed" in status
    assert "Diagnostic-Code: smtp; 550" in status
    assert "Subject: Spring sale" in status  # the original headers
    (bounce,) = v.events("bounced")
    assert bounce["rcpt"] == "permfail-ann@dest.test" and bounce["code"] == 550
    assert bounce["mx"] == "mx1.dest.test" and bounce["ip"] == rx.ip
    assert v.stop() == 0


def test_a_bounced_dsn_is_not_bounced_again(net, volley) -> None:
    (rx,) = net.domain("dest.test")
    net.domain("sender.test")
    v = volley(workers=1)
    # The sender's own mailbox refuses: the DSN to it fails permanently and is dropped.
    v.drop(message("permfail-news@dest.test", ["permfail-x@dest.test"]))
    wait_for(lambda: v.count("bounced") == 2, timeout=30, message=lambda: f"{v.log()}")
    assert v.count("dsn") == 1
    wait_for(lambda: v.queued() == [], timeout=10)
    assert rx.messages == []
    assert v.stop() == 0
    assert v.count("dsn") == 1
