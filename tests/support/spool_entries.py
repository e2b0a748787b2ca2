"""Spool entries for the spool's unit tests: a fixed time and numbered NewEntry values.

Responsible for: building the same entry for the same number in every spool test.
Not responsible for: writing them (the tests call the spool API).
"""

from __future__ import annotations

from typing import Any

from spool.ids import entry_id
from spool.shard import NewEntry

T0 = 1_795_704_371.0  # seconds
META: dict[str, Any] = {"sender": "b@example.org", "rcpts": ["x@example.com"], "attempts": 0}


def new(n: int, domain: str = "example.com", not_before: float = T0, body: bytes = b"") -> NewEntry:
    """Entry number `n`: a time-ordered id from T0, META plus {"n": n}, a small body."""
    eid = entry_id(int(T0 * 1e9) + n * 1000, b"salt%d" % n)
    return NewEntry(eid, domain, dict(META, n=n), body or b"message %d\r\n" % n, not_before)
