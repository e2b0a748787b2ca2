"""A connection's egress source: which address it binds, which name it announces, and how
many messages of a warming-up source's day it may send.

Responsible for: `EgressAccess`, which picks the source of a new connection from its
destination's pool (engine.shaping.egress: weighted, skipping sources known to be out
of quota), asks the supervisor for its quota when the source is warming up (one round
trip per connection: engine.shaping.quota), says until when a destination must wait
when no source of its pool has quota, gives unused quota back and counts the messages
sent per source when the connection ends; and `Outbound`, one connection's choice.
Not responsible for: the limits per (source, site) (the source prefixes the site's keys:
engine.shaping.sites, taken by engine.runtime.sites), binding (engine.net.session), or
pausing the destination (engine.runtime.delivery does, with reason "warmup").

Cost without `[egress.pools.*]`: one dict lookup per connection; nothing per message.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from engine.clock import Clock
from engine.config import Settings
from engine.config.egress import EgressSource
from engine.net.mx import Route
from engine.sched.queue import WorkQueue
from engine.shaping.egress import SourceChooser, daily_limit, next_midnight, pool_for, utc_day
from engine.shaping.limits import SiteLimits
from engine.shaping.quota import QuotaGrant
from engine.shaping.sites import Site
from engine.telemetry.metrics import Tally

__all__ = ["EgressAccess", "Outbound", "QuotaGrants"]

# The shortest wait before asking again for a source whose quota is all granted to open
# connections (some may come back when they end).
RECHECK_MIN = 1.0


class QuotaGrants(Protocol):
    async def grant(self, source: str, day: int, limit: int, want: int) -> QuotaGrant: ...

    def give_back(self, source: str, day: int, granted: int, unused: int) -> None: ...


class _NoQuota:
    """For a Deliverer made without a quota service: every source has all it asks for."""

    async def grant(self, source: str, day: int, limit: int, want: int) -> QuotaGrant:
        return QuotaGrant(want, 0)

    def give_back(self, source: str, day: int, granted: int, unused: int) -> None:
        pass


@dataclass(slots=True)
class Outbound:
    """One connection's egress: the address it binds (None: the kernel's choice), the
    name it announces, and, with a source, its name, UTC day and quota."""

    address: str | None
    helo: str
    source: str | None = None
    day: int = 0
    granted: int | None = None  # None: no warm-up limit
    sent: int = 0

    def apply(self, site: Site, limits: SiteLimits) -> tuple[Site, SiteLimits]:
        """The site keyed by this source, and the limits capped by its quota."""
        if self.source is None:
            return site, limits
        site = replace(site, source=self.source)
        if self.granted is not None and self.granted < limits.max_messages_per_connection:
            limits = replace(limits, max_messages_per_connection=self.granted)
        return site, limits

    @property
    def counter(self) -> Callable[[int], None] | None:
        """What the connection's Pacer tells how many messages went (None: no source)."""
        return None if self.source is None else self._count

    def _count(self, sent: int) -> None:
        self.sent += sent  # a connection may pace with several Pacers (new limits)

    def reachable(self, route: Route) -> Route:
        """`route` with only the addresses our bound address can reach: an IPv6 source
        cannot connect to an IPv4 MX address, nor the reverse (a host left with none is
        left out; none at all is "no MX host address", a deferral).  Without a source,
        the route as it is (smtp.source_address behaves as it always did)."""
        if self.source is None or self.address is None:
            return route
        version = ipaddress.ip_address(self.address).version
        hosts = []
        for host in route.hosts:
            kept = tuple(a for a in host.addresses if _version(a) in (version, None))
            if kept:
                hosts.append(replace(host, addresses=kept))
        return replace(route, hosts=tuple(hosts))

    def bind(self, source: EgressSource, helo: str, day: int, granted: int | None) -> None:
        self.address = source.address
        self.helo = source.ehlo or helo
        self.source = source.name
        self.day = day
        self.granted = granted


def _version(address: str) -> int | None:
    try:
        return ipaddress.ip_address(address).version
    except ValueError:
        return None  # not an IP literal: let the connect say what is wrong


class EgressAccess:
    def __init__(
        self,
        settings: Settings,
        queue: WorkQueue,
        clock: Clock,
        rng: random.Random,
        tally: Tally,
        quota: QuotaGrants | None = None,
    ) -> None:
        self._s = settings
        self._providers = {p.name: p for p in settings.providers}
        self._queue = queue
        self._clock = clock
        self._tally = tally
        self._quota: QuotaGrants = quota or _NoQuota()
        self._chooser = SourceChooser(rng)
        self._fanout: dict[str, int] = {}  # domain -> sources in its pool (learnt at choose)

    def reconfigure(self, settings: Settings) -> None:
        self._s = settings
        self._providers = {p.name: p for p in settings.providers}
        # A new schedule or pool may have quota where the old had none: forget what was
        # learnt, and let the destinations waiting for the next UTC day try again now.
        self._chooser.reset()
        self._fanout.clear()
        self._queue.unpause("warmup")

    def outbound(self) -> Outbound:
        """A connection's egress before a source is chosen: smtp.source_address and
        smtp.helo_name."""
        return Outbound(self._s.source_address, self._s.helo_name)

    def fanout(self, domain: str) -> int:
        """How many sources share `domain`'s connections: its max_connections applies
        per (source, site), so a worker may run this many times as many connections."""
        return self._fanout.get(domain, 1)

    def forget(self, domain: str) -> None:
        self._fanout.pop(domain, None)

    async def choose(
        self, domain: str, site: Site, limits: SiteLimits, out: Outbound
    ) -> float | None:
        """Bind `out` to a source of `domain`'s pool that has quota, taking the quota of
        a warming-up one (up to what the connection can send: max_messages_per_connection,
        and no more than the destination has ready).  Returns None to go on (also when
        the destination has no pool), or the monotonic instant to try again when no
        source of the pool has quota now: the next UTC midnight, or sooner when some of
        it is granted to connections that may give it back."""
        egress = self._s.egress
        if not egress.pools:
            return None
        pool = pool_for(egress, self._s.policy(domain), self._providers.get(site.provider or ""))
        if pool is None:
            return None
        self._fanout[domain] = len(pool.sources)
        ready = len(self._queue.domain(domain).ready)
        want = max(1, min(limits.max_messages_per_connection, ready))
        tried: set[str] = set()
        while True:
            now = self._clock.wall()
            name = self._chooser.pick(pool, now, tried)
            if name is None:
                return self._clock.monotonic() + max(0.0, self._chooser.back_at(pool, now) - now)
            tried.add(name)
            source = egress.sources[name]
            day = utc_day(now)
            limit = daily_limit(source.warmup, day)
            if limit is None:
                out.bind(source, self._s.helo_name, day, None)
                return None
            got = await self._quota.grant(name, day, limit, want)
            if got.granted:
                out.bind(source, self._s.helo_name, day, got.granted)
                return None
            # Connections that hold some of the day may end with some unused: they do
            # within idle_timeout of running out of work.
            midnight = next_midnight(now)
            recheck = now + max(RECHECK_MIN, self._s.idle_timeout)
            self._chooser.out_of_quota(name, min(midnight, recheck) if got.pending else midnight)

    def release(self, out: Outbound) -> None:
        """The connection ended: count what its source sent, give back its unused quota."""
        if out.source is None:
            return
        if out.sent:
            self._tally.inc("volley_egress_messages", out.source, n=out.sent)
        if out.granted is not None:
            self._quota.give_back(out.source, out.day, out.granted, max(0, out.granted - out.sent))
