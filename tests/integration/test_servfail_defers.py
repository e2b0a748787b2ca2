"""SERVFAIL is temporary: deferred, never bounced; delivered once DNS recovers."""

from __future__ import annotations

from tests.support.crash import metric
from tests.support.internet import message
from tests.support.net import wait_for


def test_servfail_defers_then_delivers(net, volley) -> None:
    net.dns.servfail("flaky-dns.test")
    v = volley(workers=1)
    v.drop(message("news@sender.test", ["a@flaky-dns.test"]))
    wait_for(lambda: v.count("deferred") >= 1, timeout=20, message=lambda: f"{v.log()}")
    d = next(v.events("deferred"))
    assert d["code"] == 451 and d["enhanced"] == "4.4.3"
    assert v.count("bounced") == 0
    wait_for(  # issue #9: this counter was never incremented
        lambda: (metric(v.metrics_port, "volley_dns_lookups_total", result="failure") or 0) >= 1,
        timeout=10,
    )
    # add_mx replaces the servfail mode in one step (a remove() first could answer NXDOMAIN).
    (rx,) = net.domain("flaky-dns.test", ttl=1)
    wait_for(lambda: rx.messages, timeout=30, message=lambda: f"{v.log()}")
    assert v.count("bounced") == 0
    assert v.stop() == 0
