"""The supervisor's arbitration of what every worker shares: slots and rates per site,
and the warm-up quota of egress sources.

Responsible for: answering the workers' requests for connection slots (leases per site
and per provider: engine.sched.leases), for send instants (GCRA per site and per
provider: engine.shaping.rates) and for messages of a warming-up source's daily quota
(engine.shaping.quota: ["quota", req, source, day, limit, want] -> ["quota_grant", req,
granted, pending]; ["quota_back", source, day, granted, unused] when the connection
ends), telling the holders of a contended key to close their idle connections, and
freeing what a dead worker held.
Not responsible for: transport (the supervisor's channels: `send(k, *msg)`), or what the
limits are (the workers send the limits of the destination they connect to).

Both tables sit behind interfaces a Redis version can implement (leases as sorted sets
with expiring members, GCRA as a Lua script over microsecond TATs), so workers and their
messages stay the same when limits are shared by many nodes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from engine.runtime.ipc import Message
from engine.sched.leases import LeaseTable
from engine.shaping.gcra import Rate
from engine.shaping.quota import QuotaLedger, QuotaTable
from engine.shaping.rates import RateTable

__all__ = ["Arbiter"]

EXPIRE_EVERY = 1024  # rate requests between sweeps of keys idle for a full period


class Arbiter:
    KINDS = frozenset(("acquire", "release", "cancel", "rate", "rate_back", "quota", "quota_back"))

    def __init__(
        self,
        send: Callable[..., None],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`send(k, *msg)` writes to worker k."""
        self.leases = LeaseTable()
        self.rates = RateTable()
        # In memory until the supervisor opens <spool>/egress.db (engine.runtime.egressdb).
        self.quota: QuotaLedger = QuotaTable()
        self._send = send
        self._now = monotonic
        self._requests = 0
        self._peak: dict[str, int] = {}  # key -> most slots held since `in_use` asked

    def on_message(self, k: int, msg: Message) -> None:
        kind = msg[0]
        if kind == "acquire":
            _, req, key, limit = msg
            if self.leases.acquire(key, int(limit), k, req):
                self._send(k, "grant", req)
                held = self.leases.held(key)
                if held > self._peak.get(key, 0):
                    self._peak[key] = held
            else:
                for holder in self.leases.holders(key):
                    if holder != k:
                        self._send(holder, "contend", key)
        elif kind == "release":
            for holder, req in self.leases.release(msg[1], k):
                self._send(holder, "grant", req)
                held = self.leases.held(msg[1])
                if held > self._peak.get(msg[1], 0):
                    self._peak[msg[1]] = held
        elif kind == "cancel":
            self.leases.cancel(msg[2], k, msg[1])
        elif kind == "rate":
            _, req, keys, wire, want = msg
            rates = [Rate(float(c), float(p), int(b)) for c, p, b in wire]
            now = self._now()
            grant = self.rates.grant(list(keys), rates, int(want), now, k)
            self._send(k, "rate_grant", req, list(grant.times), grant.retry_at)
            self._requests += 1
            if self._requests % EXPIRE_EVERY == 0:
                self.rates.expire(now)
        elif kind == "rate_back":
            self.rates.give_back(list(msg[1]), [float(t) for t in msg[2]], self._now(), k)
        elif kind == "quota":
            _, req, source, day, limit, want = msg
            got = self.quota.grant(str(source), int(day), int(limit), int(want), k)
            self._send(k, "quota_grant", req, got.granted, got.pending)
        elif kind == "quota_back":
            _, source, day, granted, unused = msg
            self.quota.give_back(str(source), int(day), int(granted), int(unused), k)

    def in_use(self, key: str) -> int | None:
        """The most slots of `key` held at once since the last call (None: none taken
        meanwhile), for adaptive shaping's "was the limit in use?"."""
        peak = self._peak.pop(key, None)
        held = self.leases.held(key)
        return max(peak, held) if peak is not None else (held or None)

    def worker_gone(self, k: int) -> None:
        for _key, holder, req in self.leases.drop_holder(k):
            self._send(holder, "grant", req)
        self.quota.drop_holder(k)
