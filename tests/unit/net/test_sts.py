"""engine.net.sts.StsResolver with a fake DNS, a fake fetch and a fake clock."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from engine.net.dns import DnsAnswer, DnsClient, DnsFailure, DnsFailureKind, DnsRecord, DnsResult
from engine.net.sts import StsResolver
from engine.net.sts_fetch import Fetched, FetchFailed
from engine.net.sts_store import StsStore
from engine.sched.mta_sts import RETRY_AFTER, StsMode, StsPolicy, StsResult
from tests.support.fake_clock import FakeClock
from tests.support.net import async_wait_for
from tests.support.sts_server import policy_text

T0 = 1_800_000_000.0
MX2 = policy_text("enforce", ["mx2.d.test"], max_age=86400)
MX3 = policy_text("enforce", ["mx3.d.test"], max_age=86400)


class FakeDns:
    """TXT answers for _mta-sts.<domain> from `txt` (None: NXDOMAIN, "servfail")."""

    def __init__(self) -> None:
        self.txt: dict[str, str | None] = {}
        self.queries = 0

    async def query(self, name: str, rtype: str) -> DnsResult:
        self.queries += 1
        value = self.txt.get(name)
        if value is None:
            return DnsFailure(name, rtype, DnsFailureKind.NXDOMAIN, "NXDOMAIN")
        if value == "servfail":
            return DnsFailure(name, rtype, DnsFailureKind.TEMPORARY, "SERVFAIL")
        return DnsAnswer(name, rtype, (DnsRecord(name, "TXT", 60, value),))


class FakeFetch:
    """Serves `policies[domain]`; a missing one is a failed fetch."""

    def __init__(self) -> None:
        self.policies: dict[str, str] = {}
        self.calls: list[str] = []
        self.gate: asyncio.Event | None = None

    async def __call__(
        self,
        domain: str,
        *,
        dns: DnsClient,
        port: int,
        context: ssl.SSLContext,
        usable: Callable[[Sequence[str]], Sequence[str]],
    ) -> Fetched | FetchFailed:
        self.calls.append(domain)
        if self.gate is not None:
            await self.gate.wait()
        text = self.policies.get(domain)
        return Fetched(text) if text is not None else FetchFailed("connection refused")


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.dns = FakeDns()
        self.fetch = FakeFetch()
        self.clock = FakeClock(T0)
        self.counted: list[tuple[str, StsResult]] = []
        self.path = tmp_path / "mta-sts.db"

    def resolver(self) -> StsResolver:
        return StsResolver(
            self.dns,
            StsStore(self.path),
            clock=self.clock.wall,
            context=ssl.create_default_context,
            usable=lambda addresses: addresses,
            count=lambda mode, result: self.counted.append((mode, result)),
            fetch=self.fetch,
        )

    def publish(self, policy_id: str, text: str | None) -> None:
        self.dns.txt["_mta-sts.d.test"] = f"v=STSv1; id={policy_id};"
        if text is None:
            self.fetch.policies.pop("d.test", None)
        else:
            self.fetch.policies["d.test"] = text


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def listed(policy: StsPolicy | None) -> tuple[str, ...] | None:
    return None if policy is None else policy.mx


async def test_no_txt_record_means_no_policy_and_no_fetch(world: World) -> None:
    r = world.resolver()
    assert await r.policy("d.test") is None
    assert world.fetch.calls == [] and world.counted == []
    await r.close()


async def test_fetched_once_then_served_from_memory(world: World) -> None:
    world.publish("1", MX2)
    r = world.resolver()
    got = await r.policy("d.test")
    assert got == StsPolicy(StsMode.ENFORCE, ("mx2.d.test",), 86400)
    world.clock.advance(30)  # within the TXT TTL (60 s): no DNS either
    queries = world.dns.queries
    assert await r.policy("d.test") is got
    assert world.dns.queries == queries and world.fetch.calls == ["d.test"]
    world.clock.advance(60)  # TXT asked again, same id: the policy is not
    assert await r.policy("d.test") is got
    assert world.dns.queries == queries + 1 and world.fetch.calls == ["d.test"]
    await r.close()


async def test_a_new_id_fetches_again(world: World) -> None:
    world.publish("1", MX2)
    r = world.resolver()
    assert listed(await r.policy("d.test")) == ("mx2.d.test",)
    world.publish("2", MX3)
    world.clock.advance(61)
    assert listed(await r.policy("d.test")) == ("mx3.d.test",)
    assert world.fetch.calls == ["d.test", "d.test"]
    await r.close()


async def test_a_failed_fetch_keeps_the_cached_policy_and_waits_before_trying_again(
    world: World,
) -> None:
    world.publish("1", MX2)
    r = world.resolver()
    await r.policy("d.test")
    world.publish("2", None)  # a new id, but the policy host is down
    world.clock.advance(61)
    assert listed(await r.policy("d.test")) == ("mx2.d.test",)
    assert world.counted == [("enforce", StsResult.POLICY_FETCH_ERROR)]
    for _ in range(3):  # every TXT expiry within RETRY_AFTER: no new fetch
        world.clock.advance(61)
        assert listed(await r.policy("d.test")) == ("mx2.d.test",)
    assert len(world.fetch.calls) == 2
    world.publish("2", MX3)
    world.clock.advance(RETRY_AFTER)
    assert listed(await r.policy("d.test")) == ("mx3.d.test",)
    assert len(world.fetch.calls) == 3
    await r.close()


async def test_the_cache_survives_a_restart_and_dns_trouble(world: World) -> None:
    world.publish("1", MX2)
    first = world.resolver()
    await first.policy("d.test")
    await first.close()
    world.fetch.policies.clear()  # the policy host is gone
    world.dns.txt["_mta-sts.d.test"] = "servfail"
    second = world.resolver()  # a new process: memory is empty, the file is not
    world.clock.advance(3600)
    assert listed(await second.policy("d.test")) == ("mx2.d.test",)
    assert world.fetch.calls == ["d.test"]  # no fetch needed: the id was not seen to change
    world.clock.advance(86400)  # past max_age: an expired policy is no policy
    assert await second.policy("d.test") is None
    await second.close()


async def test_an_invalid_policy_is_counted_and_not_applied(world: World) -> None:
    world.publish("1", MX2.replace("mx:", "nmx:"))
    r = world.resolver()
    assert await r.policy("d.test") is None
    assert world.counted == [("unknown", StsResult.POLICY_INVALID)]
    await r.close()


async def test_callers_share_one_fetch(world: World) -> None:
    world.publish("1", MX2)
    world.fetch.gate = asyncio.Event()
    r = world.resolver()
    waiting = [asyncio.create_task(r.policy("d.test")) for _ in range(5)]
    await async_wait_for(lambda: world.fetch.calls, timeout=5)  # the fetch is under way
    world.fetch.gate.set()
    got = await asyncio.gather(*waiting)
    assert all(p is got[0] for p in got) and world.fetch.calls == ["d.test"]
    await r.close()
