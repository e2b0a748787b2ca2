"""MX resolution: a destination domain becomes the hosts to try, in order, with addresses.

Responsible for: the RFC 5321 §5.1 and RFC 7505 rules (preference order, random order
among equal preferences, implicit MX, null MX), dropping MX targets that are not host
names (IP literals, localhost: untrusted input, issue #11) and all but the best
MAX_MX_HOSTS, looking up each MX host's A and AAAA
records, a bounded TTL cache of every answer (positive, negative and temporary failures),
and single-flight lookups so a burst of messages for one domain sends one query.
Not responsible for: sending queries or deadlines (engine.net.dns), IDNA (the caller
passes A-labels), deciding bounce vs defer (engine.sched.classify maps `RouteFailureKind`),
remembering which MX hosts are down (the connection layer), MTA-STS (engine.net.sts)
and DANE.

Structure: the decisions are pure functions — `classify_mx_answer`,
`classify_address_answer`, `order_mx`, `assemble_route`, `cache_lifetime` — and
`MxResolver` only adds the cache, the awaits and the counters.

Invariants:
  * A `Route` has at least one host, and every host has at least one address.
  * Only a TEMPORARY result may change by asking again soon; the engine must never bounce
    on it (SERVFAIL, REFUSED, timeouts, or every MX host's lookup failing temporarily).
  * Cache entries live for the answer's lowest TTL clamped to [min_ttl, max_ttl];
    NXDOMAIN, NODATA and null MX for `negative_ttl`; temporary failures for
    `tempfail_ttl`. c-ares also caches (dependency-facts §2) and hands back TTLs already
    counted down, so our entry never outlives the record.
  * The order among equal preferences is drawn from `rng` on every resolve(), also when
    the records come from the cache, so load spreads across equal MX hosts.

See also: RFC 5321 §5.1, RFC 7505, KumoMTA mailexchanger (64k-entry LRU, 300 s negative TTL),
aiohttp connector `_resolve_host` (single-flight).
"""

from __future__ import annotations

import asyncio
import enum
import functools
import ipaddress
import random
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from engine.model import RouteFailure, RouteFailureKind
from engine.net.dns import DnsAnswer, DnsClient, DnsFailure, DnsFailureKind, DnsResult
from engine.sched.mta_sts import StsPolicy

__all__ = [
    "MAX_MX_HOSTS",
    "AddressAnswer",
    "AddressStatus",
    "MxAnswer",
    "MxAnswerKind",
    "MxHost",
    "MxResolver",
    "Route",
    "RouteFailure",
    "RouteFailureKind",
    "assemble_route",
    "cache_lifetime",
    "classify_address_answer",
    "classify_mx_answer",
    "mx_target_error",
    "order_mx",
]


# MX hosts whose addresses are looked up, best first.  RFC 5321 sets no bound; real domains
# publish 1-5 (Google 5, Microsoft 1, Yahoo 3), and each host costs an A and an AAAA query:
# a hostile domain publishing 1 000 MX records would otherwise cost 2 000 queries per
# cache period.  smtp.mx_address_limit (engine.net.targets) then bounds what is tried.
MAX_MX_HOSTS = 10


_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")

# -- results -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MxHost:
    name: str  # host name, lower-case, no trailing dot
    preference: int
    addresses: tuple[str, ...]  # A then AAAA, each in server order; never empty in a Route


@dataclass(frozen=True, slots=True)
class Route:
    domain: str
    hosts: tuple[MxHost, ...]  # in the order to try
    implicit: bool  # no MX records: the domain's own addresses (RFC 5321 §5.1)
    # Set for a configured relay's route (engine.net.relay): its one host, on this port.
    # None: MX delivery on smtp.port.
    port: int | None = None
    # The MTA-STS policy the hosts were screened under (engine.runtime.tlsguard); its
    # connections follow it.  Keep it when deriving a route (dataclasses.replace).
    sts: StsPolicy | None = None


# -- pure decisions ------------------------------------------------------------------------


class MxAnswerKind(enum.Enum):
    EXCHANGES = "exchanges"  # at least one usable MX record
    UNUSABLE = "unusable"  # MX records, but none names a host (IP literals, localhost)
    NULL_MX = "null_mx"
    NO_MX = "no_mx"  # NODATA: the domain exists without MX, so the implicit MX applies
    NO_SUCH_DOMAIN = "no_such_domain"
    TEMPORARY = "temporary"


@dataclass(frozen=True, slots=True)
class MxAnswer:
    """The MX query for one domain, classified; what the cache keeps."""

    kind: MxAnswerKind
    exchanges: tuple[tuple[int, str], ...] = ()  # (preference, host), server order
    ttl: int | None = None  # lowest TTL in the answer, for EXCHANGES only
    detail: str = ""


class AddressStatus(enum.Enum):
    FOUND = "found"
    ABSENT = "absent"  # NXDOMAIN or NODATA: an authoritative "no"
    TEMPORARY = "temporary"


@dataclass(frozen=True, slots=True)
class AddressAnswer:
    """One A or AAAA query for one host, classified; what the cache keeps."""

    status: AddressStatus
    addresses: tuple[str, ...] = ()
    ttl: int | None = None  # lowest TTL in the answer, for FOUND only
    detail: str = ""


_Answer = MxAnswer | AddressAnswer


def _norm(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _min_ttl(answer: DnsAnswer) -> int:
    # Over the whole answer section, CNAMEs included: the chain is only as fresh as its
    # shortest-lived link.
    return min(r.ttl for r in answer.records)


def classify_mx_answer(result: DnsResult) -> MxAnswer:
    """Classify an MX query result (RFC 5321 §5.1, RFC 7505).

    CNAME records that precede the MX records in the answer are ignored (filtered on
    type). A null MX is an MX set whose only exchange is the root ("" from c-ares, "."
    elsewhere); null-exchange records mixed with real ones are dropped, the rest is used.
    """
    if isinstance(result, DnsFailure):
        if result.kind is DnsFailureKind.NXDOMAIN:
            return MxAnswer(MxAnswerKind.NO_SUCH_DOMAIN, detail=result.detail)
        if result.kind is DnsFailureKind.NODATA:
            return MxAnswer(MxAnswerKind.NO_MX, detail=result.detail)
        return MxAnswer(MxAnswerKind.TEMPORARY, detail=result.detail)
    mx = [(r.preference, _norm(r.data)) for r in result.records if r.rtype == "MX"]
    if not mx:
        return MxAnswer(MxAnswerKind.NO_MX, detail="no MX records in answer")
    named = [(p, host) for p, host in mx if host]
    if not named:
        return MxAnswer(MxAnswerKind.NULL_MX, detail="null MX (RFC 7505)")
    usable, unusable = [], []
    for p, host in named:
        why = mx_target_error(host)
        if why is None:
            usable.append((p, host))
        else:
            unusable.append(f"{host} ({why})")
    if not usable:
        detail = "no MX record names a host: " + ", ".join(unusable[:5])
        return MxAnswer(MxAnswerKind.UNUSABLE, ttl=_min_ttl(result), detail=detail)
    return MxAnswer(MxAnswerKind.EXCHANGES, exchanges=tuple(usable), ttl=_min_ttl(result))


def mx_target_error(name: str) -> str | None:
    """Why the MX target `name` is not a host name we may connect to, or None.

    RFC 5321 §5.1 and RFC 2181 §10.3: an MX record names a host, whose addresses come
    from its own A/AAAA records.  An IP literal as the target ("MX 10 192.0.2.1") only
    resolves by accident of some resolvers; `localhost` is every host's own loopback.
    Underscores are tolerated in labels (they occur in the wild and harm nothing).
    """
    if not name:
        return "empty name"
    bare = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    try:
        ipaddress.ip_address(bare)
        return "an IP address, not a host name"
    except ValueError:
        pass
    lower = name.lower()
    if lower == "localhost" or lower.endswith(".localhost"):
        return "localhost"
    if len(name) > 253 or any(_LABEL.fullmatch(label) is None for label in name.split(".")):
        return "not a host name"
    return None


def classify_address_answer(result: DnsResult, rtype: str) -> AddressAnswer:
    """Classify an A or AAAA query result; records of other types (CNAMEs) are skipped."""
    if isinstance(result, DnsFailure):
        if result.kind is DnsFailureKind.TEMPORARY:
            return AddressAnswer(AddressStatus.TEMPORARY, detail=result.detail)
        return AddressAnswer(AddressStatus.ABSENT, detail=result.detail)
    addrs = tuple(r.data for r in result.records if r.rtype == rtype)
    if not addrs:
        return AddressAnswer(AddressStatus.ABSENT, detail=f"no {rtype} records in answer")
    return AddressAnswer(AddressStatus.FOUND, addresses=addrs, ttl=_min_ttl(result))


def order_mx(exchanges: Iterable[tuple[int, str]], rng: random.Random) -> list[tuple[int, str]]:
    """Sort by preference, lowest first, in random order among equal preferences.

    RFC 5321 §5.1: equal-preference hosts SHOULD be tried in random order to spread load.
    A host listed twice keeps only its lowest preference.
    """
    # One rng draw per record as the tie-breaker: a uniform shuffle within each group.
    ranked = sorted(exchanges, key=lambda px: (px[0], rng.random()))
    seen: set[str] = set()
    out: list[tuple[int, str]] = []
    for pref, host in ranked:
        if host not in seen:
            seen.add(host)
            out.append((pref, host))
    return out


def assemble_route(
    domain: str,
    hosts: Sequence[tuple[int, str]],
    lookups: Mapping[str, tuple[AddressAnswer, AddressAnswer]],
    *,
    implicit: bool,
) -> Route | RouteFailure:
    """Join ordered hosts with their (A, AAAA) answers into a Route.

    Hosts without addresses are skipped. With no host left the result is TEMPORARY when any
    lookup failed temporarily (asking again may help), else NO_ROUTE.
    """
    usable: list[MxHost] = []
    trouble: list[str] = []
    for pref, host in hosts:
        a, aaaa = lookups[host]
        addrs = a.addresses + aaaa.addresses
        if addrs:
            usable.append(MxHost(host, pref, addrs))
        for rtype, ans in (("A", a), ("AAAA", aaaa)):
            if ans.status is AddressStatus.TEMPORARY:
                trouble.append(f"{host} {rtype}: {ans.detail}")
    if usable:
        return Route(domain, tuple(usable), implicit)
    if trouble:
        return RouteFailure(
            domain, RouteFailureKind.TEMPORARY, "address lookup failed: " + "; ".join(trouble)
        )
    if implicit:
        detail = f"{domain} has no MX and no A/AAAA records"
    else:
        detail = f"no MX host of {domain} has an address: " + ", ".join(h for _, h in hosts)
    return RouteFailure(domain, RouteFailureKind.NO_ROUTE, detail)


def cache_lifetime(
    answer: MxAnswer | AddressAnswer,
    *,
    negative_ttl: float,
    tempfail_ttl: float,
    min_ttl: float,
    max_ttl: float,
) -> float:
    """Seconds an answer may be served from the cache."""
    if isinstance(answer, MxAnswer):
        temporary = answer.kind is MxAnswerKind.TEMPORARY
    else:
        temporary = answer.status is AddressStatus.TEMPORARY
    if temporary:
        return tempfail_ttl
    if answer.ttl is None:  # NXDOMAIN, NODATA, null MX
        return negative_ttl
    return min(max(float(answer.ttl), min_ttl), max_ttl)


# -- the resolver --------------------------------------------------------------------------


class MxResolver:
    """Cached, single-flight MX resolution over a `DnsClient`. One per worker process.

    Counters (read them for metrics):
        hits: resolve() calls answered entirely from the cache.
        misses: resolve() calls that waited for at least one DNS query (own or shared).
        failures: resolve() calls that returned a TEMPORARY RouteFailure.
    """

    def __init__(
        self,
        dns: DnsClient,
        *,
        clock: Callable[[], float],
        rng: random.Random,
        negative_ttl: float = 300.0,
        tempfail_ttl: float = 5.0,
        min_ttl: float = 1.0,
        max_ttl: float = 86400.0,
        max_entries: int = 65536,
    ) -> None:
        """Args:
        dns: the query port (AiodnsClient in production, a fake in tests).
        clock: monotonic seconds (engine.clock.Clock.monotonic).
        rng: draws the order among equal-preference MX hosts.
        negative_ttl: lifetime of NXDOMAIN, NODATA and null-MX answers (KumoMTA: 300 s).
        tempfail_ttl: lifetime of temporary failures. Short: long enough that a burst for
            a broken domain sends one query, short enough that a fixed domain is not kept
            waiting (retries come minutes apart anyway).
        min_ttl, max_ttl: clamp for record TTLs (TTL 0 would defeat single-flight bursts).
        max_entries: LRU bound on cached answers, counting each (name, type) once; a
            domain typically costs 1 MX + 2 per MX host.
        """
        if not 0 < min_ttl <= max_ttl or negative_ttl < 0 or tempfail_ttl < 0:
            raise ValueError("need 0 < min_ttl <= max_ttl and non-negative negative/tempfail TTLs")
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self._dns = dns
        self._clock = clock
        self._rng = rng
        self._lifetime = functools.partial(
            cache_lifetime,
            negative_ttl=negative_ttl,
            tempfail_ttl=tempfail_ttl,
            min_ttl=min_ttl,
            max_ttl=max_ttl,
        )
        self._max_entries = max_entries
        # (rtype, name) -> (expires_at, answer); oldest use first.
        self._cache: OrderedDict[tuple[str, str], tuple[float, _Answer]] = OrderedDict()
        # (rtype, name) -> the one task fetching it; the dict holds the strong reference.
        self._inflight: dict[tuple[str, str], asyncio.Task[_Answer]] = {}
        self.hits = 0
        self.misses = 0
        self.failures = 0

    def __repr__(self) -> str:
        return (
            f"<MxResolver [Cache: {len(self._cache)} entries, {len(self._inflight)} in flight"
            f" | {self.hits} hits, {self.misses} misses, {self.failures} failures]>"
        )

    @property
    def entries(self) -> int:
        """Answers currently cached (expired ones count until touched or evicted)."""
        return len(self._cache)

    async def resolve(self, domain: str) -> Route | RouteFailure:
        """Resolve `domain` (an A-label; case and a trailing dot are ignored).

        Never raises for DNS trouble: that is a RouteFailure. Cancelling the caller does
        not cancel lookups that other callers share.
        """
        domain = _norm(domain)
        if not domain:
            raise ValueError("empty domain")
        waited = False

        mx, w = await self._lookup(domain, "MX")
        waited |= w
        assert isinstance(mx, MxAnswer)
        if mx.kind is MxAnswerKind.EXCHANGES:
            hosts, implicit = order_mx(mx.exchanges, self._rng)[:MAX_MX_HOSTS], False
        elif mx.kind is MxAnswerKind.NO_MX:
            hosts, implicit = [(0, domain)], True
        else:
            detail = f"MX {domain}: {mx.detail}"
            return self._count(RouteFailure(domain, _MX_FAILURES[mx.kind], detail), waited)

        lookups, w = await self._lookup_hosts([h for _, h in hosts])
        waited |= w
        return self._count(assemble_route(domain, hosts, lookups, implicit=implicit), waited)

    async def resolve_host(self, domain: str, host: str) -> Route | RouteFailure:
        """A route for `domain` through the one named `host` (a configured relay): its
        A and AAAA records, cached like an MX host's; no MX lookup."""
        host = _norm(host)
        lookups, waited = await self._lookup_hosts([host])
        return self._count(assemble_route(domain, [(0, host)], lookups, implicit=False), waited)

    async def close(self) -> None:
        """Cancel lookups in flight (shutdown). The DnsClient is the caller's to close."""
        tasks = list(self._inflight.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _count(self, route: Route | RouteFailure, waited: bool) -> Route | RouteFailure:
        if waited:
            self.misses += 1
        else:
            self.hits += 1
        if isinstance(route, RouteFailure) and route.kind is RouteFailureKind.TEMPORARY:
            self.failures += 1
        return route

    async def _lookup_hosts(
        self, hosts: list[str]
    ) -> tuple[dict[str, tuple[AddressAnswer, AddressAnswer]], bool]:
        """A and AAAA for every host, concurrently; the cached ones without any task."""
        keys = [(rtype, h) for h in hosts for rtype in ("A", "AAAA")]
        found: dict[tuple[str, str], _Answer] = {}
        missing: list[tuple[str, str]] = []
        for key in keys:
            hit = self._cache_get(key)
            if hit is None:
                missing.append(key)
            else:
                found[key] = hit
        if missing:
            results = await asyncio.gather(*(self._lookup(name, rt) for rt, name in missing))
            found.update((key, ans) for key, (ans, _) in zip(missing, results, strict=True))
        out: dict[str, tuple[AddressAnswer, AddressAnswer]] = {}
        for h in hosts:
            a, aaaa = found[("A", h)], found[("AAAA", h)]
            assert isinstance(a, AddressAnswer) and isinstance(aaaa, AddressAnswer)
            out[h] = (a, aaaa)
        return out, bool(missing)

    async def _lookup(self, name: str, rtype: str) -> tuple[_Answer, bool]:
        """One classified answer from the cache or DNS; True when we had to wait for DNS."""
        key = (rtype, name)
        hit = self._cache_get(key)
        if hit is not None:
            return hit, False
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._fetch(key))
            self._inflight[key] = task
            task.add_done_callback(functools.partial(self._fetched, key))
        # shield(): a cancelled caller must not cancel the query the other callers share
        # (aiohttp _resolve_host does the same).
        return await asyncio.shield(task), True

    async def _fetch(self, key: tuple[str, str]) -> _Answer:
        rtype, name = key
        result = await self._dns.query(name, rtype)
        answer: _Answer
        if rtype == "MX":
            answer = classify_mx_answer(result)
        else:
            answer = classify_address_answer(result, rtype)
        # Stored here, not by the callers, so the answer is cached even when every caller
        # was cancelled meanwhile.
        self._cache_put(key, answer, self._clock() + self._lifetime(answer))
        return answer

    def _fetched(self, key: tuple[str, str], task: asyncio.Task[_Answer]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            # Marks an exception (a DnsClient bug) as retrieved even when every waiter was
            # cancelled, so asyncio does not log "exception was never retrieved".
            task.exception()

    def _cache_get(self, key: tuple[str, str]) -> _Answer | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        expires, answer = entry
        if self._clock() >= expires:
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return answer

    def _cache_put(self, key: tuple[str, str], answer: _Answer, expires: float) -> None:
        self._cache[key] = (expires, answer)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)


_MX_FAILURES: dict[MxAnswerKind, RouteFailureKind] = {
    MxAnswerKind.NULL_MX: RouteFailureKind.NULL_MX,
    MxAnswerKind.UNUSABLE: RouteFailureKind.NO_ROUTE,
    MxAnswerKind.NO_SUCH_DOMAIN: RouteFailureKind.NO_SUCH_DOMAIN,
    MxAnswerKind.TEMPORARY: RouteFailureKind.TEMPORARY,
}
