"""`volley bounce`: queued mail is removed with a DSN to its sender and logged as
`bounced` with the operator's reason; a message being sent is bounced when its attempt
ends, for the recipients that attempt left; a bounce needs a selector."""

from __future__ import annotations

import email
from email import policy

from tests.support.crash import metric
from tests.support.internet import message
from tests.support.net import wait_for

HOUR = {"retry_schedule": ["1h"], "retry_jitter": 0.0}


def test_bounce_by_domain_and_by_id(net, volley) -> None:
    net.domain("dest.test")
    net.domain("other.test")
    (sender_mx,) = net.domain("sender.test")
    v = volley(workers=2, config={"domains": {"default": HOUR}})
    v.drop(
        message(
            "news@sender.test",
            ["tempfail-a@dest.test", "tempfail-b@dest.test"],
            subject="Wrong campaign",
            seq=1,
        )
    )
    v.drop(message("news@sender.test", ["tempfail-c@other.test"], seq=2))
    v.drop(message("news@sender.test", ["tempfail-d@other.test"], seq=3))
    wait_for(lambda: v.count("deferred") == 4, timeout=30, message=lambda: f"{v.log()}")

    refused = v.cli("bounce")
    assert refused.returncode == 2 and "one of the arguments" in refused.stderr

    got = v.cli("bounce", "--domain", "dest.test", "--reason", "wrong campaign")
    assert got.returncode == 0, got.stderr
    assert "bounced 1 queued entries (2 recipients, a DSN to each sender)" in got.stdout
    wait_for(lambda: sender_mx.messages, timeout=30, message=lambda: f"{v.log()}")
    (dsn,) = sender_mx.messages
    assert dsn.mail_from == "<>" and dsn.rcpt_tos == ("news@sender.test",)
    report = email.message_from_bytes(dsn.data, policy=policy.default)
    assert report.get_content_type() == "multipart/report"
    text = dsn.data.decode()
    assert "Final-Recipient: rfc822; tempfail-a@dest.test" in text
    assert "Final-Recipient: rfc822; tempfail-b@dest.test" in text
    assert "Status: 5.0.0" in text and "Subject: Wrong campaign" in text
    bounced = list(v.events("bounced"))
    assert sorted(b["rcpt"] for b in bounced) == ["tempfail-a@dest.test", "tempfail-b@dest.test"]
    assert all(b["text"] == "bounced by the operator: wrong campaign" for b in bounced)
    assert all(b["code"] == 550 and b["enhanced"] == "5.0.0" for b in bounced)
    assert v.count("dsn") == 1
    # (The DSN's entry leaves the spool just after the DSN was delivered.)
    wait_for(lambda: [n.rpartition("@")[2] for n in v.queued()] == ["other.test"] * 2, timeout=10)

    first = v.cli_json("queue", "--list", "--domain", "other.test")["entries"][0]
    got = v.cli_json("bounce", "--id", first["id"])
    assert (got["matched"], got["removed"], got["recipients"]) == (1, 1, 1)
    wait_for(lambda: len(sender_mx.messages) == 2, timeout=30, message=lambda: f"{v.log()}")
    wait_for(lambda: len(v.queued()) == 1, timeout=10)
    by_id = [b for b in v.events("bounced") if b["id"] == first["id"]]
    assert [b["text"] for b in by_id] == ["bounced by the operator"]
    port = v.metrics_port
    assert metric(port, "volley_operator_actions_total", action="bounce") == 2
    assert metric(port, "volley_operator_removed_total", action="bounce") == 3
    assert v.stop() == 0


def test_a_message_in_flight_is_bounced_when_its_attempt_ends(net, volley) -> None:
    (rx,) = net.domain("dest.test")
    (sender_mx,) = net.domain("sender.test")
    v = volley(workers=1, config={"domains": {"default": HOUR}})
    # One entry, one transaction: `stall-a` holds the RCPT reply (the message is in
    # flight), `tempfail-b` is then refused with a 450.
    v.drop(message("news@sender.test", ["stall-a@dest.test", "tempfail-b@dest.test"], seq=1))
    wait_for(lambda: rx.stalled_count == 1, timeout=30)
    got = v.cli_json("bounce", "--domain", "dest.test", "--reason", "recalled")
    assert (got["matched"], got["removed"], got["in_flight"]) == (1, 0, 1)
    rx.release_stalled()
    wait_for(lambda: v.count("bounced") == 1, timeout=30, message=lambda: f"{v.log()}")
    (delivered,) = v.events("delivered")
    assert delivered["rcpt"] == "stall-a@dest.test"  # the attempt itself was not disturbed
    (bounced,) = v.events("bounced")
    assert bounced["rcpt"] == "tempfail-b@dest.test"
    assert bounced["text"] == "bounced by the operator: recalled"
    wait_for(lambda: sender_mx.messages, timeout=30, message=lambda: f"{v.log()}")
    assert "Final-Recipient: rfc822; tempfail-b@dest.test" in sender_mx.messages[0].data.decode()
    wait_for(lambda: v.queued() == [], timeout=10)
    assert v.count("deferred") == 1  # the attempt's own outcome, logged before the bounce
    assert v.stop() == 0
