"""Two destination domains whose MX hosts are the same are one site: they share its
connections (peak 3 at the receiver with max_connections = 3, not 6), while a domain
with `mx_rollup = false` keeps its own."""

from __future__ import annotations

from tests.support.internet import message
from tests.support.net import wait_for


def test_domains_with_the_same_mx_share_one_site(net, volley) -> None:
    rx = net.receiver()
    solo = net.receiver()
    net.dns.add_a("mx.shared.test", [rx.ip])
    net.dns.add_a("mx.solo.test", [solo.ip])
    for domain in ("one.test", "two.test"):
        net.dns.add_mx(domain, [(10, "mx.shared.test")])
    # Both rolled-up and opted-out domains on the solo host: the opted-out one is a
    # site by itself, so the host sees up to 3 + 3 connections.
    for domain in ("three.test", "four.test"):
        net.dns.add_mx(domain, [(10, "mx.solo.test")])
    limits = {"max_connections": 3, "max_messages_per_connection": 10}
    v = volley(
        workers=2,
        config={
            "domains": {
                "default": limits,
                "four.test": {"mx_rollup": False},
            }
        },
    )
    n = 400
    for i in range(n):
        for domain in ("one.test", "two.test", "three.test", "four.test"):
            v.drop(message("news@sender.test", [f"u{i}@{domain}"], seq=i))
    wait_for(
        lambda: len(rx.messages) >= 2 * n and len(solo.messages) >= 2 * n,
        timeout=180,
        message=lambda: f"{rx!r} {solo!r}",
    )
    assert rx.peak_connections == 3, rx.peak_connections
    # mx_rollup = false: four.test's 3 connections come on top of three.test's.
    assert 3 < solo.peak_connections <= 6, solo.peak_connections
    assert v.stop() == 0
