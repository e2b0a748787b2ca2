"""Exceptions raised by the spool, typed by who has to act on them.

Responsible for: the small error taxonomy of the storage layer (KumoMTA types spool errors
by whom they point the operator at): `CorruptEntry` points at the data on disk, `SpoolFull`
at the disk itself.
Not responsible for: deciding what to do about them (the engine quarantines a corrupt entry
and backs off intake when the spool is full). Programming errors (a bad domain in an entry
name, a negative shard number) are plain `ValueError`s, not `SpoolError`s.
"""

from __future__ import annotations

__all__ = ["CorruptEntry", "SpoolError", "SpoolFull"]


class SpoolError(Exception):
    """Base class of every error the spool reports about its own state."""


class CorruptEntry(SpoolError):
    """An entry's bytes do not decode: torn write, bit rot, or not a Volley record.

    `reason` is a short human text naming the first problem found, e.g.
    "body frame: CRC mismatch"; it is what goes into `corrupt/<name>.reason`.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SpoolFull(SpoolError):
    """The file system refused to store more (ENOSPC or EDQUOT).

    When `ShardQueue.add` raises it, nothing of the batch was left behind: no temporary
    file and no entry, so the caller can simply retry the same batch later.
    """
