"""Issue #14, finding 5: a blocked sending IP defers the queue; it does not bounce it.

A `554 ... blocked using zen.spamhaus.org` greeting once bounced every ready message of
the domain with a DSN each.  Such blocks are about the sending IP and usually temporary;
Postfix's default (smtp_skip_5xx_greeting = yes) defers, and so does Volley: the mail
waits, and is delivered once the block is lifted.
"""

from __future__ import annotations

from tests.support.internet import message
from tests.support.net import wait_for

BLOCK = (554, "5.7.1 Service unavailable; client [127.0.0.1] blocked using zen.spamhaus.org")


def test_a_5xx_greeting_defers_and_the_mail_goes_once_unblocked(net, volley) -> None:
    (rx,) = net.domain("blocked.test")
    rx.set_greeting(BLOCK)
    v = volley(workers=1)
    for i in range(5):
        v.drop(message("news@sender.test", [f"u{i}@blocked.test"], seq=i))
    wait_for(lambda: v.count("deferred") >= 5, timeout=20, message=v.log)
    deferred = list(v.events("deferred"))
    assert all(r["code"] == 554 and r["enhanced"] == "4.7.1" for r in deferred)
    assert "blocked using zen.spamhaus.org" in deferred[0]["text"]
    assert v.count("bounced") == 0 and v.count("dsn") == 0
    assert rx.rejected_connections <= 2  # one probe per retry step, not one per message

    rx.set_greeting(None)
    wait_for(lambda: len(rx.messages) == 5, timeout=30, message=v.log)
    assert v.count("bounced") == 0 and v.count("dsn") == 0
    assert v.stop() == 0
