"""Issue #9: one bounce report per failed message, listing every failed recipient.

A message is queued as one entry per destination domain; each entry once sent its own
DSN, so a newsletter to three failing domains gave its sender three bounces.  Now the
report waits `dsn.hold` for the message's other failures and lists them all, with a
Diagnostic-Code for each: `smtp; 550 5.1.1 ...` (the status not repeated) for what a
server said, `X-Volley; ...` for a domain that does not exist.
"""

from __future__ import annotations

from tests.support.internet import message
from tests.support.net import wait_for

FAILING = ["permfail-ann@one.test", "permfail-bob@two.test", "permfail-cat@three.test"]
NO_DOMAIN = "dan@nowhere.test"  # NXDOMAIN in the test DNS


def test_a_message_failing_on_four_domains_gives_one_report(net, volley) -> None:
    for d in ("one.test", "two.test", "three.test"):
        net.domain(d)
    (sender_mx,) = net.domain("sender.test")
    v = volley(workers=1, config={"dsn": {"hold": "3s"}})
    v.drop(message("news@sender.test", [*FAILING, NO_DOMAIN], subject="Four ways to fail"))
    wait_for(lambda: sender_mx.messages, timeout=30, message=v.log)
    wait_for(lambda: v.queued() == [], timeout=20, message=v.log)
    (dsn,) = sender_mx.messages
    text = dsn.data.decode()
    for rcpt in FAILING:
        assert f"Final-Recipient: rfc822; {rcpt}" in text
    assert text.count("Diagnostic-Code: smtp; 550 5.1.1 no such user (test)") == 3
    assert f"Final-Recipient: rfc822; {NO_DOMAIN}" in text
    assert "Diagnostic-Code: X-Volley; domain not found" in text
    assert "5.1.1 5.1.1" not in text
    assert v.count("dsn") == 1 and v.count("dsn_merged") == 3 and v.count("bounced") == 4
    assert v.stop() == 0
