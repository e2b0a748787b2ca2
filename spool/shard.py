"""One worker shard's queue: segments of entries, a removal journal, and the live index.

Responsible for: the entries of queue/<k>, which exactly one worker (shard k) owns:

    queue/<k>/<seq>.seg    segments (spool.segment): entries written together, never changed
    queue/<k>/removed      the removal journal: a line "<seq hex> <name>" per finished entry
    tmp/<k>/               segments being written (emptied at worker start)

add (one segment and one fsync per batch; or stage + commit, its two halves, for a caller
that must not wait for the disk on its event loop), load (one pread), rewrite (the new version goes
into a new one-entry segment), remove (a journal line, or nothing when it empties its
segment, which is then unlinked), quarantine, and rebuilding all of that from disk at start
(the reading itself is spool.scan).
The live version of an entry is the one in the highest-numbered segment holding its name,
unless the journal has a line for the name whose seq is at least that segment's. A segment
none of whose entries is live is unlinked, so the disk holds about what is queued.

Thread safety: the worker calls add from its intake thread, remove from its write-behind
thread, commit from its listener's commit thread and the rest from its event loop, so every
method takes one lock; file writes happen outside it (an fsync must not stall loads).

Durability: add and rewrite are durable on return (tmp file, fsync, link, directory fsync:
spool.atomic). remove is not fsynced: delivery is at-least-once, a power cut may bring a
finished entry back and it is sent again, never lost (the previous one-file-per-entry
spool's unlinks were not fsynced either). quarantine is durable.

Memory: entries found at start stay rows of the start-up index (spool.compact, 41 bytes
an entry); only those added or rewritten since get a dict entry (name -> one int packing
segment, offset, length: ~170 bytes with the name). 1 M queued over 2 workers: ~220 MB for
the whole engine, 390 bytes an entry less than a dict entry each (bench/README.md).
Not responsible for: what meta means, drops, choosing a shard, retry times beyond storing
each entry's next attempt (its `not_before`).
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spool import atomic, record, segment
from spool.atomic import empty_dir
from spool.compact import CompactIndex
from spool.errors import SpoolFull
from spool.layout import (
    NAME_MAX,
    REASON_SUFFIX,
    EntryRef,
    Layout,
    check_plain_name,
    domain_of_entry,
    entry_name,
    reason_name,
)
from spool.scan import JOURNAL, SEQ_SHIFT, Scan, pack, scan_dir, unpack

__all__ = [
    "EntryRef",
    "NewEntry",
    "ShardQueue",
    "StagedAdd",
    "empty_dir",
    "move_with_reason",
]

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# A rejected or quarantined name plus ".reason" must fit NAME_MAX.
_MOVED_NAME_MAX = NAME_MAX - len(REASON_SUFFIX)
# Compact the journal past this size: ~45 bytes a line, so every ~700 000 removals.
COMPACT_AT = 32 * 1024 * 1024
# Open segment files kept for loads (LRU): well under the default 1 024 descriptors.
MAX_OPEN_SEGMENTS = 64


@dataclass(slots=True)
class StagedAdd:
    """A batch between `ShardQueue.stage` and `commit` (see there)."""

    refs: list[EntryRef]
    seq: int
    index: list[segment.IndexItem]
    tmp: atomic.StagedTmp | None  # None: nothing to write (every entry already live)


@dataclass(frozen=True, slots=True)
class NewEntry:
    """An entry to add: `id` from spool.ids, lower-case ASCII `domain`, the engine's
    `meta`, the message `body`, and `not_before`, the first attempt time (epoch seconds)."""

    id: str
    domain: str
    meta: dict[str, Any]
    body: bytes
    not_before: float


class ShardQueue:
    """queue/<k> and tmp/<k>: the entries of one worker shard (see the module docstring).
    Get it from `Spool.shard(k)`, which hands out one object per shard."""

    def __init__(self, layout: Layout, k: int) -> None:
        self._layout = layout
        self._k = k
        self._dir = layout.queue(k)
        self._tmp = layout.tmp(k)
        self._lock = threading.RLock()
        # The live entries: those found at start in `_cold` (spool.compact: ~41 bytes an
        # entry), the rest (added or rewritten since) here, name -> packed (seq, offset,
        # length). A name is live in at most one of the two.
        self._loc: dict[str, int] | None = None
        self._cold: CompactIndex | None = None
        self._live: dict[int, int] = {}  # seq -> live entries
        self._next_seq = 1
        self._fds: OrderedDict[int, int] = OrderedDict()
        self._journal_fd = -1
        self._dir_fd = -1  # queue/<k>, open for the directory fsync of `commit`
        self._journal_size = 0
        self._unwritten = b""  # journal lines a full disk refused, written with the next one
        self._unlink_later: list[int] = []  # emptied segments waiting for those lines
        self._fresh: Scan | None = None  # what recover read, for the first scan
        # Damaged segments moved to corrupt/ by the last load: (name there, reason).
        self.quarantined: list[tuple[str, str]] = []

    @property
    def k(self) -> int:
        return self._k

    @property
    def path(self) -> Path:
        return self._dir

    # -- start ---------------------------------------------------------------------------
    def recover(self) -> int:
        """Empty tmp/<k> (writes cut short by a crash), then rebuild the index from disk:
        damaged segments go to corrupt/ with a reason (listed in `quarantined` for the
        caller to report), segments with nothing live are
        unlinked, the journal is compacted. Returns how many tmp files were removed.
        Call it at worker start, before anything else."""
        removed = empty_dir(self._tmp)
        with self._lock:
            self._fresh = self._load()
        return removed

    def scan(self) -> list[EntryRef]:
        """Every live entry, sorted by name (FIFO by id), its mtime = its next attempt.

        Rebuilds the index from disk (as `recover`, without touching tmp/<k>), reading only
        segment indexes. Right after `recover` it uses what recover read instead: the
        entries live then and still live (entries added in between, e.g. by re-taking an
        interrupted intake batch, are their adder's to report). An object per entry: for
        tools and tests; a worker takes `scan_compact`."""
        index, refs = self.scan_compact()
        cold = [index.ref(row) for row in index.live_rows()]
        return sorted(cold + refs, key=lambda r: r.name) if refs else cold

    def scan_compact(self) -> tuple[CompactIndex, list[EntryRef]]:
        """`scan` compactly: the start-up index (its live rows; shared: this queue clears a
        row's `live` when its entry is finished, rewritten or quarantined), and refs, in
        name order, for entries whose names do not fit it (none that intake makes)."""
        with self._lock:
            state, self._fresh = self._fresh or self._load(), None
            due = state.due
            loc = self._state()
            refs = [
                EntryRef(name, sys.intern(domain_of_entry(name)), due[name])
                for name in sorted(due)
                if name in loc
            ]
            index = state.index
        due.clear()  # only the first scan needs it; the index keeps the locations only
        return index, refs

    def count(self) -> int:
        """Number of live entries."""
        with self._lock:
            return len(self._state()) + (self._cold.live_count if self._cold else 0)

    # -- the hot path --------------------------------------------------------------------
    def add(self, items: Sequence[NewEntry]) -> list[EntryRef]:
        """Durably add entries as one segment (one fsync); return a ref per item.
        An item whose name is already live is not written again (a drop re-taken after a
        crash gets the same id): its ref is returned with the item's `not_before`.
        Raises ValueError for a malformed id or domain (before anything is written) and
        SpoolFull on ENOSPC/EDQUOT; on any error nothing of the batch stays."""
        return self.commit(self.stage(items))

    def stage(self, items: Sequence[NewEntry]) -> StagedAdd:
        """The first half of `add`, which does not wait for the disk: the names checked,
        the segment built and written to tmp/<k> (page cache).  Then `commit` (blocking:
        call it in a thread), which is the rest of `add`; or `discard`."""
        names = [entry_name(item.id, item.domain) for item in items]
        with self._lock:
            fresh: list[tuple[NewEntry, str]] = []
            seen: set[str] = set()
            for item, name in zip(items, names, strict=True):
                if name not in seen and self._get(name) is None:
                    seen.add(name)
                    fresh.append((item, name))
            seq = self._take_seq() if fresh else 0
        domains = [sys.intern(item.domain) for item in items]
        refs = list(map(EntryRef, names, domains, (i.not_before for i in items)))
        if not fresh:
            return StagedAdd(refs, seq, [], None)
        data, index = segment.build(
            [(n, i.not_before, record.encode(i.meta, i.body)) for i, n in fresh]
        )
        return StagedAdd(refs, seq, index, self._stage_segment(seq, data))

    def commit(self, staged: StagedAdd) -> list[EntryRef]:
        """Make a staged segment durable and its entries live (tmp fsync, link, directory
        fsync); the refs of `stage`.  Raises SpoolFull on ENOSPC/EDQUOT (nothing stays)."""
        if staged.tmp is None:
            return staged.refs
        tmp, staged.tmp = staged.tmp, None
        self._commit_segment(staged.seq, tmp)
        with self._lock:
            loc = self._state()
            for it in staged.index:
                loc[it.name] = pack(staged.seq, it.offset, it.length)
            self._live[staged.seq] = len(staged.index)
        return staged.refs

    def discard(self, staged: StagedAdd) -> None:
        """Give up a staged segment that will not be committed (its tmp file goes)."""
        if staged.tmp is not None:
            os.close(staged.tmp.fd)
            atomic.unlink_quietly(staged.tmp.path)
            staged.tmp = None

    def load(self, ref: EntryRef) -> tuple[dict[str, Any], bytes]:
        """Read and decode an entry. Raises CorruptEntry, or FileNotFoundError if it is
        not live (finished, or its segment vanished)."""
        with self._lock:
            packed = self._get(ref.name)
            if packed is None:
                raise FileNotFoundError(f"queue/{self._k}: no live entry {ref.name}")
            seq, offset, length = unpack(packed)
            data = os.pread(self._fd(seq), length, offset)
        return record.decode(data)

    def rewrite(
        self, ref: EntryRef, meta: dict[str, Any], body: bytes, next_attempt: float
    ) -> EntryRef:
        """Durably replace an entry's content and next attempt (a deferral, a partial
        delivery): the new version goes into a new one-entry segment, which wins over the
        old one from then on, also after a crash. Raises SpoolFull on ENOSPC/EDQUOT (the
        old version stays)."""
        data, (item,) = segment.build([(ref.name, next_attempt, record.encode(meta, body))])
        with self._lock:
            self._state()
            seq = self._take_seq()
        self._commit_segment(seq, self._stage_segment(seq, data))
        with self._lock:
            old = self._get(ref.name, pop=True)
            self._state()[ref.name] = pack(seq, item.offset, item.length)
            self._live[seq] = 1
            if old is not None:
                self._release(old >> (SEQ_SHIFT))
        return EntryRef(ref.name, ref.domain, next_attempt)

    def remove(self, ref: EntryRef) -> None:
        """Finish an entry (delivered or bounced); one already finished is fine.

        Not fsynced (see the module docstring). Always a journal line, also for the entry
        that empties its segment (which is then unlinked): an older version of the entry
        may lie in an earlier segment that other entries keep alive (the entry was
        deferred, so rewritten), and only the line keeps that version dead once this
        segment is gone. Without it a restart resurrected greylisted-then-delivered mail
        with its original recipients (issue #14, finding 2). The cost is one write(2)
        per emptied segment: one per intake batch, or per deferred entry finished.
        The line is written before the unlink, so a process crash between the two leaves
        the entry finished; on ext4 (data=ordered) a power cut keeps that order too,
        elsewhere it may bring the older version back: a duplicate, never a loss."""
        with self._lock:
            packed = self._get(ref.name, pop=True)
            if packed is None:
                return
            seq = packed >> (SEQ_SHIFT)
            written = self._journal_append(seq, ref.name)
            self._release(seq, unlink=written)

    def quarantine(self, ref_or_name: EntryRef | str, reason: str) -> str:
        """Copy an entry's record to corrupt/ with a `.reason` file beside it, finish it,
        and return its name there. Never overwrites (a name already in corrupt/ gets `.1`,
        `.2`...). Durable on return. Raises FileNotFoundError if the entry is not live."""
        name = ref_or_name.name if isinstance(ref_or_name, EntryRef) else ref_or_name
        check_plain_name(name)
        with self._lock:
            packed = self._get(name)
            if packed is None:
                raise FileNotFoundError(f"queue/{self._k}: no live entry {name}")
            seq, offset, length = unpack(packed)
            data = os.pread(self._fd(seq), length, offset)
        corrupt = self._layout.corrupt
        tmp = atomic.write_tmp(corrupt, "quarantine", data)
        final = move_with_reason(tmp.path, corrupt, name, reason, fsync_source=False)
        with self._lock:
            if self._get(name, pop=True) is not None:
                self._journal_append(seq, name)
                atomic.fsync_fd(self._journal_fd)
                self._release(seq)
        return final

    def close(self) -> None:
        """Close the open segment files and the journal."""
        with self._lock:
            self._close_files()

    # -- internals -----------------------------------------------------------------------
    def _state(self) -> dict[str, int]:
        if self._loc is None:
            self._load()
        assert self._loc is not None
        return self._loc

    def _get(self, name: str, *, pop: bool = False) -> int | None:
        """The packed location of the live entry `name` (None: not live); `pop`: it is no
        longer live here (the caller journals it, or has written its new version)."""
        loc = self._state()
        packed = loc.pop(name, None) if pop else loc.get(name)
        cold = self._cold
        if packed is None and cold is not None and (row := cold.live_row(name)) >= 0:
            packed = pack(*cold.location(row))
            if pop:
                cold.kill(row)
                if not cold.live_count:
                    self._cold = None  # every entry found at start is gone: free the arrays
        return packed

    def _load(self) -> Scan:
        self._close_files()
        # What is on disk is the truth from here: a segment kept for an unwritten journal
        # line holds a live entry again (sent again: the disk-full case of _journal_append).
        self._unwritten = b""
        self._unlink_later.clear()
        state = scan_dir(self._dir)
        self.quarantined = []
        for seq, reason in state.corrupt:
            name = segment.segment_name(seq)
            why = f"queue/{self._k}/{name}: {reason}; every entry in it is kept here"
            try:
                final = move_with_reason(
                    self._dir / name, self._layout.corrupt, f"{self._k}-{name}", why
                )
            except FileNotFoundError:
                continue
            self.quarantined.append((final, why))
        for seq in state.dead:
            atomic.unlink_quietly(self._dir / segment.segment_name(seq))
        for leftover in self._dir.glob(".*.put"):  # a journal rewrite cut short by a crash
            atomic.unlink_quietly(leftover)
        self._loc = state.loc
        self._cold = state.index if state.index.live_count else None
        self._live = dict(state.segments)
        self._next_seq = max(self._next_seq, state.max_seq + 1)
        self._write_journal(state.removals)
        return state

    def _take_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def _stage_segment(self, seq: int, data: bytes) -> atomic.StagedTmp:
        try:
            return atomic.stage_tmp(self._tmp, segment.segment_name(seq), data)
        except OSError as exc:
            if exc.errno in _FULL_ERRNOS:
                raise SpoolFull(f"queue/{self._k}: {exc.strerror}") from exc
            raise

    def _commit_segment(self, seq: int, tmp: atomic.StagedTmp) -> None:
        final = self._dir / segment.segment_name(seq)
        with self._lock:
            if self._dir_fd < 0:
                self._dir_fd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            dir_fd = self._dir_fd
        try:
            created = atomic.commit_tmp(tmp, final, dir_fd)
        except OSError as exc:
            if exc.errno in _FULL_ERRNOS:
                raise SpoolFull(f"queue/{self._k}: {exc.strerror}") from exc
            raise
        if not created:  # a segment number in use: a second writer, which the lock forbids
            raise RuntimeError(f"queue/{self._k}/{final.name} already exists")

    def _fd(self, seq: int) -> int:
        fd = self._fds.get(seq)
        if fd is not None:
            self._fds.move_to_end(seq)
            return fd
        fd = os.open(self._dir / segment.segment_name(seq), os.O_RDONLY | os.O_CLOEXEC)
        self._fds[seq] = fd
        if len(self._fds) > MAX_OPEN_SEGMENTS:
            os.close(self._fds.popitem(last=False)[1])
        return fd

    def _release(self, seq: int, *, unlink: bool = True) -> None:
        """One entry of segment `seq` is no longer live; unlink the segment when none is.
        `unlink=False`: the journal line that makes this safe is still unwritten (a full
        disk), so the file stays until that line is written (see _journal_append)."""
        left = self._live.get(seq, 0) - 1
        if left > 0:
            self._live[seq] = left
            return
        self._live.pop(seq, None)
        fd = self._fds.pop(seq, None)
        if fd is not None:
            os.close(fd)
        if unlink:
            atomic.unlink_quietly(self._dir / segment.segment_name(seq))
        else:
            self._unlink_later.append(seq)

    def _journal_append(self, seq: int, name: str) -> bool:
        """Append a removal line; False when a full disk refused it (it is kept and
        written with the next line)."""
        line = f"{seq:x} {name}\n".encode("ascii")
        if self._unwritten:
            line = self._unwritten + line
        try:
            atomic.write_all(self._journal_fd, line)
        except OSError as exc:
            if exc.errno not in _FULL_ERRNOS:
                raise
            # Disk full: keep the lines and write them with the next removal. Until then a
            # crash forgets these removals and the entries are sent again (at-least-once),
            # each as its latest version: the segments they empty stay until then.
            self._unwritten = line
            return False
        self._unwritten = b""
        for later in self._unlink_later:
            atomic.unlink_quietly(self._dir / segment.segment_name(later))
        self._unlink_later.clear()
        self._journal_size += len(line)
        if self._journal_size > COMPACT_AT:
            self._compact()
        return True

    def _compact(self) -> None:
        """Rewrite the journal with only the lines that still kill a version in a live
        segment (read from the live segments' indexes)."""
        keep: list[tuple[int, str]] = []
        for seq in sorted(self._live):
            for it in segment.read_index(self._fd(seq)):
                if self._get(it.name) is None:  # removed: its versions here must stay dead
                    keep.append((seq, it.name))
        self._write_journal(keep)

    def _write_journal(self, lines: Sequence[tuple[int, str]]) -> None:
        """Replace the journal with `lines`, durably, and reopen it for appending. On a
        full disk the old journal stays (it holds every line of the new one, and more)."""
        if self._journal_fd >= 0:
            os.close(self._journal_fd)
            self._journal_fd = -1
        data = "".join(f"{seq:x} {name}\n" for seq, name in lines).encode("ascii")
        try:
            atomic.put_file(self._dir, JOURNAL, data)
            atomic.fsync_dir(self._dir)
            self._unwritten = b""  # `lines` came from the index, which has them
            for later in self._unlink_later:
                atomic.unlink_quietly(self._dir / segment.segment_name(later))
            self._unlink_later.clear()
        except OSError as exc:
            if exc.errno not in _FULL_ERRNOS:
                raise
        self._journal_fd = os.open(
            self._dir / JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        self._journal_size = os.fstat(self._journal_fd).st_size

    def _close_files(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1
        if self._journal_fd >= 0:
            os.close(self._journal_fd)
            self._journal_fd = -1


def move_with_reason(
    src: Path, directory: Path, name: str, reason: str, *, fsync_source: bool = True
) -> str:
    """Move `src` into `directory` under `name` (or `name.1`, ...: never overwriting) with
    a `.reason` file beside it; durable on return. Returns the final name."""
    final = atomic.move_unique(src, directory, name, _MOVED_NAME_MAX)
    atomic.put_file(directory, reason_name(final), reason.encode("utf-8", "replace"))
    atomic.fsync_dir(directory)
    if fsync_source:
        atomic.fsync_dir(src.parent)
    return final
