"""Per-message state survives a kill -9: a half-delivered message is never sent again to
the recipients that accepted it, and its attempt count goes on.

One message to `a@d.test` (accepts) and `flaky2-b@d.test` (451 twice, then accepts): one
spool entry, one transaction. After the first attempt the entry on disk lists only `b`
with attempts = 1; Volley is SIGKILLed right then, and restarted. `a` never sees a
second RCPT, `b` is deferred once more and then delivered, and the log's `attempt` goes
1, 2, 3 across the restart.
"""

from __future__ import annotations

from tests.support.crash import restart
from tests.support.internet import message
from tests.support.net import wait_for

A = "a@d.test"
B = "flaky2-b@d.test"


def test_partial_delivery_state_survives_kill9(net, volley) -> None:
    (rx,) = net.domain("d.test")
    # 2 s to the first retry: time enough to kill Volley between the two attempts.
    v = volley(workers=2, config={"domains": {"default": {"retry_schedule": ["2s", "300ms"]}}})
    v.drop(message("news@sender.test", [A, B], seq=1))

    def on_disk() -> dict[str, object] | None:
        entries = v.queued()
        if len(entries) != 1:
            return None
        meta, _ = v.entry(entries[0])
        return meta if meta["rcpts"] == [B] else None

    # The outcome is logged first, then the entry is rewritten: wait for the rewrite.
    meta = wait_for(on_disk, timeout=30, message=lambda: f"{v.log()}")
    assert meta is not None and meta["attempts"] == 1
    v.kill()
    assert rx.rcpt_attempts(A) == 1 and rx.rcpt_attempts(B) == 1
    before = [(r["event"], r["rcpt"], r["attempt"]) for r in v.log() if "attempt" in r]
    assert before == [("delivered", A, 1), ("deferred", B, 1)], before

    restart(v)
    wait_for(lambda: rx.delivered_to(B), timeout=30, message=lambda: f"{v.log()}")
    assert v.stop() == 0
    assert rx.rcpt_attempts(A) == 1  # never sent again
    assert [m.rcpt_tos for m in rx.messages] == [(A,), (B,)]
    assert rx.rcpt_attempts(B) == 3
    after = [(r["event"], r["rcpt"], r["attempt"]) for r in v.log() if "attempt" in r]
    assert after == [
        ("delivered", A, 1),
        ("deferred", B, 1),
        ("deferred", B, 2),
        ("delivered", B, 3),
    ], after
    assert v.queued() == []
