"""Issue #14, finding 2: greylisted-then-delivered mail is not resurrected by a restart.

One drop for `flaky1-bob@grey.test` (451 once, then accepted) and `stall-carol@slow.test`
(its receiver holds the RCPT reply): two entries in one segment.  Bob's entry is deferred
(its new version goes into a one-entry segment), then delivered (that segment is
unlinked) while Carol's entry keeps the first segment alive.  Removing Bob's entry once
wrote no journal line, so after a restart the old version in the first segment was live
again, attempts 0, and Bob got the message a second time.
"""

from __future__ import annotations

from tests.support.crash import restart
from tests.support.internet import message
from tests.support.net import wait_for

BOB = "flaky1-bob@grey.test"
CAROL = "stall-carol@slow.test"


def test_greylisted_then_delivered_stays_delivered_after_a_restart(net, volley) -> None:
    (grey,) = net.domain("grey.test")
    (slow,) = net.domain("slow.test")
    v = volley(
        workers=1,
        config={  # Carol's RCPT stays unanswered until the stop: her entry is never rewritten
            "smtp": {"timeouts": {"rcpt": "120s"}},
            "shutdown": {"drain_timeout": "1s"},
        },
    )
    v.drop(message("news@sender.test", [BOB, CAROL]))

    wait_for(lambda: grey.delivered_to(BOB) and slow.stalled_count, timeout=30, message=v.log)
    wait_for(lambda: v.count("delivered") == 1, timeout=10, message=v.log)
    assert v.stop() == 0  # Carol's attempt is cut short: her entry stays as it was
    assert [r["event"] for r in v.log() if r.get("rcpt") == CAROL] == ["received"]
    (left,) = v.queued()  # what a restart will load: Carol's entry only
    assert left.endswith("@slow.test")

    restart(v)
    slow.release_stalled()
    wait_for(lambda: slow.delivered_to(CAROL), timeout=30, message=v.log)
    assert v.stop() == 0
    assert len(grey.delivered_to(BOB)) == 1, "Bob got the message again after the restart"
    assert grey.rcpt_attempts(BOB) == 2  # the 451, then the delivery; nothing after
    delivered = [r["rcpt"] for r in v.events("delivered")]
    assert sorted(delivered) == sorted([BOB, CAROL])
    assert v.queued() == []
