"""The suppression list inside a worker: everything engine.runtime.worker holds of it.

Responsible for: bundling a worker's parts - the intake gate (the read-only check and
the List-Unsubscribe headers: engine.suppress.gate), the client of the supervisor (the
one writer: engine.suppress.client), the outcome feed (engine.suppress.feed) and the
feedback hook (engine.suppress.reports) - and the records intake's results make:
`suppressed` (one per recipient not queued, naming the entry) and `unsubscribe_skipped`
(an entry with several recipients got no List-Unsubscribe), with their counts.
Not responsible for: any decision (those modules) or the worker's life.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from engine.config import Settings
from engine.feedback.inbox import Stored
from engine.feedback.report import FeedbackReport
from engine.suppress.check import record_fields
from engine.suppress.client import SuppressClient
from engine.suppress.feed import BounceFeed
from engine.suppress.gate import IntakeGate
from engine.suppress.reports import report_hook
from engine.suppress.store import SqliteSuppressionReader, db_path
from engine.telemetry.eventlog import EventLog
from engine.telemetry.metrics import Tally

__all__ = ["SuppressionAgent"]


class SuppressionAgent:
    def __init__(
        self,
        settings: Settings,
        send: Callable[..., None],
        log: EventLog,
        tally: Tally,
        wall: Callable[[], float],
    ) -> None:
        """Raises OSError / ValueError when `[unsubscribe]`'s key cannot be read."""
        self.gate = IntakeGate.for_settings(settings)
        self.client = SuppressClient(send)
        reader = (
            self.gate.check.reader
            if self.gate.check
            else SqliteSuppressionReader(db_path(settings.spool_path))
        )
        self.feed = BounceFeed(settings, self.client, reader)
        self.on_report: Callable[[Stored, FeedbackReport], asyncio.Future[None] | None] = (
            report_hook(self.client, self.feed, wall, self.gate.ring, tally)
        )
        self._log = log
        self._tally = tally

    def reconfigure(self, settings: Settings) -> None:
        self.feed.reconfigure(settings)

    def on_message(self, msg: list[Any]) -> None:
        """["suppressed", req, error]: the supervisor committed (or refused) an add."""
        self.client.answered(int(msg[1]), msg[2])

    def flush(self) -> None:
        self.client.flush()

    def record(self, batch: Any, now: float) -> None:
        """The records of an engine.runtime.intake.IntakeBatch's `suppressed` and
        `headers` (called where the batch's `received` records are written)."""
        for x in batch.suppressed:
            fields = record_fields(x.hit, x.sender, x.sender_domain)
            self._log.add("suppressed", now, msgid=x.message_id, drop=x.drop, **fields)
            self._tally.inc("volley_suppressed", x.hit.entry.source.value)
        for result, msgid, domain, n in batch.headers:
            self._tally.inc("volley_unsubscribe_headers", result)
            if result == "several_recipients":
                self._log.add("unsubscribe_skipped", now, msgid=msgid, domain=domain, rcpts=n)

    def close(self) -> None:
        self.client.close()
        self.gate.close()
