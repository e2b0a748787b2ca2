"""GCRA (the generic cell rate algorithm): rate specs and token schedules, pure.

Responsible for: the `Rate` value ("100/s", "20000/h", "1,000/hr") and, for one key's
theoretical arrival time (TAT), the earliest instants at which `n` more sends conform to
a rate — the schedule a worker then keeps.
Not responsible for: holding TATs for many keys (engine.shaping.rates) or waiting
(the worker paces itself: engine.runtime.pacing).

Why a schedule and not a count: a grant of n tokens used at once would put n sends in
one instant, so across workers a limit could be overshot by a batch per worker.  A grant
here is n instants spaced by the rate's interval, so what the receiver sees conforms to
the limit exactly, however the batches are split between workers, and the cost is still
one request per batch.

The burst is 1 by default: "50/s" then means at most 50 sends in any window of one
second (GCRA with burst B allows B + W/interval - 1 in a window W; KumoMTA's default
burst equal to the limit allows twice the limit in a second after an idle spell).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.shaping.units import SECONDS

__all__ = ["Rate", "RateError", "first_conforming", "parse_rate", "schedule"]

_SPEC = re.compile(r"^\s*([0-9][0-9,_]*(?:\.[0-9]+)?)\s*/\s*([0-9]*)\s*([a-z]+)\s*$")


class RateError(ValueError):
    """A rate spec that does not parse; the message says what is expected."""


@dataclass(frozen=True, slots=True)
class Rate:
    count: float  # sends per period
    period: float  # seconds
    burst: int = 1  # sends allowed at one instant after an idle spell

    @property
    def interval(self) -> float:
        """Seconds between two sends at the limit."""
        return self.period / self.count

    @property
    def per_second(self) -> float:
        return self.count / self.period

    def scaled(self, per_second: float) -> Rate:
        """The same period and burst at another speed (adaptive shaping's reductions)."""
        return Rate(per_second * self.period, self.period, self.burst)

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "min", 3600.0: "h", 86400.0: "d"}.get(self.period)
        count = f"{self.count:g}"
        return f"{count}/{unit}" if unit else f"{count}/{self.period:g}s"


def parse_rate(text: str) -> Rate:
    """ "100/s", "50/min", "20000/h", "1,000/hr", "5/10s", "3/d"."""
    m = _SPEC.match(text.lower())
    if m is None or m.group(3) not in SECONDS:
        raise RateError(f'expected "<count>/<unit>" such as "100/s", "20000/h"; got {text!r}')
    count = float(m.group(1).replace(",", "").replace("_", ""))
    period = SECONDS[m.group(3)] * (int(m.group(2)) if m.group(2) else 1)
    if count <= 0 or period <= 0:
        raise RateError(f"a rate must be positive; got {text!r}")
    return Rate(count, period)


def schedule(
    tats: list[float], rates: list[Rate], now: float, want: int, horizon: float
) -> tuple[list[float], list[float]]:
    """The instants (>= now) at which up to `want` sends conform to every rate at once
    (a site's own limit and its provider's), given each key's TAT.

    Only instants before `now + horizon` are granted: a worker must not reserve a
    receiver's capacity far ahead, since an unused instant is lost.  Returns the instants
    and the keys' new TATs (unchanged when nothing is granted; `first_conforming` then
    says when to ask again).
    """
    tats = list(tats)
    times: list[float] = []
    limit = now + horizon
    while len(times) < want:
        at = first_conforming(tats, rates, now)
        if at > limit:
            break
        times.append(at)
        for i, rate in enumerate(rates):
            tats[i] = max(at, tats[i]) + rate.interval
    return times, tats


def first_conforming(tats: list[float], rates: list[Rate], now: float) -> float:
    """When the next send would conform to every rate."""
    at = now
    for tat, rate in zip(tats, rates, strict=True):
        at = max(at, tat - (rate.burst - 1) * rate.interval)
    return at
