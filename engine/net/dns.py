"""DNS queries as values: the `DnsClient` port and its aiodns/c-ares implementation.

Responsible for: sending one query (name, type) and reporting either the answer section
with its TTLs (`DnsAnswer`) or a typed failure (`DnsFailure`: NXDOMAIN, NODATA or TEMPORARY),
within a hard deadline; parsing and validating nameserver strings; owning the per-process
`aiodns.DNSResolver`.
Not responsible for: caching (engine.net.mx keeps the TTL cache; c-ares keeps its own query
cache, which cannot be disabled through pycares 5.2.1 — dependency-facts §2 — and which
this module bounds by recycling the channel, see RECYCLE_AFTER), MX
ordering or null-MX rules (engine.net.mx), IDNA (the caller passes A-labels), retries beyond
c-ares's own `tries`.

Failure contract: `query()` never raises for DNS trouble — it *returns* a `DnsFailure`, so
callers cannot forget the failure path (mypy sees the union). It raises only for our bugs:
an unknown record type (ValueError), or use after close / from another event loop or process
(RuntimeError).

Invariants:
  * The resolver is created lazily on the first query, inside the running loop. aiodns binds
    the loop at construction and c-ares runs an event thread, so a resolver cannot cross a
    fork or a loop ("The future belongs to a different loop", dependency-facts §2). One client
    per worker process, created after the process starts.
  * Every query is bounded by `deadline` seconds of wall time via `asyncio.timeout()`:
    c-ares backs off randomly between tries (timeout=0.5, tries=3 measured 2.66-2.94 s), so
    `timeout * tries` is not the total.

See also: engine/net/mx.py and engine/net/sts.py (the callers), tests/support/dns_server.py
(test server).
"""

from __future__ import annotations

import asyncio
import enum
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiodns
import aiodns.error
import pycares

from engine.config import parse_address

__all__ = [
    "AiodnsClient",
    "DnsAnswer",
    "DnsClient",
    "DnsFailure",
    "DnsFailureKind",
    "DnsRecord",
    "DnsResult",
]

# Record types we can ask for; aiodns.query_type_map is the authority on what c-ares accepts.
_RTYPES: frozenset[str] = frozenset({"A", "AAAA", "MX", "CNAME", "TXT", "NS", "SOA", "PTR", "SRV"})
_TYPE_NAMES: dict[int, str] = {
    pycares.QUERY_TYPE_A: "A",
    pycares.QUERY_TYPE_AAAA: "AAAA",
    pycares.QUERY_TYPE_MX: "MX",
    pycares.QUERY_TYPE_CNAME: "CNAME",
    pycares.QUERY_TYPE_TXT: "TXT",
    pycares.QUERY_TYPE_NS: "NS",
    pycares.QUERY_TYPE_SOA: "SOA",
    pycares.QUERY_TYPE_PTR: "PTR",
    pycares.QUERY_TYPE_SRV: "SRV",
}


class DnsFailureKind(enum.Enum):
    """Why a query produced no records. Only the first two are authoritative answers."""

    NXDOMAIN = "nxdomain"  # the name does not exist (ARES_ENOTFOUND 4)
    NODATA = "nodata"  # the name exists, no records of this type (ARES_ENODATA 1)
    TEMPORARY = "temporary"  # SERVFAIL, REFUSED, timeout, bad response, ...: ask again later


@dataclass(frozen=True, slots=True)
class DnsRecord:
    """One resource record of the answer section.

    `data` is the address for A/AAAA, the exchange for MX ("" for the null MX "." — c-ares
    strips the root dot), the target for CNAME, the record's strings joined for TXT, and
    `str()` of the c-ares value otherwise.
    """

    name: str  # owner name, lower-case, without trailing dot
    rtype: str  # "A", "AAAA", "MX", "CNAME", ...
    ttl: int  # seconds left; c-ares's cache hands back already-decremented TTLs
    data: str
    preference: int = 0  # MX only


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """A successful query: the answer section in server order.

    `records` may hold records of other types than asked (a CNAME chain comes first), so
    callers filter on `rtype`. It always holds at least one record of the asked type: an
    answer without one is reported as NODATA.
    """

    name: str
    rtype: str
    records: tuple[DnsRecord, ...]


@dataclass(frozen=True, slots=True)
class DnsFailure:
    name: str
    rtype: str
    kind: DnsFailureKind
    detail: str  # human text for logs and DSNs, e.g. "SERVFAIL (ARES_ESERVFAIL 3)"


DnsResult = DnsAnswer | DnsFailure


class DnsClient(Protocol):
    """The DNS port engine.net.mx depends on; tests pass fakes (httpcore's network backend)."""

    async def query(self, name: str, rtype: str) -> DnsResult:
        """Ask for `rtype` records of `name`. Returns the answer or a typed failure."""
        ...


def _c_ares_server(ip: str, port: int) -> str:
    # c-ares 1.34 takes "ip:port" / "[v6]:port" for both UDP and TCP (dependency-facts §2).
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _failure_for_errno(name: str, rtype: str, code: int, text: str) -> DnsFailure:
    if code == aiodns.error.ARES_ENOTFOUND:
        kind = DnsFailureKind.NXDOMAIN
    elif code == aiodns.error.ARES_ENODATA:
        kind = DnsFailureKind.NODATA
    else:
        # SERVFAIL 3, REFUSED 6, ETIMEOUT 12, EBADRESP 10, ECONNREFUSED 11, ... Also
        # EBADNAME: names are validated by the caller, and deferring is the safe side.
        kind = DnsFailureKind.TEMPORARY
    return DnsFailure(name, rtype, kind, f"{text} (c-ares {code})")


def _convert(name: str, rtype: str, result: pycares.DNSResult) -> DnsResult:
    """Turn a pycares 5 `DNSResult` into our value; no records of `rtype` means NODATA."""
    records = tuple(_record(r) for r in result.answer)
    if not any(r.rtype == rtype for r in records):
        # c-ares can report success with only a CNAME when the target has no such records.
        return DnsFailure(name, rtype, DnsFailureKind.NODATA, f"no {rtype} records in answer")
    return DnsAnswer(name, rtype, records)


def _record(rec: Any) -> DnsRecord:
    rtype = _TYPE_NAMES.get(rec.type, f"TYPE{rec.type}")
    owner = str(rec.name).rstrip(".").lower()
    data = rec.data
    if rtype in ("A", "AAAA"):
        return DnsRecord(owner, rtype, rec.ttl, data.addr)
    if rtype == "MX":
        exchange = str(data.exchange).rstrip(".").lower()
        return DnsRecord(owner, rtype, rec.ttl, exchange, int(data.priority))
    if rtype == "CNAME":
        return DnsRecord(owner, rtype, rec.ttl, str(data.cname).rstrip(".").lower())
    if rtype == "TXT":
        # pycares 5 joins a record's character-strings into `data` (bytes), as RFC 8461
        # §3.1 and RFC 6376 §3.6.2.2 want them read; non-UTF-8 bytes cannot matter there.
        return DnsRecord(owner, rtype, rec.ttl, bytes(data.data).decode("utf-8", "replace"))
    return DnsRecord(owner, rtype, rec.ttl, str(data))


# c-ares 1.34 caches every answer for its TTL (up to its qcache_max_ttl, 3600 s), and
# pycares 5.2.1 cannot turn that off (dependency-facts §2).  A worker sending to 100 000
# new domains kept them all: +110 MB of RSS per 100 000 domains at TTL 300 s
# (bench/soak_domains.py, TTL 300 against TTL 1).  engine.net.mx caches what matters, with
# a count bound; this one is bounded by a fresh channel every RECYCLE_AFTER queries (about
# 8 MB of cached answers), the old channel closing once its last query is answered.
RECYCLE_AFTER = 20_000


class AiodnsClient:
    """`DnsClient` over `aiodns.DNSResolver.query_dns()` (c-ares in its own event thread)."""

    def __init__(
        self,
        nameservers: Sequence[str] | None = None,
        timeout: float = 2.0,
        tries: int = 2,
        *,
        deadline: float | None = None,
        recycle_after: int = RECYCLE_AFTER,
    ) -> None:
        """Args:
        nameservers: "ip" or "ip:port" entries (a bare ip means port 53); None uses the
            system resolver (/etc/resolv.conf). An empty list is a configuration error.
        timeout: c-ares's first per-try timeout in seconds (it grows on later tries).
        tries: c-ares attempts per server.
        deadline: hard bound per query in seconds. Default `timeout * (2**tries - 1)`:
            c-ares roughly doubles the timeout per try (timeout 0.5 s with 3 tries measured
            2.66-2.94 s, under the 3.5 s this gives), so by default c-ares gives up first
            and the deadline only catches the outliers.
        recycle_after: queries per c-ares channel (see RECYCLE_AFTER).

        Raises:
            ValueError: a bad nameserver entry, an empty list, or a non-positive number.
        """
        if timeout <= 0 or tries < 1:
            raise ValueError("timeout must be > 0 and tries >= 1")
        if nameservers is not None and not nameservers:
            raise ValueError("nameservers: give at least one, or None for the system resolver")
        self._servers: list[str] | None = (
            None
            if nameservers is None
            else [_c_ares_server(*parse_address(n, default_port=53)) for n in nameservers]
        )
        self._timeout = timeout
        self._tries = tries
        self.deadline = deadline if deadline is not None else timeout * (2**tries - 1)
        if self.deadline <= 0:
            raise ValueError("deadline must be > 0")
        self._resolver: aiodns.DNSResolver | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._recycle_after = recycle_after
        self._queries = 0  # sent on the current channel
        self._pending: dict[aiodns.DNSResolver, int] = {}  # queries waiting, per channel
        self._retired: list[aiodns.DNSResolver] = []  # recycled, closing when idle
        self._pid = os.getpid()
        self._closed = False

    def __repr__(self) -> str:
        servers = "system" if self._servers is None else ",".join(self._servers)
        state = "closed" if self._closed else ("open" if self._resolver else "idle")
        return f"<AiodnsClient [{state} | {servers} | deadline {self.deadline:g}s]>"

    def _get_resolver(self) -> aiodns.DNSResolver:
        if self._closed:
            raise RuntimeError("AiodnsClient is closed")
        if os.getpid() != self._pid:
            raise RuntimeError("AiodnsClient crossed a fork; create one per worker process")
        loop = asyncio.get_running_loop()
        if self._resolver is not None and loop is not self._loop:
            raise RuntimeError("AiodnsClient is bound to another event loop")
        if self._resolver is not None and self._queries >= self._recycle_after:
            # The old channel (and its query cache) goes once its last query is answered.
            self._retired.append(self._resolver)
            self._resolver = None
        if self._resolver is None:
            self._resolver = aiodns.DNSResolver(
                nameservers=self._servers, loop=loop, timeout=self._timeout, tries=self._tries
            )
            self._loop = loop
            self._queries = 0
        self._queries += 1
        return self._resolver

    async def _close_retired(self) -> None:
        """Close the retired channels no query waits on any more."""
        idle = [r for r in self._retired if not self._pending.get(r)]
        for resolver in idle:
            self._retired.remove(resolver)
            await resolver.close()

    async def query(self, name: str, rtype: str) -> DnsResult:
        """Ask for `rtype` records of `name` (a trailing dot is ignored).

        Returns:
            `DnsAnswer` with at least one `rtype` record, or `DnsFailure`.
        Raises:
            ValueError: `rtype` is not one we know.
            RuntimeError: closed, or used from another loop or process.
        """
        if rtype not in _RTYPES:
            raise ValueError(f"unsupported record type {rtype!r}")
        name = name.rstrip(".").lower()
        resolver = self._get_resolver()
        self._pending[resolver] = self._pending.get(resolver, 0) + 1
        try:
            async with asyncio.timeout(self.deadline):
                result = await resolver.query_dns(name, rtype)
        except aiodns.error.DNSError as e:
            code = int(e.args[0]) if e.args else -1
            text = str(e.args[1]) if len(e.args) > 1 else "DNS error"
            return _failure_for_errno(name, rtype, code, text)
        except TimeoutError:
            # c-ares keeps the query running; its late answer lands on a cancelled future and
            # is dropped (aiodns checks fut.done()).
            return DnsFailure(
                name, rtype, DnsFailureKind.TEMPORARY, f"no answer within {self.deadline:g}s"
            )
        finally:
            left = self._pending[resolver] - 1
            if left:
                self._pending[resolver] = left
            else:
                del self._pending[resolver]
            if self._retired:
                await self._close_retired()
        return _convert(name, rtype, result)

    async def close(self) -> None:
        """Cancel outstanding queries and release c-ares. Idempotent."""
        self._closed = True
        resolvers, self._retired = self._retired, []
        if self._resolver is not None:
            resolvers.append(self._resolver)
            self._resolver = None
        for resolver in resolvers:
            await resolver.close()
