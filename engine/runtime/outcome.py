"""Outcome: apply one attempt's per-recipient verdicts to the spool, the log and metrics.

Responsible for: expiring deferrals past max_age, giving every failure its bounce
category (engine.policy.classifier, with the rules of the settings in force: a reload
applies to the next outcome), logging one record per recipient (before the spool
changes: write-ahead, so a delivered message is never missing from the log), counting it
(failures by category), reporting bounced/expired recipients to the sender
(engine.runtime.bounces: one DSN per message), then removing the entry (nothing left to
do; the removal follows its log lines in the log's next batch, EventLog.then) or
rewriting it with only the recipients still pending, its attempt count and its next
attempt time (a restart never resends to recipients that accepted).
Not responsible for: deciding verdicts (engine.sched.classify), retry timing
(engine.sched.backoff), or what the suppression list makes of them (`feed`, once per
attempt, with the categories: engine.suppress.feed).

Why the category is given here and not in engine.sched.classify: classify's functions
are called from eight places (delivery, destination failures, operator bounces, the
encoder's refusals) with no settings; here every outcome passes once, with the settings
(and so the user's rules) in force, after expiry is known (an expired recipient is
MessageExpired whatever its last error was).  Deliveries are not classified at all.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.config import Settings
from engine.model import Disposition, Origin, RecipientOutcome
from engine.policy.classifier import Classifier
from engine.runtime.bounces import BounceReports
from engine.sched.backoff import is_expired, plan_retry
from engine.sched.classify import expire
from engine.sched.queue import WorkQueue
from engine.telemetry.eventlog import EventLog
from engine.telemetry.metrics import Tally
from spool import EntryRef, ShardQueue, SpoolFull

__all__ = ["Attempt", "Outcomes", "classified"]

SPOOL_FULL_RETRY = 30.0  # seconds before an attempt whose outcome could not be written is redone

_COUNTER = {
    Disposition.DEFERRED: "volley_deferred",
    Disposition.BOUNCED: "volley_bounced",
    Disposition.EXPIRED: "volley_expired",
}


@dataclass(frozen=True, slots=True)
class Attempt:
    """Where an attempt went (for the log)."""

    mx: str | None = None
    ip: str | None = None


class Outcomes:
    def __init__(
        self,
        settings: Settings,
        shard: ShardQueue,
        queue: WorkQueue,
        log: EventLog,
        tally: Tally,
        rng: random.Random,
        remove: Callable[[EntryRef], None] | None = None,
        settle: Callable[[], None] | None = None,
        feed: Callable[[dict[str, Any], Sequence[RecipientOutcome], float], None] | None = None,
    ) -> None:
        """`remove` finishes an entry (default: shard.remove; the worker passes one that
        queues it on its write-behind thread); it runs once the entry's log lines have
        been handed to the log's writer (EventLog.then), so never ahead of them.
        `settle` waits until the log lines handed to that thread are written; it runs
        before every synchronous spool change (rewrite, DSN), so the spool never records
        an attempt whose log lines a kill -9 could still lose."""
        self._settings = settings
        self._shard = shard
        self._queue = queue
        self._log = log
        self._tally = tally
        self._rng = rng
        self._remove: Callable[[EntryRef], None] = remove or shard.remove
        self._settle: Callable[[], None] = settle or (lambda: None)
        self._feed = feed  # the suppression rules' input (engine.suppress.feed)
        self._reports = BounceReports(settings, shard, queue, log, tally)

    def reconfigure(self, settings: Settings) -> None:
        """A reload: outcomes recorded from now on follow `settings` (retry policy, DSNs)."""
        self._settings = settings
        self._reports.reconfigure(settings)

    def seal(self, name: str) -> None:
        """Entry `name` is about to be delivered: a bounce report gathers nothing more
        (engine.runtime.bounces)."""
        self._reports.seal(name)

    def apply(
        self,
        ref: EntryRef,
        meta: dict[str, Any],
        body: bytes,
        outcomes: Sequence[RecipientOutcome],
        attempt: Attempt,
        now: float,
    ) -> bool:
        """Log, count and record one attempt's verdicts.

        Returns True when the entry left the queue (nothing pending: delivered, bounced
        or expired), False when it stays (rewritten for a retry, or kept as it was
        because the spool was full).
        """
        policy = self._settings.policy(ref.domain)
        created = float(meta["created"])
        attempts = int(meta.get("attempts", 0)) + 1
        if is_expired(now, created, policy.max_age):
            outcomes = [
                expire(o, policy.max_age) if o.disposition is Disposition.DEFERRED else o
                for o in outcomes
            ]
        log_outcome = self._log.add_outcome
        tally = self._tally
        domain = ref.domain
        eid = ref.id
        msgid = meta.get("msgid")
        sender = meta["sender"]
        in_queue = round(now - created, 3)
        finished = True  # no recipient left pending
        failures: list[RecipientOutcome] = []  # classified
        for o in outcomes:
            disposition = o.disposition
            if disposition is Disposition.DELIVERED:
                log_outcome(
                    "delivered", now, eid, msgid, sender, o.recipient, domain, attempt.mx,
                    attempt.ip, o.code, o.enhanced, o.text, attempts, created, in_queue,
                )  # fmt: skip
                tally.inc("volley_delivered", domain)
                tally.observe("volley_delivery_latency_seconds", now - created, domain)
                continue
            o = classified(o, self._settings.bounce.classifier)
            failures.append(o)
            c = o.classification
            assert c is not None
            log_outcome(
                disposition.value, now, eid, msgid, sender, o.recipient, domain, attempt.mx,
                attempt.ip, o.code, o.enhanced, o.text, attempts, created, in_queue,
                c.category.value, c.rule,
            )  # fmt: skip
            tally.inc(_COUNTER[disposition], domain, c.category.value)
            if disposition is Disposition.DEFERRED:
                finished = False
        if self._feed is not None:  # the suppression list's rules see categories
            delivered = [o for o in outcomes if o.disposition is Disposition.DELIVERED]
            self._feed(meta, [*delivered, *failures], now)
        if not failures:
            # The common case, every recipient delivered: no synchronous spool change, so
            # the lines wait for the log's next batch and the entry's removal follows them
            # (EventLog.then); the queue forgets the entry now.
            self._queue.done(ref, retry_at=None, now=now)
            self._log.then(self._remove, ref)
            return True
        self._log.flush()
        try:
            self._record(ref, meta, body, failures, attempt, now, created, attempts)
        except (SpoolFull, OSError) as e:
            # Nothing could be written (a full disk, or an I/O error): keep the entry
            # exactly as it is on disk and try the whole attempt again later.  Recipients
            # that accepted this time will get the message twice (at-least-once); none is
            # lost.
            event = "spool_full" if isinstance(e, SpoolFull) else "spool_error"
            self._log.add(event, now, id=ref.id, domain=ref.domain, reason=str(e))
            self._log.flush()
            self._queue.done(ref, retry_at=now + SPOOL_FULL_RETRY, now=now)
            return False
        return finished

    def log_internal_error(self, what: str, exc: BaseException, now: float) -> None:
        """A bug of Volley's own met while `what`: one log line (the caller decides the
        entries it holds and prints the traceback)."""
        self._log.add("internal_error", now, where=what, error=f"{type(exc).__name__}: {exc}")
        self._log.flush()

    def _record(
        self,
        ref: EntryRef,
        meta: dict[str, Any],
        body: bytes,
        failures: Sequence[RecipientOutcome],
        attempt: Attempt,
        now: float,
        created: float,
        attempts: int,
    ) -> None:
        """Make the spool say what happened to `failures` (the outcomes that were not
        deliveries): DSN first (it must exist before the entry that caused it goes), then
        remove the entry or rewrite it with what is pending.
        The caller has flushed the log; settle() waits until the lines are written."""
        policy = self._settings.policy(ref.domain)
        failed = [
            o for o in failures if o.disposition in (Disposition.BOUNCED, Disposition.EXPIRED)
        ]
        pending = [o for o in failures if o.disposition is Disposition.DEFERRED]
        if pending or failed:
            self._settle()  # write-ahead: the log lines first, then the durable change
        if failed and meta["sender"] and not meta.get("dsn") and self._settings.dsn_enabled:
            self._reports.report(ref, meta, body, failed, attempt.mx, now)
        if not pending:
            self._queue.done(ref, retry_at=None, now=now)
            self._log.then(self._remove, ref)  # after the DSN's log line
            return
        retry = plan_retry(
            now,
            created,
            attempts,
            policy.retry_schedule,
            policy.retry_jitter,
            policy.max_age,
            self._rng,
        )
        last = pending[-1]
        new_meta = dict(meta)
        new_meta.update(
            rcpts=[o.recipient for o in pending],
            attempts=attempts,
            last={
                "code": last.code,
                "enhanced": last.enhanced,
                "text": last.text[:500],
                "category": last.classification.category.value if last.classification else None,
            },
        )
        self._shard.rewrite(ref, new_meta, body, retry.at)
        self._queue.done(ref, retry_at=retry.at, now=now)

    def quarantine(
        self, ref: EntryRef, reason: str, kind: str, now: float, *, queued: bool = True
    ) -> None:
        """Move an entry to corrupt/ with its reason, and say so.  `queued`: the entry is
        in the work queue (taken by a connection) and leaves it."""
        final = self._shard.quarantine(ref, reason)
        if queued:
            self._queue.done(ref, retry_at=None, now=now)
        self._log.add("quarantined", now, id=ref.id, domain=ref.domain, reason=reason, file=final)
        self._log.flush()
        self._tally.inc("volley_quarantined", kind)


def classified(o: RecipientOutcome, classifier: Classifier) -> RecipientOutcome:
    """`o` with its bounce category (kept if it already has one).  An expired recipient
    is classified as an expiry (origin "expiry"), whatever its last error was."""
    if o.classification is not None:
        return o
    origin = Origin.EXPIRY if o.disposition is Disposition.EXPIRED else o.origin
    found = classifier.classify(origin, o.kind, o.code, o.enhanced, o.text)
    return RecipientOutcome(
        o.recipient, o.disposition, o.code, o.enhanced, o.text, o.origin, o.kind, found
    )
