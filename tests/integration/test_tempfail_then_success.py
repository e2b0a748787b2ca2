"""4xx twice, then accepted: deferred with backoff, then delivered; never bounced."""

from __future__ import annotations

from tests.support.internet import message
from tests.support.net import wait_for


def test_tempfail_is_retried_until_accepted(net, volley) -> None:
    (rx,) = net.domain("flaky.test")
    v = volley(workers=1)
    v.drop(message("news@sender.test", ["flaky2-bob@flaky.test"]))
    wait_for(
        lambda: rx.delivered_to("flaky2-bob@flaky.test"),
        timeout=30,
        message=lambda: f"{rx!r} {v.log()}",
    )
    wait_for(lambda: v.count("delivered") == 1, timeout=10)
    deferred = list(v.events("deferred"))
    assert [d["attempt"] for d in deferred] == [1, 2]
    assert all(d["code"] == 451 and d["enhanced"] == "4.3.0" for d in deferred)
    assert next(v.events("delivered"))["attempt"] == 3
    assert rx.rcpt_attempts("flaky2-bob@flaky.test") == 3
    assert v.count("bounced") == 0 and v.queued() == []
    assert v.stop() == 0
