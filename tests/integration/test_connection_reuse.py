"""1 000 messages to one domain reuse connections: at most ceil(1000/100) + workers."""

from __future__ import annotations

import math

from tests.support.internet import message
from tests.support.net import wait_for


def test_thousand_messages_reuse_connections(net, volley) -> None:
    (rx,) = net.domain("bulk.test")
    workers = 2
    v = volley(workers=workers, config={"smtp": {"idle_timeout": "3s"}})
    for i in range(1000):
        v.drop(message("news@sender.test", [f"u{i}@bulk.test"], seq=i))
    wait_for(
        lambda: len(rx.messages) >= 1000,
        timeout=120,
        message=lambda: f"{len(rx.messages)} received, {rx!r}",
    )
    bound = math.ceil(1000 / 100) + workers
    assert rx.connections_total <= bound, (rx.connections_total, rx.transactions_per_connection)
    assert max(rx.transactions_per_connection.values()) <= 100
    assert len({m.rcpt_tos[0] for m in rx.messages}) == 1000
    assert v.stop() == 0
