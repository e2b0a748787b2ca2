"""An egress pool of two sources weighted 3:1: the receiver sees connections from both
source addresses, about three from the first for one from the second, and each
connection announces its own source's EHLO name.

One message per connection (max_messages_per_connection = 1), so 400 messages are 400
source choices: the share of the first source is 0.75 +- 0.022 (one standard deviation
of a binomial over 400), and the bounds below are more than four of those away.
"""

from __future__ import annotations

from collections import Counter

from tests.support.internet import message
from tests.support.net import wait_for

MESSAGES = 400


def test_connections_bind_their_sources_by_weight(net, volley) -> None:
    (rx,) = net.domain("pool.test")
    heavy, light = net.address(), net.address()
    names = {heavy: "heavy.volley.test", light: "light.volley.test"}
    v = volley(
        workers=2,
        config={
            "egress": {
                "sources": {
                    "heavy": {"address": heavy, "ehlo": names[heavy]},
                    "light": {"address": light, "ehlo": names[light]},
                },
                "pools": {"default": {"sources": {"heavy": 3, "light": 1}}},
            },
            "domains": {"pool.test": {"max_messages_per_connection": 1, "max_connections": 4}},
        },
    )
    for i in range(MESSAGES):
        v.drop(message("news@sender.test", [f"u{i}@pool.test"], seq=i))
    wait_for(lambda: len(rx.messages) >= MESSAGES, timeout=180, message=lambda: repr(rx))
    connections = {m.conn_id: (m.peer, m.helo) for m in rx.messages}
    assert len(connections) == MESSAGES  # one message per connection
    peers = Counter(peer for peer, _ in connections.values())
    share = peers[heavy] / MESSAGES
    print(f"connections per source address: {dict(peers)}; share of the 3-weight: {share:.3f}")
    assert set(peers) == {heavy, light}, peers
    assert 0.65 <= share <= 0.85, peers
    for peer, helo in connections.values():
        assert helo == names[peer], (peer, helo)
    assert v.stop() == 0
