"""Operator suspensions survive a restart of Volley and end by themselves."""

from __future__ import annotations

from tests.support.crash import restart
from tests.support.internet import message
from tests.support.net import wait_for


def states(v, domain: str) -> list[str]:
    return [e["state"] for e in v.cli_json("queue", "--list", "--domain", domain)["entries"]]


def test_a_suspension_survives_a_restart(net, volley) -> None:
    (held,) = net.domain("held.test")
    (free,) = net.domain("free.test")
    v = volley(workers=2)
    assert (
        v.cli("suspend", "held.test", "--duration", "1h", "--reason", "ticket 42").returncode == 0
    )
    assert v.stop() == 0
    for i in range(2):
        v.drop(message("news@sender.test", [f"u{i}@held.test"], seq=i))
    v.drop(message("news@sender.test", ["x@free.test"], seq=9))
    restart(v)
    wait_for(lambda: free.messages, timeout=30, message=lambda: f"{v.log()}")
    wait_for(lambda: states(v, "held.test") == ["suspended"] * 2, timeout=30)
    assert held.connections_total == 0
    (s,) = v.cli_json("suspend", "--list")["suspensions"]
    assert s["domain"] == "held.test" and s["reason"] == "ticket 42"
    assert v.cli("resume", "held.test").returncode == 0
    wait_for(lambda: len(held.messages) == 2, timeout=30, message=lambda: f"{v.log()}")
    assert v.stop() == 0


def test_a_suspension_ends_by_itself(net, volley) -> None:
    (rx,) = net.domain("soon.test")
    v = volley(workers=1)
    got = v.cli_json("suspend", "soon.test", "--duration", "2s")["suspended"]
    v.drop(message("news@sender.test", ["a@soon.test"], seq=1))
    wait_for(lambda: v.count("delivered") == 1, timeout=30, message=lambda: f"{v.log()}")
    assert rx.delivered_to("a@soon.test")
    (delivered,) = v.events("delivered")
    assert delivered["ts"] >= got["until"]  # not a moment before the suspension ended
    wait_for(lambda: v.count("resumed") == 1, timeout=10)
    (ended,) = v.events("resumed")
    assert ended["domain"] == "soon.test" and ended["expired"] is True
    assert v.cli_json("suspend", "--list")["suspensions"] == []
    assert v.stop() == 0
