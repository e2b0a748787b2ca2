"""engine.runtime.control: directives on a real shard, work queue, outcome path and log —
what each leaves in the spool, the queue and the log, and that entries in flight are
acted on only when their attempt ends."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from engine.config import Settings
from engine.runtime.control import BOUNCE_STATUS, Control
from engine.runtime.outcome import Outcomes
from engine.sched.queue import WorkQueue
from engine.telemetry.eventlog import EventLog, read_log
from engine.telemetry.metrics import CheckedTally
from spool import EntryRef, NewEntry, Spool, entry_id
from tests.support.fake_clock import FakeClock
from tests.support.volley import live_entries

NOW = 1_800_000_000.0


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.spool_path = tmp_path / "spool"
        spool = Spool(self.spool_path)
        spool.ensure(1)
        self.shard = spool.shard(0)
        self.shard.recover()
        self.log_path = tmp_path / "delivery.jsonl"
        self.log = EventLog(self.log_path, 0)
        self.queue = WorkQueue()
        self.tally = CheckedTally()
        self.clock = FakeClock(NOW)
        s = Settings(spool_path=tmp_path / "spool", log_path=self.log_path, helo_name="v.test")
        self.outcomes = Outcomes(s, self.shard, self.queue, self.log, self.tally, random.Random(1))
        self.sent: list[tuple[Any, ...]] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.kicks = 0
        self.contended: list[str] = []
        self.control = Control(
            shard_no=0,
            queue=self.queue,
            shard=self.shard,
            outcomes=self.outcomes,
            log=self.log,
            tally=self.tally,
            clock=self.clock,
            send=lambda *m: self.sent.append(m),
            spawn=lambda coro: self.tasks.append(asyncio.create_task(coro)),
            kick=self.kick,
            contend=self.contended.append,
            remove=self.shard.remove,
        )
        self.control.started()
        self._seq = 0

    def kick(self) -> None:
        self.kicks += 1

    def add(self, sender: str, rcpts: list[str], *, due: float = NOW) -> EntryRef:
        self._seq += 1
        domain = rcpts[0].rpartition("@")[2]
        eid = entry_id(int((NOW + self._seq) * 1e9), bytes([self._seq]))
        meta = {
            "v": 1,
            "sender": sender,
            "rcpts": rcpts,
            "domain": domain,
            "created": NOW,
            "attempts": 0,
            "msgid": f"<m{self._seq}@s.test>",
            "smtputf8": False,
            "8bit": False,
            "dsn": False,
            "drop": f"d{self._seq}.eml",
        }
        body = b"From: " + sender.encode() + b"\r\nSubject: s\r\n\r\nbody\r\n"
        (ref,) = self.shard.add([NewEntry(eid, domain, meta, body, due)])
        self.queue.add(ref, due, NOW)
        return ref

    async def ask(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        self.control.on_message(["directive", len(self.sent) + 100, action, args])
        await asyncio.gather(*self.tasks)
        self.log.flush()
        kind, _, result = self.sent[-1]
        assert kind == "reply"
        return dict(result)

    def records(self, event: str | None = None) -> list[dict[str, Any]]:
        return [r for r in read_log(self.log_path) if event is None or r["event"] == event]

    def live(self) -> list[str]:
        """Names live on disk (the segments and the removal journal, read afresh)."""
        return sorted(e.name for _, e in live_entries(self.spool_path))


@pytest.fixture
async def rig(tmp_path: Path) -> Any:
    r = Rig(tmp_path)
    yield r
    r.log.close()
    r.shard.close()


async def test_suspensions_hold_the_queue_and_close_idle_connections(rig: Rig) -> None:
    rig.add("a@s.test", ["x@h.test"])
    rig.control.on_message(["suspensions", [["h.test", NOW + 60, "why"]]])
    assert rig.contended == ["h.test"] and rig.queue.take("h.test") is None
    rig.control.on_message(["suspensions", [["h.test", NOW + 90, "longer"]]])
    assert rig.contended == ["h.test"]  # already held: nothing new to close
    rig.control.on_message(["suspensions", []])
    assert rig.kicks == 1 and rig.queue.take("h.test") is not None


async def test_flush(rig: Rig) -> None:
    rig.add("a@s.test", ["x@d.test"], due=NOW + 3600)
    assert await rig.ask("flush", {"domain": None}) == {"flushed": 1}
    assert rig.kicks == 1 and rig.queue.release_due(NOW) == {"d.test"}


async def test_bounce_logs_queues_a_dsn_and_removes(rig: Rig) -> None:
    keep = rig.add("a@s.test", ["k@other.test"])
    gone = rig.add("a@s.test", ["x@d.test", "y@d.test"], due=NOW + 3600)
    got = await rig.ask("bounce", {"selector": {"domain": "d.test"}, "reason": "oops", "by": "ann"})
    assert got == {"matched": 1, "removed": 1, "recipients": 2, "in_flight": 0}
    bounced = rig.records("bounced")
    assert [b["rcpt"] for b in bounced] == ["x@d.test", "y@d.test"]
    assert {b["text"] for b in bounced} == {"bounced by the operator: oops"}
    assert {(b["code"], b["enhanced"]) for b in bounced} == {(550, BOUNCE_STATUS)}
    # Says nothing about the addresses: never InvalidRecipient (nor suppressed for it).
    assert {(b["category"], b["category_rule"]) for b in bounced} == {
        ("Uncategorized", "volley-operator")
    }
    (dsn,) = rig.records("dsn")
    assert dsn["about"] == gone.id and dsn["rcpt"] == "a@s.test"
    live = rig.live()
    assert gone.name not in live and keep.name in live and len(live) == 2  # kept + the DSN
    assert len(rig.queue) == 2
    counts = rig.tally.drain()[0]
    assert ["volley_operator_removed", ["bounce"], 2] in counts


async def test_delete_by_sender_writes_no_dsn(rig: Rig) -> None:
    a = rig.add("Spam@S.test", ["x@d.test"])
    b = rig.add("spam@s.test", ["y@e.test"], due=NOW + 60)
    keep = rig.add("ok@s.test", ["z@d.test"])
    got = await rig.ask(
        "delete", {"selector": {"sender": "spam@s.test"}, "reason": "abuse", "by": "ann"}
    )
    assert (got["removed"], got["recipients"]) == (2, 2)
    deleted = rig.records("deleted")
    assert sorted(d["id"] for d in deleted) == sorted([a.id, b.id])
    assert {(d["reason"], d["by"]) for d in deleted} == {("abuse", "ann")}
    assert rig.records("dsn") == [] and rig.records("bounced") == []
    assert rig.live() == [keep.name] and len(rig.queue) == 1


async def test_an_entry_in_flight_is_acted_on_when_its_attempt_leaves_recipients(
    rig: Rig,
) -> None:
    ref = rig.add("a@s.test", ["x@d.test", "y@d.test"])
    taken = rig.queue.take("d.test")  # a connection has it
    assert taken == ref
    got = await rig.ask("delete", {"selector": {"id": ref.id}, "reason": "r", "by": ""})
    assert got == {"matched": 1, "removed": 0, "recipients": 0, "in_flight": 1}
    assert rig.records("deleted") == []
    # The attempt delivered x and deferred y: the entry is rewritten with y, then done.
    meta, body = rig.shard.load(ref)
    new = rig.shard.rewrite(ref, {**meta, "rcpts": ["y@d.test"], "attempts": 1}, body, NOW + 60)
    rig.queue.done(new, retry_at=NOW + 60, now=NOW)
    await asyncio.sleep(0)  # the claim runs from the loop, after the delivery code returned
    rig.log.flush()
    (rec,) = rig.records("deleted")
    assert rec["rcpt"] == "y@d.test" and rec["attempt"] == 1
    assert rig.live() == [] and len(rig.queue) == 0


async def test_list_and_show(rig: Rig) -> None:
    first = rig.add("a@s.test", ["x@d.test"], due=NOW + 60)
    rig.add("b@s.test", ["y@e.test"])
    rig.control.on_message(["suspensions", [["e.test", NOW + 900, ""]]])
    got = await rig.ask("list", {"domain": None, "limit": 10})
    assert got["total"] == 2
    one, two = got["entries"]
    assert (one["id"], one["domain"], one["state"], one["next_attempt"]) == (
        first.id,
        "d.test",
        "deferred",
        NOW + 60,
    )
    assert (one["sender"], one["recipients"], one["attempts"]) == ("a@s.test", ["x@d.test"], 0)
    assert (two["state"], two["next_attempt"]) == ("suspended", NOW + 900)
    assert "headers" not in one
    got = await rig.ask("list", {"domain": "e.test", "limit": 10})
    assert [e["domain"] for e in got["entries"]] == ["e.test"]
    got = await rig.ask("show", {"id": first.id})
    (entry,) = got["entries"]
    assert entry["headers"] == "From: a@s.test\r\nSubject: s\r\n" and entry["size"] > 0


async def test_a_bad_directive_is_answered_with_an_error(rig: Rig) -> None:
    assert "unknown directive" in (await rig.ask("explode", {}))["error"]
    got = await rig.ask("bounce", {"selector": {}, "reason": ""})
    assert "selector is required" in got["error"]


async def test_directives_wait_for_the_start_up_scan(tmp_path: Path) -> None:
    r = Rig(tmp_path)
    r.control._started.clear()
    r.control.on_message(["directive", 1, "flush", {"domain": None}])
    for _ in range(10):  # let the directive's task run up to where it waits for the scan
        await asyncio.sleep(0)
    assert r.sent == []
    r.control.started()
    await asyncio.gather(*r.tasks)
    assert r.sent == [("reply", 1, {"flushed": 0})]
    r.log.close()
    r.shard.close()
