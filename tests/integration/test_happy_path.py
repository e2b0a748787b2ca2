"""1 000 messages over 20 domains: every one arrives once, byte for byte."""

from __future__ import annotations

import random

from tests.support.internet import message
from tests.support.net import wait_for


def test_thousand_messages_over_twenty_domains(net, volley) -> None:
    domains = [f"d{i:02d}.test" for i in range(20)]
    receivers = {d: net.domain(d)[0] for d in domains}
    v = volley(workers=2)
    rng = random.Random(42)
    sent: dict[str, bytes] = {}
    for i in range(1000):
        d = rng.choice(domains)
        rcpt = f"user{i}@{d}"
        data = message("news@sender.test", [rcpt], seq=i)
        sent[rcpt] = data
        v.drop(data)

    def delivered() -> int:
        return sum(len(r.messages) for r in receivers.values())

    wait_for(
        lambda: delivered() >= 1000,
        timeout=120,
        message=lambda: f"{delivered()} of 1000 received; {v.text_output()[-2000:]}",
    )
    got = {m.rcpt_tos[0]: m for r in receivers.values() for m in r.messages}
    assert len(got) == 1000 and delivered() == 1000  # no duplicates
    for rcpt, data in sent.items():
        assert got[rcpt].data == data, rcpt
        assert got[rcpt].mail_from == "news@sender.test"
    wait_for(lambda: v.count("delivered") == 1000, timeout=10)
    assert v.count("received") == 1000
    assert v.incoming() == [] and v.queued() == []
    rec = next(v.events("delivered"))
    for key in (
        "id",
        "msgid",
        "rcpt",
        "domain",
        "mx",
        "ip",
        "code",
        "enhanced",
        "text",
        "attempt",
        "ts",
        "queued_at",
        "in_queue",
    ):
        assert key in rec, key
    assert rec["ip"].startswith("127.0.0.") and rec["code"] == 250
    assert v.stop() == 0
