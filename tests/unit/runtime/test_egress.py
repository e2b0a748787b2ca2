"""engine.runtime.egress: a connection's source, its quota from the supervisor, and the
wait when its pool has none; on a fake clock with a fake quota service."""

from __future__ import annotations

import random
from typing import Any

from engine.config import Settings, load_settings
from engine.net.mx import MxHost, Route
from engine.runtime.egress import EgressAccess
from engine.sched.queue import WorkQueue
from engine.shaping.egress import DAY
from engine.shaping.limits import site_limits
from engine.shaping.quota import QuotaGrant, QuotaTable
from engine.shaping.sites import Site
from engine.telemetry.metrics import CheckedTally
from spool import EntryRef
from tests.support.fake_clock import FakeClock

TODAY = 20_000
NOON = TODAY * DAY + 12 * 3600.0
START = "2024-10-04"  # day 20 000


class Quota:
    """The supervisor's table behind the worker's protocol (holder 0)."""

    def __init__(self) -> None:
        self.table = QuotaTable()
        self.asked: list[tuple[str, int, int, int]] = []
        self.back: list[tuple[str, int, int, int]] = []

    async def grant(self, source: str, day: int, limit: int, want: int) -> QuotaGrant:
        self.asked.append((source, day, limit, want))
        return self.table.grant(source, day, limit, want, 0)

    def give_back(self, source: str, day: int, granted: int, unused: int) -> None:
        self.back.append((source, day, granted, unused))
        self.table.give_back(source, day, granted, unused, 0)


def _settings(**domains: Any) -> Settings:
    return load_settings(
        None,
        {
            "smtp": {"helo_name": "mta.test", "source_address": "192.0.2.99"},
            "egress": {
                "sources": {
                    "warm": {
                        "address": "192.0.2.1",
                        "ehlo": "warm.test",
                        "warmup": {"start": START, "days": 10, "first": 5, "last": 500},
                    },
                    "cold": {"address": "2001:db8::2"},
                },
                "pools": {
                    "both": {"sources": {"warm": 1, "cold": 1}},
                    "warm": {"sources": {"warm": 1}},
                },
            },
            "domains": {"default": {"max_messages_per_connection": 3}, **domains},
        },
    )


class World:
    def __init__(self, settings: Settings, ready: int = 10) -> None:
        self.settings = settings
        self.queue = WorkQueue()
        for i in range(ready):
            ref = EntryRef(f"e{i}@d.test", "d.test", NOON)
            self.queue.add(ref, 0.0, NOON)
        self.clock = FakeClock(NOON)
        self.quota = Quota()
        self.tally = CheckedTally()
        self.egress = EgressAccess(
            settings, self.queue, self.clock, random.Random(3), self.tally, self.quota
        )
        self.site = Site("mx.d.test", None)
        self.limits = site_limits(settings.policy("d.test"), None)

    async def choose(self) -> tuple[Any, float | None]:
        out = self.egress.outbound()
        later = await self.egress.choose("d.test", self.site, self.limits, out)
        return out, later

    def counted(self) -> dict[tuple[str, ...], int]:
        return {
            tuple(lbl): n
            for name, lbl, n in self.tally.drain()[0]
            if name == "volley_egress_messages"
        }


async def test_without_a_pool_a_connection_binds_as_before() -> None:
    w = World(
        load_settings(None, {"smtp": {"helo_name": "mta.test", "source_address": "192.0.2.99"}})
    )
    out, later = await w.choose()
    assert later is None
    assert (out.address, out.helo, out.source) == ("192.0.2.99", "mta.test", None)
    assert out.apply(w.site, w.limits) == (w.site, w.limits)
    assert out.counter is None
    w.egress.release(out)
    assert w.quota.asked == [] and w.quota.back == [] and w.counted() == {}
    # Nor with pools that this destination does not use (no "default").
    w = World(_settings())
    out, later = await w.choose()
    assert later is None and out.source is None and w.egress.fanout("d.test") == 1


async def test_a_warming_source_takes_quota_caps_the_connection_and_gives_back() -> None:
    w = World(_settings(**{"d.test": {"egress_pool": "warm"}}), ready=2)
    out, later = await w.choose()
    assert later is None
    assert (out.address, out.helo, out.source, out.day) == ("192.0.2.1", "warm.test", "warm", TODAY)
    # Day 0 of the warm-up: 5 messages; the connection asks for what it can send (3)
    # and what is ready (2).
    assert w.quota.asked == [("warm", TODAY, 5, 2)] and out.granted == 2
    site, limits = out.apply(w.site, w.limits)
    assert site.connection_keys == ("warm|mx.d.test",)
    assert limits.max_messages_per_connection == 2
    assert out.counter is not None
    out.counter(1)  # the Pacer heard one message went
    w.egress.release(out)
    assert w.quota.back == [("warm", TODAY, 2, 1)]
    assert w.counted() == {("warm",): 1}
    assert w.quota.table.used("warm", TODAY) == 1


async def test_out_of_quota_the_destination_waits_until_midnight_or_a_give_back() -> None:
    w = World(_settings(**{"d.test": {"egress_pool": "warm"}}), ready=10)
    first, _ = await w.choose()  # 3 of 5
    second, _ = await w.choose()  # 2 of 5
    assert (first.granted, second.granted) == (3, 2)
    out, later = await w.choose()  # all granted, none settled: ask again soon
    assert out.source is None
    assert later == w.clock.monotonic() + w.settings.idle_timeout
    assert len(w.quota.asked) == 3
    out, again = await w.choose()  # known: no round trip before then
    assert again == later and len(w.quota.asked) == 3
    first.counter(3)  # type: ignore[misc]
    w.egress.release(first)
    second.counter(1)  # type: ignore[misc]
    w.egress.release(second)  # one of the five came back
    w.clock.advance(w.settings.idle_timeout)
    third, later = await w.choose()
    assert later is None and third.granted == 1
    third.counter(1)  # type: ignore[misc]
    w.egress.release(third)
    out, later = await w.choose()  # the day is used: wait for the next one
    midnight = (TODAY + 1) * DAY
    assert later == w.clock.monotonic() + (midnight - w.clock.wall())
    w.clock.now = midnight  # day 1: 5 * 100 ** 0.1 = 8
    out, later = await w.choose()
    assert later is None and out.day == TODAY + 1 and w.quota.asked[-1][2] == 8


async def test_in_a_pool_the_other_source_carries_on_and_families_are_kept_apart() -> None:
    w = World(_settings(**{"d.test": {"egress_pool": "both"}}), ready=100)
    sources = []
    for _ in range(40):
        out, later = await w.choose()
        assert later is None
        sources.append(out.source)
        if out.counter is not None:
            out.counter(out.granted or 3)
        w.egress.release(out)
    assert sources.count("warm") == 2  # 3 + 2 = its 5 of the day, then only cold
    assert set(sources[sources.index("warm", sources.index("warm") + 1) + 1 :]) == {"cold"}
    assert w.egress.fanout("d.test") == 2
    assert w.counted() == {("warm",): 5, ("cold",): 3 * 38}
    # An IPv6 source reaches only the IPv6 addresses of a route.
    route = Route(
        "d.test",
        (
            MxHost("mx1.d.test", 10, ("192.0.2.7",)),
            MxHost("mx2.d.test", 20, ("192.0.2.8", "2001:db8::8")),
        ),
        False,
    )
    out, _ = await w.choose()
    assert out.source == "cold"
    assert out.reachable(route).hosts == (MxHost("mx2.d.test", 20, ("2001:db8::8",)),)
    assert w.egress.outbound().reachable(route) == route
    w.egress.forget("d.test")
    assert w.egress.fanout("d.test") == 1


async def test_a_reload_forgets_what_was_learnt() -> None:
    w = World(_settings(**{"d.test": {"egress_pool": "warm"}}), ready=10)
    for _ in range(3):
        await w.choose()
    _, later = await w.choose()
    assert later is not None
    w.egress.reconfigure(_settings(**{"d.test": {"egress_pool": "both"}}))
    out, later = await w.choose()
    assert later is None and out.source == "cold"


async def test_a_reload_ends_the_wait_for_the_next_day() -> None:
    w = World(_settings(**{"d.test": {"egress_pool": "warm"}}), ready=10)
    w.queue.pause("d.test", NOON + 3600.0, "warmup")
    w.queue.pause("e.test", NOON + 1.0, "rate")
    w.egress.reconfigure(w.settings)
    assert w.queue.paused("d.test") is None and w.queue.paused("e.test") == "rate"
