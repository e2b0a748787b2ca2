"""Issue #14, finding 4: replies a command cannot get are failures, never successes.

RFC 5321 §4.3.2: MAIL succeeds only on 2xx, DATA must get 354, end of data needs 2xx.
A 3xx to MAIL once tripped an assertion and reconnected at once; a 250 to DATA was
logged `delivered` and the entry removed although no content was sent; a 3xx to the
final "." also counted as delivered.  Now each defers the message with the reason, the
session is closed, the destination gets bounded attempts, and the mail is delivered once
the receiver behaves.
"""

from __future__ import annotations

import pytest

from tests.support.internet import message
from tests.support.net import wait_for
from tests.support.scripted import replace, standard

CASES = {
    "354 to MAIL": (replace("MAIL", b"354 go ahead?\r\n"), "unexpected reply to MAIL"),
    "250 to DATA": (replace("DATA", b"250 2.0.0 ok\r\n"), "unexpected reply to DATA"),
    "354 to end of data": (replace(".", b"354 more?\r\n"), "unexpected reply to ."),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_unexpected_reply_defers_and_nothing_counts_as_delivered(net, volley, case: str) -> None:
    script, reason = CASES[case]
    odd = net.scripted(script)
    net.publish("odd.test", [odd.ip])
    v = volley(
        workers=1,
        config={"domains": {"default": {"retry_schedule": ["1s"], "retry_jitter": 0.0}}},
    )
    for i in range(5):
        v.drop(message("news@sender.test", [f"u{i}@odd.test"], seq=i))
    wait_for(lambda: v.count("deferred") >= 5, timeout=20, message=v.log)
    assert v.count("delivered") == 0
    deferred = list(v.events("deferred"))
    assert all(r["code"] == 451 for r in deferred)
    assert any(reason in r["text"] for r in deferred), deferred[0]["text"]
    # Slow start + dead destination: the one probe connection broke at its first
    # transaction, so the other four were deferred without a connection of their own.
    assert odd.connections <= 2, odd.connections
    if case == "250 to DATA":
        assert odd.messages == []  # no content was ever sent

    odd.script = standard  # the receiver is fixed: the next retry delivers everything
    wait_for(lambda: v.count("delivered") == 5, timeout=30, message=v.log)
    assert v.count("bounced") == 0
    assert v.stop() == 0
