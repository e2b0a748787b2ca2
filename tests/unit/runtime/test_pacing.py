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
    pacer = Pacer(grants, ["s#msg"], [parse_rate("200/s")], clock, patience=5.0)
    for _ in range(15):
        assert await pacer.take(1000) is None
    # Batches of 50 ms of the limit: 10 instants each.
    assert grants.asked == [10, 10]
    assert len(slept) == 14 and all(abs(d - 0.005) < 1e-9 for d in slept)
    pacer.undo()  # the 15th went unused
    pacer.close()
    assert grants.back and abs(grants.back[0][0] - 0.07) < 1e-9
    assert MAX_BATCH == 64


async def test_instants_too_late_to_use_are_dropped_not_bunched() -> None:
    clock = FakeClock(0.0)
    grants = Grants(clock)
    pacer = Pacer(grants, ["s#msg"], [parse_rate("200/s")], clock, patience=5.0)
    assert await pacer.take(1000) is None  # instants 0.000 .. 0.045
    clock.advance(0.08)  # a slow transaction: the held instants before 0.03 are too late
    assert await pacer.take(1000) is None
    assert pacer._next == 7  # used 0.030 (on time within 50 ms), dropped 0.005 .. 0.025


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
    assert heard == [2, 4] and grants.asked == [1, 1, 1, 1]  # 50 ms of 10/s: one each
