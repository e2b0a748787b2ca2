"""Worker side of queue control: operator suspensions and directives on this shard.

Responsible for: applying the supervisor's set of operator suspensions to the work queue
(a newly suspended destination's idle connections are asked to close), and carrying out
directives — flush, bounce, delete, list, show — on the entries this worker owns,
answering each with one ["reply", req, result] (engine.admin.service gathers them).
Not responsible for: deciding what a request means or validating it beyond re-reading the
selector (engine.admin.requests), persistence of suspensions (the supervisor's store), or
delivery (engine.runtime.delivery).

Entries in flight.  A bounce or delete never races a delivery: entries waiting in the
queue are taken out of it first (`WorkQueue.extract`: counted as taken, like a
connection's), and entries a connection holds are only marked: if their attempt delivers
every recipient there is nothing left to remove; if recipients are left (deferred), the
queue hands the entry here instead of rescheduling it (`WorkQueue.claimed`) and the
action applies to those recipients.  The reply counts such entries as `in_flight`.  A
mark lives in memory: if Volley stops before that attempt ends, the entry stays queued
(never lost; run the command again).

Bounces go through `Outcomes.apply` like any permanent failure — one `bounced` record
per recipient whose text carries the operator's reason, and the same DSN builder — so an
operator's bounce is a bounce to every consumer of the log.  Deletes log one `deleted`
record per recipient (with `reason` and `by`) and remove the entry after its records,
with no DSN.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from engine.admin.requests import BadRequest, parse_selector
from engine.clock import Clock
from engine.model import Disposition, Origin, RecipientOutcome
from engine.runtime.outcome import Attempt, Outcomes
from engine.sched.queue import Entry, EntryState, WorkQueue
from engine.telemetry.eventlog import EventLog
from engine.telemetry.metrics import Tally
from spool import CorruptEntry, EntryRef, ShardQueue
from spool.ids import ID_LENGTH
from spool.layout import domain_of_entry

__all__ = ["BOUNCE_CODE", "BOUNCE_STATUS", "Control"]

# An operator's bounce is a local permanent failure: 550 with RFC 3463's "other
# undefined status" 5.0.0 (no more specific code exists for "cancelled by the sender's
# administrator"); the text says who decided and why.
BOUNCE_CODE = 550
BOUNCE_STATUS = "5.0.0"
YIELD_EVERY = 64  # entries handled between yields to the loop during a bulk bounce/delete
MAX_HEADERS = 64 * 1024  # `show` returns at most this much of the header section


class Control:
    def __init__(
        self,
        *,
        shard_no: int,
        queue: WorkQueue,
        shard: ShardQueue,
        outcomes: Outcomes,
        log: EventLog,
        tally: Tally,
        clock: Clock,
        send: Callable[..., None],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        kick: Callable[[], None],
        contend: Callable[[str], None],
        remove: Callable[[EntryRef], None],
        settle: Callable[[], None] = lambda: None,
    ) -> None:
        """`send(*msg)` writes to the supervisor; `spawn(coro)` runs a task the worker
        waits for when it drains; `kick()` wakes the dispatch loop; `contend(domain)`
        closes the domain's idle connections; `remove(ref)` finishes an entry (the
        worker's write-behind removal, run after the entry's log records); `settle()`
        waits until the log records handed over are written (so that when a bounce or
        delete answers, its records are in the log for whoever reads it next)."""
        self._k = shard_no
        self._queue = queue
        self._shard = shard
        self._outcomes = outcomes
        self._log = log
        self._tally = tally
        self._clock = clock
        self._send = send
        self._spawn = spawn
        self._kick = kick
        self._contend = contend
        self._remove = remove
        self._settle = settle
        self._started = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        queue.on_claim = self._claim_soon

    def started(self) -> None:
        """The worker has scanned its queue: directives may run (they wait till then)."""
        self._started.set()

    def on_message(self, msg: list[Any]) -> None:
        kind = msg[0]
        if kind == "suspensions":
            self._suspensions(msg[1])
        elif kind == "directive":
            _, req, action, args = msg
            self._spawn(self._directive(req, action, args))

    # -- suspensions ----------------------------------------------------------------------
    def _suspensions(self, items: list[list[Any]]) -> None:
        holds = {str(domain): float(until) for domain, until, *_ in items}
        before = set(self._queue.holds)
        woken = self._queue.set_holds(holds, self._clock.wall())
        for domain in set(holds) - before:
            self._contend(domain)  # idle connections close; busy ones finish their message
        if woken:
            self._kick()

    # -- directives -----------------------------------------------------------------------
    async def _directive(self, req: int, action: str, args: dict[str, Any]) -> None:
        await self._started.wait()
        handler = {
            "flush": self._flush,
            "bounce": self._bounce,
            "delete": self._delete,
            "list": self._list,
            "show": self._show,
        }.get(action)
        result: dict[str, Any]
        if handler is None:
            result = {"error": f"unknown directive {action!r}"}
        else:
            try:
                result = await handler(args)
            except (BadRequest, KeyError, TypeError, ValueError) as e:
                result = {"error": f"worker {self._k}: bad directive {action}: {e}"}
            except Exception as e:  # e.g. an I/O error: answer rather than leave the caller waiting
                result = {"error": f"worker {self._k}: {action} failed: {type(e).__name__}: {e}"}
        self._send("reply", req, result)

    async def _flush(self, args: dict[str, Any]) -> dict[str, Any]:
        n = self._queue.flush(args.get("domain"), self._clock.wall())
        self._kick()
        return {"flushed": n}

    async def _bounce(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self._remove_matching("bounce", args)

    async def _delete(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self._remove_matching("delete", args)

    async def _remove_matching(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        selector = parse_selector(args["selector"])
        reason, by = str(args.get("reason") or ""), str(args.get("by") or "")
        names = self._queue.names(selector.domain, selector.matches_name)
        if selector.needs_meta and names:
            senders = await self._loop.run_in_executor(None, self._senders, names)
            names = [n for n in names if selector.matches(n, senders.get(n))]
        taken, in_flight = self._queue.extract(names)
        tag = (action, reason, by)
        for name in in_flight:
            self._queue.mark(name, tag)
        removed = recipients = kept = 0
        for i, entry in enumerate(taken):
            got = self._apply(entry, tag, self._clock.wall())
            if got is None:
                kept += 1
            else:
                removed += 1
                recipients += got
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                self._log.flush()
                await asyncio.sleep(0)  # deliveries and other calls go on meanwhile
        self._log.flush()
        self._settle()
        out: dict[str, Any] = {
            "matched": len(taken) + len(in_flight),
            "removed": removed,
            "recipients": recipients,
            "in_flight": len(in_flight),
        }
        if kept:
            out["error"] = f"worker {self._k}: {kept} entries kept: the spool is full"
        return out

    def _apply(self, entry: Entry, tag: tuple[str, str, str], now: float) -> int | None:
        """Bounce or delete one taken entry; the recipients removed, or None if it stays
        (the spool was full: the DSN could not be written)."""
        action, reason, by = tag
        assert isinstance(entry, EntryRef)
        try:
            meta, body = self._shard.load(entry)
        except FileNotFoundError:
            self._queue.done(entry, retry_at=None, now=now)
            return 0
        except CorruptEntry as e:
            self._outcomes.quarantine(
                entry, f"cannot decode spool entry: {e.reason}", "corrupt", now
            )
            return 0
        self._outcomes.seal(entry.name)  # a bounce report being gathered stops here
        rcpts = [str(r) for r in meta["rcpts"]]
        if action == "bounce":
            text = "bounced by the operator" + (f": {reason}" if reason else "")
            verdicts = [
                RecipientOutcome(
                    r, Disposition.BOUNCED, BOUNCE_CODE, BOUNCE_STATUS, text, Origin.OPERATOR
                )
                for r in rcpts
            ]
            if not self._outcomes.apply(entry, meta, body, verdicts, Attempt(), now):
                # The spool was full (no DSN could be written): the entry went back to the
                # queue as it was.  Marked, so the bounce applies when its next attempt
                # ends with recipients left, as for an entry that was in flight.
                self._queue.mark(entry.name, tag)
                return None
        else:
            created = float(meta["created"])
            for rcpt in rcpts:
                self._log.add(
                    "deleted",
                    now,
                    id=entry.id,
                    msgid=meta.get("msgid"),
                    sender=meta["sender"],
                    rcpt=rcpt,
                    domain=entry.domain,
                    reason=reason,
                    by=by,
                    attempt=int(meta.get("attempts", 0)),
                    queued_at=created,
                    in_queue=round(now - created, 3),
                )
            self._queue.done(entry, retry_at=None, now=now)
            self._log.then(self._remove, entry)  # the removal follows its records
        self._tally.inc("volley_operator_removed", action, n=len(rcpts))
        return len(rcpts)

    def _claim_soon(self) -> None:
        """A marked entry's attempt ended with recipients left: act on it once the
        delivery code that reported it has returned (not from inside its bookkeeping)."""
        self._loop.call_soon(self._claims)

    def _claims(self) -> None:
        now = self._clock.wall()
        for entry, tag in self._queue.claimed():
            assert isinstance(tag, tuple)
            self._apply(entry, tag, now)
        self._log.flush()

    # -- reading ----------------------------------------------------------------------------
    async def _list(self, args: dict[str, Any]) -> dict[str, Any]:
        domain = args.get("domain")
        chosen = self._queue.entries(domain, limit=int(args["limit"]))
        loaded = await self._loop.run_in_executor(
            None, self._read, [n for n, _, _ in chosen], False
        )
        return {
            "total": self._queue.count(domain),
            "entries": [self._describe(n, s, due, loaded[n]) for n, s, due in chosen],
        }

    async def _show(self, args: dict[str, Any]) -> dict[str, Any]:
        prefix = str(args["id"]) + "@"
        items = self._queue.entries(match=lambda n: n.startswith(prefix))
        loaded = await self._loop.run_in_executor(None, self._read, [n for n, _, _ in items], True)
        return {"entries": [self._describe(n, s, due, loaded[n]) for n, s, due in items]}

    def _describe(
        self, name: str, state: EntryState, due: float | None, got: dict[str, Any]
    ) -> dict[str, Any]:
        domain = domain_of_entry(name)
        if state is EntryState.HELD:
            due = self._queue.holds.get(domain)  # when the suspension ends
        return {
            "id": name[:ID_LENGTH],
            "domain": domain,
            "state": state.value,
            "next_attempt": due,
            "worker": self._k,
            **got,
        }

    def _read(self, names: list[str], headers: bool) -> dict[str, dict[str, Any]]:
        """Each entry's envelope and state from its record (on a thread: ShardQueue.load
        is thread-safe, and a listing must not stall deliveries)."""
        out: dict[str, dict[str, Any]] = {}
        for name in names:
            try:
                meta, body = self._shard.load(_ref(name))
            except FileNotFoundError:
                out[name] = {"error": "finished meanwhile"}
                continue
            except CorruptEntry as e:
                out[name] = {"error": f"corrupt: {e.reason}"}
                continue
            info: dict[str, Any] = {
                "sender": meta.get("sender"),
                "recipients": list(meta.get("rcpts", [])),
                "attempts": int(meta.get("attempts", 0)),
                "created": meta.get("created"),
                "last": meta.get("last"),
                "msgid": meta.get("msgid"),
                "dsn": bool(meta.get("dsn")),
                "size": len(body),
            }
            if headers:
                end = body.find(b"\r\n\r\n")
                head = body[: end + 2 if end >= 0 else len(body)][:MAX_HEADERS]
                info["headers"] = head.decode("utf-8", "replace")
            out[name] = info
        return out

    def _senders(self, names: list[str]) -> dict[str, str | None]:
        """Each entry's envelope sender (on a thread; None if it cannot be read)."""
        out: dict[str, str | None] = {}
        for name in names:
            try:
                meta, _ = self._shard.load(_ref(name))
            except (FileNotFoundError, CorruptEntry):
                out[name] = None
                continue
            out[name] = str(meta.get("sender", ""))
        return out


def _ref(name: str) -> EntryRef:
    return EntryRef(name, domain_of_entry(name), 0.0)
