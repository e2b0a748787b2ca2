"""Verdicts a connection hands down on entries outside a transaction's own outcome.

Responsible for: a failed connection's feedback (a lower concurrency window; for the last
one a short pause when the receiver said "not now" (a 4xx greeting), else a dead
destination), applying a whole-destination failure (no route, no MX
host would take a session) to every ready entry of the destination, bouncing a site's
ready mail when a shaping rule says so, recording outcomes so that even a
bug of ours leaves the entry decided (retried after the first retry step), loading an
entry for delivery (a vanished one is done, a corrupt one quarantined), and reporting
internal errors loudly (stderr traceback, log record, count).
Not responsible for: classifying replies (engine.sched.classify) or writing outcomes to
the spool and log (engine.runtime.outcome).
"""

from __future__ import annotations

import random
import sys
import time
import traceback
from typing import Any

from engine.clock import Clock
from engine.config import DomainPolicy, Settings
from engine.model import ConnectFailure, Disposition, Origin, RecipientOutcome
from engine.net.mx import RouteFailure, RouteFailureKind
from engine.runtime.outcome import Attempt, Outcomes
from engine.sched.backoff import retry_delay
from engine.sched.classify import classify_connect_failure, classify_route_failure
from engine.sched.queue import WorkQueue
from engine.telemetry.metrics import Tally
from spool import CorruptEntry, EntryRef, ShardQueue

__all__ = ["Verdicts"]

# Route failures that suspend the destination for a retry step (the rest bounce): DNS
# trouble, and an MTA-STS policy that lists none of the MX hosts (it may be fixed).
_TEMPORARY_ROUTE = frozenset({RouteFailureKind.TEMPORARY, RouteFailureKind.POLICY})
# A worker's last connection refused with a 4xx reply (a 421 greeting: a receiver at its
# connection limit) pauses the destination this long, entries untouched, before the
# next try; the next refusal in a row pauses for the next step, and one more fails the
# destination (every ready entry deferred a retry step).  A receiver capped at 4
# connections refuses a fifth for as long as the other four last; failing the
# destination at once deferred a worker's whole ready queue and left it idle for a retry
# step: a 20 000-message campaign to such a receiver took 124-126 s with adaptive
# shaping and 109 s without, 116-120 s and 105 s with the pauses (bench/shaping.py,
# 2026-12-07).
REFUSAL_PAUSES = (1.0, 2.0)


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))


class Verdicts:
    def __init__(
        self,
        settings: Settings,
        shard: ShardQueue,
        queue: WorkQueue,
        outcomes: Outcomes,
        tally: Tally,
        clock: Clock,
        rng: random.Random,
    ) -> None:
        self._s = settings
        self._shard = shard
        self._queue = queue
        self._outcomes = outcomes
        self._tally = tally
        self._clock = clock
        self._rng = rng
        self._refusals: dict[str, int] = {}  # domain -> 4xx refusals in a row (pauses)

    def reconfigure(self, settings: Settings) -> None:
        self._s = settings

    def connection_failed(self, domain: str, policy: DomainPolicy, failure: ConnectFailure) -> None:
        """Negative feedback (Postfix qmgr_queue_throttle): a connection that failed while
        others of this worker to the domain live lowers the window; the last one failing
        makes the destination dead for one retry step (every ready entry deferred),
        unless it was refused with a 4xx reply: then the first REFUSAL_PAUSES in a row
        only pause it."""
        self._tally.inc("volley_connections", "failed")
        state = self._queue.domain(domain)
        if state.connections > 1:
            state.window = max(1, state.connections - 1)
            return
        state.window = 1
        streak = self._refusals.get(domain, 0)
        reply = failure.reply
        if reply is not None and 400 <= reply.code < 500 and streak < len(REFUSAL_PAUSES):
            self._refusals[domain] = streak + 1
            self._queue.pause(domain, self._clock.wall() + REFUSAL_PAUSES[streak], "connection")
            return
        self._refusals.pop(domain, None)
        self.fail_destination(domain, policy, connect=failure)

    def clear_refusals(self, domain: str) -> None:
        """A session to `domain` came up (a refusal after it starts a new streak), or
        the queue forgot the domain."""
        if self._refusals:
            self._refusals.pop(domain, None)

    def bounce_ready(self, domain: str, site: str, until: float) -> None:
        """A shaping rule in force bounces the site's mail (its `bounce` action): every
        ready entry of `domain` is bounced, with a report to its sender."""
        now = self._clock.wall()
        text = f"bounced: a shaping rule in force for {site} until {_utc(until)} says so"
        for ref in self._queue.take_all(domain):
            assert isinstance(ref, EntryRef)
            loaded = self.load(ref, now)
            if loaded is None:
                continue
            meta, body = loaded
            outcomes = [
                RecipientOutcome(r, Disposition.BOUNCED, 550, "5.0.0", text, Origin.LOCAL)
                for r in meta["rcpts"]
            ]
            self.apply(ref, meta, body, outcomes, Attempt(None, None), now)

    def fail_destination(
        self,
        domain: str,
        policy: DomainPolicy,
        *,
        route: RouteFailure | None = None,
        connect: ConnectFailure | None = None,
    ) -> None:
        """Apply a whole-destination failure to every ready entry of the domain."""
        now = self._clock.wall()
        temporary = route is None or route.kind in _TEMPORARY_ROUTE
        until = now + retry_delay(1, policy.retry_schedule, policy.retry_jitter, self._rng)
        refs = self._queue.suspend(domain, until) if temporary else self._queue.take_all(domain)
        attempt = Attempt(connect.host if connect else None, connect.address if connect else None)
        for ref in refs:
            assert isinstance(ref, EntryRef)
            loaded = self.load(ref, now)
            if loaded is None:
                continue
            meta, body = loaded
            rcpts: list[str] = list(meta["rcpts"])
            if route is not None:
                outcomes = classify_route_failure(rcpts, route)
            else:
                assert connect is not None
                outcomes = classify_connect_failure(rcpts, connect)
            self.apply(ref, meta, body, outcomes, attempt, now)

    def apply(
        self,
        ref: EntryRef,
        meta: dict[str, Any],
        body: bytes,
        outcomes: list[RecipientOutcome],
        attempt: Attempt,
        now: float,
    ) -> bool:
        """Outcomes.apply, and if it fails (a bug: spool errors are its own business), the
        entry is still decided: retried after the first retry step, said in the log."""
        try:
            return self._outcomes.apply(ref, meta, body, outcomes, attempt, now)
        except Exception as exc:
            self.internal_error(f"recording the outcome of {ref.name}", exc)
            policy = self._s.policy(ref.domain)
            delay = retry_delay(1, policy.retry_schedule, policy.retry_jitter, self._rng)
            self._queue.done(ref, retry_at=now + delay, now=now)
            return False

    def internal_error(self, what: str, exc: BaseException) -> None:
        """Say it loudly: a traceback on stderr (the supervisor's terminal or journal), a
        log line and a count.  The caller decides the entries it holds."""
        print(f"volley: internal error while {what}:", file=sys.stderr)
        traceback.print_exception(exc, file=sys.stderr)
        self._outcomes.log_internal_error(what, exc, self._clock.wall())
        self._tally.inc("volley_internal_errors")

    def load(self, ref: EntryRef, now: float) -> tuple[dict[str, Any], bytes] | None:
        """The entry's meta and body; None (and the entry done) if it is gone or corrupt."""
        try:
            meta, body = self._shard.load(ref)
            if meta.get("dsn"):
                self._outcomes.seal(ref.name)  # a bounce report gathers no more once sent
            return meta, body
        except FileNotFoundError:
            self._queue.done(ref, retry_at=None, now=now)
        except CorruptEntry as e:
            self._outcomes.quarantine(ref, f"cannot decode spool entry: {e.reason}", "corrupt", now)
        return None
