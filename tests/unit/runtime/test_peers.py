"""engine.runtime.peers: leases and rate instants asked over the channel, resolutions
counted by result."""

from __future__ import annotations

import asyncio
from typing import Any

from engine.net.mx import Route, RouteFailure, RouteFailureKind
from engine.runtime.peers import CountingResolver, LeaseClient, QuotaClient, RateClient
from engine.shaping.gcra import parse_rate
from engine.shaping.quota import QuotaGrant
from engine.telemetry.metrics import CheckedTally


class Channel:
    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []

    def send(self, *msg: Any) -> None:
        self.sent.append(msg)


async def test_a_lease_is_asked_granted_and_given_back() -> None:
    ch = Channel()
    leases = LeaseClient(ch)  # type: ignore[arg-type]
    task = asyncio.create_task(leases.acquire("d.test", 3))
    await asyncio.sleep(0)
    assert ch.sent == [("acquire", 1, "d.test", 3)]
    leases.granted(1)
    await task
    leases.release("d.test")
    assert ch.sent[-1] == ("release", "d.test")


async def test_a_cancelled_wait_withdraws_the_request() -> None:
    ch = Channel()
    leases = LeaseClient(ch)  # type: ignore[arg-type]
    task = asyncio.create_task(leases.acquire("d.test", 1))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert ch.sent[-1] == ("cancel", 1, "d.test")
    leases.granted(1)  # a grant that crossed the cancel is ignored (the supervisor frees it)
    assert ch.sent[-1] == ("cancel", 1, "d.test")


class Resolver:
    """What CountingResolver reads of engine.net.mx.MxResolver: its counters."""

    def __init__(self) -> None:
        self.hits = self.failures = 0
        self.next: Route | RouteFailure = Route("d.test", (), False)
        self.hit = False

    async def resolve(self, domain: str) -> Route | RouteFailure:
        if self.hit:
            self.hits += 1
        elif isinstance(self.next, RouteFailure) and self.next.kind is RouteFailureKind.TEMPORARY:
            self.failures += 1
        return self.next

    async def resolve_host(self, domain: str, host: str) -> Route | RouteFailure:
        return await self.resolve(domain)


async def test_resolutions_are_counted_as_hit_miss_or_failure() -> None:
    """Issue #9: `volley_dns_lookups_total{result="failure"}` was never incremented."""
    inner = Resolver()
    tally = CheckedTally()
    resolver = CountingResolver(inner, tally)  # type: ignore[arg-type]
    await resolver.resolve("d.test")  # a query
    inner.hit = True
    await resolver.resolve("d.test")  # from the cache
    inner.hit = False
    inner.next = RouteFailure("e.test", RouteFailureKind.TEMPORARY, "SERVFAIL")
    await resolver.resolve("e.test")
    inner.next = RouteFailure("f.test", RouteFailureKind.NO_SUCH_DOMAIN, "NXDOMAIN")
    await resolver.resolve("f.test")  # an answer, not a failure
    counts = {tuple(lbl): n for name, lbl, n in tally.drain()[0] if name == "volley_dns_lookups"}
    assert counts == {("miss",): 2, ("hit",): 1, ("failure",): 1}


async def test_a_relay_lookup_is_counted_the_same_way() -> None:
    inner = Resolver()
    tally = CheckedTally()
    resolver = CountingResolver(inner, tally)  # type: ignore[arg-type]
    await resolver.resolve_host("d.test", "smtp.relay.test")
    inner.hit = True
    await resolver.resolve_host("d.test", "smtp.relay.test")
    counts = {tuple(lbl): n for name, lbl, n in tally.drain()[0] if name == "volley_dns_lookups"}
    assert counts == {("miss",): 1, ("hit",): 1}


async def test_rate_instants_are_asked_in_one_round_trip() -> None:
    ch = Channel()
    rates = RateClient(ch)  # type: ignore[arg-type]
    task = asyncio.create_task(rates.grant(["s#msg"], [parse_rate("50/s")], 10))
    await asyncio.sleep(0)
    assert ch.sent == [("rate", 1, ["s#msg"], [[50.0, 1.0, 1]], 10)]
    rates.granted(1, [1.0, 1.02], 1.0)
    got = await task
    assert got.times == (1.0, 1.02)
    rates.give_back(["s#msg"], [1.02])
    rates.give_back(["s#msg"], [])  # nothing unused: no message
    assert ch.sent[-1] == ("rate_back", ["s#msg"], [1.02])
    rates.granted(7, [2.0], 2.0)  # unknown request (cancelled): ignored


async def test_quota_is_asked_in_one_round_trip_and_a_late_answer_goes_back() -> None:
    ch = Channel()
    quota = QuotaClient(ch)  # type: ignore[arg-type]
    task = asyncio.create_task(quota.grant("ip1", 20000, 200, 50))
    await asyncio.sleep(0)
    assert ch.sent == [("quota", 1, "ip1", 20000, 200, 50)]
    quota.granted(1, 50, 80)
    assert await task == QuotaGrant(50, 80)
    quota.give_back("ip1", 20000, 50, 7)
    assert ch.sent[-1] == ("quota_back", "ip1", 20000, 50, 7)
    # Cancelled while asking (a drain): the messages granted meanwhile go straight back.
    task = asyncio.create_task(quota.grant("ip1", 20000, 200, 50))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    quota.granted(2, 30, 30)
    assert ch.sent[-1] == ("quota_back", "ip1", 20000, 30, 30)
    quota.granted(2, 30, 30)  # twice: nothing more
    assert len(ch.sent) == 4
