"""A hard bounce (550 5.1.1: InvalidRecipient) adds the address to the suppression list
by itself; the next campaign's message to it is suppressed, not sent."""

from __future__ import annotations

from tests.support.crash import metric
from tests.support.internet import message
from tests.support.net import wait_for


def test_a_hard_bounce_stops_the_next_message(net, volley) -> None:
    x = net.domain("x.test")[0]
    v = volley()
    v.drop(message("news@sender.test", ["permfail-gone@x.test", "ok@x.test"], seq=1))
    wait_for(lambda: v.count("bounced") == 1 and v.count("delivered") == 1, timeout=30)
    # The supervisor adds it once the worker's next metrics flush carried the event.
    wait_for(lambda: v.count("suppression_added") == 1, timeout=10, message=v.text_output)
    [added] = v.events("suppression_added")
    assert added["entry"] == "permfail-gone@x.test" and added["source"] == "bounce"
    assert added["scope"] == "global" and added["expires"] is None
    assert added["reason"].startswith("InvalidRecipient: 550 5.1.1")
    before = len(x.messages)
    v.drop(message("news@sender.test", ["permfail-gone@x.test", "ok@x.test"], seq=2))
    wait_for(lambda: v.count("delivered") == 2 and v.count("suppressed") == 1, timeout=30)
    [sup] = v.events("suppressed")
    assert sup["rcpt"] == "permfail-gone@x.test" and sup["source"] == "bounce"
    assert [list(m.rcpt_tos) for m in x.messages[before:]] == [["ok@x.test"]]
    # Not tried again.  Counted by recipient: the bounce report to news@sender.test
    # (a domain the test's DNS does not know) may bounce too by now, on a loaded machine.
    gone = [r for r in v.events("bounced") if r["rcpt"] == "permfail-gone@x.test"]
    assert len(gone) == 1
    wait_for(
        lambda: metric(v.metrics_port, "volley_suppressions_added_total", source="bounce") == 1,
        timeout=10,
    )
    assert v.stop() == 0
