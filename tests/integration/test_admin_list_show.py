"""`volley queue --list` and `volley show ID`: what is queued, with its sender, pending
recipients, attempts, next attempt and last reply; one message's envelope, headers, state
and history.  `volley queue` (the spool summary) works as before."""

from __future__ import annotations

from tests.support.internet import message
from tests.support.net import wait_for

HOUR = {"retry_schedule": ["1h"], "retry_jitter": 0.0}


def test_list_and_show(net, volley) -> None:
    (rx,) = net.domain("dest.test")
    net.domain("slow.test")
    v = volley(workers=2, config={"domains": {"default": HOUR}})
    v.drop(
        message(
            "news@sender.test",
            ["ok@dest.test", "tempfail-x@dest.test"],
            subject="Hello list",
            seq=1,
        )
    )
    v.drop(message("other@sender.test", ["tempfail-y@slow.test"], seq=2))
    wait_for(lambda: v.count("deferred") == 2, timeout=30, message=lambda: f"{v.log()}")
    wait_for(lambda: len(v.queued()) == 2, timeout=10)

    listing = v.cli_json("queue", "--list")
    assert listing["total"] == 2 and not listing["truncated"]
    by_domain = {e["domain"]: e for e in listing["entries"]}
    dest = by_domain["dest.test"]
    assert dest["sender"] == "news@sender.test"
    assert dest["recipients"] == ["tempfail-x@dest.test"]  # ok@ was delivered
    assert dest["attempts"] == 1 and dest["state"] == "deferred"
    assert dest["next_attempt"] >= dest["created"] + 3000
    assert dest["last"]["code"] == 450 and dest["last"]["enhanced"] == "4.2.0"
    only = v.cli_json("queue", "--list", "--domain", "slow.test")
    assert [e["domain"] for e in only["entries"]] == ["slow.test"] and only["total"] == 1
    assert v.cli_json("queue", "--list", "--limit", "1")["truncated"] is True

    text = v.cli("queue", "--list").stdout
    assert dest["id"] in text and "from news@sender.test" in text
    assert "to   tempfail-x@dest.test" in text and "last 450 4.2.0" in text
    assert "2 queued entries" in text

    shown = v.cli_json("show", dest["id"])
    (entry,) = shown["entries"]
    assert entry["recipients"] == ["tempfail-x@dest.test"] and entry["state"] == "deferred"
    assert "Subject: Hello list" in entry["headers"] and "Hello number" not in entry["headers"]
    events = [(h["event"], h.get("rcpt")) for h in shown["history"]]
    assert ("received", "ok@dest.test") in events and ("delivered", "ok@dest.test") in events
    assert ("deferred", "tempfail-x@dest.test") in events
    text = v.cli("show", dest["id"]).stdout
    for part in ("sender   news@sender.test", "dest.test: deferred", "Subject: Hello list"):
        assert part in text, text
    assert "history:" in text and "delivered" in text

    missing = v.cli("show", "0" * 29)
    assert missing.returncode == 1 and "no message" in missing.stderr
    bad = v.cli("show", "nonsense")
    assert bad.returncode == 1 and "29 hex digits" in bad.stderr

    summary = v.cli("queue")  # the spool summary, no API involved
    assert summary.returncode == 0 and "dest.test" in summary.stdout
    assert rx.delivered_to("ok@dest.test")
    assert v.stop() == 0
