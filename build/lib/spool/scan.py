"""Reading a shard's queue directory: segment indexes + removal journal -> what is live.

Responsible for: one pass over `queue/<k>/` that says which entry versions are live (the
highest-numbered segment holding a name, unless the journal has a line for the name with a
seq at least that segment's), which segments hold nothing live, which are damaged, and
which journal lines still matter. Changes nothing on disk: the owning worker
(spool.shard.ShardQueue) acts on the result, and tools (`volley queue`, tests) read it
while the worker runs.
Not responsible for: writing, locking, or what an entry contains (only indexes are read,
never a record).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from spool import segment
from spool.errors import CorruptEntry

__all__ = [
    "JOURNAL",
    "SEQ_SHIFT",
    "LiveEntry",
    "Scan",
    "ShardState",
    "pack",
    "read_shard",
    "scan_dir",
    "unpack",
]

JOURNAL = "removed"
_OFF_BITS = 40  # offsets and lengths < 1 TiB
SEQ_SHIFT = 2 * _OFF_BITS


@dataclass(frozen=True, slots=True)
class LiveEntry:
    """A live entry as read from disk: where its record is and when it is due."""

    name: str
    not_before: float
    seq: int
    offset: int
    length: int


@dataclass(slots=True)
class ShardState:
    """What read_shard found in one queue directory."""

    live: list[LiveEntry] = field(default_factory=list)  # sorted by name
    segments: dict[int, int] = field(default_factory=dict)  # seq -> live entries (> 0)
    dead: list[int] = field(default_factory=list)  # segments with nothing live
    corrupt: list[tuple[int, str]] = field(default_factory=list)  # (seq, reason)
    removals: list[tuple[int, str]] = field(default_factory=list)  # journal lines still needed
    max_seq: int = 0


def read_shard(directory: Path) -> ShardState:
    """Read a queue directory's segments' indexes and its journal; change nothing.

    Safe while the owning worker runs (a segment unlinked meanwhile is skipped, a torn last
    journal line is ignored): `volley queue` uses it. Reads the indexes only, never a
    record.
    """
    scan = scan_dir(directory)
    live = [LiveEntry(name, scan.due[name], *unpack(packed)) for name, packed in scan.loc.items()]
    live.sort(key=lambda e: e.name)
    return ShardState(live, scan.segments, scan.dead, scan.corrupt, scan.removals, scan.max_seq)


@dataclass(slots=True)
class Scan:
    """read_shard's result in the compact form the index keeps (see ShardQueue._load)."""

    loc: dict[str, int] = field(default_factory=dict)  # name -> packed (seq, offset, length)
    due: dict[str, float] = field(default_factory=dict)  # name -> next attempt
    segments: dict[int, int] = field(default_factory=dict)
    dead: list[int] = field(default_factory=list)
    corrupt: list[tuple[int, str]] = field(default_factory=list)
    removals: list[tuple[int, str]] = field(default_factory=list)
    max_seq: int = 0


def scan_dir(directory: Path) -> Scan:
    """One pass over the segment indexes (in write order) and the journal.

    Memory matters here: a worker with 500 000 entries queued holds this at its start, so
    per entry it keeps one packed int and one float, not an object (measured: per-entry
    LiveEntry objects made recovery cost ~370 bytes an entry, the 1 M scale bench
    ~630 MB).
    """
    scan = Scan()
    try:
        names = [e.name for e in os.scandir(directory) if e.is_file(follow_symlinks=False)]
    except FileNotFoundError:
        return scan
    seqs = sorted(s for s in map(segment.parse_segment_name, names) if s is not None)
    removed = _read_journal(directory / JOURNAL)
    loc, due = scan.loc, scan.due
    killed: list[tuple[int, str]] = []
    for seq in seqs:
        scan.max_seq = max(scan.max_seq, seq)
        try:
            fd = os.open(directory / segment.segment_name(seq), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            items = segment.read_index(fd)
        except CorruptEntry as exc:
            scan.corrupt.append((seq, exc.reason))
            continue
        finally:
            os.close(fd)
        for it in items:
            if removed.get(it.name, -1) >= seq:
                killed.append((seq, it.name))
            else:  # a later segment's version replaces an earlier one
                loc[it.name] = pack(seq, it.offset, it.length)
                due[it.name] = it.not_before
    counts = scan.segments
    shift = SEQ_SHIFT
    for packed in loc.values():
        seq = packed >> shift
        counts[seq] = counts.get(seq, 0) + 1
    damaged = {seq for seq, _ in scan.corrupt}
    scan.dead = [s for s in seqs if s not in counts and s not in damaged]
    scan.removals = [(s, n) for s, n in killed if s in counts]
    return scan


def _read_journal(path: Path) -> dict[str, int]:
    """name -> the highest segment seq its removal lines cover; a torn last line (a crash
    mid-append) and lines that do not parse are ignored."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    removed: dict[str, int] = {}
    for line in data.split(b"\n")[:-1]:
        seq_hex, _, raw = line.partition(b" ")
        try:
            seq = int(seq_hex, 16)
            name = raw.decode("ascii")
        except ValueError:
            continue
        if seq > removed.get(name, -1):
            removed[name] = seq
    return removed


def pack(seq: int, offset: int, length: int) -> int:
    return (seq << (SEQ_SHIFT)) | (offset << _OFF_BITS) | length


def unpack(packed: int) -> tuple[int, int, int]:
    mask = (1 << _OFF_BITS) - 1
    return packed >> (SEQ_SHIFT), (packed >> _OFF_BITS) & mask, packed & mask
