"""No MX record: deliver to the domain's own A record (RFC 5321 §5.1 implicit MX)."""

from __future__ import annotations

from tests.support.internet import message
from tests.support.net import wait_for


def test_no_mx_falls_back_to_a_record(net, volley) -> None:
    rx = net.receiver()
    net.dns.add_a("plain.test", [rx.ip])
    v = volley(workers=1)
    v.drop(message("news@sender.test", ["a@plain.test"]))
    wait_for(lambda: rx.messages, timeout=20, message=lambda: f"{v.log()}")
    wait_for(lambda: v.count("delivered") == 1, timeout=10)
    (d,) = v.events("delivered")
    assert d["ip"] == rx.ip and d["mx"] == "plain.test"
    assert v.stop() == 0
