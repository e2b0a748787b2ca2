"""A DSN and an ARF complaint about messages the real `volley run` delivered, stored in
<spool>/feedback/ with engine.feedback.inbox.store (what the SMTP listener calls for mail
to `smtpd.bounce_domains`), become `async_bounce` and `complaint` records linked to the
original messages by Message-ID, and counts in /metrics; a message that is not a report
is kept in feedback/rejected/ with its reason."""

from __future__ import annotations

from pathlib import Path

from engine.feedback import inbox
from tests.support.crash import metric
from tests.support.internet import message
from tests.support.net import wait_for

SAMPLES = Path(__file__).resolve().parents[1] / "unit" / "feedback" / "samples"


def _sample(name: str, replace: dict[bytes, bytes]) -> bytes:
    raw = (SAMPLES / name).read_bytes()
    for old, new in replace.items():
        assert old in raw, old
        raw = raw.replace(old, new)
    return raw.replace(b"\n", b"\r\n")  # as it arrives over SMTP


def test_dsn_and_arf_become_linked_log_records(net, volley) -> None:
    x = net.domain("x.test")[0]
    v = volley(config={"smtpd": {"bounce_domains": ["bounces.example.com"]}})
    v.drop(message("news@sender.test", ["gone@x.test"], seq=1))
    v.drop(message("news@sender.test", ["reader@x.test"], seq=2))
    wait_for(lambda: v.count("delivered") == 2, timeout=30, message=v.text_output)
    msgid = {r["rcpt"]: r["msgid"] for r in v.events("received")}
    assert len(x.messages) == 2
    # The receiving side accepted both; later its mailbox store bounced one and a reader
    # reported the other as spam.
    dsn = _sample(
        "postfix_user_unknown.eml",
        {
            b"<5f0c1a2b3c4d5e6f@mta.example.com>": msgid["gone@x.test"].encode(),
            b"gone@example.net": b"gone@x.test",
        },
    )
    arf = _sample(
        "yahoo_cfl.eml",
        {
            b"<yahoo-orig-9@mta.example.com>": msgid["reader@x.test"].encode(),
            b"reader.one@yahoo.com": b"reader@x.test",
        },
    )
    vacation = _sample("vacation_reply.eml", {})
    for raw in (dsn, arf, vacation):
        inbox.store(
            v.spool,
            raw,
            sender="",
            recipients=["bounces@bounces.example.com"],
            client="127.0.0.1",
        )
    wait_for(
        lambda: (
            v.count("async_bounce") == 1
            and v.count("complaint") == 1
            and v.count("feedback_rejected") == 1
        ),
        timeout=30,
        message=lambda: f"{v.log()[-5:]}\n{v.text_output()}",
    )
    [bounce] = v.events("async_bounce")
    assert (bounce["rcpt"], bounce["status"], bounce["action"]) == (
        "gone@x.test",
        "5.1.1",
        "failed",
    )
    assert "User unknown in virtual mailbox table" in bounce["diagnostic"]
    assert bounce["remote_mta"] == "mail.example.net"
    assert bounce["reporting_mta"] == "mx.example.net"
    assert bounce["client"] == "127.0.0.1" and bounce["worker"] == 0
    [complaint] = v.events("complaint")
    assert complaint["rcpt"] == "reader@x.test" and complaint["feedback_type"] == "abuse"
    assert complaint["user_agent"] == "Yahoo!-Mail-Feedback/2.0"
    # Linked: the message's whole history is one Message-ID away.
    history = [r["event"] for r in v.log() if r.get("msgid") == msgid["gone@x.test"]]
    assert history == ["received", "delivered", "async_bounce"]
    history = [r["event"] for r in v.log() if r.get("msgid") == msgid["reader@x.test"]]
    assert history == ["received", "delivered", "complaint"]
    [rejected] = v.events("feedback_rejected")
    assert rejected["reason"].startswith("not a delivery status notification")
    kept = v.spool / "feedback" / "rejected" / rejected["report"]
    assert kept.read_bytes().endswith(vacation)  # never lost
    assert kept.with_name(kept.name + ".reason").read_text() == rejected["reason"]
    wait_for(lambda: inbox.pending(v.spool) == [], timeout=10)
    for kind, n in (("async_bounce", 1), ("complaint", 1), ("unparseable", 1)):
        wait_for(
            lambda kind=kind, n=n: (
                metric(v.metrics_port, "volley_feedback_reports_total", kind=kind) == n
            ),
            timeout=10,
        )
    assert metric(v.metrics_port, "volley_feedback_reports_total", kind="delivery_notice") == 0
    assert v.stop() == 0
