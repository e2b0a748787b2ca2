"""max_connections holds across all workers: the receiver never sees more at once."""

from __future__ import annotations

from tests.support.internet import message
from tests.support.net import wait_for


def test_per_domain_limit_is_never_exceeded_across_workers(net, volley) -> None:
    (rx,) = net.domain("limited.test")
    (other,) = net.domain("free.test")
    v = volley(
        workers=3,
        config={
            "domains": {
                # 10 messages per connection so that many connections come and go.
                "limited.test": {"max_connections": 3, "max_messages_per_connection": 10},
            }
        },
    )
    for i in range(600):
        v.drop(message("news@sender.test", [f"u{i}@limited.test"], seq=i))
        if i % 3 == 0:
            v.drop(message("news@sender.test", [f"u{i}@free.test"], seq=i))
    wait_for(
        lambda: len(rx.messages) >= 600 and len(other.messages) >= 200,
        timeout=120,
        message=lambda: f"{rx!r} {other!r}",
    )
    assert rx.peak_connections <= 3, rx.peak_connections
    # The limit was actually reached (several workers shared the 3 slots) ...
    assert rx.peak_connections == 3
    # ... and connections cycled: 600 messages at 10 per connection.
    assert rx.connections_total >= 60
    assert v.stop() == 0
