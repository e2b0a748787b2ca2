"""Limits apply per (egress source, site), as receivers apply them per sending IP: with
max_connections = 2 and a pool of two sources, the receiver sees at most 2 connections
from each source address at once, and 4 in all (not 2: the sources do not share them)."""

from __future__ import annotations

from tests.support.internet import message
from tests.support.net import wait_for

MESSAGES = 600


def test_max_connections_holds_per_source(net, volley) -> None:
    (rx,) = net.domain("limited.test")
    one, two = net.address(), net.address()
    v = volley(
        workers=2,
        config={
            "egress": {
                "sources": {"one": {"address": one}, "two": {"address": two}},
                "pools": {"default": {"sources": {"one": 1, "two": 1}}},
            },
            "domains": {"limited.test": {"max_connections": 2, "max_messages_per_connection": 10}},
        },
        start=False,
    )
    (v.spool / "incoming").mkdir(parents=True)  # all queued before the first connection
    for i in range(MESSAGES):
        v.drop(message("news@sender.test", [f"u{i}@limited.test"], seq=i))
    v.start()
    wait_for(lambda: len(rx.messages) >= MESSAGES, timeout=180, message=lambda: repr(rx))
    by_peer = rx.peak_connections_by_peer
    print(f"peak connections per source address {by_peer}, in all {rx.peak_connections}")
    assert by_peer == {one: 2, two: 2}, by_peer
    assert rx.peak_connections == 4, rx.peak_connections
    assert v.stop() == 0
