"""Reading a shard's queue directory: segment indexes + removal journal -> what is live.

Responsible for: one pass over `queue/<k>/` that says which entry versions are live (the
highest-numbered segment holding a name, unless the journal has a line for the name with a
seq at least that segment's), which segments hold nothing live, which are damaged, and
which journal lines still matter. Changes nothing on disk: the owning worker
(spool.shard.ShardQueue) acts on the result, and tools (`volley queue`, tests) read it
while the worker runs.
Not responsible for: writing, locking, or what an entry contains (only indexes are read,
never a record).

Memory matters here: a worker with 5 M entries queued holds this at its start. Entry
names this spool makes (`<id>@<domain>`) become rows of a spool.compact.CompactIndex —
packed arrays, no object per entry — streamed in segment by segment, then sorted (only if
the segments were not already in name order: rewritten entries make them so) and resolved
against the journal, which is read line by line (it may hold ~700 000 lines: COMPACT_AT).
Names of any other shape (never written by the engine; tests use them) take the old road:
a dict per name. Measured (bench/queue_memory.py, 100 000 entries): ~41 bytes an entry
kept, ~108 at the peak when the segments are out of order (the sort's keys), and ~1.5 µs
of CPU an entry (500 000: 0.76 s), most of it the columns of each segment's index
converted at C speed (_Rows.add_segment).
"""

from __future__ import annotations

import operator
import os
import re
import sys
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import compress, islice, repeat
from pathlib import Path
from typing import Any

from spool import segment
from spool.compact import CompactIndex, split_name
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
_HASH_MASK = (1 << 64) - 1
_ROW_BITS = 32  # a sort key is (id time << 32 | row): fewer than 4 G rows per shard
# Names joined by newlines, each of the row form `<29 hex digits>@<domain>` (what
# spool.compact.split_name takes: a name with a newline in its domain still has its own
# line start checked, and its domain is kept verbatim).
_NAMES = re.compile(r"[0-9a-f]{29}@[^\n]+(?:\n[0-9a-f]{29}@[^\n]+)*")
_ID_PART = operator.itemgetter(slice(0, 29))
_DOMAIN_PART = operator.itemgetter(slice(30, None))


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
    record. One object per live entry: for tools and tests; the worker uses scan_dir.
    """
    scan = scan_dir(directory)
    ix = scan.index
    live = [
        LiveEntry(ix.name(r), ix.due[r], ix.seq[r], ix.off[r], ix.length[r]) for r in range(len(ix))
    ]
    live += [LiveEntry(name, scan.due[name], *unpack(p)) for name, p in scan.loc.items()]
    live.sort(key=lambda e: e.name)
    return ShardState(live, scan.segments, scan.dead, scan.corrupt, scan.removals, scan.max_seq)


@dataclass(slots=True)
class Scan:
    """scan_dir's result: the live entries in the compact form the worker keeps."""

    index: CompactIndex  # the live entries with `<id>@<domain>` names, in name order
    loc: dict[str, int] = field(default_factory=dict)  # any other name -> packed location
    due: dict[str, float] = field(default_factory=dict)  # ... -> next attempt
    segments: dict[int, int] = field(default_factory=dict)  # seq -> live entries (> 0)
    dead: list[int] = field(default_factory=list)
    corrupt: list[tuple[int, str]] = field(default_factory=list)
    removals: list[tuple[int, str]] = field(default_factory=list)
    max_seq: int = 0


def scan_dir(directory: Path) -> Scan:
    """One pass over the segment indexes (in write order), then the journal."""
    rows = _Rows()
    corrupt: list[tuple[int, str]] = []
    try:
        names = [e.name for e in os.scandir(directory) if e.is_file(follow_symlinks=False)]
    except FileNotFoundError:
        return Scan(CompactIndex([], *rows.fields()))
    seqs = sorted(s for s in map(segment.parse_segment_name, names) if s is not None)
    for seq in seqs:
        try:
            fd = os.open(directory / segment.segment_name(seq), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            base, size, items = segment.read_rows(fd)
            rows.add_segment(seq, base, size, items)
        except CorruptEntry as exc:
            corrupt.append((seq, exc.reason))
            continue
        finally:
            os.close(fd)
    rows.sort()
    journal = directory / JOURNAL
    odd_removed = rows.apply_journal(_journal_lines(journal))
    rows.resolve()
    # Names of other shapes: the latest version wins unless a removal line covers it.
    loc: dict[str, int] = {}
    due: dict[str, float] = {}
    odd_killed: list[tuple[int, str]] = []
    for name, nb, seq, off, length in rows.odd:
        if odd_removed.get(name, -1) >= seq:
            odd_killed.append((seq, name))
        else:
            loc[name] = pack(seq, off, length)
            due[name] = nb
    counts = Counter(compress(rows.seq, rows.alive))
    for packed in loc.values():
        counts[packed >> SEQ_SHIFT] += 1
    damaged = {seq for seq, _ in corrupt}
    removals = rows.removals_to_keep(counts) + [(s, n) for s, n in odd_killed if s in counts]
    return Scan(
        index=rows.index(),
        loc=loc,
        due=due,
        segments=dict(counts),
        dead=[s for s in seqs if s not in counts and s not in damaged],
        corrupt=corrupt,
        removals=removals,
        max_seq=max(seqs, default=0),
    )


class _Rows:
    """Every version read from the segments, as growing arrays (one row each), until
    `resolve` keeps the live ones."""

    def __init__(self) -> None:
        self.domains: list[str] = []
        self.dnum: dict[str, int] = {}
        self.t = array("Q")
        self.h = array("Q")
        self.dom = array("I")
        self.due = array("d")
        self.seq = array("I")
        self.off = array("I")
        self.length = array("I")
        self.alive = bytearray()  # 1: live; filled in by apply_journal and resolve
        self.odd: list[tuple[str, float, int, int, int]] = []  # (name, due, seq, off, len)
        self.killed = array("I")  # rows a journal line killed ...
        self.killed_by = array("Q")  # ... and that line's seq

    def add_segment(self, seq: int, base: int, size: int, items: list[Any]) -> None:
        """Append a segment's rows; CorruptEntry if its index is malformed (then nothing
        of it is added)."""
        try:
            if self._add_fast(seq, base, size, items):
                return
        except (TypeError, ValueError, OverflowError):
            pass
        segment.check_rows(items, base, size)  # raises CorruptEntry with the reason
        self._add_slow(seq, base, items)

    def _add_fast(self, seq: int, base: int, size: int, items: list[Any]) -> bool:
        """A segment whose every name has the row form, column by column at C speed
        (~1 µs a row against ~4 for a Python loop over rows); False, having changed
        nothing, if it is not that simple (the slow road decides)."""
        if not items:
            return True
        if set(map(len, items)) != {4}:
            return False
        names, nbs, offs, lens = zip(*items, strict=True)
        if _NAMES.fullmatch("\n".join(names)) is None:  # TypeError if one is not a str
            return False
        off = array("Q", offs)  # OverflowError if negative, TypeError if not an int
        length = array("Q", lens)
        if base + max(map(operator.add, off, length)) > size:
            return False
        due = array("d", nbs)
        ids = list(map(int, map(_ID_PART, names), repeat(16)))
        doms = list(map(_DOMAIN_PART, names))
        for domain in set(doms).difference(self.dnum):
            self.dnum[domain] = len(self.domains)
            self.domains.append(sys.intern(domain))
        self.t.extend(array("Q", map(operator.rshift, ids, repeat(64))))
        self.h.extend(array("Q", map(operator.and_, ids, repeat(_HASH_MASK))))
        self.dom.extend(array("I", map(self.dnum.__getitem__, doms)))
        self.due.extend(due)
        self.seq = _extend(self.seq, [seq] * len(names))
        self.off = _extend(self.off, list(map(operator.add, off, repeat(base))))
        self.length = _extend(self.length, list(length))
        return True

    def _add_slow(self, seq: int, base: int, items: list[Any]) -> None:
        for name, nb, off, length in items:
            parts = split_name(name)
            if parts is None:
                self.odd.append((name, nb, seq, base + off, length))
                continue
            t, h, domain = parts
            dno = self.dnum.get(domain)
            if dno is None:
                dno = self.dnum[domain] = len(self.domains)
                self.domains.append(sys.intern(domain))
            self.t.append(t)
            self.h.append(h)
            self.dom.append(dno)
            self.due.append(nb)
            self.seq = _extend(self.seq, [seq])
            self.off = _extend(self.off, [base + off])
            self.length = _extend(self.length, [length])

    def sort(self) -> None:
        """Put the rows in id-time order (stable: equal times keep segment order).
        Segments written by intake are in order already; rewritten entries are not."""
        t = self.t
        if all(map(operator.le, t, islice(t, 1, None))):
            return
        if len(t) >= 1 << _ROW_BITS:
            raise ValueError(f"{len(t)} rows: too many for one shard's start-up index")
        keys = [(v << _ROW_BITS) | i for i, v in enumerate(t)]  # ~44 bytes a row, briefly
        keys.sort()
        mask = (1 << _ROW_BITS) - 1
        order = array("I", (k & mask for k in keys))
        del keys
        for name in ("t", "h", "dom", "due", "seq", "off", "length"):
            old: array[Any] = getattr(self, name)
            setattr(self, name, array(old.typecode, map(old.__getitem__, order)))

    def rows_of(self, t: int, h: int, dno: int) -> Iterator[int]:
        """Every row (version) of one name."""
        times = self.t
        i = bisect_left(times, t)
        n = len(times)
        while i < n and times[i] == t:
            if self.h[i] == h and self.dom[i] == dno:
                yield i
            i += 1

    def apply_journal(self, lines: Iterator[tuple[int, str]]) -> dict[str, int]:
        """Kill every version a removal line covers (seq <= the line's); returns, for
        names of other shapes, name -> the highest seq its lines cover."""
        self.alive = bytearray(b"\x01") * len(self.t)
        odd: dict[str, int] = {}
        for line_seq, name in lines:
            parts = split_name(name)
            dno = None if parts is None else self.dnum.get(parts[2])
            if parts is None:
                if line_seq > odd.get(name, -1):
                    odd[name] = line_seq
                continue
            if dno is None:
                continue  # no segment holds any version of it
            for row in self.rows_of(parts[0], parts[1], dno):
                if self.seq[row] <= line_seq:
                    self.alive[row] = 0
                    self.killed.append(row)
                    self.killed_by.append(line_seq)
        return odd

    def resolve(self) -> None:
        """Of several versions of a name, only the one in the highest segment can be live
        (and is, unless a journal line killed it); rows of one microsecond are put in
        name order. Only rows sharing an id time need a look (the versions of a name, and
        the entries of one drop for several domains, which share its id): a C-speed scan
        finds equal neighbours, and only a run with two neighbours out of name order (or
        one name twice) is sorted out row by row."""
        t, h, dom, domains = self.t, self.h, self.dom, self.domains
        n = len(t)
        moved: dict[int, int] = {}
        done_to = 0
        for i in compress(range(n), map(operator.eq, t, islice(t, 1, None))):
            if i < done_to:
                continue  # inside a run already resolved
            if h[i] < h[i + 1] or (h[i] == h[i + 1] and domains[dom[i]] < domains[dom[i + 1]]):
                continue  # two distinct names in order
            start = i
            while start > 0 and t[start - 1] == t[i]:
                start -= 1
            end = i + 2
            while end < n and t[end] == t[i]:
                end += 1
            self._resolve_run(start, end, moved)
            done_to = end
        if moved:
            killed = self.killed
            for k, row in enumerate(killed):
                killed[k] = moved.get(row, row)

    def _resolve_run(self, start: int, end: int, moved: dict[int, int]) -> None:
        rows = range(start, end)
        keys = [(self.h[r], self.domains[self.dom[r]], self.seq[r]) for r in rows]
        order = sorted(rows, key=lambda r: keys[r - start])
        newest: dict[tuple[int, str], int] = {}
        for r in order:  # ascending seq within a name: the last one is the newest
            newest[keys[r - start][:2]] = r
        keep = set(newest.values())
        fields: tuple[array[Any], ...] = (
            self.h,
            self.dom,
            self.due,
            self.seq,
            self.off,
            self.length,
        )
        values = [[f[r] for r in order] for f in fields]
        alive = [bool(self.alive[r]) and r in keep for r in order]
        for f, vals in zip(fields, values, strict=True):
            for pos, v in zip(rows, vals, strict=True):
                f[pos] = v
        for pos, (old, a) in enumerate(zip(order, alive, strict=True), start):
            self.alive[pos] = a
            if old != pos:
                moved[old] = pos

    def removals_to_keep(self, counts: Counter[int]) -> list[tuple[int, str]]:
        """The journal lines that still kill a version in a segment that stays."""
        keep: set[tuple[int, str]] = set()
        for row, line_seq in zip(self.killed, self.killed_by, strict=True):
            if counts.get(self.seq[row], 0) > 0:
                keep.add((line_seq, self._name(row)))
        return sorted(keep)

    def _name(self, row: int) -> str:
        return f"{self.t[row]:013x}{self.h[row]:016x}@{self.domains[self.dom[row]]}"

    def fields(self) -> tuple[array[Any], ...]:
        return (self.t, self.h, self.dom, self.due, self.seq, self.off, self.length)

    def index(self) -> CompactIndex:
        """The live rows as a CompactIndex (the versions' arrays are given up)."""
        alive = self.alive
        fields: list[array[Any]] = [
            self.t,
            self.h,
            self.dom,
            self.due,
            self.seq,
            self.off,
            self.length,
        ]
        if 0 in alive:
            fields = [array(f.typecode, compress(f, alive)) for f in fields]
        self.t = self.h = self.dom = self.seq = self.off = self.length = array("I")
        self.due = array("d")
        return CompactIndex(self.domains, *fields)


def _extend(arr: array[int], values: list[int]) -> array[int]:
    """`arr` extended by `values`, widened to 64 bits when a value needs it."""
    try:
        arr.extend(array(arr.typecode, values))
    except OverflowError:
        arr = array("Q", arr)
        arr.extend(values)
    return arr


def _journal_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(seq, name) per removal line, read a line at a time; a torn last line (a crash
    mid-append) and lines that do not parse are ignored."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            seq_hex, _, raw = line[:-1].partition(b" ")
            try:
                yield int(seq_hex, 16), raw.decode("ascii")
            except ValueError:
                continue


def pack(seq: int, offset: int, length: int) -> int:
    return (seq << (SEQ_SHIFT)) | (offset << _OFF_BITS) | length


def unpack(packed: int) -> tuple[int, int, int]:
    mask = (1 << _OFF_BITS) - 1
    return packed >> (SEQ_SHIFT), (packed >> _OFF_BITS) & mask, packed & mask
