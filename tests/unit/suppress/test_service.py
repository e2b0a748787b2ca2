"""engine.suppress.service: the one writer - adds, events through the rules, unsubscribes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.config import Settings
from engine.suppress.model import GLOBAL, Entry, Source
from engine.suppress.service import SuppressionService
from engine.suppress.store import SqliteSuppressionReader, db_path
from engine.telemetry.eventlog import read_log
from engine.unsubscribe.token import Claim
from tests.support.net import async_wait_for

T = 1_800_000_000.0


class Env:
    def __init__(self, tmp_path: Path) -> None:
        self.settings = Settings(spool_path=tmp_path, log_path=tmp_path / "log.jsonl")
        self.counts: list[tuple[Any, ...]] = []
        self.replies: list[tuple[Any, ...]] = []
        self.reader = SqliteSuppressionReader(db_path(tmp_path))

    def count(self, *args: Any, **kw: Any) -> None:
        self.counts.append((*args, kw.get("n", 1)))

    def reply(self, *msg: Any) -> None:
        self.replies.append(msg)

    def records(self) -> list[dict[str, Any]]:
        return list(read_log(self.settings.log_path))


async def test_adds_removes_and_records(tmp_path: Path) -> None:
    env = Env(tmp_path)
    s = await SuppressionService.open(env.settings, env.count, clock=lambda: T)
    e = Entry("bob@x.test", GLOBAL, "r", Source.MANUAL, T)
    assert await s.add([e], replace=True, by="ann") == 1
    assert await s.add([e], replace=True, by="ann") == 1  # an operator's add replaces
    assert env.reader.lookup(["bob@x.test"]) == [e]  # visible to the workers' readers
    assert (
        await s.add([Entry(f"u{i}@x.test") for i in range(5)], replace=True, by="ann", summary=True)
        == 5
    )
    assert await s.remove("bob@x.test", None, "ann") == [e]
    assert (await s.page(None, 3))[0].key == "u0@x.test"
    events = [r["event"] for r in env.records()]
    assert events == [
        "suppression_added",
        "suppression_added",
        "suppressions_imported",
        "suppression_removed",
    ]
    assert env.records()[0]["by"] == "ann" and env.records()[0]["entry"] == "bob@x.test"
    assert ("volley_suppressions_added", "import", 5) in env.counts
    await s.close()


async def test_worker_messages(tmp_path: Path) -> None:
    env = Env(tmp_path)
    s = await SuppressionService.open(env.settings, env.count, clock=lambda: T)
    complaint = Entry("ann@y.test", "example.com", "complaint: abuse", Source.COMPLAINT, T)
    s.on_message(["suppress", 7, [complaint.to_row()]], env.reply)
    await async_wait_for(lambda: env.replies == [("suppressed", 7, None)], timeout=5)
    assert env.reader.lookup(["ann@y.test"]) == [complaint]
    s.on_message(["suppress", 8, [["bad"]]], env.reply)
    await async_wait_for(lambda: len(env.replies) == 2, timeout=5)
    assert env.replies[1][2].startswith("ValueError")
    # Three messages with QuotaIssues, then a hard bounce of another address.
    rows = [
        ["QuotaIssues", "full@x.test", "d.test", False, f"m{i}", "452", T + i] for i in range(3)
    ]
    rows.append(["InvalidRecipient", "gone@x.test", "d.test", True, "m9", "550 5.1.1", T])
    s.on_message(["suppress_events", rows], env.reply)
    await async_wait_for(
        lambda: len(env.reader.lookup(["full@x.test", "gone@x.test"])) == 2, timeout=5
    )
    full, gone = sorted(env.reader.lookup(["full@x.test", "gone@x.test"]), key=lambda e: e.key)
    assert full.expires == T + 2 + 30 * 86400 and gone.expires is None
    assert env.reader.soft_addresses() == []
    added = [r for r in env.records() if r["event"] == "suppression_added"]
    assert [(r["entry"], r["source"], r["by"]) for r in added] == [
        ("ann@y.test", "complaint", "worker"),
        ("full@x.test", "bounce", "rule"),
        ("gone@x.test", "bounce", "rule"),
    ]
    await s.close()


async def test_unsubscribe_is_durable_when_it_returns_and_always_logged(tmp_path: Path) -> None:
    env = Env(tmp_path)
    s = await SuppressionService.open(env.settings, env.count, clock=lambda: T)
    claim = Claim("bob@x.test", "example.com", "weekly")
    await s.unsubscribe(claim, "192.0.2.1")
    [e] = env.reader.lookup(["bob@x.test"])
    assert (e.scope, e.source, e.reason) == (
        "example.com",
        Source.UNSUBSCRIBE,
        "unsubscribed (one-click) list weekly",
    )
    await s.unsubscribe(claim, "192.0.2.1")  # again: already there, logged anyway
    recs = [r for r in env.records() if r["event"] == "suppression_added"]
    assert len(recs) == 2 and recs[0]["client"] == "192.0.2.1" and recs[0]["list"] == "weekly"
    await s.close()
