"""A connection's claim on its site: which site, under which limits, with which slots.

Responsible for: finding a resolved destination's site and limits (engine.shaping),
applying what adaptive shaping has in force to them (`in_force`: lower limits, a
suspension, a bounce), taking the site's and its provider's connection slots (leases, in
that order), the instant a new connection may open under the connection-rate limits, the
`Pacer` of its messages under the message-rate limits (`pacing`: renewed when the limits
in force change, so open connections slow down too), and which destinations of this worker hold
slots of a key (so that another worker waiting for that key can make them close idle
connections).
Not responsible for: arbitration (the supervisor: engine.sched.leases,
engine.shaping.rates) or the connection itself (engine.runtime.delivery).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Protocol

from engine.clock import Clock
from engine.config import DomainPolicy, Settings
from engine.net.mx import Route
from engine.runtime.pacing import Pacer, RateGrants
from engine.runtime.shaping_feed import ShapingFeed
from engine.shaping.gcra import Rate
from engine.shaping.limits import SiteLimits, shaped, site_for, site_limits
from engine.shaping.providers import Provider
from engine.shaping.sites import Site

__all__ = ["Leases", "SiteAccess"]


class Leases(Protocol):
    async def acquire(self, domain: str, limit: int) -> None: ...

    def release(self, domain: str) -> None: ...


def _keyed(
    site: Site, suffix: str, own: Rate | None, provider: Rate | None
) -> tuple[list[str], list[Rate]]:
    """The rate keys of `site` (its own, its provider's) that have a limit."""
    keys: list[str] = []
    rates: list[Rate] = []
    for key, rate in zip(site.connection_keys, (own, provider), strict=False):
        if rate is not None:
            keys.append(key + suffix)
            rates.append(rate)
    return keys, rates


class SiteAccess:
    def __init__(
        self,
        settings: Settings,
        leases: Leases,
        rates: RateGrants,
        clock: Clock,
        contend: Callable[[str], None],
        feed: ShapingFeed | None = None,
    ) -> None:
        """`contend(domain)` makes this worker's idle connections to `domain` close;
        `feed` holds what adaptive shaping has in force (None: nothing is)."""
        self._feed = feed
        self._s = settings
        self._providers: tuple[Provider, ...] = settings.providers
        self._leases = leases
        self._rates = rates
        self._clock = clock
        self._contend = contend
        self._holders: defaultdict[str, set[str]] = defaultdict(set)  # key -> domains
        self.waiting: defaultdict[str, int] = defaultdict(int)  # domain -> tasks waiting

    def reconfigure(self, settings: Settings) -> None:
        self._s = settings
        self._providers = settings.providers

    def site(self, domain: str, route: Route, policy: DomainPolicy) -> tuple[Site, SiteLimits]:
        hosts = (h.name for h in route.hosts)
        site = site_for(domain, hosts, policy, self._providers, route.port)  # port: a relay's
        provider = next((p for p in self._providers if p.name == site.provider), None)
        return site, site_limits(policy, provider)

    def in_force(
        self, site: Site, limits: SiteLimits, now: float
    ) -> tuple[SiteLimits, float | None, float | None]:
        """`limits` lowered to what adaptive shaping has in force for the site or its
        provider, and the wall times until which it is suspended and bouncing (None:
        it is not)."""
        suspended: float | None = None
        bouncing: float | None = None
        for f in self._feed.in_force(site) if self._feed is not None else ():
            limits = shaped(limits, f.connections, f.rate)
            if f.suspended_until is not None and f.suspended_until > now:
                suspended = max(suspended or 0.0, f.suspended_until)
            if f.bouncing_until is not None and f.bouncing_until > now:
                bouncing = max(bouncing or 0.0, f.bouncing_until)
        return limits, suspended, bouncing

    async def acquire(self, domain: str, site: Site, limits: SiteLimits, held: list[str]) -> None:
        """Take the site's slot, then its provider's; each key taken is appended to
        `held` at once, so the caller's `finally` releases exactly what was taken."""
        caps = (limits.max_connections, limits.provider_connections)
        for key, cap in zip(site.connection_keys, caps, strict=False):
            if cap is None:
                continue
            for other in self._holders.get(key, ()):
                if other != domain:  # our own idle connections to a sibling go first
                    self._contend(other)
            self.waiting[domain] += 1
            try:
                await self._leases.acquire(key, cap)
            finally:
                self.waiting[domain] -= 1
                if not self.waiting[domain]:
                    del self.waiting[domain]
            held.append(key)
            self._holders[key].add(domain)

    def release(self, domain: str, held: list[str]) -> None:
        for key in reversed(held):
            self._leases.release(key)
        held.clear()

    def domains_of(self, key: str) -> set[str]:
        return self._holders.get(key, set())

    def forget(self, domain: str) -> None:
        for key in [k for k, ds in self._holders.items() if domain in ds]:
            self._holders[key].discard(domain)
            if not self._holders[key]:
                del self._holders[key]

    async def connection_instant(self, site: Site, limits: SiteLimits) -> float | None:
        """Wait for the instant a new connection may open (None: go), or return the
        monotonic time it would be when that is beyond the idle timeout."""
        keys, rates = _keyed(site, "#conn", limits.connection_rate, limits.provider_connection_rate)
        if not keys:
            return None
        pacer = Pacer(self._rates, keys, rates, self._clock, self._s.idle_timeout)
        try:
            return await pacer.take(1)
        finally:
            pacer.close()

    def pacing(
        self, site: Site, limits: SiteLimits, on_close: Callable[[int], None] | None = None
    ) -> Callable[[Pacer | None], Pacer | None]:
        """A connection's pacer under `limits` (the site's, before shaping: a limit
        already lowered can only be lowered further, and a raise reached only the
        connections opened after it) and what shaping has in force now:
        `current(p)` returns `p` while the shaping table is unchanged, else `p` retuned
        to the new limits (the same rate keys) or a new Pacer (p's unused instants go
        back), so a cut slows the connections already open, not only those opened
        after it."""
        version: int | None = None  # the first call makes the first Pacer

        def current(p: Pacer | None) -> Pacer | None:
            nonlocal version
            now = self._feed.version if self._feed is not None else 0
            if now == version:
                return p
            version = now
            force = self.in_force(site, limits, self._clock.wall())[0]
            if p is not None:
                keys, rates = _keyed(site, "#msg", force.message_rate, force.provider_message_rate)
                if keys and keys == p.keys:
                    p.retune(rates)
                    return p
                p.close()
            return self.pacer(site, force, on_close)

        return current

    def pacer(
        self, site: Site, limits: SiteLimits, on_close: Callable[[int], None] | None = None
    ) -> Pacer | None:
        """The connection's Pacer; `on_close(sent)` (an egress source's count) makes one
        even without message-rate limits."""
        keys, rates = _keyed(site, "#msg", limits.message_rate, limits.provider_message_rate)
        if not keys and on_close is None:
            return None
        return Pacer(self._rates, keys, rates, self._clock, self._s.idle_timeout, on_close)
