"""`volley delete`: queued mail is removed without a DSN, logged as `deleted` with the
operator's reason; the selector picks exactly what it names (here: by sender)."""

from __future__ import annotations

from tests.support.crash import metric
from tests.support.internet import message
from tests.support.net import wait_for

HOUR = {"retry_schedule": ["1h"], "retry_jitter": 0.0}


def test_delete_by_sender_removes_without_dsn(net, volley) -> None:
    net.domain("dest.test")
    (sender_mx,) = net.domain("sender.test")
    (keep_mx,) = net.domain("keep.test")
    v = volley(workers=2, config={"domains": {"default": HOUR}})
    v.drop(message("spam@sender.test", ["tempfail-a@dest.test", "tempfail-b@dest.test"], seq=1))
    v.drop(message("Spam@Sender.test", ["tempfail-c@keep.test"], seq=2))
    v.drop(message("news@keep.test", ["tempfail-d@dest.test"], seq=3))
    wait_for(lambda: v.count("deferred") == 4, timeout=30, message=lambda: f"{v.log()}")

    assert v.cli("delete", "--domain", "dest.test", "--id", "x").returncode == 2  # one only
    got = v.cli("delete", "--sender", "spam@sender.test", "--reason", "compromised account")
    assert got.returncode == 0, got.stderr
    assert "deleted 2 queued entries (3 recipients, no DSN)" in got.stdout
    deleted = list(v.events("deleted"))
    assert sorted(d["rcpt"] for d in deleted) == [
        "tempfail-a@dest.test",
        "tempfail-b@dest.test",
        "tempfail-c@keep.test",
    ]
    assert all(d["reason"] == "compromised account" for d in deleted)
    assert {d["sender"] for d in deleted} == {"spam@sender.test", "Spam@Sender.test"}
    wait_for(lambda: len(v.queued()) == 1, timeout=10)  # removals follow their log lines
    (left,) = v.cli_json("queue", "--list")["entries"]
    assert left["sender"] == "news@keep.test"
    assert v.count("bounced") == 0 and v.count("dsn") == 0
    assert sender_mx.messages == [] and keep_mx.messages == []
    assert metric(v.metrics_port, "volley_operator_removed_total", action="delete") == 3
    assert metric(v.metrics_port, "volley_operator_actions_total", action="delete") == 1
    assert v.stop() == 0
    assert v.count("deleted") == 3 and len(v.queued()) == 1  # nothing came back
