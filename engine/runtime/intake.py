"""Intake: drop files in incoming/ -> durable spool entries of this worker's shard.

Responsible for: choosing this shard's drops (a hash of the file name, so workers never
contend for a file and need no lock), reading and parsing them (engine.drop), splitting
each message into one entry per destination domain, the group commit, and only then
removing the drops; DKIM signing (engine.auth.dkim) of each message after the headers
intake adds; the suppression check and the List-Unsubscribe headers (engine.suppress.gate:
a suppressed recipient is not queued, a drop whose recipients are all suppressed is
consumed with its `suppressed` records; a message is signed per entry when an entry got
its own List-Unsubscribe, else once).  Rejections go to rejected/ with a reason beside them.
Not responsible for: scheduling (the worker hands the new entries to the queue), the
file formats (spool), or what makes a drop acceptable (engine.drop).

Durability order (the promise of the README's "Guarantees"):
  0. the batch's drops are noted in queue/<k>.taking, durably: per drop its name, its
     identity (inode, size, mtime) and the random salt its entries' ids derive from;
  1. every entry of the batch is written, fsynced, linked into queue/<k>/, and queue/<k>/
     is fsynced (spool.ShardQueue.add);
  2. only then are the drops unlinked and incoming/ fsynced (spool.Spool.consume_drops).
A crash between 1 and 2 leaves both; the restarted worker takes the noted drops again
first, and a drop whose identity is the noted one gets the noted salt, hence the same
ids, so `add` finds its entries already queued and nothing is queued twice.  Everywhere
else every drop gets new ids: intake never deduplicates on a drop's metadata, so a
second, different `news.eml` with the same size and mtime on a reused inode (`cp -p`,
`rsync -t`, tar) is queued, not unlinked as "already queued" (issue #14, finding 6).

`take_batch` is blocking file work; the worker runs it in a thread so the event loop
keeps delivering meanwhile (fsync releases the GIL).
"""

from __future__ import annotations

import errno
import os
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from engine.auth.dkim import DkimError, signer_for
from engine.config import Settings
from engine.drop import DropEnvelope, DropFile, DropRejection, domain_of, parse_drop, read_drop
from engine.drop.cleanup import add_missing_headers, date_value, message_id_value
from engine.smtp.encode import wire_body
from engine.suppress.check import Hit
from engine.suppress.gate import IntakeGate
from engine.suppress.store import StoreError
from spool import (
    EntryRef,
    NewEntry,
    ShardQueue,
    Spool,
    SpoolFull,
    atomic,
    entry_id,
    random_salt,
)

__all__ = [
    "IntakeBatch",
    "Noted",
    "Suppressed",
    "Taken",
    "entry_meta",
    "interrupted_take",
    "new_meta",
    "shard_of",
    "split_by_domain",
    "take_batch",
]


def shard_of(name: str, shards: int) -> int:
    """Which worker takes the drop `name` (crc32: stable across processes and runs)."""
    return zlib.crc32(name.encode("utf-8", "surrogateescape")) % shards


@dataclass(frozen=True, slots=True)
class Taken:
    ref: EntryRef
    sender: str
    recipients: tuple[str, ...]
    message_id: str | None
    drop: str


@dataclass(frozen=True, slots=True)
class Suppressed:
    """A recipient of a taken drop that was not queued (engine.suppress.gate)."""

    hit: Hit
    sender: str
    sender_domain: str | None
    message_id: str | None
    drop: str


@dataclass(slots=True)
class IntakeBatch:
    taken: list[Taken] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (final name, reason)
    full: str | None = None  # set when the spool is out of space: intake paused
    more: bool = False  # the batch limit was reached: scan again at once
    suppressed: list[Suppressed] = field(default_factory=list)
    # List-Unsubscribe per entry: (result, msgid, domain, recipients) for every entry of
    # the taken drops (engine.suppress.gate.HEADER_RESULTS), when [unsubscribe] is set.
    headers: list[tuple[str, str | None, str, int]] = field(default_factory=list)


def entry_meta(
    *,
    key: str | None,
    sender: str,
    rcpts: list[str],
    domain: str,
    now: float,
    msgid: str | None,
    smtputf8: bool,
    body_8bit: bool,
    **origin: Any,
) -> dict[str, Any]:
    """The spool metadata of one entry (msgpack-encoded by spool.record), whatever path
    the message came in by: `key` names the message (the same in each of its entries,
    one per destination domain), `origin` says where it came from (`drop`, or the SMTP
    listener's `via`, `client`, `auth`)."""
    return {
        "v": 1,
        "msg": key,
        "sender": sender,
        "rcpts": rcpts,
        "domain": domain,
        "created": now,
        "attempts": 0,
        "msgid": msgid,
        "smtputf8": smtputf8,
        "8bit": body_8bit,
        "dsn": False,
        **origin,
    }


def new_meta(
    env: DropEnvelope,
    rcpts: list[str],
    domain: str,
    now: float,
    drop: str,
    *,
    key: str | None = None,
    msgid: str | None = None,
) -> dict[str, Any]:
    """`entry_meta` of a drop's entry; `msgid` is its Message-ID (the drop's own, else the
    one intake added)."""
    return entry_meta(
        key=key,
        sender=env.sender,
        rcpts=rcpts,
        domain=domain,
        now=now,
        msgid=msgid or env.message_id,
        smtputf8=env.smtputf8,
        body_8bit=env.body_8bit,
        # A name with invalid UTF-8 (a lone surrogate) cannot go into msgpack as str.
        drop=drop.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"),
    )


def split_by_domain(recipients: tuple[str, ...]) -> dict[str, list[str]]:
    """One spool entry per destination domain (recipients keep their order)."""
    out: dict[str, list[str]] = {}
    for r in recipients:
        out.setdefault(domain_of(r), []).append(r)
    return out


# An empty incoming/ is not listed again while its mtime has not moved (a stat on the
# event loop, ~2 µs), so an idle worker stops paying for a listing every
# `intake.interval`: 20 listings a second cost each idle worker 22-26 ms of CPU a second
# (an executor hop, the listing, the empty batch's bookkeeping), 5 % of a core for two
# workers; with the stat, 3 ms.  The mtime is trusted only once it is QUIET_AFTER old, so
# a change in the same tick of a coarse filesystem clock as the last listing cannot hide,
# and incoming/ is listed at least every RESCAN seconds whatever the mtime says (a
# filesystem that keeps it badly costs at most that much latency).
QUIET_AFTER = 2.0
RESCAN = 1.0


class Pickup:
    """This shard's drops from one listing of incoming/, handed out a batch at a time.

    incoming/ is listed again only when the previous listing is used up (Postfix pickup
    does the same): re-listing 20 000 drops for every 256-file batch made intake O(n^2),
    ~1 s of CPU per worker for a 20 000-message drop.  `idle` says when listing it now
    would find nothing new (see QUIET_AFTER).
    """

    def __init__(self, spool: Spool, k: int, settings: Settings) -> None:
        self._spool = spool
        self._k = k
        self._shards = settings.workers
        self._size = settings.intake_batch
        self._pending: deque[str] = deque()
        self._mark: tuple[int, float] | None = None  # (incoming/'s mtime_ns, listed at)

    def next_batch(self, now: float = 0.0) -> tuple[list[str], bool]:
        """(names to take now, whether more are already listed); `now`: wall time."""
        if not self._pending:
            # The mtime before the listing: whatever lands after it moves the mtime.
            mtime = self._mtime()
            self._mark = None if mtime is None else (mtime, now)
            self._pending.extend(
                n for n in self._spool.incoming_names() if shard_of(n, self._shards) == self._k
            )
        batch = [self._pending.popleft() for _ in range(min(self._size, len(self._pending)))]
        return batch, bool(self._pending)

    def idle(self, now: float) -> bool:
        """Nothing new to take: no listed drops left, and incoming/ unchanged since a
        listing less than RESCAN ago, with an mtime at least QUIET_AFTER old."""
        if self._pending or self._mark is None:
            return False
        mtime, listed = self._mark
        if now - listed >= RESCAN or now - mtime / 1e9 < QUIET_AFTER:
            return False
        return self._mtime() == mtime

    def _mtime(self) -> int | None:
        try:
            return os.stat(self._spool.incoming).st_mtime_ns
        except OSError:
            return None


@dataclass(frozen=True, slots=True)
class Noted:
    """A drop of a batch being committed, as queue/<k>.taking records it."""

    identity: bytes  # engine.drop.DropFile.identity when it was taken
    salt: bytes  # the random salt its ids (and its message key) were derived from


def taking_path(spool: Spool, k: int) -> Path:
    """queue/<k>.taking: the drops of the batch being committed (msgpack: a list of
    [name as bytes, identity, salt])."""
    return spool.root / "queue" / f"{k}.taking"


def interrupted_take(spool: Spool, k: int) -> dict[str, Noted]:
    """The drops of a batch whose commit a crash may have cut short ({} if none).  A note
    that does not decode (torn, or from an older version) names no drop: those drops
    are taken as new ones, which can only send them twice, never lose them."""
    try:
        data = taking_path(spool, k).read_bytes()
    except FileNotFoundError:
        return {}
    try:
        rows = msgpack.unpackb(data, raw=False, use_list=True)
        return {os.fsdecode(n): Noted(bytes(identity), bytes(salt)) for n, identity, salt in rows}
    except (ValueError, TypeError, msgpack.UnpackException):
        return {}


def take_batch(
    spool: Spool,
    shard: ShardQueue,
    k: int,
    settings: Settings,
    now: float,
    pickup: Pickup | None = None,
    noted: dict[str, Noted] | None = None,
    gate: IntakeGate | None = None,
) -> IntakeBatch:
    """Take the next batch of this shard's drops (or exactly the `noted` ones: the
    recovery of an interrupted take at worker start); see the module docstring.

    Raises engine.suppress.store.StoreError when the suppression list cannot be read:
    nothing of the batch is queued or consumed then (the drops wait in incoming/)."""
    batch = IntakeBatch()
    note = taking_path(spool, k)
    if noted is not None:
        names = list(noted)
    else:
        names, batch.more = (pickup or Pickup(spool, k, settings)).next_batch(now)
    if not names:
        return batch
    new: list[NewEntry] = []
    # drop, envelope, entries (id, recipients, Message-ID)
    pending: list[tuple[str, DropEnvelope, list[tuple[str, list[str], str]]]] = []
    screened = IntakeBatch()  # what the drops of `pending` had suppressed, and headers
    notes: list[tuple[bytes, bytes, bytes]] = []  # what queue/<k>.taking records
    dir_fd = os.open(spool.incoming, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in names:
            try:
                taken = _take_one(
                    spool,
                    dir_fd,
                    name,
                    settings,
                    now,
                    batch,
                    noted.get(name) if noted else None,
                    gate,
                    screened,
                )
            except StoreError:
                raise  # the list is unreadable: nothing is taken (see the docstring)
            except Exception as e:  # a bug must cost one file (kept, with the reason), not intake
                reason = f"internal error while taking the drop: {type(e).__name__}: {e}"
                try:
                    batch.rejected.append((spool.reject_drop(name, reason), reason))
                except FileNotFoundError:
                    pass  # it vanished: nothing to keep
                continue
            if taken is not None:
                env, entries, items, identity, salt = taken
                pending.append((name, env, entries))
                new.extend(items)
                notes.append((os.fsencode(name), identity, salt))
    finally:
        os.close(dir_fd)
    if not pending:
        atomic.unlink_quietly(note)
        return batch
    refs = _commit(spool, shard, k, note, notes, new, batch) if new else []
    if batch.full:
        return batch
    spool.consume_drops([name for name, _, _ in pending])
    atomic.unlink_quietly(note)  # no fsync: a note that comes back names drops already gone
    by_id = {r.id: r for r in refs}
    for name, env, entries in pending:
        for eid, rcpts, msgid in entries:
            batch.taken.append(Taken(by_id[eid], env.sender, tuple(rcpts), msgid, name))
    batch.suppressed = screened.suppressed
    batch.headers = screened.headers
    return batch


def _commit(
    spool: Spool,
    shard: ShardQueue,
    k: int,
    note: Path,
    notes: list[tuple[bytes, bytes, bytes]],
    new: list[NewEntry],
    batch: IntakeBatch,
) -> list[EntryRef]:
    """Note the drops, then write the entries durably; [] with `batch.full` set when the
    spool is out of space."""
    try:
        # Durable before the entries are: after a crash between `add` and the unlink of
        # the drops, the next worker takes exactly these drops again *before* it delivers
        # anything, while their entries are surely still queued. Re-taken later, after the
        # scanned entry was delivered and removed, a drop would be queued and sent again.
        atomic.put_file(note.parent, note.name, msgpack.packb(notes, use_bin_type=True))
        atomic.fsync_dir(note.parent)
        return shard.add(new)
    except SpoolFull as e:
        batch.full = str(e)
        return []
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        batch.full = f"queue/{k}: {e.strerror}"
        return []


def _take_one(
    spool: Spool,
    dir_fd: int,
    name: str,
    settings: Settings,
    now: float,
    batch: IntakeBatch,
    noted: Noted | None,
    gate: IntakeGate | None = None,
    screened: IntakeBatch | None = None,
) -> tuple[DropEnvelope, list[tuple[str, list[str], str]], list[NewEntry], bytes, bytes] | None:
    """Read and parse one drop; None when it was rejected or is not ready yet.  A drop
    whose recipients are all suppressed comes back with no entries (it is consumed);
    its `suppressed` records and the entries' List-Unsubscribe results go to `screened`.

    Its ids come from a random salt (see the module docstring), or from the `noted` one
    when it is the very drop noted (same identity).  The salt also names the message:
    `msg` in every entry's meta (engine.runtime.outcome merges the bounce reports of one
    message) and the Message-ID added when the drop has none.
    """
    got = read_drop(dir_fd, name, max_size=settings.max_message_size)
    if isinstance(got, DropRejection):
        batch.rejected.append((spool.reject_drop(name, got.reason), got.reason))
        return None
    if not isinstance(got, DropFile):
        return None  # still being written: a later scan takes it
    env = parse_drop(got.data, max_recipients=settings.max_recipients)
    if isinstance(env, DropRejection):
        batch.rejected.append((spool.reject_drop(name, env.reason), env.reason))
        return None
    salt = noted.salt if noted is not None and noted.identity == got.identity else random_salt()
    key = entry_id(got.mtime_ns, salt)
    msgid = env.message_id or message_id_value(key, settings.helo_name)
    body = add_missing_headers(
        wire_body(env.message),
        date=None if env.has_date else date_value(now),
        message_id=None if env.message_id else msgid,
    )
    recipients: Sequence[str] = env.recipients
    screen = None
    if gate is not None:
        screen = gate.screen(body, env.sender, recipients, now)
        recipients = screen.keep
    # Signed here, after every header Volley adds (List-Unsubscribe included: RFC 8058 §4);
    # retries send the stored bytes.  Once for the message, or per entry that got its own
    # List-Unsubscribe.
    signer = signer_for(settings.dkim)
    shared: bytes | None = None  # `body` signed
    headers: list[tuple[str, str | None, str, int]] = []
    entries: list[tuple[str, list[str], str]] = []
    new: list[NewEntry] = []
    for domain, rcpts in split_by_domain(tuple(recipients)).items():
        copy = body
        if gate is not None and screen is not None:
            copy, result = gate.stamp(body, rcpts, screen)
            if result:
                headers.append((result, msgid, domain, len(rcpts)))
        if signer is not None:
            try:
                if copy is body:
                    shared = copy = shared or signer.sign(body)
                else:
                    copy = signer.sign(copy)
            except DkimError as e:
                batch.rejected.append((spool.reject_drop(name, str(e)), str(e)))
                return None
        eid = entry_id(got.mtime_ns, salt + domain.encode())
        entries.append((eid, rcpts, msgid))
        meta = new_meta(env, rcpts, domain, now, name, key=key, msgid=msgid)
        new.append(NewEntry(eid, domain, meta, copy, now))
    if screen is not None and screened is not None:
        screened.suppressed.extend(
            Suppressed(h, env.sender, screen.sender_domain, msgid, name) for h in screen.hits
        )
        screened.headers.extend(headers)
    return env, entries, new, got.identity, salt
