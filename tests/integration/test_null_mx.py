"""A domain publishing "MX 0 ." (RFC 7505) is bounced at once with 5.1.10, no connection."""

from __future__ import annotations

from tests.support.internet import message
from tests.support.net import wait_for


def test_null_mx_bounces_immediately(net, volley) -> None:
    net.dns.null_mx("nomail.test")
    (sender_mx,) = net.domain("sender.test")
    v = volley(workers=1)
    v.drop(message("news@sender.test", ["a@nomail.test"]))
    wait_for(lambda: v.count("bounced") == 1, timeout=20, message=lambda: f"{v.log()}")
    (b,) = v.events("bounced")
    assert (b["code"], b["enhanced"], b["attempt"]) == (556, "5.1.10", 1)
    assert v.count("deferred") == 0
    wait_for(lambda: sender_mx.messages, timeout=20)
    assert b"Status: 5.1.10" in sender_mx.messages[0].data
    assert v.stop() == 0
