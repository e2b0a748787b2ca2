"""Volley's durable disk queue: the storage layer.

Responsible for: the spool tree (incoming drops, per-shard queues, rejected and corrupt
areas), the entry file format, atomic and durable writes, and name/mtime-only scans. This
package re-exports the public API; see each module's docstring for its contract.
Not responsible for: what an entry's meta means, scheduling, or delivery. Uses only the
standard library and msgpack, and never imports `engine` (a test enforces it).
"""

from __future__ import annotations

from spool.compact import CompactIndex
from spool.errors import CorruptEntry, SpoolError, SpoolFull
from spool.ids import entry_id, id_time, is_entry_id, random_salt
from spool.layout import Layout, check_domain, domain_of_entry, entry_name
from spool.record import decode, decode_meta, encode
from spool.scan import read_shard
from spool.shard import EntryRef, NewEntry, ShardQueue, StagedAdd
from spool.store import Spool
from spool.summary import DomainSummary, queue_summary

__all__ = [
    "CompactIndex",
    "CorruptEntry",
    "DomainSummary",
    "EntryRef",
    "Layout",
    "NewEntry",
    "ShardQueue",
    "Spool",
    "SpoolError",
    "SpoolFull",
    "StagedAdd",
    "check_domain",
    "decode",
    "decode_meta",
    "domain_of_entry",
    "encode",
    "entry_id",
    "entry_name",
    "id_time",
    "is_entry_id",
    "queue_summary",
    "random_salt",
    "read_shard",
]
