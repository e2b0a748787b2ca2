"""The feedback processor: worker 0's task that turns <spool>/feedback/ into log records.

Responsible for: scanning feedback/ (every `INTERVAL`, at once again while a scan hit
its batch limit), reading and parsing each message off the event loop (in the default
executor: file I/O and the stdlib MIME parser), then on the loop writing its records
(engine.feedback.records) to the worker's delivery log, counting
volley_feedback_reports_total{kind}, and only after its records went to the writer
removing the file (on the write-behind thread, FIFO after the log write).  A message
that is not a report is moved to feedback/rejected/ with the reason and logged as
`feedback_rejected`: never lost, never retried.
Not responsible for: receiving the messages (engine.smtpd calls engine.feedback.inbox.store),
which worker runs it (engine.runtime.worker starts it on shard 0 only, so each file
is processed by one process), or what a report means for the suppression list: the
`on_report` hook (engine.suppress) is told of every parsed report and may return a
future; the file is then removed only once it completed (a complaint is suppressed
durably first), and kept, with a `feedback_error` record, if it failed.

Crash safety: a kill -9 after the records were written but before the unlink leaves the
file, which the next start processes again: the report is logged twice, never lost.
A file whose removal is pending is remembered (`_done`) so the next scan skips it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.feedback import inbox
from engine.feedback.parse import parse_report
from engine.feedback.records import records, rejected_record
from engine.feedback.report import FeedbackKind, FeedbackReport
from engine.policy.classifier import Classifier
from engine.telemetry.eventlog import EventLog
from engine.telemetry.metrics import Tally

__all__ = ["BATCH", "FEEDBACK_SHARD", "INTERVAL", "FeedbackProcessor", "feedback_task"]

FEEDBACK_SHARD = 0  # the one worker that processes feedback/
INTERVAL = 1.0  # seconds between scans of an empty feedback/: reports are not urgent
BATCH = 100  # messages per executor job (~0.5 ms each to parse: ~50 ms off the loop)

# Told of each parsed report; a future it returns delays the file's removal until done.
OnReport = Callable[[inbox.Stored, FeedbackReport], "asyncio.Future[None] | None"]


@dataclass(slots=True)
class Scan:
    """One executor job's results."""

    parsed: list[tuple[inbox.Stored, FeedbackReport]] = field(default_factory=list)
    rejected: list[tuple[str, str, inbox.Stored | None]] = field(default_factory=list)
    present: set[str] = field(default_factory=set)  # every name listed
    more: bool = False  # the batch limit was hit


def scan(root: Path, done: frozenset[str], limit: int = BATCH, mailto: str | None = None) -> Scan:
    """Blocking: read and parse up to `limit` waiting messages not in `done`; move the
    unparseable ones to feedback/rejected/ (durably).  A message to `mailto` (the
    `[unsubscribe]` mailto address) is an unsubscribe request, not a report."""
    result = Scan()
    names = inbox.pending(root)
    result.present = set(names)
    todo = [n for n in names if n not in done]
    result.more = len(todo) > limit
    for name in todo[:limit]:
        try:
            stored = inbox.load(root, name)
        except FileNotFoundError:
            continue
        if isinstance(stored, str):
            result.rejected.append((inbox.reject(root, name, stored), stored, None))
            continue
        if mailto is not None and any(r.lower() == mailto for r in stored.recipients):
            result.parsed.append((stored, FeedbackReport(FeedbackKind.UNSUBSCRIBE)))
            continue
        report = parse_report(stored.raw)
        if report.kind is FeedbackKind.UNPARSEABLE:
            reason = report.reason or "unparseable"
            result.rejected.append((inbox.reject(root, name, reason), reason, stored))
            continue
        result.parsed.append((stored, report))
    return result


class FeedbackProcessor:
    def __init__(
        self,
        root: Path,
        log: EventLog,
        tally: Tally,
        *,
        submit: Callable[[Callable[[], None]], None],
        wall: Callable[[], float],
        interval: float = INTERVAL,
        on_report: OnReport | None = None,
        mailto: str | None = None,
        classifier: Classifier | None = None,
    ) -> None:
        """`submit(fn)` runs fn after the log writes handed over before it (the worker's
        write-behind thread); `wall()` is the time of the records."""
        self.root = root
        self.log = log
        self.tally = tally
        self.submit = submit
        self.wall = wall
        self.interval = interval
        self.on_report = on_report
        self.mailto = mailto.lower() if mailto else None
        self.classifier = classifier  # the bounce rules in force (the user's included)
        self._done: set[str] = set()  # processed, removal pending

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            done = frozenset(self._done)
            try:
                result = await loop.run_in_executor(None, scan, self.root, done, BATCH, self.mailto)
            except Exception as e:  # e.g. feedback/ unreadable: say so, keep trying
                self.log.add("feedback_error", self.wall(), error=f"{type(e).__name__}: {e}")
                self.log.flush()
                await asyncio.sleep(self.interval)
                continue
            self.apply(result)
            await asyncio.sleep(0 if result.more else self.interval)

    def apply(self, result: Scan) -> None:
        """Log, count and schedule the removals of one scan's results (on the loop)."""
        self._done &= result.present  # names gone from the directory are removed for good
        now = self.wall()
        for final, reason, stored in result.rejected:
            event, fields = rejected_record(final, reason, stored)
            self.log.add(event, now, **fields)
            self.tally.inc("volley_feedback_reports", FeedbackKind.UNPARSEABLE.value)
        for stored, report in result.parsed:
            for event, fields in records(stored, report, self.classifier):
                self.log.add(event, now, **fields)
            self.tally.inc("volley_feedback_reports", report.kind.value)
            self._done.add(stored.name)
            ack = self.on_report(stored, report) if self.on_report is not None else None
            if ack is None:
                self.log.then(self._remove_later, stored.name)
            else:
                ack.add_done_callback(functools.partial(self._acked, stored.name))
        self.log.flush()

    def _acked(self, name: str, ack: asyncio.Future[None]) -> None:
        """The hook's work for report `name` is done: remove it, or keep it if it failed
        (it is processed again at the next start: logged twice, never lost)."""
        error = None if ack.cancelled() else ack.exception()
        if ack.cancelled() or error is not None:
            why = "cancelled" if error is None else f"{type(error).__name__}: {error}"
            self.log.add("feedback_error", self.wall(), report=name, error=why)
        else:
            self.log.then(self._remove_later, name)
        self.log.flush()

    def _remove_later(self, name: str) -> None:
        root = self.root

        def remove() -> None:
            # On the write-behind thread, whose errors the next delivery would meet: a file
            # that cannot be unlinked stays (skipped until restart, then logged again).
            with contextlib.suppress(OSError):
                inbox.remove(root, name)

        self.submit(remove)


def feedback_task(
    shard: int,
    root: Path,
    log: EventLog,
    tally: Tally,
    submit: Callable[[Callable[[], None]], None],
    wall: Callable[[], float],
    on_report: OnReport | None = None,
    mailto: str | None = None,
    classifier: Classifier | None = None,
) -> Coroutine[Any, Any, None] | None:
    """The processor's coroutine for worker `shard`, or None: only FEEDBACK_SHARD runs it."""
    if shard != FEEDBACK_SHARD:
        return None
    processor = FeedbackProcessor(
        root,
        log,
        tally,
        submit=submit,
        wall=wall,
        on_report=on_report,
        mailto=mailto,
        classifier=classifier,
    )
    return processor.run()
