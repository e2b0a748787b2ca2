"""The only MX greets with 421: deferred, and delivered when it recovers."""

from __future__ import annotations

from tests.support.internet import message
from tests.support.net import wait_for


def test_421_greeting_defers_then_delivers(net, volley) -> None:
    (rx,) = net.domain("busy.test")
    rx.set_greeting((421, "4.3.2 service busy (test)"))
    v = volley(workers=1)
    v.drop(message("news@sender.test", ["a@busy.test", "b@busy.test"]))
    wait_for(lambda: v.count("deferred") >= 2, timeout=20, message=lambda: f"{v.log()}")
    d = next(v.events("deferred"))
    assert d["code"] == 421 and d["ip"] == rx.ip and "busy" in d["text"]
    rx.set_greeting(None)
    wait_for(lambda: rx.messages, timeout=30, message=lambda: f"{v.log()}")
    assert sorted(rx.messages[0].rcpt_tos) == ["a@busy.test", "b@busy.test"]
    assert v.count("bounced") == 0
    assert v.stop() == 0
