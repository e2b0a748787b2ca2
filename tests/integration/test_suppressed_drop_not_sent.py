"""A drop to an address on the suppression list is not sent: the real `volley run` takes
the drop, queues the other recipients, and writes a `suppressed` record naming the entry
that caused it; a drop whose recipients are all suppressed is consumed, not rejected."""

from __future__ import annotations

from tests.support.crash import metric
from tests.support.internet import message
from tests.support.net import wait_for


def test_a_suppressed_recipient_is_not_sent(net, volley) -> None:
    x = net.domain("x.test")[0]
    v = volley()
    got = v.cli("suppress", "add", "Gone@X.test", "--reason", "asked by phone")
    assert got.returncode == 0, got.stderr
    assert "suppressed gone@x.test (global)" in got.stdout
    v.drop(message("news@sender.test", ["gone@x.test", "ok@x.test"], seq=1))
    v.drop(message("news@sender.test", ["GONE@x.test"], seq=2), name="only-gone.eml")
    wait_for(
        lambda: v.count("delivered") == 1 and v.count("suppressed") == 2,
        timeout=30,
        message=lambda: f"{v.log()}\n{v.text_output()}",
    )
    assert [list(m.rcpt_tos) for m in x.messages] == [["ok@x.test"]]
    # The two drops may be taken by different workers, in either order.
    first, second = sorted(v.events("suppressed"), key=lambda r: r["drop"])
    assert first["rcpt"] == "gone@x.test" and first["entry"] == "gone@x.test"
    assert first["source"] == "manual" and first["reason"] == "asked by phone"
    assert first["scope"] == "global" and first["sender_domain"] == "sender.test"
    assert second["rcpt"] == "GONE@x.test" and second["drop"] == "only-gone.eml"
    # Consumed, not rejected: nothing left in incoming/ or rejected/, nothing queued.
    wait_for(lambda: v.incoming() == [] and v.queued() == [], timeout=10)
    assert list((v.spool / "rejected").iterdir()) == []
    assert [r["rcpt"] for r in v.events("received")] == ["ok@x.test"]
    wait_for(
        lambda: metric(v.metrics_port, "volley_suppressed_total", source="manual") == 2, timeout=10
    )
    assert v.stop() == 0
