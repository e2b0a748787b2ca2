"""Issue #15: on a reused connection a message costs one round trip, not two.

With `smtp.pipeline_depth = 2` Volley writes the next message's MAIL, RCPT and DATA in
the same write as the previous message's content and "." (RFC 2920 §3.1: DATA ends a
group, the content may open the next), so the receiver answers one read per message:
"250 queued" for one, "250 250 354" for the next. With depth 1 (one transaction at a
time) every message takes two reads: envelope -> 354, content -> 250.

The receiver is a pipelining server that counts, per connection, its transactions (MAIL
commands) and its turns: reads of Volley's bytes that it answered, each a round trip
Volley waited for. 40 messages are queued before Volley starts, so one connection
carries them all back to back.
"""

from __future__ import annotations

import pytest

from tests.support.internet import message
from tests.support.net import wait_for

MESSAGES = 40


@pytest.mark.parametrize("depth", [1, 2])
def test_one_round_trip_per_message_on_a_busy_connection(net, volley, depth: int) -> None:
    mx = net.scripted()
    net.publish("rt.test", [mx.ip])
    v = volley(
        workers=1,
        config={
            "smtp": {"pipeline_depth": depth},
            "domains": {"default": {"max_connections": 1}},
        },
        start=False,
    )
    (v.spool / "incoming").mkdir(parents=True, exist_ok=True)
    for i in range(MESSAGES):
        v.drop(message("news@sender.test", [f"u{i}@rt.test"], seq=i))
    v.start()
    wait_for(lambda: v.count("delivered") == MESSAGES, timeout=30, message=v.log)
    assert v.stop() == 0

    (conn,) = mx.conns  # one connection carried every message
    print(f"depth {depth}: {conn.turns} turns for {MESSAGES} messages")
    assert sum(c.upper().startswith("MAIL") for c in conn.commands) == MESSAGES
    assert len(mx.messages) == MESSAGES
    # Turns besides the messages': EHLO, QUIT, and at depth 2 the first envelope alone.
    if depth == 1:
        assert conn.turns >= 2 * MESSAGES, conn.turns
    else:
        assert conn.turns <= MESSAGES + 3, conn.turns
    assert [r["attempt"] for r in v.events("delivered")] == [1] * MESSAGES
