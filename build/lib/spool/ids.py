"""Spool entry ids: time-ordered, fixed width, and deterministic from their inputs.

Responsible for: turning (a time, a salt) into the 29-character id that starts every entry
name, and reading the time back out of an id.
Not responsible for: choosing the time or the salt (the engine does; see below), or for the
`@domain` half of entry names (`spool.layout`).

Format: 13 lower-case hex digits of microseconds since the epoch, then 16 hex digits (64 bits) of
blake2b(salt). 13 hex digits hold 2**52 µs, i.e. until the year 2112. Fixed width plus the
leading time make `sorted(names)` FIFO order (Mailman names queue files `time+sha1` for the
same reason), so a directory listing needs no stat to be ordered.

Deterministic from (time, salt), so that a caller that must find an entry again after a
crash can: the engine gives every drop a random salt and records the ids it derived in
queue/<k>.taking before the entries are written (engine.runtime.intake); a worker that
restarts after a crash between "entries durable" and "drop removed" gives the very same
drop the noted ids, and `ShardQueue.add` finds them already queued. (Ids were once derived
from the drop's name, inode, size and mtime alone, which lost a second, different drop
with the same metadata on a reused inode.)

Collisions: two entries for the same domain with the same id would be treated as one.
That needs the same microsecond *and* a 64-bit hash collision of random salts
(p = 5.4e-20 per pair).
"""

from __future__ import annotations

import hashlib
import os
import re

__all__ = ["ID_LENGTH", "entry_id", "id_time", "is_entry_id", "random_salt"]

_TIME_DIGITS = 13
_HASH_DIGITS = 16
ID_LENGTH = _TIME_DIGITS + _HASH_DIGITS
_MAX_MICROS = 16**_TIME_DIGITS  # exclusive bound: year 2112

_ID_RE = re.compile(f"[0-9a-f]{{{ID_LENGTH}}}")


def entry_id(time_ns: int, salt: bytes) -> str:
    """Return the id for an entry created at `time_ns` (epoch nanoseconds) from `salt`.

    The same arguments always give the same id. Raises ValueError if the time does not fit
    the 13-digit field (before 1970 or after 2112).
    """
    micros = time_ns // 1000
    if not 0 <= micros < _MAX_MICROS:
        raise ValueError(f"time_ns out of range for a spool id: {time_ns}")
    digest = hashlib.blake2b(salt, digest_size=_HASH_DIGITS // 2).hexdigest()
    return f"{micros:0{_TIME_DIGITS}x}{digest}"


def is_entry_id(text: str) -> bool:
    """True if `text` has the exact shape of an id (29 lower-case hex digits)."""
    return _ID_RE.fullmatch(text) is not None


def id_time(entry_id: str) -> float:
    """Epoch seconds encoded in an id's time prefix (microsecond precision).

    Raises ValueError if `entry_id` is not an id.
    """
    if not is_entry_id(entry_id):
        raise ValueError(f"not a spool id: {entry_id!r}")
    return int(entry_id[:_TIME_DIGITS], 16) / 1_000_000


def random_salt() -> bytes:
    """16 random bytes: the salt of a new entry's id (see the module docstring)."""
    return os.urandom(16)
