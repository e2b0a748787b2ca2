"""engine.feedback.service: scan, log, count, then remove - and nothing lost."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.feedback import inbox
from engine.feedback.service import FEEDBACK_SHARD, FeedbackProcessor, feedback_task, scan
from engine.telemetry.eventlog import EventLog, read_log
from engine.telemetry.metrics import CheckedTally
from tests.support.net import async_wait_for

SAMPLES = Path(__file__).parent / "samples"
NOW = 1_800_000_000.0


class Harness:
    """A processor with a real EventLog (synchronous writes) and a submit queue that the
    test runs by hand, standing in for the write-behind thread."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log_path = root / "delivery.jsonl"
        self.log = EventLog(self.log_path, 0)
        self.tally = CheckedTally()
        self.jobs: list[Callable[[], None]] = []
        self.proc = FeedbackProcessor(
            root, self.log, self.tally, submit=self.jobs.append, wall=lambda: NOW, interval=0.01
        )

    def store(self, sample: str) -> None:
        raw = (SAMPLES / sample).read_bytes()
        inbox.store(self.root, raw, sender="", recipients=["b@bounces.test"], client="127.0.0.9")

    def step(self) -> None:
        self.proc.apply(scan(self.root, frozenset(self.proc._done)))

    def records(self) -> list[dict[str, object]]:
        return list(read_log(self.log_path))

    def counts(self) -> dict[tuple[str, ...], int]:
        counters, _, _ = self.tally.drain()
        return {
            tuple(labels): n for name, labels, n in counters if name == "volley_feedback_reports"
        }

    def run_jobs(self) -> None:
        jobs, self.jobs = self.jobs, []
        for job in jobs:
            job()


def test_records_are_written_before_the_file_goes(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.store("exim_two_recipients.eml")
    h.store("yahoo_cfl.eml")
    h.step()
    assert [r["event"] for r in h.records()] == ["async_bounce", "async_bounce", "complaint"]
    assert all(r["ts"] == NOW and r["worker"] == 0 for r in h.records())
    assert h.counts() == {("async_bounce",): 1, ("complaint",): 1}
    assert len(inbox.pending(tmp_path)) == 2  # logged; the removals wait for the writer
    h.step()  # a scan before the removals ran does not process them again
    assert len(h.records()) == 3
    h.run_jobs()
    assert inbox.pending(tmp_path) == []
    h.step()
    assert h.proc._done == set()  # forgotten once gone


async def test_a_hooks_future_holds_the_removal_until_it_completes(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    loop = asyncio.get_running_loop()
    acks: list[asyncio.Future[None]] = []

    def hook(stored: inbox.Stored, report: object) -> asyncio.Future[None]:
        acks.append(loop.create_future())
        return acks[-1]

    h.proc.on_report = hook
    h.store("yahoo_cfl.eml")
    h.store("microsoft_jmrp.eml")
    h.step()
    assert len(acks) == 2 and h.jobs == []  # no removal is even scheduled yet
    acks[0].set_result(None)
    acks[1].set_exception(OSError("the supervisor is gone"))
    await asyncio.sleep(0)  # the done callbacks
    h.run_jobs()
    assert len(inbox.pending(tmp_path)) == 1  # the failed one is kept for the next start
    [err] = [r for r in h.records() if r["event"] == "feedback_error"]
    assert "the supervisor is gone" in str(err["error"])


def test_what_is_not_a_report_is_moved_aside_and_logged(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.store("vacation_reply.eml")
    (tmp_path / "feedback" / "alien.msg").write_bytes(b"dropped here by hand\n")
    h.step()
    recs = h.records()
    assert {r["event"] for r in recs} == {"feedback_rejected"}
    reasons = sorted(str(r["reason"]) for r in recs)
    assert reasons[0].startswith("no VOLLEY-FEEDBACK envelope line")
    assert reasons[1].startswith("not a delivery status notification")
    assert h.counts() == {("unparseable",): 2}
    rejected = tmp_path / "feedback" / "rejected"
    assert sorted(p.name for p in rejected.iterdir()) == sorted(
        [str(r["report"]) for r in recs] + [f"{r['report']}.reason" for r in recs]
    )
    assert inbox.pending(tmp_path) == [] and h.jobs == []


def test_a_batch_limit_leaves_the_rest_for_the_next_scan(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    for _ in range(3):
        h.store("postfix_user_unknown.eml")
    first = scan(tmp_path, frozenset(), limit=2)
    assert len(first.parsed) == 2 and first.more
    rest = scan(tmp_path, frozenset(s.name for s, _ in first.parsed), limit=2)
    assert len(rest.parsed) == 1 and not rest.more


async def test_the_loop_processes_what_arrives_and_stops_when_cancelled(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.proc.submit = lambda fn: fn()  # removals at once
    task = asyncio.create_task(h.proc.run())
    h.store("gmail_no_such_user.eml")
    await async_wait_for(lambda: inbox.pending(tmp_path) == [], timeout=10)
    assert [r["event"] for r in h.records()] == ["async_bounce"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_unreadable_directory_is_logged_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(tmp_path)
    calls = []

    def broken(root: Path) -> list[str]:
        calls.append(root)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(inbox, "pending", broken)
    task = asyncio.create_task(h.proc.run())
    await async_wait_for(lambda: len(calls) >= 2, timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert h.records()[0]["event"] == "feedback_error"
    assert "Permission denied" in str(h.records()[0]["error"])


def test_only_one_worker_runs_it(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    args = (tmp_path, h.log, h.tally, h.jobs.append, lambda: NOW)
    assert feedback_task(FEEDBACK_SHARD + 1, *args) is None
    coro = feedback_task(FEEDBACK_SHARD, *args)
    assert coro is not None
    coro.close()


def test_mail_to_the_unsubscribe_mailto_is_a_request_not_a_rejected_report(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    raw = b"From: a@else.test\r\nTo: Unsub@b.test\r\nSubject: unsubscribe x\r\n\r\n"
    inbox.store(tmp_path, raw, sender="a@else.test", recipients=["Unsub@B.test"], client="1.2.3.4")
    assert scan(tmp_path, frozenset()).rejected  # without the mailto: not a report
    inbox.store(tmp_path, raw, sender="a@else.test", recipients=["unsub@b.test"], client="1.2.3.4")
    result = scan(tmp_path, frozenset(), mailto="unsub@b.test")
    assert [r.kind.value for _, r in result.parsed] == ["unsubscribe"] and not result.rejected
    h.proc.apply(result)
    (rec,) = [r for r in h.records() if r["event"] == "unsubscribe_mail"]
    assert rec["to"] == ["unsub@b.test"] and rec["report_from"] == "a@else.test"
    assert h.counts() == {("unsubscribe",): 1}
