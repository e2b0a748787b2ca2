"""Egress: which source address a new connection binds, and how much a warming-up source
may send on a given UTC day.

Responsible for: the warm-up schedule (`daily_limit`: a UTC day -> that day's message
limit of a source), the pool a destination uses (`pool_for`: its own, else its
provider's, else "default", else none), the choice of a source for a new connection
(`SourceChooser`: weighted among the pool's sources not known to be out of quota,
deterministic given its rng), and the quota gauges' rows (`quota_rows`).  Pure: the
time is passed in.
Not responsible for: counting a day's quota across workers (the supervisor's
engine.shaping.quota), asking for it (engine.runtime.egress) or binding the address
(engine.net.session).

Why a schedule: a receiver judges a new sending IP by its first weeks, so warm-up plans
ramp its daily volume up (SendGrid's automated warm-up, Halon's warmup plugin: a message
count per day and local IP).  A geometric curve from `first` to `last` over `days` is
that ramp as one formula: 200 -> 100 000 over 30 days grows x1.23 a day, doubling about
every 3.3 days.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable, Container
from dataclasses import dataclass

from engine.config.egress import DEFAULT_POOL, EgressPool, EgressSettings, Warmup
from engine.config.policy import DomainPolicy
from engine.shaping.providers import Provider

__all__ = [
    "QuotaRow",
    "SourceChooser",
    "daily_limit",
    "next_midnight",
    "pool_for",
    "quota_rows",
    "utc_day",
]

DAY = 86400.0
_EPOCH = datetime.date(1970, 1, 1)


def utc_day(wall: float) -> int:
    """The UTC day of Unix time `wall`, as days since 1970-01-01 (the quota's key)."""
    return int(wall // DAY)


def next_midnight(wall: float) -> float:
    """The Unix time the UTC day after `wall`'s begins."""
    return (utc_day(wall) + 1) * DAY


def daily_limit(warmup: Warmup | None, day: int) -> int | None:
    """Messages a source may send on UTC `day` (days since 1970-01-01); None: no limit.

    Day 0 (`start`) allows `first`, day `days` allows `last`, the days between the
    geometric steps from one to the other, rounded; from day `days + 1` on there is no
    warm-up limit.  Before `start` the source sends nothing: it is not in service yet.
    """
    if warmup is None:
        return None
    n = day - (warmup.start - _EPOCH).days
    if n < 0:
        return 0
    if n > warmup.days:
        return None
    if n == warmup.days:
        return warmup.last  # exactly, whatever the rounding of the power
    ratio = warmup.last / warmup.first
    grown: float = warmup.first * ratio ** (n / warmup.days)
    return max(warmup.first, round(grown))


def pool_for(
    egress: EgressSettings, policy: DomainPolicy, provider: Provider | None
) -> EgressPool | None:
    """The pool of a destination: the one its policy names, else its provider's, else the
    pool named "default"; None (no pool: `smtp.source_address`) when there is none."""
    name = policy.egress_pool or (provider.egress_pool if provider is not None else None)
    if name is None:
        name = DEFAULT_POOL
    return egress.pools.get(name)


class SourceChooser:
    """One worker's choice of sources: weighted, skipping the sources it learnt are out
    of quota until a given time (the supervisor said so; asking again before then would
    cost a round trip per connection for the same answer)."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._out: dict[str, float] = {}  # source -> Unix time it may have quota again

    def pick(self, pool: EgressPool, now: float, exclude: Container[str] = ()) -> str | None:
        """A source of `pool` by weight among those with quota at `now` and not in
        `exclude`; None when there is none."""
        names: list[str] = []
        weights: list[int] = []
        for name, weight in pool.sources:
            if name in exclude or self._out.get(name, 0.0) > now:
                continue
            names.append(name)
            weights.append(weight)
        if not names:
            return None
        if len(names) == 1:
            return names[0]
        return self._rng.choices(names, weights)[0]

    def out_of_quota(self, name: str, until: float) -> None:
        self._out[name] = until

    def back_at(self, pool: EgressPool, now: float) -> float:
        """When the first source of `pool` that is out of quota may have some again."""
        ends = [self._out[n] for n, _ in pool.sources if self._out.get(n, 0.0) > now]
        return min(ends, default=now)

    def reset(self) -> None:
        """Forget what was learnt (a reload may have changed the schedules)."""
        self._out.clear()


@dataclass(frozen=True, slots=True)
class QuotaRow:
    source: str
    used: int
    left: int


def quota_rows(
    egress: EgressSettings, used: Callable[[str, int], int], now: float
) -> list[QuotaRow]:
    """Today's quota of every source in warm-up: used (granted and not given back) and
    left.  Sources past their warm-up, or without one, have no row."""
    day = utc_day(now)
    rows: list[QuotaRow] = []
    for name, source in egress.sources.items():
        limit = daily_limit(source.warmup, day)
        if limit is not None:
            n = used(name, day)
            rows.append(QuotaRow(name, n, max(0, limit - n)))
    return rows
