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
with limits, one round trip per batch (up to a second of the limit) and one timer per
message sent early; without limits (only counting) none.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from engine.clock import Clock
from engine.shaping.gcra import Rate
from engine.shaping.rates import Grant

__all__ = ["Pacer", "RateGrants"]

# At most this many instants per request: a full second of a fast limit would be
# thousands of instants for one connection, most of which another connection could use.
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
        self._rates = rates
        self._clock = clock
        self._patience = patience
        self._times: tuple[float, ...] = ()
        self._next = 0
        self._on_close = on_close
        self.sent = 0
        self.waiting = False  # sleeping until an instant (for the "rate" gauge)

    async def take(self, want: int) -> float | None:
        """Wait for the next instant (None: send now), or return the monotonic time of
        the next instant when it is beyond patience (the caller stops; nothing taken)."""
        if not self._keys:
            self.sent += 1
            return None
        if self._next >= len(self._times):
            grant = await self._grants.grant(self._keys, self._rates, min(want, MAX_BATCH))
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
