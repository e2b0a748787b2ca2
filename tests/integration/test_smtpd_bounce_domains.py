"""The whole return path over SMTP: a remote MX (a client outside relay_networks) sends a
DSN and an ARF complaint to the bounce domain through the listener, which keeps them
(never relays them) and answers 250 once they are durable; they become `async_bounce`
and `complaint` records linked by Message-ID to the messages Volley delivered.  A message
with a bounce-domain recipient and an ordinary one from a trusted client is kept for the
first and queued for the second."""

from __future__ import annotations

import smtplib
from pathlib import Path

from tests.support.internet import message
from tests.support.net import wait_for
from tests.support.submit import listening, port_of

SAMPLES = Path(__file__).resolve().parents[1] / "unit" / "feedback" / "samples"
REMOTE_MX = ("127.0.0.2", 0)  # outside relay_networks: anyone on the internet


def _sample(name: str, replace: dict[bytes, bytes]) -> bytes:
    raw = (SAMPLES / name).read_bytes()
    for old, new in replace.items():
        assert old in raw, old
        raw = raw.replace(old, new)
    return raw.replace(b"\n", b"\r\n")


def test_reports_come_back_through_the_listener(net, volley) -> None:
    x = net.domain("x.test")[0]
    config = listening(relay_networks=["127.0.0.1/32"], bounce_domains=["bounces.example.com"])
    v = volley(workers=2, config=config)
    port = port_of(v)
    with smtplib.SMTP("127.0.0.1", port) as s:
        for i, rcpt in enumerate(("gone@x.test", "reader@x.test")):
            s.sendmail(
                "news@bounces.example.com", [rcpt], message("news@sender.test", [rcpt], seq=i)
            )
    wait_for(lambda: v.count("delivered") == 2, timeout=30, message=v.text_output)
    msgid = {r["rcpt"]: r["msgid"] for r in v.events("received")}

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
    with smtplib.SMTP("127.0.0.1", port, source_address=REMOTE_MX) as s:
        s.ehlo("mx.x.test")
        assert s.sendmail("", ["news@bounces.example.com"], dsn) == {}
        assert s.sendmail("fbl@x.test", ["news@bounces.example.com"], arf) == {}
        # ... but nothing else: the bounce domain is no open door.
        refused = s.sendmail("fbl@x.test", ["news@bounces.example.com", "victim@x.test"], arf)
        assert refused == {"victim@x.test": (554, b"5.7.1 Relay access denied")}
    # Kept for one recipient, queued for the other: both sides of one transaction.
    mixed = message("me@sender.test", ["postmaster@bounces.example.com", "ann@x.test"], seq=9)
    with smtplib.SMTP("127.0.0.1", port) as s:
        assert (
            s.sendmail("me@sender.test", ["postmaster@bounces.example.com", "ann@x.test"], mixed)
            == {}
        )

    wait_for(
        lambda: v.count("async_bounce") == 1 and v.count("complaint") == 2,
        timeout=30,
        message=lambda: f"{v.log()[-6:]}\n{v.text_output()}",
    )
    [bounce] = v.events("async_bounce")
    assert (bounce["rcpt"], bounce["status"], bounce["client"]) == (
        "gone@x.test",
        "5.1.1",
        "127.0.0.2",
    )
    history = [r["event"] for r in v.log() if r.get("msgid") == msgid["gone@x.test"]]
    assert history == ["received", "delivered", "async_bounce"]
    assert {c["rcpt"] for c in v.events("complaint")} == {"reader@x.test"}
    wait_for(lambda: len(x.messages) == 3, timeout=30)
    assert sorted(m.rcpt_tos[0] for m in x.messages) == [
        "ann@x.test",
        "gone@x.test",
        "reader@x.test",
    ]
    assert not x.delivered_to("victim@x.test")
    wait_for(lambda: v.count("feedback_rejected") == 1, timeout=30)  # the mixed one: no report
    assert v.stop() == 0
