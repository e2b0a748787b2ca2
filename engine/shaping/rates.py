"""Rate limits shared by every worker: the supervisor's GCRA state per key.

Responsible for: each key's theoretical arrival time (a site's message rate, a
provider's, a site's connection rate: the key names which), granting a worker a batch of
send instants that conform to all the keys of its request at once, taking back the
instants a worker did not use, and forgetting keys that have been idle for a period.
Not responsible for: which keys and rates apply to a destination (engine.shaping.limits),
transport (engine.runtime.ipc) or keeping the instants (engine.runtime.pacing).

`RateLimiter` is the interface: this in-memory table is the single-node version; a Redis
version implements the same three calls with one Lua script per call (the TAT in
microseconds of Redis `TIME`, keyed per key), so workers and their batches do not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from engine.shaping.gcra import Rate, first_conforming, schedule

__all__ = ["Grant", "RateLimiter", "RateTable"]

# A grant reaches at most this far ahead.  One second of a 50/s limit is 50 instants: a
# worker that opens a connection gets its next second of sends in one round trip (a
# local socket round trip is ~40 µs), and what it may fail to use is at most one second
# of the receiver's allowance.
HORIZON = 1.0


@dataclass(frozen=True, slots=True)
class Grant:
    times: tuple[float, ...]  # monotonic instants, one send each, in order
    retry_at: float  # with no instant granted: when one would be


class RateLimiter(Protocol):
    def grant(
        self, keys: list[str], rates: list[Rate], want: int, now: float, holder: int
    ) -> Grant: ...

    def give_back(self, keys: list[str], unused: list[float], now: float, holder: int) -> None: ...

    def expire(self, now: float) -> int: ...


@dataclass(slots=True)
class _Key:
    tat: float
    rate: Rate
    # The newest grant: (holder, the TAT before it, its instants), so that unused
    # instants can be taken back by replaying only the used ones.
    last: tuple[int, float, tuple[float, ...]] | None


class RateTable:
    def __init__(self, horizon: float = HORIZON) -> None:
        self._keys: dict[str, _Key] = {}
        self._horizon = horizon

    def __len__(self) -> int:
        return len(self._keys)

    def grant(
        self, keys: list[str], rates: list[Rate], want: int, now: float, holder: int
    ) -> Grant:
        states = [self._keys.get(k) for k in keys]
        tats = [s.tat if s is not None else now for s in states]
        times, new = schedule(tats, rates, now, want, self._horizon)
        if not times:
            return Grant((), first_conforming(tats, rates, now))
        granted = tuple(times)
        for key, rate, before, after in zip(keys, rates, tats, new, strict=True):
            self._keys[key] = _Key(after, rate, (holder, before, granted))
        return Grant(granted, times[0])

    def give_back(self, keys: list[str], unused: list[float], now: float, holder: int) -> None:
        """Instants a worker will not use (its connection ended first).  They return to
        the pool only while no newer grant of the key follows them (else the newer one
        was scheduled after them, and moving the TAT back would let the two overlap)."""
        if not unused:
            return
        first = unused[0]
        for key in keys:
            state = self._keys.get(key)
            if state is None or state.last is None or state.last[0] != holder:
                continue
            _, tat, granted = state.last
            if first not in granted:
                continue
            interval = state.rate.interval
            for at in granted[: granted.index(first)]:
                tat = max(at, tat) + interval
            state.tat = tat
            state.last = None

    def expire(self, now: float) -> int:
        """Forget keys whose TAT lies a full period in the past (they conform anyway)."""
        stale = [k for k, s in self._keys.items() if s.tat + s.rate.period < now]
        for k in stale:
            del self._keys[k]
        return len(stale)
