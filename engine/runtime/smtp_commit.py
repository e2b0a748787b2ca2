"""The group commit behind the SMTP listener: accepted messages -> durable entries.

Responsible for: `GroupCommit`: every message that finished DATA while the previous
commit was running goes into the next one — prepared (engine.smtpd.message), screened
against the suppression list (engine.suppress.gate: a suppressed recipient is not queued,
but its RCPT was accepted, so a client cannot probe the list), and staged as one segment
on the event loop, then made durable in a thread (`spool.ShardQueue.stage` / `commit`:
fsync, link, directory fsync; List-Unsubscribe stamping, DKIM signing and bounce-domain
copies, when there are any, in that thread too).  Only when that returned does any of
those sessions get its 250; then the entries join this worker's queue exactly as
intake's do (`received` records, with `via: "smtp"`, the client address and the AUTH
user; `suppressed` records for the recipients screened out).  Recipients in bounce
domains are kept (engine.feedback.inbox.store) before the 250, never relayed.
Not responsible for: SMTP (engine.smtpd), the listener's sockets and sessions
(engine.runtime.listener), what a message gains on the way in (engine.smtpd.message,
engine.auth.dkim), or scheduling (the worker's queue).

Durability (README "Guarantees"): a 250 follows a completed commit, so a kill -9 after it
loses nothing; a crash before it leaves at most a tmp file, which the worker's next start
removes (`ShardQueue.recover`): no half message is ever queued.  Spool out of space: 452
4.3.1 for the whole batch; any other write error: 451 4.3.0; never a 250.

Why a batch and not a commit per message: a server that fsyncs each message before its
250 took ~1 900 msg/s on this load (issue #13's reference); here 20 sessions over 2 workers
share a commit ~4 at a time (one file fsync and one directory fsync for all of them), and
the rate no longer depends on the fsync time (bench/README.md, listener phase).
"""

from __future__ import annotations

import asyncio
import errno
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from engine.auth.dkim import DkimError, Signer, signer_for, unstuff
from engine.config import Settings
from engine.drop.cleanup import date_value
from engine.feedback.inbox import store
from engine.runtime.intake import entry_meta, split_by_domain
from engine.sched.queue import WorkQueue
from engine.smtp.encode import needs_smtputf8
from engine.smtpd import replies as R
from engine.smtpd.events import Envelope
from engine.smtpd.message import Prepared, prepare
from engine.suppress.check import record_fields
from engine.suppress.gate import IntakeGate, Screened
from engine.suppress.store import StoreError
from engine.telemetry.eventlog import EventLog
from engine.telemetry.metrics import Tally
from spool import (
    EntryRef,
    NewEntry,
    ShardQueue,
    SpoolFull,
    StagedAdd,
    entry_id,
    entry_name,
    random_salt,
)

__all__ = ["GroupCommit", "LocalStore", "smtp_meta"]


class LocalStore(Protocol):
    """engine.feedback.inbox.store's signature: durably keep a bounce-domain message."""

    def __call__(
        self, spool_root: Path, raw: bytes, *, sender: str, recipients: Sequence[str], client: str
    ) -> None: ...


def smtp_meta(
    env: Envelope, rcpts: list[str], domain: str, now: float, key: str, msg: Prepared
) -> dict[str, Any]:
    """`entry_meta` of a submission's entry: `drop` None and where it came from."""
    return entry_meta(
        key=key,
        sender=env.sender,
        rcpts=rcpts,
        domain=domain,
        now=now,
        msgid=msg.message_id,
        smtputf8=needs_smtputf8(env.sender) or any(map(needs_smtputf8, env.recipients)),
        body_8bit=msg.body_8bit,
        drop=None,
        via="smtp",
        client=env.client,
        auth=env.auth_user,
    )


@dataclass(slots=True)
class _Item:
    env: Envelope
    data: bytes
    fut: asyncio.Future[tuple[bytes, bool]]
    key: str = ""
    msg: Prepared | None = None
    body: bytes = b""  # msg.body: what is queued, before stamping and signing
    screened: Screened | None = None  # what the suppression list said (None: no gate)
    # destination domain -> its entry's bytes (List-Unsubscribe stamped, DKIM-signed);
    # a domain missing here gets `body`
    bodies: dict[str, bytes] = field(default_factory=dict)
    headers: list[tuple[str, str, int]] = field(default_factory=list)  # (result, domain, n)
    entries: list[tuple[str, list[str]]] | None = None  # (entry name, its recipients)
    error: bytes | None = None  # this message's reply when it cannot be taken

    @property
    def recipients(self) -> Sequence[str]:
        """The relayed recipients to queue: the suppressed ones screened out."""
        return self.env.recipients if self.screened is None else self.screened.keep


@dataclass(slots=True)
class _Batch:
    items: list[_Item]
    now: float = 0.0
    refs: dict[str, EntryRef] | None = None
    error: bytes | None = None  # the reply of every item when the segment failed
    note: str = ""
    local: bool = False  # some message has bounce-domain recipients


class GroupCommit:
    """Committer for engine.smtpd.server: one spool segment + fsync per batch."""

    def __init__(
        self,
        settings: Settings,
        shard: ShardQueue,
        queue: WorkQueue,
        log: EventLog,
        tally: Tally,
        kick: Callable[[], None],
        store_local: LocalStore = store,
        gate: IntakeGate | None = None,
    ) -> None:
        """`gate`: the worker's suppression check and List-Unsubscribe stamping, the one
        drop intake uses (engine.suppress.gate); None: neither."""
        self.s = settings
        self.gate = gate
        self.shard = shard
        self.queue = queue
        self.log = log
        self.tally = tally
        self.kick = kick
        self._store_local = store_local
        self._pending: list[_Item] = []
        self._busy = False
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, envelope: Envelope, data: bytes) -> asyncio.Future[tuple[bytes, bool]]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[bytes, bool]] = loop.create_future()
        self._pending.append(_Item(envelope, data, fut))
        if not self._busy:
            self._busy = True
            self._idle.clear()
            loop.call_soon(self._start)  # whatever else finishes in this loop pass joins
        return fut

    @property
    def idle(self) -> bool:
        return not self._busy

    async def wait_idle(self) -> None:
        """Until no commit is running or waiting."""
        await self._idle.wait()

    def _start(self) -> None:
        batch = _Batch(self._pending)
        self._pending = []
        # Everything but waiting for the disk happens here, on the loop: the thread makes
        # only the calls that block (fsync, link, fsync; spool.ShardQueue.commit).  Each
        # blocking call a thread makes gives the GIL away and must win it back from the
        # busy loop; with the whole `add` in the thread (11 such calls) that hand-off
        # traffic cost more than the work: 311-394 µs of CPU a message, against 249-274
        # with 3 calls and 188-231 with none (one worker, 20 sessions, bench/listener.py).
        # DKIM signing (~0.4 ms a message with RSA) and the bounce-domain copies (an
        # fsync each) go to the thread with the rest, before the segment is staged.
        signer = signer_for(self.s.dkim)
        staged: StagedAdd | None = None
        try:
            self.prepare(batch)
            if signer is None and not batch.local:
                self.stamp(batch, None)
                staged = self.shard.stage(self.entries(batch))
        except Exception as e:
            self._failed(batch, e)
        loop = asyncio.get_running_loop()
        if batch.error is None:
            job = loop.run_in_executor(None, self.write, batch, staged, signer)
        else:
            job = loop.create_future()
            job.set_result(None)
        job.add_done_callback(lambda f: self._done(batch, f))

    def prepare(self, batch: _Batch) -> None:
        """Every message of the batch as it will be queued (engine.smtpd.message)."""
        s = self.s
        now = batch.now = time.time()
        date = date_value(now)
        batch_salt = random_salt()
        now_ns = time.time_ns()
        for i, item in enumerate(batch.items):
            item.key = entry_id(now_ns, batch_salt + i.to_bytes(4, "big"))
            item.msg = prepare(
                item.env,
                item.data,
                hostname=s.helo_name,
                key=item.key,
                date=date,
                show_auth=s.smtpd.received_auth_user,
            )
            item.body = item.msg.body
            batch.local |= bool(item.env.local_recipients)
            if self.gate is not None and item.env.recipients:
                try:
                    item.screened = self.gate.screen(
                        item.body, item.env.sender, item.env.recipients, now
                    )
                except StoreError as e:
                    # Never queued unchecked: the client sends it again later.
                    item.error = R.SUPPRESSION_UNAVAILABLE
                    batch.note = f"suppression list unreadable: {e}"

    def stamp(self, batch: _Batch, signer: Signer | None) -> None:
        """Each entry's bytes: its own List-Unsubscribe when it has one recipient
        (engine.suppress.gate.stamp), then DKIM-signed after it (RFC 8058 §4 wants both
        fields signed): once for the message, or per entry that got its own header.  A
        message that cannot be signed is refused for good, never sent unsigned."""
        for item in batch.items:
            if item.error is not None or item.msg is None:
                continue
            shared: bytes | None = None
            try:
                for domain, rcpts in split_by_domain(tuple(item.recipients)).items():
                    copy = item.body
                    if self.gate is not None and item.screened is not None:
                        copy, result = self.gate.stamp(item.body, rcpts, item.screened)
                        if result:
                            item.headers.append((result, domain, len(rcpts)))
                    if signer is not None:
                        if copy is item.body:
                            shared = copy = shared or signer.sign(item.body)
                        else:
                            copy = signer.sign(copy)
                    item.bodies[domain] = copy
            except DkimError as e:
                why = " ".join(str(e).split())[:200].encode("ascii", "replace")
                item.error = b"554 5.6.0 Message cannot be DKIM-signed: " + why + b"\r\n"

    def entries(self, batch: _Batch) -> list[NewEntry]:
        """The spool entries of the batch's messages: one per destination domain."""
        new: list[NewEntry] = []
        now_ns = int(batch.now * 1e9)
        for item in batch.items:
            item.entries = []
            if item.error is not None or item.msg is None:
                continue
            env = item.env
            for domain, rcpts in split_by_domain(tuple(item.recipients)).items():
                eid = entry_id(now_ns, item.key.encode() + domain.encode())
                item.entries.append((entry_name(eid, domain), rcpts))
                meta = smtp_meta(env, rcpts, domain, batch.now, item.key, item.msg)
                body = item.bodies.get(domain, item.body)
                new.append(NewEntry(eid, domain, meta, body, batch.now))
        return new

    def write(self, batch: _Batch, staged: StagedAdd | None, signer: Signer | None) -> None:
        """In a thread: sign, keep the local copies, make the segment durable."""
        try:
            if staged is None:
                self.stamp(batch, signer)
                if batch.local:
                    self._keep_local(batch)
                staged = self.shard.stage(self.entries(batch))
            batch.refs = {r.name: r for r in self.shard.commit(staged)}
        except Exception as e:
            if staged is not None:
                self.shard.discard(staged)
            self._failed(batch, e)

    def _keep_local(self, batch: _Batch) -> None:
        """Bounce-domain recipients: engine.feedback keeps the message (durably)."""
        for item in batch.items:
            env = item.env
            if not env.local_recipients or item.error is not None:
                continue
            try:
                self._store_local(
                    self.s.spool_path,
                    unstuff(item.body),
                    sender=env.sender,
                    recipients=env.local_recipients,
                    client=env.client,
                )
            except Exception as e:
                # Not a 250: its relayed recipients are not queued either (the client
                # sends the whole message again).
                item.error = R.LOCAL_ERROR
                batch.note = f"bounce-domain copy not stored: {type(e).__name__}: {e}"

    def _failed(self, batch: _Batch, e: Exception) -> None:
        if isinstance(e, SpoolFull):
            batch.error, batch.note = R.SPOOL_FULL, str(e)
        elif isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            batch.error, batch.note = R.SPOOL_FULL, f"queue/{self.shard.k}: {e.strerror}"
        elif isinstance(e, OSError):
            batch.error, batch.note = R.LOCAL_ERROR, f"{type(e).__name__}: {e}"
        else:  # a bug: the batch's sessions get a 451, we a traceback
            traceback.print_exception(e, file=sys.stderr)
            batch.error, batch.note = R.LOCAL_ERROR, f"internal error: {type(e).__name__}: {e}"

    def _done(self, batch: _Batch, job: asyncio.Future[None]) -> None:
        exc = job.exception()
        now = batch.now or time.time()
        if isinstance(exc, Exception):
            self._failed(batch, exc)
        if batch.note:
            self.log.add("smtpd_error", now, error=batch.note)
            if batch.error is R.SPOOL_FULL:
                self.tally.inc("volley_smtpd_rejected", "spool_full")
        queued = False
        for item in batch.items:
            reply = item.error or batch.error
            accepted = reply is None and batch.refs is not None
            if accepted:
                queued |= self._queue(item, batch.refs or {}, now)
                self.tally.inc("volley_smtpd_bytes", n=len(item.data))
                reply = f"250 2.0.0 Ok: queued as {item.key}\r\n".encode("ascii")
            else:
                reply = reply or R.LOCAL_ERROR
                if reply is R.LOCAL_ERROR:
                    self.tally.inc("volley_smtpd_rejected", "local_error")
            if not item.fut.done():
                item.fut.set_result((reply, accepted))
        if queued:
            self.kick()
        if self._pending:
            self._start()
        else:
            self._busy = False
            self._idle.set()

    def _records(self, item: _Item, now: float) -> None:
        """`suppressed` records (the RCPT was accepted: the client cannot tell) and the
        List-Unsubscribe results, as drop intake writes them."""
        env, msg, screened = item.env, item.msg, item.screened
        assert msg is not None
        if screened is not None:
            for hit in screened.hits:
                fields = record_fields(hit, env.sender, screened.sender_domain)
                self.log.add(
                    "suppressed", now, msgid=msg.message_id, via="smtp", client=env.client, **fields
                )
                self.tally.inc("volley_suppressed", hit.entry.source.value)
        for result, domain, n in item.headers:
            self.tally.inc("volley_unsubscribe_headers", result)
            if result == "several_recipients":
                self.log.add(
                    "unsubscribe_skipped", now, msgid=msg.message_id, domain=domain, rcpts=n
                )

    def _queue(self, item: _Item, refs: dict[str, EntryRef], now: float) -> bool:
        env, msg = item.env, item.msg
        assert msg is not None and item.entries is not None
        self._records(item, now)
        if env.local_recipients:
            self.tally.inc("volley_smtpd_messages", "local")
        if not item.entries:
            return False
        self.tally.inc("volley_smtpd_messages", "queued")
        for name, rcpts in item.entries:
            ref = refs[name]
            if not self.queue.add(ref, ref.mtime, now):
                continue
            for rcpt in rcpts:
                self.log.add(
                    "received",
                    now,
                    id=ref.id,
                    msgid=msg.message_id,
                    sender=env.sender,
                    rcpt=rcpt,
                    domain=ref.domain,
                    via="smtp",
                    client=env.client,
                    auth=env.auth_user,
                )
            self.tally.inc("volley_received", ref.domain, n=len(rcpts))
        return True
