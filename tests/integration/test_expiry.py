"""A message that keeps failing temporarily past max_age is expired and bounced."""

from __future__ import annotations

from tests.support.internet import message
from tests.support.net import wait_for


def test_message_past_max_age_expires_with_dsn(net, volley) -> None:
    net.domain("slow.test")
    (sender_mx,) = net.domain("sender.test")
    v = volley(workers=1, config={"domains": {"slow.test": {"max_age": "1500ms"}}})
    v.drop(message("news@sender.test", ["tempfail-a@slow.test"]))
    wait_for(lambda: v.count("expired") == 1, timeout=30, message=lambda: f"{v.log()}")
    (e,) = v.events("expired")
    assert e["in_queue"] >= 1.5 and "expired" in e["text"] and "busy" in e["text"]
    assert v.count("deferred") >= 1 and v.count("bounced") == 0
    wait_for(lambda: sender_mx.messages, timeout=20)
    assert b"Status: 5.4.7" in sender_mx.messages[0].data
    wait_for(lambda: v.queued() == [], timeout=10)
    assert v.stop() == 0
