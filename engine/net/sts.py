"""MTA-STS discovery (RFC 8461 §3): the policy in force for a destination domain, if any.

Responsible for: the `_mta-sts.<domain>` TXT lookup with a TTL cache (record TTLs
clamped to [1 s, 1 h]; NXDOMAIN/NODATA cached for `dns.negative_ttl`, DNS trouble for
5 s, as engine.net.mx caches), the in-memory policy cache in front of the persistent one
(engine.net.sts_store), fetching a policy when engine.sched.mta_sts says so (one fetch at
a time per domain, shared by every caller), remembering failed fetches so one is not
retried within RETRY_AFTER, and counting fetch failures.
Not responsible for: parsing and every decision (engine.sched.mta_sts), the HTTPS GET
(engine.net.sts_fetch), or what a policy does to routes and connections
(engine.runtime.tlsguard).

Failure contract: `policy()` never raises for DNS, HTTPS or store trouble: without a
usable policy it returns None, and delivery goes on as for a domain without MTA-STS
(§3.3: "senders MUST continue with delivery as though the domain has not implemented
MTA-STS"), unless a valid cached policy applies.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from engine.net.dns import DnsAnswer, DnsClient, DnsFailureKind
from engine.net.sts_fetch import Fetched, FetchFailed, fetch_policy
from engine.net.sts_store import StoredPolicy, StsStore
from engine.sched.mta_sts import (
    CachedPolicy,
    PolicyInvalid,
    Step,
    StsPolicy,
    StsRecord,
    StsResult,
    next_step,
    parse_policy,
    parse_record,
)

__all__ = ["UNKNOWN_MODE", "StsResolver"]

UNKNOWN_MODE = "unknown"  # the mode label of a failure with no policy to name it
_MISSING = object()  # not looked up yet (in a cache whose values may be None)
_V = TypeVar("_V")


class Fetch(Protocol):
    def __call__(
        self,
        domain: str,
        *,
        dns: DnsClient,
        port: int,
        context: ssl.SSLContext,
        usable: Callable[[Sequence[str]], Sequence[str]],
    ) -> Awaitable[Fetched | FetchFailed]: ...


class StsResolver:
    """The MTA-STS policy of a domain, cached; one per worker process."""

    def __init__(
        self,
        dns: DnsClient,
        store: StsStore,
        *,
        clock: Callable[[], float],
        context: Callable[[], ssl.SSLContext],
        usable: Callable[[Sequence[str]], Sequence[str]],
        count: Callable[[str, StsResult], None],
        port: int = 443,
        negative_ttl: float = 300.0,
        tempfail_ttl: float = 5.0,
        min_ttl: float = 1.0,
        max_ttl: float = 3600.0,
        max_entries: int = 65536,
        fetch: Fetch = fetch_policy,
    ) -> None:
        """Args:
        clock: wall-clock seconds (policies outlive the process: engine.clock wall()).
        context: the verifying context for the fetch, asked for per fetch (a reload may
            change smtp.tls_ca_file).
        usable: keeps the addresses Volley may connect to (smtp.ignore_target_hosts).
        count: called with (mode label, result) for fetch failures and invalid policies.
        max_entries: LRU bound of each in-memory cache (TXT answers, policies).
        """
        self._dns = dns
        self._store = store
        self._clock = clock
        self._context = context
        self._usable = usable
        self._count = count
        self._port = port
        self._negative_ttl = negative_ttl
        self._tempfail_ttl = tempfail_ttl
        self._min_ttl = min_ttl
        self._max_ttl = max_ttl
        self._max_entries = max_entries
        self._fetch_fn = fetch
        self._txt: OrderedDict[str, tuple[float, StsRecord | None]] = OrderedDict()
        self._policies: OrderedDict[str, CachedPolicy | None] = OrderedDict()
        self._failed: OrderedDict[str, tuple[str, float]] = OrderedDict()  # domain -> (id, at)
        self._inflight: dict[str, asyncio.Task[StsPolicy | None]] = {}
        self.fetches = 0  # HTTPS fetches started (tests and the curious)

    def __repr__(self) -> str:
        return (
            f"<StsResolver [{len(self._txt)} TXT, {len(self._policies)} policies,"
            f" {len(self._inflight)} in flight | {self.fetches} fetches]>"
        )

    async def policy(self, domain: str) -> StsPolicy | None:
        """The policy in force for `domain` (an A-label, lower case), or None."""
        now = self._clock()
        hit = self._txt.get(domain)
        if hit is not None and now < hit[0]:
            record = hit[1]
            cached = self._cached(domain)
            step = next_step(cached, record, self._failed_at(domain, record), now)
            if step is not Step.FETCH:
                return _chosen(cached, step)
        task = self._inflight.get(domain)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._discover(domain))
            self._inflight[domain] = task
            task.add_done_callback(functools.partial(self._done, domain))
        # shield(): a cancelled caller must not cancel the fetch others wait for.
        return await asyncio.shield(task)

    async def close(self) -> None:
        tasks = list(self._inflight.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._store.close()

    # -- discovery --------------------------------------------------------------------------
    async def _discover(self, domain: str) -> StsPolicy | None:
        record = await self._lookup_txt(domain)
        now = self._clock()
        cached = self._cached(domain)
        step = next_step(cached, record, self._failed_at(domain, record), now)
        if step is Step.FETCH:
            assert record is not None
            fetched = await self._fetch(domain, record, cached)
            if fetched is not None:
                return fetched.policy
            step = next_step(cached, None, None, self._clock())
        return _chosen(cached, step)

    async def _lookup_txt(self, domain: str) -> StsRecord | None:
        result = await self._dns.query(f"_mta-sts.{domain}", "TXT")
        record: StsRecord | None = None
        if isinstance(result, DnsAnswer):
            parsed = parse_record([r.data for r in result.records if r.rtype == "TXT"])
            record = parsed if isinstance(parsed, StsRecord) else None
            ttl = min(r.ttl for r in result.records)
            life = min(max(float(ttl), self._min_ttl), self._max_ttl)
        elif result.kind is DnsFailureKind.TEMPORARY:
            life = self._tempfail_ttl
        else:
            life = self._negative_ttl
        self._put(self._txt, domain, (self._clock() + life, record))
        return record

    async def _fetch(
        self, domain: str, record: StsRecord, cached: CachedPolicy | None
    ) -> CachedPolicy | None:
        self.fetches += 1
        got = await self._fetch_fn(
            domain, dns=self._dns, port=self._port, context=self._context(), usable=self._usable
        )
        now = self._clock()
        mode = cached.policy.mode.value if cached is not None else UNKNOWN_MODE
        if isinstance(got, FetchFailed):
            self._failure(domain, record, now, mode, StsResult.POLICY_FETCH_ERROR)
            return None
        parsed = parse_policy(got.text)
        if isinstance(parsed, PolicyInvalid):
            self._failure(domain, record, now, mode, StsResult.POLICY_INVALID)
            return None
        fresh = CachedPolicy(record.id, parsed, now)
        self._put(self._policies, domain, fresh)
        self._failed.pop(domain, None)
        self._store.put(StoredPolicy(domain, record.id, got.text, now))
        return fresh

    def _failure(
        self, domain: str, record: StsRecord, now: float, mode: str, result: StsResult
    ) -> None:
        self._put(self._failed, domain, (record.id, now))
        self._count(mode, result)

    # -- caches -----------------------------------------------------------------------------
    def _cached(self, domain: str) -> CachedPolicy | None:
        """The domain's policy from memory, else from the store (then kept in memory)."""
        got = self._policies.get(domain, _MISSING)
        if got is not _MISSING:
            self._policies.move_to_end(domain)
            assert got is None or isinstance(got, CachedPolicy)
            return got
        stored = self._store.get(domain)
        cached: CachedPolicy | None = None
        if stored is not None:
            parsed = parse_policy(stored.text)
            if isinstance(parsed, StsPolicy):
                cached = CachedPolicy(stored.policy_id, parsed, stored.fetched_at)
        self._put(self._policies, domain, cached)
        return cached

    def _failed_at(self, domain: str, record: StsRecord | None) -> float | None:
        failed = self._failed.get(domain)
        if failed is None or record is None or failed[0] != record.id:
            return None
        return failed[1]

    def _put(self, cache: OrderedDict[str, _V], key: str, value: _V) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self._max_entries:
            cache.popitem(last=False)

    def _done(self, domain: str, task: asyncio.Task[StsPolicy | None]) -> None:
        if self._inflight.get(domain) is task:
            del self._inflight[domain]
        if not task.cancelled():
            task.exception()  # retrieved even when every waiter was cancelled


def _chosen(cached: CachedPolicy | None, step: Step) -> StsPolicy | None:
    return cached.policy if step is Step.USE_CACHED and cached is not None else None
