"""Warm-up quota shared by every worker: the supervisor's count of each source's messages
per UTC day.

Responsible for: granting a connection up to `want` messages of what is left of a
source's limit for a day, taking back what a connection did not use when it ends,
knowing how much of a source's day is granted but not yet settled (a connection may
still give it back), settling nothing for a worker that died (what it was granted stays
used: it may have been sent), and forgetting past days.
Not responsible for: what a source's limit is on a day (engine.shaping.egress: the
worker sends it with the request), keeping the counts across restarts (the supervisor
wraps this table: engine.runtime.egressdb), or transport.

`QuotaLedger` is the interface: this in-memory table is the single-node version; a Redis
version implements the same calls with one Lua script each over a hash per (source, day)
(`used`, `pending`) expiring after two days, so workers and their messages stay the same.

Exact: a grant never takes `used` beyond the limit, and `used` only falls by what a
connection says it did not send, so no more than the limit leaves a source in a day.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = ["QuotaGrant", "QuotaLedger", "QuotaTable"]


@dataclass(frozen=True, slots=True)
class QuotaGrant:
    granted: int  # messages the connection may send from the source today
    # Messages of the source's day granted to connections that have not ended: with
    # nothing granted, some of these may come back (try again soon), else the day is used.
    pending: int


class QuotaLedger(Protocol):
    def grant(self, source: str, day: int, limit: int, want: int, holder: int) -> QuotaGrant: ...

    def give_back(self, source: str, day: int, granted: int, unused: int, holder: int) -> None: ...

    def used(self, source: str, day: int) -> int: ...

    def drop_holder(self, holder: int) -> None: ...


Key = tuple[str, int]  # (source, UTC day)


class QuotaTable:
    def __init__(self, used: Mapping[Key, int] | None = None) -> None:
        """`used`: counts kept from before (a restart the same day)."""
        self._used: dict[Key, int] = dict(used or {})
        self._pending: defaultdict[Key, dict[int, int]] = defaultdict(dict)  # key -> holder -> n

    def used(self, source: str, day: int) -> int:
        return self._used.get((source, day), 0)

    def pending(self, source: str, day: int) -> int:
        return sum(self._pending.get((source, day), {}).values())

    def grant(self, source: str, day: int, limit: int, want: int, holder: int) -> QuotaGrant:
        key = (source, day)
        used = self._used.get(key, 0)
        n = max(0, min(want, limit - used))
        if n:
            self._used[key] = used + n
            held = self._pending[key]
            held[holder] = held.get(holder, 0) + n
        return QuotaGrant(n, self.pending(source, day))

    def give_back(self, source: str, day: int, granted: int, unused: int, holder: int) -> None:
        """A connection of `holder` that was granted `granted` ended with `unused` of them
        not sent: those return to the day's quota, the rest are settled as used."""
        key = (source, day)
        held = self._pending.get(key)
        if held is None or holder not in held:
            return  # its worker was dropped meanwhile, or a grant of a forgotten day
        granted = min(granted, held[holder])
        unused = max(0, min(unused, granted))
        held[holder] -= granted
        if not held[holder]:
            del held[holder]
            if not held:
                del self._pending[key]
        self._used[key] = max(0, self._used.get(key, 0) - unused)

    def drop_holder(self, holder: int) -> None:
        """A worker died: what it was granted stays used (it may have sent it)."""
        for key in list(self._pending):
            held = self._pending[key]
            held.pop(holder, None)
            if not held:
                del self._pending[key]

    def forget_before(self, day: int) -> list[Key]:
        """Drop every count of a day before `day`; returns their keys."""
        old = [k for k in self._used if k[1] < day]
        for k in old:
            del self._used[k]
            self._pending.pop(k, None)
        return old

    def items(self) -> Iterable[tuple[Key, int]]:
        return list(self._used.items())
