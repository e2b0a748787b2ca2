"""`volley suspend` / `volley resume`: a suspended destination gets no new connection, a
connection in the middle of a message finishes it and closes, the mail stays queued
untouched and goes out on resume; every step is in the log and in /metrics."""

from __future__ import annotations

from tests.support.crash import metric
from tests.support.internet import message
from tests.support.net import wait_for


def states(v, domain: str) -> list[str]:
    return [e["state"] for e in v.cli_json("queue", "--list", "--domain", domain)["entries"]]


def test_suspend_stops_new_connections_until_resume(net, volley) -> None:
    (held,) = net.domain("held.test")
    (free,) = net.domain("free.test")
    v = volley(workers=2)
    got = v.cli("suspend", "held.test", "--duration", "1h", "--reason", "provider blocks us")
    assert got.returncode == 0, got.stderr
    assert "suspended held.test until" in got.stdout and "provider blocks us" in got.stdout
    for i in range(3):
        v.drop(message("news@sender.test", [f"u{i}@held.test"], seq=i))
    v.drop(message("news@sender.test", ["x@free.test"], seq=9))
    # The free destination's mail goes out; once the held one's is queued too (listed as
    # suspended) the dispatcher has had every chance to connect to it, and did not.
    wait_for(lambda: free.messages, timeout=30, message=lambda: f"{v.log()}")
    wait_for(lambda: states(v, "held.test") == ["suspended"] * 3, timeout=30)
    assert held.connections_total == 0
    assert len([n for n in v.queued() if n.endswith("@held.test")]) == 3
    (rec,) = v.events("suspended")
    assert rec["domain"] == "held.test" and rec["reason"] == "provider blocks us"
    listing = v.cli_json("suspend", "--list")["suspensions"]
    assert [s["domain"] for s in listing] == ["held.test"]
    port = v.metrics_port
    assert metric(port, "volley_suspended_destinations") == 1
    end = metric(port, "volley_suspension_end_timestamp_seconds", domain="held.test")
    assert end == listing[0]["until"]
    assert metric(port, "volley_operator_actions_total", action="suspend") == 1

    got = v.cli("resume", "held.test")
    assert got.returncode == 0 and "resumed held.test" in got.stdout, got.stderr
    wait_for(lambda: len(held.messages) == 3, timeout=30, message=lambda: f"{v.log()}")
    assert v.count("resumed") == 1 and next(v.events("resumed"))["domain"] == "held.test"
    assert v.cli("resume", "held.test").stdout.strip() == "held.test was not suspended"
    assert metric(port, "volley_suspended_destinations") == 0
    assert metric(port, "volley_suspension_end_timestamp_seconds", domain="held.test") is None
    assert v.count("delivered") == 4 and v.count("deferred") == 0
    assert v.stop() == 0


def test_an_open_connection_finishes_its_message_then_closes(net, volley) -> None:
    (rx,) = net.domain("held.test")
    v = volley(workers=1, config={"domains": {"held.test": {"max_connections": 1}}})
    v.drop(message("news@sender.test", ["stall-a@held.test"], seq=1))
    wait_for(lambda: rx.stalled_count == 1, timeout=30)  # one connection, mid-transaction
    v.drop(message("news@sender.test", ["b@held.test"], seq=2))
    v.drop(message("news@sender.test", ["c@held.test"], seq=3))
    wait_for(lambda: states(v, "held.test") == ["in flight", "queued", "queued"], timeout=30)
    assert v.cli("suspend", "held.test").returncode == 0
    # The listing goes through the same channel as the suspension, so once it says
    # "suspended" the worker has applied it.
    wait_for(lambda: states(v, "held.test") == ["in flight", "suspended", "suspended"], timeout=10)
    rx.release_stalled()
    wait_for(lambda: rx.delivered_to("stall-a@held.test"), timeout=30)
    wait_for(lambda: rx.open_connections == 0, timeout=30)  # it closed instead of going on
    assert rx.connections_total == 1
    assert rx.delivered_to("b@held.test") == [] and rx.delivered_to("c@held.test") == []
    assert states(v, "held.test") == ["suspended", "suspended"]
    assert v.cli("resume", "held.test").returncode == 0
    wait_for(lambda: len(rx.messages) == 3, timeout=30, message=lambda: f"{v.log()}")
    assert v.stop() == 0
