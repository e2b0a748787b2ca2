"""MX resolution: the pure rules, the cache and single-flight with a fake DnsClient and a
fake clock, then end-to-end behaviour through AiodnsClient against the test DNS server."""

from __future__ import annotations

import asyncio
import collections
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from engine.net.dns import (
    AiodnsClient,
    DnsAnswer,
    DnsFailure,
    DnsFailureKind,
    DnsRecord,
    DnsResult,
)
from engine.net.mx import (
    MAX_MX_HOSTS,
    AddressAnswer,
    AddressStatus,
    MxAnswer,
    MxAnswerKind,
    MxHost,
    MxResolver,
    Route,
    RouteFailure,
    RouteFailureKind,
    assemble_route,
    cache_lifetime,
    classify_address_answer,
    classify_mx_answer,
    mx_target_error,
    order_mx,
)
from tests.support.dns_server import DnsServer

# -- fakes -----------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def mx(name: str, *records: tuple[int, str], ttl: int = 300) -> DnsAnswer:
    return DnsAnswer(name, "MX", tuple(DnsRecord(name, "MX", ttl, x, p) for p, x in records))


def addr(name: str, rtype: str, *ips: str, ttl: int = 300) -> DnsAnswer:
    return DnsAnswer(name, rtype, tuple(DnsRecord(name, rtype, ttl, ip) for ip in ips))


def fail(name: str, rtype: str, kind: DnsFailureKind) -> DnsFailure:
    return DnsFailure(name, rtype, kind, f"{kind.value} for {name}")


class FakeDns:
    """A DnsClient answering from a dict; unknown (name, type) is NXDOMAIN.

    With `gate` set, every query waits for it, so tests can pile up concurrent callers.
    """

    def __init__(self) -> None:
        self.zone: dict[tuple[str, str], DnsResult] = {}
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()
        self.gate: asyncio.Event | None = None
        self.waiting = 0

    def set(self, result: DnsResult) -> None:
        self.zone[(result.name, result.rtype)] = result

    def host(
        self, name: str, v4: tuple[str, ...] = (), v6: tuple[str, ...] = (), ttl: int = 300
    ) -> None:
        for rtype, ips in (("A", v4), ("AAAA", v6)):
            if ips:
                self.set(addr(name, rtype, *ips, ttl=ttl))
            else:
                self.set(fail(name, rtype, DnsFailureKind.NODATA))

    async def query(self, name: str, rtype: str) -> DnsResult:
        self.calls[(name, rtype)] += 1
        if self.gate is not None:
            self.waiting += 1
            await self.gate.wait()
            self.waiting -= 1
        return self.zone.get((name, rtype), fail(name, rtype, DnsFailureKind.NXDOMAIN))

    @property
    def total(self) -> int:
        return sum(self.calls.values())


@pytest.fixture
def fake() -> FakeDns:
    dns = FakeDns()
    dns.set(mx("good.test", (10, "mx1.good.test"), (20, "mx2.good.test")))
    dns.host("mx1.good.test", ("192.0.2.1",), ("2001:db8::1",))
    dns.host("mx2.good.test", ("192.0.2.2",))
    return dns


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(dns: FakeDns, clock: FakeClock, seed: int = 1, **kw: Any) -> MxResolver:
    return MxResolver(dns, clock=clock, rng=random.Random(seed), **kw)


async def wait_until(cond: Callable[[], bool], timeout: float = 2.0) -> None:
    """Yield to the loop until cond() holds (no sleeping for a guessed duration)."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0)


# -- order_mx --------------------------------------------------------------------------------


def test_order_mx_sorts_by_preference_and_dedupes_keeping_the_lowest() -> None:
    records = [(20, "b"), (10, "a"), (30, "c"), (5, "c")]
    assert order_mx(records, random.Random(0)) == [(5, "c"), (10, "a"), (20, "b")]


def test_order_mx_shuffles_equal_preferences_with_the_rng() -> None:
    records = [(10, "a"), (10, "b"), (10, "c"), (20, "z")]
    rng = random.Random(42)
    orders = {tuple(h for _, h in order_mx(records, rng)) for _ in range(60)}
    assert all(o[-1] == "z" for o in orders)
    assert len(orders) == 6  # every permutation of a, b, c shows up
    # Same seed, same sequence: the rng is the only source of randomness.
    again = random.Random(42)
    first = [order_mx(records, again) for _ in range(3)]
    rng2 = random.Random(42)
    assert first == [order_mx(records, rng2) for _ in range(3)]


# -- classify --------------------------------------------------------------------------------


def test_classify_mx_ignores_a_leading_cname_and_takes_the_lowest_ttl() -> None:
    result = DnsAnswer(
        "alias.test",
        "MX",
        (
            DnsRecord("alias.test", "CNAME", 60, "good.test"),
            DnsRecord("good.test", "MX", 300, "MX1.Good.Test.", 10),
            DnsRecord("good.test", "MX", 200, "mx2.good.test", 20),
        ),
    )
    assert classify_mx_answer(result) == MxAnswer(
        MxAnswerKind.EXCHANGES, ((10, "mx1.good.test"), (20, "mx2.good.test")), ttl=60
    )


@pytest.mark.parametrize("exchange", ["", "."])
def test_classify_null_mx(exchange: str) -> None:
    got = classify_mx_answer(mx("n.test", (0, exchange)))
    assert got.kind is MxAnswerKind.NULL_MX and got.exchanges == ()


def test_classify_drops_null_exchange_mixed_with_real_ones() -> None:
    got = classify_mx_answer(mx("m.test", (0, "."), (10, "mx.m.test")))
    assert got.kind is MxAnswerKind.EXCHANGES
    assert got.exchanges == ((10, "mx.m.test"),)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (DnsFailureKind.NXDOMAIN, MxAnswerKind.NO_SUCH_DOMAIN),
        (DnsFailureKind.NODATA, MxAnswerKind.NO_MX),
        (DnsFailureKind.TEMPORARY, MxAnswerKind.TEMPORARY),
    ],
)
def test_classify_mx_failures(kind: DnsFailureKind, expected: MxAnswerKind) -> None:
    got = classify_mx_answer(fail("d.test", "MX", kind))
    assert got.kind is expected
    assert got.detail == f"{kind.value} for d.test"


def test_classify_mx_answer_with_only_a_cname_is_no_mx() -> None:
    only_cname = DnsAnswer("a.test", "MX", (DnsRecord("a.test", "CNAME", 5, "b.test"),))
    assert classify_mx_answer(only_cname).kind is MxAnswerKind.NO_MX


def test_classify_address_answer() -> None:
    both = DnsAnswer(
        "h.test",
        "A",
        (DnsRecord("h.test", "CNAME", 50, "i.test"), DnsRecord("i.test", "A", 70, "192.0.2.9")),
    )
    assert classify_address_answer(both, "A") == AddressAnswer(
        AddressStatus.FOUND, ("192.0.2.9",), ttl=50
    )
    for kind, status in [
        (DnsFailureKind.NXDOMAIN, AddressStatus.ABSENT),
        (DnsFailureKind.NODATA, AddressStatus.ABSENT),
        (DnsFailureKind.TEMPORARY, AddressStatus.TEMPORARY),
    ]:
        assert classify_address_answer(fail("h.test", "A", kind), "A").status is status


# -- assemble_route --------------------------------------------------------------------------

FOUND4 = AddressAnswer(AddressStatus.FOUND, ("192.0.2.1",), ttl=5)
FOUND6 = AddressAnswer(AddressStatus.FOUND, ("2001:db8::1",), ttl=5)
ABSENT = AddressAnswer(AddressStatus.ABSENT, detail="nodata")
TEMP = AddressAnswer(AddressStatus.TEMPORARY, detail="servfail")


def test_assemble_keeps_order_puts_a_before_aaaa_and_skips_hosts_without_addresses() -> None:
    hosts = [(10, "a"), (10, "b"), (20, "c")]
    lookups = {"a": (ABSENT, ABSENT), "b": (FOUND4, FOUND6), "c": (ABSENT, FOUND6)}
    assert assemble_route("d.test", hosts, lookups, implicit=False) == Route(
        "d.test",
        (MxHost("b", 10, ("192.0.2.1", "2001:db8::1")), MxHost("c", 20, ("2001:db8::1",))),
        implicit=False,
    )


def test_assemble_uses_a_host_whose_other_family_failed_temporarily() -> None:
    route = assemble_route("d.test", [(0, "d.test")], {"d.test": (TEMP, FOUND6)}, implicit=True)
    assert route == Route("d.test", (MxHost("d.test", 0, ("2001:db8::1",)),), implicit=True)


def test_assemble_no_address_is_temporary_if_any_lookup_failed_temporarily() -> None:
    lookups = {"a": (ABSENT, ABSENT), "b": (TEMP, ABSENT)}
    route = assemble_route("d.test", [(10, "a"), (20, "b")], lookups, implicit=False)
    assert isinstance(route, RouteFailure) and route.kind is RouteFailureKind.TEMPORARY
    assert "b A: servfail" in route.detail


def test_assemble_no_address_and_no_trouble_is_no_route() -> None:
    route = assemble_route("d.test", [(10, "a")], {"a": (ABSENT, ABSENT)}, implicit=False)
    assert route == RouteFailure(
        "d.test", RouteFailureKind.NO_ROUTE, "no MX host of d.test has an address: a"
    )
    lookups = {"d.test": (ABSENT, ABSENT)}
    implicit = assemble_route("d.test", [(0, "d.test")], lookups, implicit=True)
    assert isinstance(implicit, RouteFailure) and implicit.kind is RouteFailureKind.NO_ROUTE
    assert "no MX and no A/AAAA" in implicit.detail


# -- cache_lifetime --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "seconds"),
    [
        (MxAnswer(MxAnswerKind.EXCHANGES, ((10, "a"),), ttl=120), 120.0),
        (MxAnswer(MxAnswerKind.EXCHANGES, ((10, "a"),), ttl=0), 1.0),  # clamped up to min_ttl
        (MxAnswer(MxAnswerKind.EXCHANGES, ((10, "a"),), ttl=10**6), 86400.0),  # down to max
        (MxAnswer(MxAnswerKind.NULL_MX), 300.0),
        (MxAnswer(MxAnswerKind.NO_MX), 300.0),
        (MxAnswer(MxAnswerKind.NO_SUCH_DOMAIN), 300.0),
        (MxAnswer(MxAnswerKind.TEMPORARY), 5.0),
        (FOUND4, 5.0),
        (ABSENT, 300.0),
        (TEMP, 5.0),
    ],
)
def test_cache_lifetime(answer: MxAnswer | AddressAnswer, seconds: float) -> None:
    got = cache_lifetime(answer, negative_ttl=300.0, tempfail_ttl=5.0, min_ttl=1.0, max_ttl=86400.0)
    assert got == seconds


# -- MxResolver with the fake ----------------------------------------------------------------


async def test_resolve_orders_hosts_with_addresses(fake: FakeDns, clock: FakeClock) -> None:
    route = await make(fake, clock).resolve("good.test")
    assert route == Route(
        "good.test",
        (
            MxHost("mx1.good.test", 10, ("192.0.2.1", "2001:db8::1")),
            MxHost("mx2.good.test", 20, ("192.0.2.2",)),
        ),
        implicit=False,
    )


async def test_positive_answers_are_cached_for_their_ttl(fake: FakeDns, clock: FakeClock) -> None:
    fake.set(mx("good.test", (10, "mx1.good.test"), (20, "mx2.good.test"), ttl=60))
    r = make(fake, clock)
    first = await r.resolve("good.test")
    assert fake.total == 5  # 1 MX + 2 hosts x (A, AAAA)
    clock.now += 59.9
    assert await r.resolve("good.test") == first
    assert fake.total == 5
    clock.now += 0.1  # the MX entry expires at exactly +60 s; host entries live 300 s
    await r.resolve("good.test")
    assert fake.calls[("good.test", "MX")] == 2
    assert fake.total == 6
    assert (r.hits, r.misses, r.failures) == (1, 2, 0)


async def test_host_addresses_expire_by_their_own_ttl(fake: FakeDns, clock: FakeClock) -> None:
    fake.host("mx2.good.test", ("192.0.2.2",), ttl=10)
    r = make(fake, clock)
    await r.resolve("good.test")
    clock.now += 10
    fake.host("mx2.good.test", ("192.0.2.22",))
    route = await r.resolve("good.test")
    assert isinstance(route, Route)
    assert route.hosts[1].addresses == ("192.0.2.22",)
    assert fake.calls[("good.test", "MX")] == 1
    assert fake.calls[("mx2.good.test", "A")] == 2
    assert fake.calls[("mx1.good.test", "A")] == 1


async def test_min_ttl_clamps_a_zero_ttl(fake: FakeDns, clock: FakeClock) -> None:
    fake.set(mx("good.test", (10, "mx1.good.test"), ttl=0))
    r = make(fake, clock, min_ttl=2.0)
    await r.resolve("good.test")
    clock.now += 1.9
    await r.resolve("good.test")
    assert fake.calls[("good.test", "MX")] == 1
    clock.now += 0.1
    await r.resolve("good.test")
    assert fake.calls[("good.test", "MX")] == 2


async def test_max_ttl_clamps_a_huge_ttl(fake: FakeDns, clock: FakeClock) -> None:
    fake.set(mx("good.test", (10, "mx1.good.test"), ttl=2**31 - 1))
    r = make(fake, clock, max_ttl=3600.0)
    await r.resolve("good.test")
    clock.now += 3600
    await r.resolve("good.test")
    assert fake.calls[("good.test", "MX")] == 2


@pytest.mark.parametrize(
    ("setup", "kind"),
    [
        (fail("dom.test", "MX", DnsFailureKind.NXDOMAIN), RouteFailureKind.NO_SUCH_DOMAIN),
        (mx("dom.test", (0, "")), RouteFailureKind.NULL_MX),
    ],
)
async def test_negative_answers_are_cached_for_negative_ttl(
    fake: FakeDns, clock: FakeClock, setup: DnsResult, kind: RouteFailureKind
) -> None:
    fake.set(setup)
    r = make(fake, clock, negative_ttl=120.0)
    got = await r.resolve("dom.test")
    assert isinstance(got, RouteFailure) and got.kind is kind and got.domain == "dom.test"
    assert fake.total == 1  # no address lookups for a domain that takes no mail
    clock.now += 119.9
    assert await r.resolve("dom.test") == got
    assert fake.total == 1
    clock.now += 0.1
    await r.resolve("dom.test")
    assert fake.total == 2
    assert r.failures == 0  # authoritative answers are not DNS failures


async def test_nodata_falls_back_to_the_domains_own_addresses(
    fake: FakeDns, clock: FakeClock
) -> None:
    fake.set(fail("plain.test", "MX", DnsFailureKind.NODATA))
    fake.host("plain.test", ("192.0.2.7", "192.0.2.8"), ("2001:db8::7",))
    route = await make(fake, clock).resolve("plain.test")
    assert route == Route(
        "plain.test",
        (MxHost("plain.test", 0, ("192.0.2.7", "192.0.2.8", "2001:db8::7")),),
        implicit=True,
    )


async def test_no_mx_and_no_address_is_no_route(fake: FakeDns, clock: FakeClock) -> None:
    fake.set(fail("bare.test", "MX", DnsFailureKind.NODATA))
    fake.host("bare.test")
    got = await make(fake, clock).resolve("bare.test")
    assert isinstance(got, RouteFailure) and got.kind is RouteFailureKind.NO_ROUTE


async def test_mx_hosts_that_do_not_exist_are_no_route(fake: FakeDns, clock: FakeClock) -> None:
    fake.set(mx("lame.test", (10, "gone1.lame.test"), (20, "gone2.lame.test")))
    got = await make(fake, clock).resolve("lame.test")
    assert isinstance(got, RouteFailure) and got.kind is RouteFailureKind.NO_ROUTE
    assert fake.calls[("gone2.lame.test", "AAAA")] == 1


async def test_backup_mx_is_used_when_the_primary_lookup_fails(
    fake: FakeDns, clock: FakeClock
) -> None:
    fake.set(fail("mx1.good.test", "A", DnsFailureKind.TEMPORARY))
    fake.set(fail("mx1.good.test", "AAAA", DnsFailureKind.TEMPORARY))
    route = await make(fake, clock).resolve("good.test")
    assert isinstance(route, Route)
    assert [h.name for h in route.hosts] == ["mx2.good.test"]


async def test_tempfail_is_cached_briefly_then_retried(fake: FakeDns, clock: FakeClock) -> None:
    fake.set(fail("flaky.test", "MX", DnsFailureKind.TEMPORARY))
    r = make(fake, clock, tempfail_ttl=5.0)
    for _ in range(3):
        got = await r.resolve("flaky.test")
        assert isinstance(got, RouteFailure) and got.kind is RouteFailureKind.TEMPORARY
    assert fake.calls[("flaky.test", "MX")] == 1  # the stampede sent one query
    assert r.failures == 3
    fake.set(mx("flaky.test", (10, "mx1.good.test")))
    clock.now += 4.9
    assert isinstance(await r.resolve("flaky.test"), RouteFailure)
    clock.now += 0.1
    assert isinstance(await r.resolve("flaky.test"), Route)  # fixed domain: no long wait
    assert fake.calls[("flaky.test", "MX")] == 2


async def test_all_mx_host_lookups_failing_is_temporary(fake: FakeDns, clock: FakeClock) -> None:
    for host in ("mx1.good.test", "mx2.good.test"):
        fake.set(fail(host, "A", DnsFailureKind.TEMPORARY))
        fake.set(fail(host, "AAAA", DnsFailureKind.NODATA))
    got = await make(fake, clock).resolve("good.test")
    assert isinstance(got, RouteFailure) and got.kind is RouteFailureKind.TEMPORARY


async def test_equal_preferences_are_reshuffled_on_every_resolve_from_cache(
    fake: FakeDns, clock: FakeClock
) -> None:
    fake.set(mx("eq.test", (10, "mx1.good.test"), (10, "mx2.good.test")))
    r = make(fake, clock, seed=7)
    orders = set()
    for _ in range(20):
        route = await r.resolve("eq.test")
        assert isinstance(route, Route)
        orders.add(tuple(h.name for h in route.hosts))
    assert orders == {("mx1.good.test", "mx2.good.test"), ("mx2.good.test", "mx1.good.test")}
    assert fake.calls[("eq.test", "MX")] == 1
    assert (r.hits, r.misses) == (19, 1)


async def test_domain_names_are_case_insensitive(fake: FakeDns, clock: FakeClock) -> None:
    r = make(fake, clock)
    a = await r.resolve("Good.TEST.")
    b = await r.resolve("good.test")
    assert isinstance(a, Route) and a.domain == "good.test" and a == b
    assert fake.calls[("good.test", "MX")] == 1
    with pytest.raises(ValueError):
        await r.resolve(" . ")


async def test_lru_bound_evicts_the_least_recently_used(fake: FakeDns, clock: FakeClock) -> None:
    fake.set(mx("other.test", (10, "mx1.good.test")))
    # good.test alone needs 5 entries (MX + 2 hosts x 2 types).
    r = make(fake, clock, max_entries=5)
    await r.resolve("good.test")
    assert r.entries == 5
    await r.resolve("other.test")  # adds other.test MX; mx1's entries are touched, not new
    assert r.entries == 5
    await r.resolve("other.test")
    assert fake.calls[("other.test", "MX")] == 1  # still cached
    # Evicted: the least recently used, good.test's MX entry.
    await r.resolve("good.test")
    assert fake.calls[("good.test", "MX")] == 2
    assert r.entries == 5


async def test_a_cache_hit_protects_an_entry_from_eviction(fake: FakeDns, clock: FakeClock) -> None:
    for d in ("n1.test", "n2.test", "n3.test"):
        fake.set(mx(d, (0, ".")))  # null MX: one cache entry per domain
    r = make(fake, clock, max_entries=2)
    await r.resolve("n1.test")
    await r.resolve("n2.test")
    await r.resolve("n1.test")  # hit: n1 is now the most recently used
    await r.resolve("n3.test")  # evicts n2, not n1 (which FIFO would evict)
    await r.resolve("n1.test")
    assert fake.calls[("n1.test", "MX")] == 1
    await r.resolve("n2.test")
    assert fake.calls[("n2.test", "MX")] == 2


async def test_single_flight_many_callers_one_query_each(fake: FakeDns, clock: FakeClock) -> None:
    fake.gate = asyncio.Event()
    r = make(fake, clock)
    callers = [asyncio.create_task(r.resolve("good.test")) for _ in range(25)]
    await wait_until(lambda: fake.waiting == 1)
    assert "1 in flight" in repr(r)
    fake.gate.set()
    routes = await asyncio.gather(*callers)
    assert all(isinstance(x, Route) and x.hosts[0].name == "mx1.good.test" for x in routes)
    assert fake.calls == {
        ("good.test", "MX"): 1,
        ("mx1.good.test", "A"): 1,
        ("mx1.good.test", "AAAA"): 1,
        ("mx2.good.test", "A"): 1,
        ("mx2.good.test", "AAAA"): 1,
    }
    assert (r.hits, r.misses) == (0, 25)
    assert "0 in flight" in repr(r)


async def test_mx_hosts_shared_between_domains_are_looked_up_once(
    fake: FakeDns, clock: FakeClock
) -> None:
    fake.set(mx("other.test", (10, "mx1.good.test"), (20, "mx2.good.test")))
    fake.gate = asyncio.Event()
    r = make(fake, clock)
    tasks = [asyncio.create_task(r.resolve(d)) for d in ("good.test", "other.test")]
    await wait_until(lambda: fake.waiting == 2)  # both MX queries are out
    fake.gate.set()
    await asyncio.gather(*tasks)
    assert fake.calls[("mx1.good.test", "A")] == 1
    assert fake.calls[("mx2.good.test", "AAAA")] == 1


async def test_a_cancelled_caller_does_not_cancel_the_shared_lookup(
    fake: FakeDns, clock: FakeClock
) -> None:
    fake.gate = asyncio.Event()
    r = make(fake, clock)
    first = asyncio.create_task(r.resolve("good.test"))
    second = asyncio.create_task(r.resolve("good.test"))
    await wait_until(lambda: fake.waiting == 1)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    fake.gate.set()
    route = await second
    assert isinstance(route, Route)
    assert fake.calls[("good.test", "MX")] == 1


async def test_a_lookup_whose_callers_all_left_still_fills_the_cache(
    fake: FakeDns, clock: FakeClock
) -> None:
    fake.gate = asyncio.Event()
    r = make(fake, clock)
    caller = asyncio.create_task(r.resolve("good.test"))
    await wait_until(lambda: fake.waiting == 1)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    fake.gate.set()
    await wait_until(lambda: r.entries == 1)  # the MX answer landed without any caller
    fake.gate = None
    await r.resolve("good.test")
    assert fake.calls[("good.test", "MX")] == 1


async def test_close_cancels_lookups_in_flight(fake: FakeDns, clock: FakeClock) -> None:
    fake.gate = asyncio.Event()
    r = make(fake, clock)
    caller = asyncio.create_task(r.resolve("good.test"))
    await wait_until(lambda: fake.waiting == 1)
    await r.close()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert r.entries == 0


async def test_a_dns_client_bug_reaches_every_waiter(clock: FakeClock) -> None:
    class Broken:
        def __init__(self) -> None:
            self.gate = asyncio.Event()

        async def query(self, name: str, rtype: str) -> DnsResult:
            await self.gate.wait()
            raise RuntimeError("bug")

    broken = Broken()
    r = MxResolver(broken, clock=clock, rng=random.Random(1))
    callers = [asyncio.create_task(r.resolve("x.test")) for _ in range(3)]
    await asyncio.sleep(0)
    broken.gate.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert [type(e) for e in results] == [RuntimeError] * 3


def test_constructor_rejects_nonsense(fake: FakeDns, clock: FakeClock) -> None:
    bad: list[dict[str, Any]] = [
        {"min_ttl": 0.0},
        {"min_ttl": 10.0, "max_ttl": 5.0},
        {"max_entries": 0},
        {"negative_ttl": -1.0},
        {"tempfail_ttl": -1.0},
    ]
    for kw in bad:
        with pytest.raises(ValueError):
            make(fake, clock, **kw)


# -- end to end: MxResolver -> AiodnsClient -> DnsServer on loopback --------------------------


@pytest.fixture
def server() -> Iterator[DnsServer]:
    with DnsServer() as s:
        s.add_mx("good.test", [(20, "mx2.good.test"), (10, "mx1.good.test")], ttl=300)
        s.add_a("mx1.good.test", ["127.0.0.11"])
        s.add_aaaa("mx1.good.test", ["::1"])
        s.add_a("mx2.good.test", ["127.0.0.12"])
        yield s


@pytest.fixture
async def real(server: DnsServer) -> AsyncIterator[MxResolver]:
    client = AiodnsClient([server.address], timeout=1.0, tries=1)
    resolver = MxResolver(client, clock=time.monotonic, rng=random.Random(3))
    yield resolver
    await resolver.close()
    await client.close()


async def test_real_mx_ordering(real: MxResolver) -> None:
    assert await real.resolve("good.test") == Route(
        "good.test",
        (
            MxHost("mx1.good.test", 10, ("127.0.0.11", "::1")),
            MxHost("mx2.good.test", 20, ("127.0.0.12",)),
        ),
        implicit=False,
    )


async def test_real_null_mx(server: DnsServer, real: MxResolver) -> None:
    server.null_mx("nullmx.test")
    got = await real.resolve("nullmx.test")
    assert isinstance(got, RouteFailure) and got.kind is RouteFailureKind.NULL_MX


async def test_real_nxdomain(real: MxResolver) -> None:
    got = await real.resolve("missing.test")
    assert isinstance(got, RouteFailure) and got.kind is RouteFailureKind.NO_SUCH_DOMAIN


async def test_real_nodata_falls_back_to_a(server: DnsServer, real: MxResolver) -> None:
    server.add_a("plain.test", ["127.0.0.30"])
    server.add_aaaa("plain.test", ["::1"])
    assert await real.resolve("plain.test") == Route(
        "plain.test", (MxHost("plain.test", 0, ("127.0.0.30", "::1")),), implicit=True
    )


async def test_real_servfail_is_temporary(server: DnsServer, real: MxResolver) -> None:
    server.servfail("broken.test")
    got = await real.resolve("broken.test")
    assert isinstance(got, RouteFailure) and got.kind is RouteFailureKind.TEMPORARY


async def test_real_blackhole_is_temporary_within_the_deadline(server: DnsServer) -> None:
    server.blackhole("silent.test")
    client = AiodnsClient([server.address], timeout=1.0, tries=3, deadline=0.3)
    resolver = MxResolver(client, clock=time.monotonic, rng=random.Random(3))
    try:
        t0 = time.monotonic()
        got = await resolver.resolve("silent.test")
        elapsed = time.monotonic() - t0
    finally:
        await client.close()
    assert isinstance(got, RouteFailure) and got.kind is RouteFailureKind.TEMPORARY
    assert elapsed < 2.0  # c-ares alone would take about 1 + 2 + 4 s


async def test_real_cname_before_mx(server: DnsServer, real: MxResolver) -> None:
    server.add_cname("alias.test", "good.test")
    route = await real.resolve("alias.test")
    assert isinstance(route, Route) and route.domain == "alias.test"
    assert [h.name for h in route.hosts] == ["mx1.good.test", "mx2.good.test"]


async def test_real_forty_mx_over_tcp(server: DnsServer, real: MxResolver) -> None:
    server.add_mx("big.test", [(i, f"mx{i:02d}.big.test") for i in reversed(range(40))])
    for i in range(40):
        server.add_a(f"mx{i:02d}.big.test", [f"127.0.1.{i + 1}"])
    route = await real.resolve("big.test")
    assert isinstance(route, Route)
    # All 40 came (over TCP, the UDP answer was truncated); the best MAX_MX_HOSTS are used.
    assert [h.preference for h in route.hosts] == list(range(MAX_MX_HOSTS))
    assert route.hosts[-1].addresses == (f"127.0.1.{MAX_MX_HOSTS}",)
    assert server.queries("big.test", "MX", transport="tcp") == 1


async def test_real_second_resolve_within_ttl_sends_no_query(
    server: DnsServer, real: MxResolver
) -> None:
    # Behaviour only: c-ares's own cache would also absorb the repeat, which is why the
    # fake-clock tests above are the proof that *our* cache works.
    first = await real.resolve("good.test")
    sent = server.queries()
    assert sent == 5
    assert await real.resolve("good.test") == first
    assert server.queries() == sent
    assert (real.hits, real.misses) == (1, 1)


async def test_only_the_best_max_mx_hosts_are_looked_up(fake: FakeDns, clock: FakeClock) -> None:
    """A hostile domain publishing 1 000 MX records costs 2 x MAX_MX_HOSTS queries."""
    fake.set(mx("many.test", *((i, f"mx{i}.many.test") for i in range(1000))))
    for i in range(1000):
        fake.host(f"mx{i}.many.test", (f"192.0.2.{i % 250 + 1}",))
    route = await make(fake, clock).resolve("many.test")
    assert isinstance(route, Route)
    assert [h.name for h in route.hosts] == [f"mx{i}.many.test" for i in range(MAX_MX_HOSTS)]
    assert fake.total == 1 + 2 * MAX_MX_HOSTS


# -- MX targets that are not host names (issue #11) ----------------------------------


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("192.0.2.1", "IP address"),
        ("[192.0.2.1]", "IP address"),
        ("2001:db8::1", "IP address"),
        ("localhost", "localhost"),
        ("mx.LOCALHOST", "localhost"),
        ("", "empty"),
        ("mx..example", "not a host name"),
        ("mx example.com", "not a host name"),
        ("-mx.example", "not a host name"),
        ("x" * 64 + ".example", "not a host name"),
    ],
)
def test_targets_that_are_not_host_names(name: str, why: str) -> None:
    error = mx_target_error(name)
    assert error is not None and why in error


@pytest.mark.parametrize("name", ["mx1.example.com", "aspmx.l.google.com", "mx_1.example", "a"])
def test_host_names_pass(name: str) -> None:
    assert mx_target_error(name) is None


def test_classify_mx_skips_targets_that_are_not_host_names() -> None:
    answer = classify_mx_answer(
        mx("d.test", (10, "192.0.2.7"), (20, "mx.d.test"), (30, "localhost"))
    )
    assert answer.kind is MxAnswerKind.EXCHANGES and answer.exchanges == ((20, "mx.d.test"),)


def test_classify_mx_with_only_bad_targets_is_unusable_naming_each() -> None:
    answer = classify_mx_answer(mx("d.test", (10, "localhost"), (20, "10.0.0.1")))
    assert answer.kind is MxAnswerKind.UNUSABLE
    assert "localhost (localhost)" in answer.detail and "10.0.0.1 (an IP address" in answer.detail


async def test_an_unusable_mx_set_is_no_route_without_address_queries(
    fake: FakeDns, clock: FakeClock
) -> None:
    fake.set(mx("literal.test", (10, "192.0.2.1")))
    route = await make(fake, clock).resolve("literal.test")
    assert isinstance(route, RouteFailure) and route.kind is RouteFailureKind.NO_ROUTE
    assert "an IP address, not a host name" in route.detail
    assert fake.total == 1  # never asked for the A record of "192.0.2.1"


# -- a relay's host (engine.net.relay) ------------------------------------------------------


async def test_resolve_host_looks_up_addresses_only_and_caches_them(
    fake: FakeDns, clock: FakeClock
) -> None:
    fake.host("smtp.relay.test", ("192.0.2.9",), ("2001:db8::9",))
    r = make(fake, clock)
    got = await r.resolve_host("dest.test", "SMTP.Relay.Test.")
    assert got == Route(
        "dest.test", (MxHost("smtp.relay.test", 0, ("192.0.2.9", "2001:db8::9")),), False
    )
    assert fake.calls == {("smtp.relay.test", "A"): 1, ("smtp.relay.test", "AAAA"): 1}
    assert (r.hits, r.misses) == (0, 1)
    await r.resolve_host("other.test", "smtp.relay.test")  # every domain shares the answers
    assert fake.total == 2 and (r.hits, r.misses) == (1, 1)


async def test_resolve_host_without_addresses_or_with_dns_trouble(
    fake: FakeDns, clock: FakeClock
) -> None:
    r = make(fake, clock)
    gone = await r.resolve_host("dest.test", "missing.relay.test")
    assert isinstance(gone, RouteFailure) and gone.kind is RouteFailureKind.NO_ROUTE
    fake.set(fail("flaky.relay.test", "A", DnsFailureKind.TEMPORARY))
    fake.set(fail("flaky.relay.test", "AAAA", DnsFailureKind.TEMPORARY))
    flaky = await r.resolve_host("dest.test", "flaky.relay.test")
    assert isinstance(flaky, RouteFailure) and flaky.kind is RouteFailureKind.TEMPORARY
    assert r.failures == 1
