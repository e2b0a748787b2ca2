"""Start-up indexes for unit tests: a spool.compact.CompactIndex built from names, no disk.

Responsible for: entry names of the shape the spool makes (`name(n, domain)`: time-ordered
ids, one microsecond apart per `n`), and an index of given (name, due) pairs with made-up
locations, in name order as spool.scan builds it.
Not responsible for: segments or the journal (tests/unit/spool writes real ones).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

from spool.compact import CompactIndex, split_name
from spool.ids import entry_id

T0_NS = 1_795_704_371 * 10**9  # the ids' base time (epoch ns)


def name(n: int, domain: str = "a.test", *, at: int | None = None) -> str:
    """Entry name number `n`: its id's time is T0 + `at` (default `n`) microseconds."""
    return f"{entry_id(T0_NS + (n if at is None else at) * 1000, b'%d' % n)}@{domain}"


def index_of(entries: Iterable[tuple[str, float]]) -> CompactIndex:
    """An index of (name, due): row i at segment 1, offset 10 * i, length 10."""
    rows = sorted(entries)
    domains: list[str] = []
    t, h, dom = array("Q"), array("Q"), array("I")
    for n, _ in rows:
        parts = split_name(n)
        if parts is None:
            raise ValueError(f"not an entry name: {n!r}")
        if parts[2] not in domains:
            domains.append(parts[2])
        t.append(parts[0])
        h.append(parts[1])
        dom.append(domains.index(parts[2]))
    k = len(rows)
    return CompactIndex(
        domains,
        t,
        h,
        dom,
        array("d", (due for _, due in rows)),
        array("I", [1] * k),
        array("I", range(0, 10 * k, 10)),
        array("I", [10] * k),
    )
