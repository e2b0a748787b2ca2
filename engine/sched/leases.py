"""Per-destination connection leases, arbitrated across worker processes.

Responsible for: the supervisor's table of who holds how many connection slots per
destination domain, a FIFO of waiting requests, and handing slots on when they are
released or their holder dies.
Not responsible for: transport (engine.runtime.ipc) or choosing how many connections a
worker wants (engine.sched.queue.ideal_connections).

Why leases instead of sharding domains over workers: with sharding, one domain holding
35 % of a list would be sent by one core; with leases every worker sends every domain and
`max_connections` still holds exactly, because a worker opens a connection only while it
holds a slot.  A lease costs one round trip over a local socket per *connection* (not per
message), so with 100 messages per connection the arbitration is noise.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

Holder = int  # a worker's shard number


@dataclass(slots=True)
class _Domain:
    held: dict[Holder, int] = field(default_factory=dict)
    waiting: deque[tuple[Holder, int, int]] = field(default_factory=deque)  # (holder, req, limit)
    # The newest request's limit is the key's: a limit lowered by adaptive shaping (or a
    # reload) holds for requests that were already waiting, not only for new ones: those
    # were made under the old limit and would otherwise be granted under it.
    limit: int = 0

    @property
    def total(self) -> int:
        return sum(self.held.values())


class LeaseTable:
    def __init__(self) -> None:
        self._domains: dict[str, _Domain] = {}

    def acquire(self, domain: str, limit: int, holder: Holder, req: int) -> bool:
        """Grant a slot now (True) or queue the request (False)."""
        d = self._domains.setdefault(domain, _Domain())
        d.limit = limit
        if not d.waiting and d.total < limit:
            d.held[holder] = d.held.get(holder, 0) + 1
            return True
        d.waiting.append((holder, req, limit))
        return False

    def release(self, domain: str, holder: Holder) -> list[tuple[Holder, int]]:
        """Return one slot; returns the (holder, request) pairs granted as a result."""
        d = self._domains.get(domain)
        if d is None or d.held.get(holder, 0) <= 0:
            raise KeyError(f"{holder!r} holds no lease for {domain}")
        d.held[holder] -= 1
        if not d.held[holder]:
            del d.held[holder]
        return self._grant(domain, d)

    def cancel(self, domain: str, holder: Holder, req: int) -> bool:
        """Withdraw a waiting request; False when it is not waiting (already granted)."""
        d = self._domains.get(domain)
        if d is None:
            return False
        for i, (h, r, _) in enumerate(d.waiting):
            if h == holder and r == req:
                del d.waiting[i]
                return True
        return False

    def drop_holder(self, holder: Holder) -> list[tuple[str, Holder, int]]:
        """A worker died: free its slots, forget its requests; returns new grants."""
        grants: list[tuple[str, Holder, int]] = []
        for name, d in list(self._domains.items()):
            d.held.pop(holder, None)
            d.waiting = deque(w for w in d.waiting if w[0] != holder)
            grants.extend((name, h, r) for h, r in self._grant(name, d))
        return grants

    def holders(self, domain: str) -> set[Holder]:
        d = self._domains.get(domain)
        return set(d.held) if d else set()

    def held(self, domain: str) -> int:
        d = self._domains.get(domain)
        return d.total if d else 0

    def _grant(self, name: str, d: _Domain) -> list[tuple[Holder, int]]:
        granted: list[tuple[Holder, int]] = []
        while d.waiting and d.total < d.limit:
            holder, req, _ = d.waiting.popleft()
            d.held[holder] = d.held.get(holder, 0) + 1
            granted.append((holder, req))
        if not d.held and not d.waiting:
            del self._domains[name]
        return granted
