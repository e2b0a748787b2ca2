"""engine.runtime.pacing: a connection keeps its granted instants, on a fake clock."""

from __future__ import annotations

import asyncio

from engine.runtime.pacing import MAX_BATCH, Pacer
from engine.shaping.gcra import Rate, parse_rate
from engine.shaping.rates import Grant, RateTable
from tests.support.fake_clock import FakeClock


class Grants:
    """The supervisor's table behind the worker's protocol, on the same fake clock."""

    def __init__(self, clock: FakeClock) -> None:
        self.table = RateTable(horizon=1.0)
        self.clock = clock
        self.asked: list[int] = []
        self.back: list[list[float]] = []

    async def grant(self, keys: list[str], rates: list[Rate], want: int) -> Grant:
        self.asked.append(want)
        return self.table.grant(keys, rates, want, self.clock.monotonic(), 0)

    def give_back(self, keys: list[str], unused: list[float]) -> None:
        self.back.append(unused)
        self.table.give_back(keys, unused, self.clock.monotonic(), 0)


async def test_instants_are_kept_and_asked_for_in_batches(monkeypatch) -> None:
    clock = FakeClock(1000.0)
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)
        clock.advance(delay)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    grants = Grants(clock)
    pacer = Pacer(grants, ["s#msg"], [parse_rate("10/s")], clock, patience=5.0)
    for _ in range(15):
        assert await pacer.take(1000) is None
    # One batch of a second of instants (11: 0.0 .. 1.0), then a second batch.
    assert grants.asked == [MAX_BATCH, MAX_BATCH]
    assert len(slept) == 14 and all(abs(d - 0.1) < 1e-9 for d in slept)
    pacer.undo()  # the 15th went unused
    pacer.close()
    assert grants.back and abs(grants.back[0][0] - 1.4) < 1e-9


async def test_an_instant_beyond_patience_is_returned_not_waited_for() -> None:
    clock = FakeClock(0.0)
    grants = Grants(clock)
    slow = parse_rate("1/min")
    pacer = Pacer(grants, ["k"], [slow], clock, patience=5.0)
    assert await pacer.take(5) is None  # the first instant is now
    later = await pacer.take(5)
    assert later == 60.0  # not granted (beyond the horizon): when it would be
    pacer.close()
    assert grants.back == [[]]


async def test_messages_are_counted_and_heard_at_close(monkeypatch) -> None:
    clock = FakeClock(0.0)

    async def sleep(delay: float) -> None:
        clock.advance(delay)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    heard: list[int] = []
    grants = Grants(clock)
    # Without rate keys a Pacer only counts: every message goes at once, nothing is asked.
    counting = Pacer(grants, [], [], clock, patience=5.0, on_close=heard.append)
    for _ in range(3):
        assert await counting.take(10) is None
    counting.undo()
    counting.close()
    assert heard == [2] and grants.asked == [] and grants.back == []
    paced = Pacer(grants, ["k"], [parse_rate("10/s")], clock, patience=5.0, on_close=heard.append)
    for _ in range(4):
        assert await paced.take(10) is None
    paced.close()
    assert heard == [2, 4] and grants.asked == [10]
