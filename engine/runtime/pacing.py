"""Pacing: one connection's send instants under its site's rate limits.

Responsible for: `Pacer`, which holds the instants the supervisor granted one connection
(engine.shaping.rates: a batch per round trip), sleeps until the next one before each
message, asks for the next batch when they run out, says "not before T" when the next
instant is too far off to keep a connection open for, gives unused instants back
when the connection ends, and counts the messages it let go (an egress source's quota
and metrics: engine.runtime.egress).
Not responsible for: deciding instants (the supervisor) or what to do when told to wait
(engine.runtime.delivery pauses the destination).

Cost: nothing for a destination without rate limits and egress source (no Pacer is made);
with limits, one round trip per batch (50 ms of the limit) and one timer per message sent
early; without limits (only counting) none.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Protocol

from engine.clock import Clock
from engine.shaping.gcra import Rate
from engine.shaping.rates import Grant

__all__ = ["Pacer", "RateGrants"]

# A request asks for the instants of this span of the limit (at least one, at most
# MAX_BATCH).  Instants are consecutive in the site's schedule, so a batch is what one
# connection sends back to back: small batches interleave the site's connections (4
# connections to a 76/s site each ask for 4 instants, not one for 64), and a connection
# slower than the limit holds few instants it cannot keep.  At 50 ms, a 50/s site costs
# the supervisor 20 requests a second, one local round trip (~40 µs) each.
BATCH_SPAN = 0.05
MAX_BATCH = 64


class RateGrants(Protocol):
    async def grant(self, keys: list[str], rates: list[Rate], want: int) -> Grant: ...

    def give_back(self, keys: list[str], unused: list[float]) -> None: ...


class Pacer:
    def __init__(
        self,
        grants: RateGrants,
        keys: list[str],
        rates: list[Rate],
        clock: Clock,
        patience: float,
        on_close: Callable[[int], None] | None = None,
    ) -> None:
        """`patience`: the longest a connection waits for an instant (its idle timeout);
        `on_close(sent)` hears how many messages went when the connection ends.  With no
        `keys`, every message may go at once: the Pacer only counts."""
        self._grants = grants
        self._keys = keys
        self._clock = clock
        self._patience = patience
        self._times: tuple[float, ...] = ()
        self._next = 0
        self.retune(rates)
        self._on_close = on_close
        self.sent = 0
        self.waiting = False  # sleeping until an instant (for the "rate" gauge)

    @property
    def keys(self) -> list[str]:
        return self._keys

    def retune(self, rates: list[Rate]) -> None:
        """New limits for the same keys (adaptive shaping changed them): the next batch
        is asked for under them; the instants held stay (at most one batch, BATCH_SPAN of
        the old limit).  Closing the Pacer instead gave back only the instants of the
        site's newest grant: the other connections' were lost, a dip of ~30 messages at
        each change against a 200/s receiver (bench/shaping.py, 12 in a campaign)."""
        self._rates = rates
        slowest = min((r.per_second for r in rates), default=0.0)
        self._batch = max(1, min(MAX_BATCH, math.ceil(slowest * BATCH_SPAN)))
        # An instant used later than this after it is dropped, not used: late instants
        # sent back to back would bunch beyond the limit.  With it, any window of the
        # limit's period holds at most the limit plus one batch.
        self._late = max(BATCH_SPAN, max((r.interval for r in rates), default=0.0))

    async def take(self, want: int) -> float | None:
        """Wait for the next instant (None: send now), or return the monotonic time of
        the next instant when it is beyond patience (the caller stops; nothing taken)."""
        if not self._keys:
            self.sent += 1
            return None
        now = self._clock.monotonic()
        while self._next < len(self._times) and self._times[self._next] < now - self._late:
            self._next += 1  # too late to use without bunching
        if self._next >= len(self._times):
            grant = await self._grants.grant(self._keys, self._rates, min(want, self._batch))
            if not grant.times:
                return grant.retry_at
            self._times, self._next = grant.times, 0
        at = self._times[self._next]
        delay = at - self._clock.monotonic()
        if delay > self._patience:
            return at
        self._next += 1
        self.sent += 1
        if delay > 0:
            self.waiting = True
            try:
                await asyncio.sleep(delay)
            finally:
                self.waiting = False
        return None

    def undo(self) -> None:
        """The last instant went unused (no entry was left to send at it)."""
        self.sent = max(0, self.sent - 1)
        if self._next > 0:
            self._next -= 1

    def close(self) -> None:
        """Give the instants not used back to the supervisor."""
        unused = list(self._times[self._next :])
        self._times, self._next = (), 0
        if self._keys:
            self._grants.give_back(self._keys, unused)
        if self._on_close is not None:
            self._on_close(self.sent)
