"""Issue #14, finding 3: intake and delivery agree on what an address is.

`"a<b"@example.com` passed intake (RFC 5321 allows "<" in a quoted local part) but the
encoder refuses it; the error escaped delivery and the entry went straight back to the
queue: 7 409 connections in 2 s, Bob never delivered, nothing logged.  Now intake refuses
the drop with the reason, and an entry that still carries such an address (queued by an
older version) bounces that address alone and delivers the others.
"""

from __future__ import annotations

import time

from engine.smtp.encode import wire_body
from spool import NewEntry, Spool, entry_id, random_salt
from tests.support.internet import message
from tests.support.net import wait_for

BAD = '"a<b"@example.test'
BOB = "bob@example.test"


def test_intake_refuses_an_address_the_encoder_cannot_send(net, volley) -> None:
    (rx,) = net.domain("example.test")
    v = volley(workers=1)
    name = v.drop(message("news@sender.test", [BAD, BOB]))
    reason = v.spool / "rejected" / f"{name}.reason"
    # The log line follows the move (the log is flushed after the batch): wait for both.
    wait_for(lambda: reason.exists() and v.count("rejected") == 1, timeout=20, message=v.log)
    text = reason.read_text()
    assert "cannot be sent over SMTP" in text and "'<'" in text, text
    (rejected,) = v.events("rejected")
    assert rejected["drop"] == name
    assert rx.connections_total == 0 and v.queued() == []
    assert v.stop() == 0


def test_a_queued_entry_with_such_an_address_bounces_it_and_delivers_the_rest(net, volley) -> None:
    (rx,) = net.domain("example.test")
    v = volley(workers=1, start=False)
    spool = Spool(v.spool)
    spool.ensure(1)
    now = time.time()
    eid = entry_id(int(now * 1e9), random_salt())
    meta = {
        "v": 1,
        "sender": "news@sender.test",
        "rcpts": [BAD, BOB],
        "domain": "example.test",
        "created": now,
        "attempts": 0,
        "msgid": "<old@sender.test>",
        "smtputf8": False,
        "8bit": False,
        "dsn": False,
        "drop": "old.eml",
    }
    body = wire_body(message("news@sender.test", [BAD, BOB]))
    shard = spool.shard(0)
    shard.recover()
    shard.add([NewEntry(eid, "example.test", meta, body, now)])
    shard.close()

    v.start()
    wait_for(lambda: rx.delivered_to(BOB), timeout=20, message=v.log)
    wait_for(lambda: v.count("dsn") == 1, timeout=20, message=v.log)
    (bounced,) = v.events("bounced")
    assert bounced["rcpt"] == BAD and bounced["code"] == 553 and bounced["enhanced"] == "5.1.3"
    (delivered,) = v.events("delivered")
    assert delivered["rcpt"] == BOB
    assert rx.connections_total == 1  # one attempt, no retry loop
    assert v.count("internal_error") == 0
    assert v.stop() == 0
