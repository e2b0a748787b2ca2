"""An ARF complaint (stored with engine.feedback.inbox.store, as the SMTP listener stores
mail to `smtpd.bounce_domains`) suppresses the complaining recipient for the sender domain
the complaint is about: the next message to them from that domain is not sent, one from
another domain still is."""

from __future__ import annotations

from pathlib import Path

from engine.feedback import inbox
from tests.support.crash import metric
from tests.support.internet import message
from tests.support.net import wait_for

SAMPLE = Path(__file__).resolve().parents[1] / "unit" / "feedback" / "samples" / "yahoo_cfl.eml"


def test_a_complaint_stops_that_senders_next_message(net, volley) -> None:
    x = net.domain("x.test")[0]
    v = volley(config={"smtpd": {"bounce_domains": ["bounces.example.com"]}})
    v.drop(message("news@example.com", ["reader@x.test"], seq=1))
    wait_for(lambda: v.count("delivered") == 1, timeout=30, message=v.text_output)
    [received] = v.events("received")
    # Yahoo's feedback loop reports it: the returned message is From news@example.com.
    arf = SAMPLE.read_bytes()
    for old, new in (
        (b"<yahoo-orig-9@mta.example.com>", received["msgid"].encode()),
        (b"reader.one@yahoo.com", b"reader@x.test"),
    ):
        assert old in arf
        arf = arf.replace(old, new)
    inbox.store(
        v.spool,
        arf.replace(b"\n", b"\r\n"),
        sender="",
        recipients=["fbl@bounces.example.com"],
        client="127.0.0.1",
    )
    wait_for(lambda: v.count("suppression_added") == 1, timeout=30, message=v.text_output)
    [added] = v.events("suppression_added")
    assert (added["entry"], added["scope"], added["source"]) == (
        "reader@x.test",
        "example.com",
        "complaint",
    )
    assert added["reason"] == "complaint: abuse via Yahoo!-Mail-Feedback/2.0"
    wait_for(lambda: inbox.pending(v.spool) == [], timeout=10)  # removed after the commit
    v.drop(message("news@example.com", ["reader@x.test"], seq=2))
    v.drop(message("hello@other.test", ["reader@x.test"], seq=3))
    wait_for(lambda: v.count("suppressed") == 1 and v.count("delivered") == 2, timeout=30)
    [sup] = v.events("suppressed")
    assert sup["rcpt"] == "reader@x.test" and sup["source"] == "complaint"
    assert sup["sender_domain"] == "example.com" and sup["scope"] == "example.com"
    assert [m.mail_from for m in x.messages] == ["news@example.com", "hello@other.test"]
    wait_for(
        lambda: metric(v.metrics_port, "volley_suppressed_total", source="complaint") == 1,
        timeout=10,
    )
    assert v.stop() == 0
