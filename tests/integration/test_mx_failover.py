"""The next MX host is tried when one refuses the connection or greets with 421."""

from __future__ import annotations

from tests.support.internet import message
from tests.support.net import wait_for


def test_refused_first_mx_then_second(net, volley) -> None:
    _first, second = net.domain("two.test", mx=2, start=False)
    second.start()  # nothing listens on the first MX's address: connection refused
    v = volley(workers=1)
    v.drop(message("news@sender.test", ["a@two.test"]))
    wait_for(lambda: second.messages, timeout=20, message=lambda: f"{v.log()}")
    wait_for(lambda: v.count("delivered") == 1, timeout=10)
    assert next(v.events("delivered"))["mx"] == "mx2.two.test"
    assert v.count("deferred") == 0
    assert v.stop() == 0


def test_421_greeting_on_first_mx_then_second(net, volley) -> None:
    first, second = net.domain("busy.test", mx=2, greeting=None)
    first.set_greeting((421, "4.3.2 too busy (test)"))
    v = volley(workers=1)
    v.drop(message("news@sender.test", ["a@busy.test"]))
    wait_for(lambda: second.messages, timeout=20, message=lambda: f"{v.log()}")
    assert first.messages == [] and first.connections_total >= 1
    assert v.stop() == 0
