"""engine.runtime.verdicts: whole-destination failures, loads of vanished or corrupt
entries, and outcomes recorded even when recording fails.  A real spool shard, queue and
log on a temp dir; a fake clock."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from engine.config import DomainPolicy, Settings
from engine.model import ConnectFailure, FailureKind, Phase, TransportFailure
from engine.net.mx import RouteFailure, RouteFailureKind
from engine.runtime.outcome import Attempt, Outcomes
from engine.runtime.verdicts import REFUSAL_PAUSES, Verdicts
from engine.sched.queue import WorkQueue
from engine.smtp.replies import Reply
from engine.telemetry.eventlog import EventLog, read_log
from engine.telemetry.metrics import CheckedTally
from spool import EntryRef, NewEntry, Spool, entry_id
from tests.support.fake_clock import FakeClock

NOW = 1_800_000_000.0


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.settings = Settings(
            spool_path=tmp_path / "spool",
            helo_name="mta.test",
            log_path=tmp_path / "delivery.jsonl",
            default_policy=DomainPolicy(retry_schedule=(60.0,), retry_jitter=0.0),
        )
        spool = Spool(self.settings.spool_path)
        spool.ensure(1)
        self.shard = spool.shard(0)
        self.shard.recover()
        self.queue = WorkQueue()
        self.log = EventLog(self.settings.log_path, worker=0)
        self.tally = CheckedTally()
        self.outcomes = Outcomes(
            self.settings, self.shard, self.queue, self.log, self.tally, random.Random(1)
        )
        self.v = Verdicts(
            self.settings,
            self.shard,
            self.queue,
            self.outcomes,
            self.tally,
            FakeClock(NOW),
            random.Random(1),
        )

    def entries(self, n: int) -> list[EntryRef]:
        items = [
            NewEntry(
                entry_id(int(NOW * 1e9) + i, b"%d" % i),
                "d.test",
                {"sender": "s@a.test", "rcpts": [f"u{i}@d.test"], "created": NOW},
                b"Subject: x\r\n\r\nhi\r\n",
                NOW,
            )
            for i in range(n)
        ]
        refs = self.shard.add(items)
        for ref in refs:
            self.queue.add(ref, NOW, NOW)
        return refs

    def events(self) -> list[str]:
        self.log.flush()
        return [r["event"] for r in read_log(self.settings.log_path)]


def test_a_temporary_route_failure_defers_every_ready_entry_once(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.entries(3)
    failure = RouteFailure("d.test", RouteFailureKind.TEMPORARY, "SERVFAIL")
    s.v.fail_destination("d.test", s.settings.policy("d.test"), route=failure)
    assert s.events() == ["deferred"] * 3
    assert s.queue.domain("d.test").suspended_until == NOW + 60.0
    connect = ConnectFailure(
        "mx1.d.test", "127.0.0.2", failure=TransportFailure(Phase.CONNECT, FailureKind.REFUSED, "x")
    )
    s.v.fail_destination("d.test", s.settings.policy("d.test"), connect=connect)
    assert len(s.events()) == 3  # nothing was ready any more


def test_a_4xx_refusal_of_the_last_connection_pauses_before_it_fails(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.entries(2)
    policy = s.settings.policy("d.test")
    state = s.queue.domain("d.test")
    state.connections = 1  # the caller counts the failing connection
    busy = ConnectFailure("mx1.d.test", "127.0.0.2", Reply(421, ("4.7.0 too many",)))
    for pause in REFUSAL_PAUSES:  # 1 s, then 2 s: nothing deferred
        s.v.connection_failed("d.test", policy, busy)
        assert s.queue.paused("d.test") == "connection"
        assert s.queue.next_due() == pytest.approx(NOW + pause)
        assert s.events() == []
        s.queue.unpause("connection")
    s.v.connection_failed("d.test", policy, busy)  # the third in a row: the usual failure
    assert s.events() == ["deferred"] * 2
    assert state.suspended_until == NOW + 60.0


def test_a_session_ends_a_refusal_streak_and_a_silent_refusal_fails_at_once(
    tmp_path: Path,
) -> None:
    s = Setup(tmp_path)
    s.entries(1)
    policy = s.settings.policy("d.test")
    s.queue.domain("d.test").connections = 1
    busy = ConnectFailure("mx1.d.test", "127.0.0.2", Reply(421, ("4.7.0 too many",)))
    for _ in range(5):  # refused, a session, refused, ...: never the destination's failure
        s.v.connection_failed("d.test", policy, busy)
        s.queue.unpause("connection")
        s.v.clear_refusals("d.test")
    assert s.events() == []
    tcp = ConnectFailure(
        "mx1.d.test", "127.0.0.2", failure=TransportFailure(Phase.CONNECT, FailureKind.REFUSED, "x")
    )
    s.v.connection_failed("d.test", policy, tcp)
    assert s.events() == ["deferred"]


def test_a_vanished_entry_is_done_and_a_failed_record_still_decides(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    gone, kept = s.entries(2)
    s.queue.take("d.test")
    s.shard.remove(gone)
    assert s.v.load(gone, NOW) is None
    assert gone.name not in s.queue

    def broken(*args: Any) -> bool:
        raise RuntimeError("disk on fire")

    s.queue.take("d.test")
    s.outcomes.apply = broken  # type: ignore[method-assign]
    meta, body = s.shard.load(kept)
    assert s.v.apply(kept, meta, body, [], Attempt(None, None), NOW) is False
    assert kept.name in s.queue  # retried after the first step, never lost
    assert "internal_error" in s.events()
    counts, _, _ = s.tally.drain()
    assert ["volley_internal_errors", [], 1] in counts


@pytest.fixture(autouse=True)
def _quiet_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """internal_error prints a traceback to stderr by design."""
