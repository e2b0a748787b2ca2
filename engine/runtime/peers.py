"""The worker's ends of the services it uses: connection leases, rate grants and MX
resolution.

Responsible for: `LeaseClient`, the worker side of the connection-slot protocol (the
supervisor arbitrates slots across workers: engine.sched.leases, over engine.runtime.ipc),
`RateClient`, the worker side of the rate protocol (batches of send instants:
engine.shaping.rates), `QuotaClient`, the worker side of the warm-up quota protocol
(messages of a source's day: engine.shaping.quota), `Arbitrated`, the four together with
the shaping feed (engine.runtime.shaping_feed) and one dispatcher of the supervisor's
answers, and `CountingResolver`, the MX resolver with each resolution counted for metrics
(a cache hit, a query, or a failed query).
Not responsible for: deciding grants (the supervisor), resolving (engine.net.mx), or what
a worker does with either (engine.runtime.delivery).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from engine.net.mx import MxResolver, Route, RouteFailure
from engine.runtime.ipc import Channel, Message
from engine.runtime.shaping_feed import ShapingFeed
from engine.shaping.gcra import Rate
from engine.shaping.quota import QuotaGrant
from engine.shaping.rates import Grant
from engine.telemetry.metrics import Tally

__all__ = ["CountingResolver", "LeaseClient", "QuotaClient", "RateClient"]


class LeaseClient:
    """Worker side of the connection-slot protocol (see engine.sched.leases)."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._waiting: dict[int, tuple[str, asyncio.Future[None]]] = {}
        self._next = 0

    async def acquire(self, domain: str, limit: int) -> None:
        self._next += 1
        req = self._next
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[req] = (domain, fut)
        self._channel.send("acquire", req, domain, limit)
        try:
            await fut
        except BaseException:
            if self._waiting.pop(req, None) is not None:
                self._channel.send("cancel", req, domain)
            raise

    def granted(self, req: int) -> None:
        waiting = self._waiting.pop(req, None)
        if waiting is None:
            return
        domain, fut = waiting
        if fut.done():  # cancelled after the grant was sent: give the slot straight back
            self._channel.send("release", domain)
        else:
            fut.set_result(None)

    def release(self, domain: str) -> None:
        self._channel.send("release", domain)


class RateClient:
    """Worker side of the rate protocol: ask the supervisor for up to `want` send
    instants conforming to every one of `rates` (one per key), one round trip per batch."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._waiting: dict[int, asyncio.Future[Grant]] = {}
        self._next = 0

    async def grant(self, keys: list[str], rates: list[Rate], want: int) -> Grant:
        self._next += 1
        req = self._next
        fut: asyncio.Future[Grant] = asyncio.get_running_loop().create_future()
        self._waiting[req] = fut
        wire = [[r.count, r.period, r.burst] for r in rates]
        self._channel.send("rate", req, keys, wire, want)
        try:
            return await fut
        finally:
            self._waiting.pop(req, None)

    def granted(self, req: int, times: list[float], retry_at: float) -> None:
        fut = self._waiting.pop(req, None)
        if fut is not None and not fut.done():
            fut.set_result(Grant(tuple(times), retry_at))
        # else: cancelled while asking; its instants go unused (a second at most)

    def give_back(self, keys: list[str], unused: list[float]) -> None:
        if unused:
            self._channel.send("rate_back", keys, unused)


class QuotaClient:
    """Worker side of the warm-up quota: ask for up to `want` messages of `source`'s
    `limit` for UTC `day`, one round trip per connection; give back what it did not send."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._waiting: dict[int, tuple[str, int, asyncio.Future[QuotaGrant]]] = {}
        self._next = 0

    async def grant(self, source: str, day: int, limit: int, want: int) -> QuotaGrant:
        self._next += 1
        req = self._next
        fut: asyncio.Future[QuotaGrant] = asyncio.get_running_loop().create_future()
        # Kept until answered, even if the caller is cancelled: the answer's messages
        # then go straight back (granted()).
        self._waiting[req] = (source, day, fut)
        self._channel.send("quota", req, source, day, limit, want)
        return await fut

    def granted(self, req: int, granted: int, pending: int) -> None:
        waiting = self._waiting.pop(req, None)
        if waiting is None:
            return
        source, day, fut = waiting
        if fut.done():  # cancelled while asking: nobody will send these
            self.give_back(source, day, granted, granted)
        else:
            fut.set_result(QuotaGrant(granted, pending))

    def give_back(self, source: str, day: int, granted: int, unused: int) -> None:
        self._channel.send("quota_back", source, day, granted, unused)


class CountingResolver:
    """MxResolver plus counting for metrics: a cache hit, a query (miss), or a query
    that failed (SERVFAIL, timeout: the route is a temporary failure)."""

    def __init__(self, inner: MxResolver, tally: Tally) -> None:
        self._inner = inner
        self._tally = tally

    async def resolve(self, domain: str) -> Route | RouteFailure:
        return await self._counted(self._inner.resolve(domain))

    async def resolve_host(self, domain: str, host: str) -> Route | RouteFailure:
        """A relay's address lookup (engine.net.relay), counted like an MX resolution."""
        return await self._counted(self._inner.resolve_host(domain, host))

    async def _counted(self, lookup: Awaitable[Route | RouteFailure]) -> Route | RouteFailure:
        inner = self._inner
        hits, failures = inner.hits, inner.failures
        got = await lookup
        if inner.failures > failures:
            result = "failure"  # was never counted: the dashboard's panel showed 0 always
        elif inner.hits > hits:
            result = "hit"
        else:
            result = "miss"
        self._tally.inc("volley_dns_lookups", result)
        return got


class Arbitrated:
    """The worker's ends of everything the supervisor arbitrates for all workers:
    connection leases, rate instants, warm-up quota, and adaptive shaping (reports out,
    the table in force back).  `on_message` takes the supervisor's answers."""

    def __init__(self, channel: Channel, tally: Tally) -> None:
        self.leases = LeaseClient(channel)
        self.rates = RateClient(channel)
        self.quota = QuotaClient(channel)
        self.shaping = ShapingFeed(channel.send, tally)

    def on_message(self, msg: Message) -> bool:
        """Take `msg` if it is an answer to one of these; False if it is not."""
        kind = msg[0]
        if kind == "grant":
            self.leases.granted(msg[1])
        elif kind == "rate_grant":
            self.rates.granted(msg[1], msg[2], msg[3])
        elif kind == "quota_grant":
            self.quota.granted(msg[1], msg[2], msg[3])
        elif kind == "shaping_limits":
            self.shaping.apply(msg[1])
        else:
            return False
        return True
