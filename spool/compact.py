"""The start-up index: a shard's live entries as rows of packed arrays, no object per entry.

Responsible for: holding what a worker's start-up scan found — for each live entry its id
(time and hash halves), its domain (a number into a list of interned names), its next
attempt, and where its record lies (segment, offset, length) — sorted by name, and
answering for it: the row of a name (bisect), a row's name, ref and location, and which
rows the spool still holds (`live`, cleared by `kill` when the entry is finished, rewritten
or quarantined).
Not responsible for: reading the disk (spool.scan builds it), the entries added after the
scan (spool.shard keeps those in a dict), or the queue's view of the rows
(engine.sched.backlog keeps its own state per row).

Why: with one Python object per entry a worker spent ~390 bytes per queued entry at start
(bench/queue_memory.py, 100 000 entries: the name string 90, the location dict slot and
int 75, an EntryRef 56, the queue's dict slot and float 62, its heap tuple 72 for a
deferred one); 1 M queued took 513 MB for the whole engine. A row here is 41 bytes:
t 8 + h 8 + domain 4 + due 8 + segment 4 + offset 4 + length 4 + live 1. KumoMTA's timeq
keeps only the near future in memory for the same reason; Postfix's qmgr keeps at most
`qmgr_message_active_limit` messages in memory and leaves the rest on disk.

Thread safety: the arrays never change after the build, so the queue reads them from the
event loop while the spool, under its own lock, clears `live` flags from other threads.

Names: `<29 lower-case hex digits>@<domain>` (spool.ids, spool.layout). The first 13
digits are the id's time in µs and the next 16 its hash, so rows sorted by (t, h, domain)
are in name order, and fixed width makes string and number order agree.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left
from collections.abc import Sequence

from spool.layout import EntryRef

__all__ = ["ID_AT", "CompactIndex", "split_name"]

ID_AT = re.compile(r"[0-9a-f]{29}@")  # what a name must start with to have a row
_HASH_BITS = 64
_HASH_MASK = (1 << _HASH_BITS) - 1
_TIME_DIGITS = 13


def split_name(name: str) -> tuple[int, int, str] | None:
    """(id time in µs, id hash, domain) of an entry name; None if `name` has no row form."""
    if ID_AT.match(name) is None or len(name) < 31:
        return None
    x = int(name[:29], 16)
    return x >> _HASH_BITS, x & _HASH_MASK, name[30:]


class CompactIndex:
    """Rows sorted by name (see the module docstring). Built by spool.scan; the arrays are
    read-only from then on, only `live` changes."""

    __slots__ = (
        "_dnum",
        "_last",
        "_top",
        "dom",
        "domains",
        "due",
        "h",
        "length",
        "live",
        "live_count",
        "off",
        "seq",
        "t",
    )

    def __init__(
        self,
        domains: Sequence[str],
        t: array[int],
        h: array[int],
        dom: array[int],
        due: array[float],
        seq: array[int],
        off: array[int],
        length: array[int],
    ) -> None:
        n = len(t)
        if not all(len(a) == n for a in (h, dom, due, seq, off, length)):
            raise ValueError("compact index arrays differ in length")
        self.domains = list(domains)
        self._dnum = {d: i for i, d in enumerate(self.domains)}
        self.t, self.h, self.dom, self.due = t, h, dom, due
        self.seq, self.off, self.length = seq, off, length
        self.live = bytearray(b"\x01") * n
        self.live_count = n
        # Names above the last row's id time cannot have a row: intake's fresh ids, the
        # common case of `row_of`, are turned away by one string comparison.
        self._top = f"{t[-1]:0{_TIME_DIGITS}x}" if n else ""
        # The last name looked up and its row: a delivery looks its entry up to load it,
        # then again to remove it (1.3 µs each); one tuple, so threads never see a mix.
        self._last: tuple[str, int] = ("", -1)

    def __len__(self) -> int:
        return len(self.t)

    def row_of(self, name: str) -> int:
        """The row of `name`, live or not; -1 if it has none. ~2 µs: a bisect over the
        id times, then the rows of the same microsecond."""
        last = self._last
        if name is last[0]:
            return last[1]
        if name[:_TIME_DIGITS] > self._top:
            return -1
        parts = split_name(name)
        if parts is None:
            return -1
        t, h, domain = parts
        dno = self._dnum.get(domain)
        if dno is None:
            return -1
        times = self.t
        i = bisect_left(times, t)
        n = len(times)
        while i < n and times[i] == t:
            if self.h[i] == h and self.dom[i] == dno:
                self._last = (name, i)
                return i
            i += 1
        return -1

    def live_row(self, name: str) -> int:
        """The row of `name` if the spool still holds it there; else -1."""
        row = self.row_of(name)
        return row if row >= 0 and self.live[row] else -1

    def name(self, row: int) -> str:
        return f"{self.t[row]:013x}{self.h[row]:016x}@{self.domains[self.dom[row]]}"

    def domain(self, row: int) -> str:
        return self.domains[self.dom[row]]

    def born(self, row: int) -> float:
        """When the entry was created: its id's time (epoch seconds, as spool.id_time)."""
        return self.t[row] / 1_000_000

    def ref(self, row: int) -> EntryRef:
        """The entry of `row` as the rest of the engine handles it (mtime = next attempt)."""
        return EntryRef(self.name(row), self.domains[self.dom[row]], self.due[row])

    def location(self, row: int) -> tuple[int, int, int]:
        """(segment seq, offset, length) of the row's record."""
        return self.seq[row], self.off[row], self.length[row]

    def kill(self, row: int) -> None:
        """The spool no longer holds this row's version (finished, rewritten elsewhere or
        quarantined). Idempotent."""
        if self.live[row]:
            self.live[row] = 0
            self.live_count -= 1

    def live_rows(self) -> list[int]:
        """Rows still live, in name order."""
        return [i for i, alive in enumerate(self.live) if alive]
