"""engine.runtime.sites: a connection's site, its slots in order, and contention."""

from __future__ import annotations

from dataclasses import replace

from engine.config import load_settings
from engine.net.mx import MxHost, Route
from engine.runtime.sites import SiteAccess
from engine.shaping.gcra import Rate
from engine.shaping.rates import Grant
from tests.support.fake_clock import FakeClock


class Leases:
    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []

    async def acquire(self, key: str, limit: int) -> None:
        self.log.append(("acquire", f"{key}={limit}"))

    def release(self, key: str) -> None:
        self.log.append(("release", key))


class Rates:
    def __init__(self, at: float) -> None:
        self.at = at
        self.asked: list[list[str]] = []
        self.limits: list[list[float]] = []

    async def grant(self, keys: list[str], rates: list[Rate], want: int) -> Grant:
        self.asked.append(keys)
        self.limits.append([r.per_second for r in rates])
        return Grant((), self.at)

    def give_back(self, keys: list[str], unused: list[float]) -> None:
        pass


def _route(*hosts: str) -> Route:
    return Route("x", tuple(MxHost(h, 10, ("127.0.0.9",)) for h in hosts), implicit=False)


async def test_site_then_provider_slots_are_taken_and_given_back_in_reverse() -> None:
    s = load_settings(
        None,
        {
            "providers": {"p": {"mx_suffixes": [".p.test"], "provider_max_connections": 4}},
            "domains": {"default": {"max_connections": 2, "max_connection_rate": "1/min"}},
        },
    )
    leases, rates, contended = Leases(), Rates(at=100.0), []
    access = SiteAccess(s, leases, rates, FakeClock(0.0), contended.append)
    site, limits = access.site("a.test", _route("mx1.p.test"), s.policy("a.test"))
    assert (site.name, site.provider) == ("mx1.p.test", "p")
    held: list[str] = []
    await access.acquire("a.test", site, limits, held)
    assert held == ["mx1.p.test", "provider:p"]
    assert access.domains_of("provider:p") == {"a.test"}
    # A sibling domain of the same site asks: our idle a.test connections go first.
    await access.acquire("b.test", site, limits, [])
    assert contended == ["a.test", "a.test"]
    access.release("a.test", held)
    assert held == []
    assert leases.log[-2:] == [("release", "provider:p"), ("release", "mx1.p.test")]
    # The connection-rate instant is 100 s away, beyond the 5 s idle timeout.
    assert await access.connection_instant(site, limits) == 100.0
    assert rates.asked == [["mx1.p.test#conn"]]
    assert access.pacer(site, limits) is None  # no message rate: no pacer, no cost
    access.forget("a.test")
    assert access.domains_of("provider:p") == {"b.test"}


def test_domains_through_one_relay_share_its_site_named_with_the_port() -> None:
    """[routes]: a relay's route (Route.port set) is one site for every domain sent
    through it, and a relay on another port of the same host is another site."""
    s = load_settings(None, {})
    access = SiteAccess(s, Leases(), Rates(at=0.0), FakeClock(0.0), lambda domain: None)
    relay = Route("a.test", (MxHost("smtp.relay.test", 0, ("127.0.0.9",)),), False, 587)
    site_a, _ = access.site("a.test", relay, s.policy("a.test"))
    site_b, _ = access.site("b.test", Route("b.test", relay.hosts, False, 587), s.policy("b.test"))
    other_port, _ = access.site(
        "c.test", Route("c.test", relay.hosts, False, 465), s.policy("c.test")
    )
    assert site_a.name == site_b.name != other_port.name
    assert "587" in site_a.name and "465" in other_port.name


async def test_a_source_has_its_own_slots_and_a_counting_pacer() -> None:
    s = load_settings(
        None, {"providers": {"p": {"mx_suffixes": [".p.test"], "provider_max_connections": 4}}}
    )
    leases = Leases()
    access = SiteAccess(s, leases, Rates(at=0.0), FakeClock(0.0), [].append)
    site, limits = access.site("a.test", _route("mx1.p.test"), s.policy("a.test"))
    held: list[str] = []
    await access.acquire("a.test", replace(site, source="ip1"), limits, held)
    assert held == ["ip1|mx1.p.test", "ip1|provider:p"]
    assert access.domains_of("ip1|mx1.p.test") == {"a.test"}
    assert access.pacer(site, limits) is None
    heard: list[int] = []
    pacer = access.pacer(site, limits, heard.append)
    assert pacer is not None
    await pacer.take(5)
    pacer.close()
    assert heard == [1]


async def test_a_live_connection_paces_under_the_limits_in_force_now() -> None:
    from engine.runtime.shaping_feed import ShapingFeed
    from engine.telemetry.metrics import CheckedTally

    s = load_settings(None, {})
    feed = ShapingFeed(lambda *m: None, CheckedTally())
    rates = Rates(at=0.0)
    access = SiteAccess(s, Leases(), rates, FakeClock(0.0), lambda d: None, feed)
    site, limits = access.site("a.test", _route("mx1.a.test"), s.policy("a.test"))
    pace = access.pacing(site, limits)
    assert pace(None) is None  # no rate configured, none in force: nothing to pace
    feed.apply({site.name: [2, 5.0, None, None]})  # shaping cut the site to 5 msg/s
    pacer = pace(None)
    assert pacer is not None and pace(pacer) is pacer  # the same while nothing changes
    # Cut again: the same Pacer (its instants kept), asking under the new limit.
    feed.apply({site.name: [2, 4.0, None, None]})
    assert pace(pacer) is pacer
    await pacer.take(1)
    assert rates.limits[-1] == [4.0]
    feed.apply({site.name: [2, 6.0, None, None]})  # and raised: the raise applies too
    assert pace(pacer) is pacer
    await pacer.take(1)
    assert rates.limits[-1] == [6.0]
    feed.apply({})  # the cut ended
    assert pace(pacer) is None
