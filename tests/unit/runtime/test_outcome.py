"""engine.runtime.outcome: what the log, the spool and the queue see, and in what order.

A recording fake shard and log writer put every side effect on one timeline, so the
write-ahead rule (the log line is written before the spool changes) is checked as an
order, not assumed."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest

from engine.config import Settings, from_dict
from engine.model import Disposition, Origin, RecipientOutcome
from engine.runtime.outcome import SPOOL_FULL_RETRY, Attempt, Outcomes
from engine.sched.queue import WorkQueue
from engine.telemetry.eventlog import EventLog, read_log
from engine.telemetry.metrics import CheckedTally
from spool import EntryRef, NewEntry, SpoolFull

NOW = 1_800_000_000.0
D = Disposition


class Timeline:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def write(self, fd: int, data: bytes) -> None:
        os.write(fd, data)
        self.events.append(("log", tuple(json.loads(line)["event"] for line in data.splitlines())))

    def settle(self) -> None:
        self.events.append(("settle", None))


class FakeShard:
    def __init__(self, timeline: Timeline, *, full: bool = False) -> None:
        self.t = timeline
        self.full = full
        self.rewritten: list[tuple[str, dict[str, Any], float]] = []
        self.added: list[NewEntry] = []

    def remove(self, ref: EntryRef) -> None:
        self.t.events.append(("remove", ref.name))

    def rewrite(self, ref: EntryRef, meta: dict[str, Any], body: bytes, at: float) -> EntryRef:
        if self.full:
            raise SpoolFull("no space")
        self.t.events.append(("rewrite", ref.name))
        self.rewritten.append((ref.name, meta, at))
        return EntryRef(ref.name, ref.domain, at)

    def add(self, items: list[NewEntry]) -> list[EntryRef]:
        self.t.events.append(("add", items[0].meta["rcpts"]))
        self.added.extend(items)
        return [EntryRef(f"{i.id}@{i.domain}", i.domain, i.not_before) for i in items]


def setup(tmp_path: Path, *, full: bool = False, batch: int = 4) -> tuple[Any, ...]:
    t = Timeline()
    shard = FakeShard(t, full=full)
    queue = WorkQueue()
    log = EventLog(tmp_path / "delivery.jsonl", worker=0, writer=t.write, batch=batch)
    tally = CheckedTally()
    settings = Settings(helo_name="mta.test", log_path=tmp_path / "delivery.jsonl")
    out = Outcomes(
        settings, shard, queue, log, tally, random.Random(1),  # type: ignore[arg-type]
        settle=t.settle,
    )  # fmt: skip
    return t, shard, queue, log, tally, out


def taken(queue: WorkQueue, n: int, domain: str = "d.test") -> list[EntryRef]:
    refs = [EntryRef(f"{i:029x}@{domain}", domain, NOW) for i in range(n)]
    for ref in refs:
        queue.add(ref, NOW, NOW)
    assert [queue.take(domain) for _ in refs] == refs
    return refs


def meta(*rcpts: str, sender: str = "s@a.test") -> dict[str, Any]:
    return {"sender": sender, "rcpts": list(rcpts), "created": NOW - 10, "msgid": "<m@a.test>"}


def ok(rcpt: str) -> RecipientOutcome:
    return RecipientOutcome(rcpt, D.DELIVERED, 250, "2.0.0", "2.0.0 queued")


def test_delivered_entries_are_removed_in_batches_after_their_lines(tmp_path: Path) -> None:
    t, _, queue, log, tally, out = setup(tmp_path, batch=3)
    refs = taken(queue, 4)
    for i, ref in enumerate(refs[:2]):
        assert out.apply(ref, meta(f"r{i}@d.test"), b"x\r\n", [ok(f"r{i}@d.test")],
                         Attempt("mx.d.test", "127.0.0.2"), NOW)  # fmt: skip
    assert t.events == []  # nothing synchronous: no settle, no spool change yet
    assert queue.counts() == (0, 0, 2)  # ... but the queue already forgot them
    assert out.apply(refs[2], meta("r2@d.test"), b"x\r\n", [ok("r2@d.test")], Attempt(), NOW)
    assert t.events == [
        ("log", ("delivered",) * 3),
        ("remove", refs[0].name),
        ("remove", refs[1].name),
        ("remove", refs[2].name),
    ]
    out.apply(refs[3], meta("r3@d.test"), b"x\r\n", [ok("r3@d.test")], Attempt(), NOW)
    log.flush()  # the worker's 250 ms timer
    assert t.events[-2:] == [("log", ("delivered",)), ("remove", refs[3].name)]
    recs = list(read_log(tmp_path / "delivery.jsonl"))
    assert [(r["rcpt"], r["mx"], r["in_queue"], r["attempt"]) for r in recs[:2]] == [
        ("r0@d.test", "mx.d.test", 10.0, 1),
        ("r1@d.test", "mx.d.test", 10.0, 1),
    ]
    counts, _, hists = tally.drain()
    assert counts == [["volley_delivered", ["d.test"], 4]]
    assert hists[0][0] == "volley_delivery_latency_seconds" and hists[0][4] == 4


def test_a_deferral_writes_its_line_and_settles_before_the_rewrite(tmp_path: Path) -> None:
    t, shard, queue, _, _, out = setup(tmp_path)
    first, second = taken(queue, 2)
    out.apply(first, meta("a@d.test"), b"x\r\n", [ok("a@d.test")], Attempt(), NOW)
    later = RecipientOutcome("c@d.test", D.DEFERRED, 451, "4.3.0", "try later")
    finished = out.apply(
        second, meta("b@d.test", "c@d.test"), b"x\r\n", [ok("b@d.test"), later], Attempt(), NOW
    )
    assert finished is False
    # The waiting line of the first entry goes with this attempt's, before the settle.
    assert t.events == [
        ("log", ("delivered", "delivered", "deferred")),
        ("remove", first.name),
        ("settle", None),
        ("rewrite", second.name),
    ]
    ((name, new_meta, at),) = shard.rewritten
    assert name == second.name and new_meta["rcpts"] == ["c@d.test"]
    assert new_meta["attempts"] == 1 and new_meta["last"]["code"] == 451
    assert at > NOW and queue.counts() == (0, 1, 0)


def test_a_bounce_queues_the_dsn_before_the_entry_goes(tmp_path: Path) -> None:
    t, _, queue, log, tally, out = setup(tmp_path)
    (ref,) = taken(queue, 1)
    no = RecipientOutcome("x@d.test", D.BOUNCED, 550, "5.1.1", "no such user")
    assert out.apply(ref, meta("x@d.test"), b"Subject: hi\r\n\r\nbody\r\n", [no], Attempt(), NOW)
    log.flush()
    assert t.events == [
        ("log", ("bounced",)),
        ("settle", None),
        ("add", ["s@a.test"]),
        ("log", ("dsn",)),
        ("remove", ref.name),
    ]
    counts = dict((n, v) for n, _, v in tally.drain()[0])
    assert counts == {"volley_bounced": 1, "volley_dsns": 1}


def test_spool_full_keeps_the_entry_and_retries_the_attempt(tmp_path: Path) -> None:
    t, _, queue, _, _, out = setup(tmp_path, full=True)
    (ref,) = taken(queue, 1)
    later = RecipientOutcome("x@d.test", D.DEFERRED, 451, "4.3.0", "try later")
    assert out.apply(ref, meta("x@d.test"), b"x\r\n", [later], Attempt(), NOW) is False
    assert t.events == [("log", ("deferred",)), ("settle", None), ("log", ("spool_full",))]
    assert queue.next_due() == pytest.approx(NOW + SPOOL_FULL_RETRY)


def test_every_failure_is_classified_in_its_record_its_counter_and_the_dsn(
    tmp_path: Path,
) -> None:
    _, shard, queue, log, tally, out = setup(tmp_path)
    first, second = taken(queue, 2)
    out.apply(first, meta("a@d.test"), b"x\r\n", [ok("a@d.test")], Attempt(), NOW)
    no = RecipientOutcome("x@d.test", D.BOUNCED, 550, "5.1.1", "5.1.1 no such user")
    busy = RecipientOutcome("y@d.test", D.DEFERRED, 450, "4.2.0", "4.2.0 mailbox busy")
    refused = RecipientOutcome(
        "z@d.test", D.DEFERRED, 451, "4.4.1", "connection refused", Origin.CONNECTION, "refused"
    )
    body = b"Subject: hi\r\n\r\nbody\r\n"
    out.apply(second, meta("x@d.test", "y@d.test", "z@d.test"), body, [no, busy, refused],
              Attempt("mx.d.test", "127.0.0.2"), NOW)  # fmt: skip
    log.flush()
    outcomes = ("delivered", "bounced", "deferred")
    recs = [r for r in read_log(tmp_path / "delivery.jsonl") if r["event"] in outcomes]
    assert [(r["rcpt"], r["event"], r.get("category"), r.get("category_rule")) for r in recs] == [
        ("a@d.test", "delivered", None, None),
        ("x@d.test", "bounced", "InvalidRecipient", "unknown-recipient"),
        ("y@d.test", "deferred", "TransientFailure", "greylisted"),
        ("z@d.test", "deferred", "NoAnswerFromHost", "volley-refused"),
    ]
    counts = {(n, tuple(lbl)): v for n, lbl, v in tally.drain()[0]}
    assert counts[("volley_delivered", ("d.test",))] == 1
    assert counts[("volley_bounced", ("d.test", "InvalidRecipient"))] == 1
    assert counts[("volley_deferred", ("d.test", "TransientFailure"))] == 1
    assert counts[("volley_deferred", ("d.test", "NoAnswerFromHost"))] == 1
    (dsn,) = shard.added
    assert b"<x@d.test> (host mx.d.test said): smtp; 550 5.1.1 no such user" in dsn.body
    assert b"    Category: InvalidRecipient" in dsn.body
    ((_, new_meta, _),) = shard.rewritten
    assert new_meta["last"]["category"] == "NoAnswerFromHost"  # `volley queue --list` shows it


def test_an_expired_recipient_is_message_expired_whatever_its_last_error(tmp_path: Path) -> None:
    _, shard, queue, log, tally, out = setup(tmp_path)
    (ref,) = taken(queue, 1)
    old = meta("x@d.test") | {"created": NOW - 6 * 86400}  # past the default 5 days
    busy = RecipientOutcome("x@d.test", D.DEFERRED, 450, "4.2.0", "4.2.0 mailbox busy")
    assert out.apply(ref, old, b"Subject: hi\r\n\r\nbody\r\n", [busy], Attempt(), NOW)
    log.flush()
    (rec,) = [r for r in read_log(tmp_path / "delivery.jsonl") if r["event"] == "expired"]
    assert (rec["category"], rec["category_rule"]) == ("MessageExpired", "volley-expired")
    assert "last error: 4.2.0 mailbox busy" in rec["text"]
    assert ["volley_expired", ["d.test", "MessageExpired"], 1] in tally.drain()[0]
    assert b"Category: MessageExpired" in shard.added[0].body


def test_a_reload_classifies_the_next_outcome_with_the_users_rules(tmp_path: Path) -> None:
    _, _, queue, log, _, out = setup(tmp_path)
    first, second = taken(queue, 2)
    busy = RecipientOutcome("x@d.test", D.DEFERRED, 450, "4.2.0", "4.2.0 mailbox busy")
    out.apply(first, meta("x@d.test"), b"x\r\n", [busy], Attempt(), NOW)
    rule = {"id": "busy-is-quota", "category": "QuotaIssues", "text": "mailbox busy"}
    out.reconfigure(from_dict({"bounce": {"rules": [rule]}, "smtp": {"helo_name": "mta.test"}}))
    out.apply(second, meta("x@d.test"), b"x\r\n", [busy], Attempt(), NOW)
    log.flush()
    recs = [r for r in read_log(tmp_path / "delivery.jsonl") if r["event"] == "deferred"]
    assert [(r["category"], r["category_rule"]) for r in recs] == [
        ("TransientFailure", "greylisted"),
        ("QuotaIssues", "busy-is-quota"),
    ]
