"""engine.runtime.bounces: one report per failed message, gathered over its entries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.config import Settings
from engine.model import Disposition, Origin, RecipientOutcome
from engine.runtime.bounces import BounceReports, diagnostic_code
from engine.sched.queue import WorkQueue
from engine.telemetry.eventlog import EventLog, read_log
from engine.telemetry.metrics import CheckedTally
from spool import EntryRef, NewEntry, Spool, entry_id

NOW = 1_800_000_000.0
D = Disposition
BODY = b"From: news@sender.test\r\nSubject: hi\r\nMessage-ID: <m@sender.test>\r\n\r\nbody\r\n"


def setup(tmp_path: Path, hold: float = 30.0) -> tuple[BounceReports, Any, WorkQueue, EventLog]:
    spool = Spool(tmp_path / "spool")
    spool.ensure(1)
    shard = spool.shard(0)
    shard.recover()
    queue = WorkQueue()
    log = EventLog(tmp_path / "log.jsonl", worker=0)
    settings = Settings(helo_name="mta.test", dsn_hold=hold, spool_path=tmp_path / "spool")
    return BounceReports(settings, shard, queue, log, CheckedTally()), shard, queue, log


def entry(
    shard: Any, n: int, domain: str, key: str | None = "k1"
) -> tuple[EntryRef, dict[str, Any]]:
    meta = {"sender": "news@sender.test", "rcpts": [f"u{n}@{domain}"], "created": NOW - 60}
    if key is not None:
        meta["msg"] = key
    (ref,) = shard.add([NewEntry(entry_id(int(NOW * 1e9) + n, b"%d" % n), domain, meta, BODY, NOW)])
    return ref, meta


def bounced(rcpt: str) -> RecipientOutcome:
    return RecipientOutcome(rcpt, D.BOUNCED, 550, "5.1.1", "5.1.1 no such user")


def dsn_entries(log_path: Path) -> list[dict[str, Any]]:
    return [r for r in read_log(log_path) if r["event"] == "dsn"]


def test_failures_of_one_message_on_several_domains_make_one_report(tmp_path: Path) -> None:
    r, shard, queue, log = setup(tmp_path)
    for n, domain in enumerate(["a.test", "b.test", "c.test"]):
        ref, meta = entry(shard, n, domain)
        r.report(ref, meta, BODY, [bounced(f"u{n}@{domain}")], f"mx.{domain}", NOW + n)
    log.flush()
    (dsn,) = dsn_entries(tmp_path / "log.jsonl")
    merged = [x for x in read_log(tmp_path / "log.jsonl") if x["event"] == "dsn_merged"]
    assert len(merged) == 2
    assert queue.next_due() == NOW + 30  # it waits for the hold, then goes
    meta, body = shard.load(EntryRef(f"{dsn['id']}@sender.test", "sender.test", NOW + 30))
    assert meta["dsn"] and meta["rcpts"] == ["news@sender.test"] and meta["sender"] == ""
    text = body.decode()
    for n, domain in enumerate(["a.test", "b.test", "c.test"]):
        assert f"Final-Recipient: rfc822; u{n}@{domain}" in text
    assert text.count("Diagnostic-Code: smtp; 550 5.1.1 no such user") == 3


def test_a_sealed_or_due_report_gathers_no_more(tmp_path: Path) -> None:
    r, shard, _, log = setup(tmp_path)
    ref, meta = entry(shard, 1, "a.test")
    r.report(ref, meta, BODY, [bounced("u1@a.test")], None, NOW)
    log.flush()
    (first,) = dsn_entries(tmp_path / "log.jsonl")
    r.seal(f"{first['id']}@sender.test")
    ref, meta = entry(shard, 2, "b.test")
    r.report(ref, meta, BODY, [bounced("u2@b.test")], None, NOW + 1)
    ref, meta = entry(shard, 3, "c.test")
    r.report(ref, meta, BODY, [bounced("u3@c.test")], None, NOW + 31 + 1)  # after the hold
    log.flush()
    assert len(dsn_entries(tmp_path / "log.jsonl")) == 3


def test_entries_without_a_message_key_report_alone(tmp_path: Path) -> None:
    r, shard, _, log = setup(tmp_path)
    for n in range(2):
        ref, meta = entry(shard, n, f"d{n}.test", key=None)
        r.report(ref, meta, BODY, [bounced(f"u{n}@d{n}.test")], None, NOW)
    log.flush()
    assert len(dsn_entries(tmp_path / "log.jsonl")) == 2


def test_diagnostic_code_does_not_repeat_the_status_and_names_local_decisions() -> None:
    remote = RecipientOutcome("a@b.test", D.BOUNCED, 550, "5.1.1", "5.1.1 no such user")
    assert diagnostic_code(remote) == "smtp; 550 5.1.1 no such user"
    bare = RecipientOutcome("a@b.test", D.BOUNCED, 550, "5.0.0", "go away")
    assert diagnostic_code(bare) == "smtp; 550 5.0.0 go away"
    dns = RecipientOutcome(
        "a@b.test", D.BOUNCED, 550, "5.1.2", "domain not found: NXDOMAIN", Origin.ROUTE
    )
    assert diagnostic_code(dns) == "X-Volley; domain not found: NXDOMAIN"
