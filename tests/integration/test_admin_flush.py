"""`volley flush [DOMAIN]`: deferred mail is retried now, not at its next retry time (an
hour away here, so without the flush nothing would happen), also after the whole
destination failed and was suspended automatically; a flush leaves an operator's
suspension alone."""

from __future__ import annotations

from tests.support.crash import metric
from tests.support.internet import message
from tests.support.net import wait_for

HOUR = {"retry_schedule": ["1h"], "retry_jitter": 0.0}


def test_flush_retries_deferred_mail_now(net, volley) -> None:
    (rx,) = net.domain("flaky.test")
    (other,) = net.domain("other.test")
    v = volley(workers=2, config={"domains": {"default": HOUR}})
    v.drop(message("news@sender.test", ["flaky1-a@flaky.test"], seq=1))
    v.drop(message("news@sender.test", ["flaky1-b@other.test"], seq=2))
    wait_for(lambda: v.count("deferred") == 2, timeout=30, message=lambda: f"{v.log()}")
    (e,) = v.cli_json("queue", "--list", "--domain", "flaky.test")["entries"]
    assert e["state"] == "deferred" and e["next_attempt"] > e["created"] + 3000

    got = v.cli("flush", "flaky.test")
    assert got.returncode == 0 and "flushed 1 deferred entries (flaky.test)" in got.stdout
    wait_for(
        lambda: rx.delivered_to("flaky1-a@flaky.test"), timeout=30, message=lambda: f"{v.log()}"
    )
    assert other.messages == []  # only the named destination
    (rec,) = v.events("flushed")
    assert rec["domain"] == "flaky.test" and rec["entries"] == 1
    assert v.cli_json("flush")["flushed"] == 1  # all destinations: the other one is left
    wait_for(lambda: other.messages, timeout=30, message=lambda: f"{v.log()}")
    assert metric(v.metrics_port, "volley_operator_actions_total", action="flush") == 2
    assert v.count("delivered") == 2 and v.queued() == []
    assert v.stop() == 0


def test_flush_ends_an_automatic_suspension_but_not_an_operators(net, volley) -> None:
    (dead,) = net.domain("dead.test", start=False)  # nothing listens: connection refused
    (held,) = net.domain("held.test")
    v = volley(workers=1, config={"domains": {"default": HOUR}})
    assert v.cli("suspend", "held.test").returncode == 0
    v.drop(message("news@sender.test", ["a@dead.test"], seq=1))
    v.drop(message("news@sender.test", ["b@held.test"], seq=2))
    wait_for(lambda: v.count("deferred") == 1, timeout=30, message=lambda: f"{v.log()}")
    dead.start()
    assert v.cli_json("flush")["flushed"] == 1
    wait_for(lambda: dead.messages, timeout=30, message=lambda: f"{v.log()}")
    (e,) = v.cli_json("queue", "--list")["entries"]
    assert e["domain"] == "held.test" and e["state"] == "suspended"
    assert held.connections_total == 0
    assert v.stop() == 0
