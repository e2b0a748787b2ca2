"""The supervisor side of queue control: what each admin API call does.

Responsible for: operator suspensions (kept in the `SuspensionStore`, sent to every worker
as a whole set at start and on every change, ended by themselves: `_expire_loop`), queue
directives (flush, bounce, delete, list, show) sent to every live worker with a request
id, gathering their replies (with a timeout; a worker that dies stops being waited for),
a message's history from the delivery log, and the records and metrics of each action.
Not responsible for: touching mail — the supervisor never does; workers apply directives
to the shards they own (engine.runtime.control) — nor HTTP (engine.admin.server/api).

Control-channel messages (documented with the others in engine.runtime.ipc):
  ["suspensions", [[domain, until, reason], ...]]   supervisor -> worker, the whole set
  ["directive", req, action, args]                  supervisor -> worker
  ["reply", req, result]                            worker -> supervisor, one per directive

Delivery-log records written here (worker null): `suspended` (domain, until, reason, by),
`resumed` (domain, by; `expired: true` when its time ran out) and `flushed` (domain or
null for all, entries, by).  Bounces and deletes are logged by the workers, one line per
recipient (`bounced` with the operator's reason as its text, `deleted` with `reason`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.admin.requests import Selector
from engine.admin.suspensions import Suspension, SuspensionStore
from engine.telemetry.eventlog import EventLog
from engine.telemetry.export import Exporter

__all__ = ["AdminService", "Unavailable", "history"]

EXPIRY_CHECK = 1.0  # seconds between checks for suspensions that ended
READ_TIMEOUT = 30.0  # list/show: every worker reads up to `limit` records
# bounce/delete/flush: a worker bounces ~1 000 entries a second (a DSN fsync each); past
# this the call answers with the workers still busy listed, and they carry on.
ACTION_TIMEOUT = 120.0
MAX_HISTORY = 1000  # records of one message's history returned by show


class Unavailable(Exception):
    """No worker can answer right now (HTTP 503)."""


@dataclass(slots=True)
class _Gather:
    waiting: set[int]
    done: asyncio.Future[None]
    replies: dict[int, dict[str, Any]] = field(default_factory=dict)

    def settle(self) -> None:
        if not self.waiting and not self.done.done():
            self.done.set_result(None)


class AdminService:
    def __init__(
        self,
        *,
        store: SuspensionStore,
        log: EventLog,
        log_path: Path,
        exporter: Exporter,
        send: Callable[..., None],
        live: Callable[[], list[int]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`send(k, *msg)` writes to worker k's channel; `live()` lists the workers that
        have one (a worker still starting buffers directives until it has scanned)."""
        self._store = store
        self._log = log
        self._log_path = log_path
        self._exporter = exporter
        self._send = send
        self._live = live
        self._clock = clock
        self._pending: dict[int, _Gather] = {}
        self._req = itertools.count(1)
        self._active: list[Suspension] = []
        self._expiry: asyncio.Task[None] | None = None

    def reopen_log(self, path: Path) -> None:
        """A reload: the supervisor's own records go to `path` from now on."""
        self._log.reopen(path)
        self._log_path = path

    def start(self) -> None:
        """Load the suspensions (ending those whose time ran out while Volley was down)
        and start watching for expiries.  Call on the event loop, before workers start."""
        self._expire(self._clock())
        self._active = self._store.active(self._clock())
        self._publish()
        self._expiry = asyncio.create_task(self._expire_loop(), name="admin-expiry")

    async def close(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry
        self._store.close()
        self._log.close()

    # -- suspensions ----------------------------------------------------------------------
    def suspension_message(self) -> list[list[Any]]:
        """The whole set, as the "suspensions" message carries it."""
        return [[s.domain, s.until, s.reason] for s in self._active]

    def suspensions(self) -> dict[str, Any]:
        now = self._clock()
        return {"now": now, "suspensions": [s.to_dict() for s in self._active if s.until > now]}

    def suspend(self, domain: str, duration: float, reason: str, by: str) -> dict[str, Any]:
        now = self._clock()
        s = Suspension(domain, now + duration, reason, by, now)
        self._store.suspend(s)  # durable before anyone is told
        self._active = [x for x in self._active if x.domain != domain] + [s]
        self._active.sort(key=lambda x: x.domain)
        self._broadcast()
        self._record("suspended", now, domain=domain, until=s.until, reason=reason, by=by)
        self._exporter.count("volley_operator_actions", "suspend")
        return {"suspended": s.to_dict()}

    def resume(self, domain: str, by: str) -> dict[str, Any]:
        now = self._clock()
        gone = self._store.resume(domain)
        self._active = [x for x in self._active if x.domain != domain]
        self._broadcast()
        if gone is not None:
            self._record("resumed", now, domain=domain, by=by)
        self._exporter.count("volley_operator_actions", "resume")
        return {"domain": domain, "was_suspended": gone is not None}

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_CHECK)
            if any(s.until <= self._clock() for s in self._active):
                self._expire(self._clock())

    def _expire(self, now: float) -> None:
        """Forget suspensions whose time is up.  Workers lift them by themselves at the
        same moment (engine.sched.queue); this keeps the store, log and metrics true."""
        gone = self._store.purge(now)
        if not gone:
            return
        ended = {s.domain for s in gone}
        self._active = [s for s in self._active if s.domain not in ended]
        for s in gone:
            self._record("resumed", now, domain=s.domain, by=s.by, expired=True)
        self._broadcast()

    def _broadcast(self) -> None:
        msg = self.suspension_message()
        for k in self._live():
            self._send(k, "suspensions", msg)
        self._publish()

    def _publish(self) -> None:
        self._exporter.set_suspensions([(s.domain, s.until) for s in self._active])

    # -- directives -----------------------------------------------------------------------
    async def flush(self, domain: str | None, by: str) -> dict[str, Any]:
        replies, missing = await self._ask("flush", {"domain": domain}, ACTION_TIMEOUT)
        n = sum(int(r.get("flushed", 0)) for r in replies.values())
        self._record("flushed", self._clock(), domain=domain, entries=n, by=by)
        self._exporter.count("volley_operator_actions", "flush")
        return {"domain": domain, "flushed": n, **_problems(replies, missing)}

    async def remove(self, action: str, selector: Selector, reason: str, by: str) -> dict[str, Any]:
        """bounce (with a DSN) or delete (without) the queued entries `selector` picks."""
        args = {"selector": selector.to_dict(), "reason": reason, "by": by}
        replies, missing = await self._ask(action, args, ACTION_TIMEOUT)
        self._exporter.count("volley_operator_actions", action)
        out: dict[str, Any] = {"action": action, "selector": selector.to_dict(), "reason": reason}
        for key in ("matched", "removed", "recipients", "in_flight"):
            out[key] = sum(int(r.get(key, 0)) for r in replies.values())
        return out | _problems(replies, missing)

    async def list_entries(self, domain: str | None, limit: int) -> dict[str, Any]:
        args = {"domain": domain, "limit": limit}
        replies, missing = await self._ask("list", args, READ_TIMEOUT)
        entries = [e for r in replies.values() for e in r.get("entries", [])]
        entries.sort(key=lambda e: (e["id"], e["domain"]))
        total = sum(int(r.get("total", 0)) for r in replies.values())
        shown = entries[:limit]
        return {
            "total": total,
            "entries": shown,
            "truncated": total > len(shown),
            **_problems(replies, missing),
        }

    async def show(self, entry_id: str) -> dict[str, Any] | None:
        """The message's queued entries (one per destination) and its log history; None
        if neither exists."""
        replies, missing = await self._ask("show", {"id": entry_id}, READ_TIMEOUT)
        entries = sorted(
            (e for r in replies.values() for e in r.get("entries", [])), key=lambda e: e["domain"]
        )
        loop = asyncio.get_running_loop()
        past = await loop.run_in_executor(None, history, self._log_path, entry_id)
        problems = _problems(replies, missing)
        if not entries and not past and not problems:
            return None
        return {"id": entry_id, "entries": entries, "history": past, **problems}

    async def _ask(
        self, action: str, args: dict[str, Any], timeout: float
    ) -> tuple[dict[int, dict[str, Any]], list[int]]:
        """Send a directive to every live worker; their replies (by worker) and the
        workers that did not answer in `timeout` seconds or died meanwhile."""
        targets = self._live()
        if not targets:
            raise Unavailable("no worker is running")
        req = next(self._req)
        g = _Gather(set(targets), asyncio.get_running_loop().create_future())
        self._pending[req] = g
        for k in targets:
            self._send(k, "directive", req, action, args)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await g.done
        finally:
            del self._pending[req]
        return g.replies, sorted(set(targets) - set(g.replies))

    def on_reply(self, k: int, req: int, result: dict[str, Any]) -> None:
        g = self._pending.get(req)
        if g is not None and k in g.waiting:
            g.waiting.discard(k)
            g.replies[k] = result if isinstance(result, dict) else {"error": "malformed reply"}
            g.settle()

    def worker_gone(self, k: int) -> None:
        """Worker k died: pending directives stop waiting for it (it is reported missing)."""
        for g in self._pending.values():
            g.waiting.discard(k)
            g.settle()

    def _record(self, event: str, now: float, **fields: Any) -> None:
        self._log.add(event, now, **fields)
        self._log.flush()


def _problems(replies: dict[int, dict[str, Any]], missing: list[int]) -> dict[str, Any]:
    """What to tell the caller about workers that failed or did not answer."""
    out: dict[str, Any] = {}
    errors = {str(k): r["error"] for k, r in replies.items() if "error" in r}
    if errors:
        out["errors"] = errors
    if missing:
        out["workers_missing"] = missing
    return out


def history(path: Path, entry_id: str, limit: int = MAX_HISTORY) -> list[dict[str, Any]]:
    """The delivery-log records about one message (its `id`, or DSNs `about` it), oldest
    first, at most `limit` (the last ones).  Reads the whole log: a byte search skips the
    JSON decoding of other messages' lines (~1 s per GB); rotated files are not read."""
    needle = f'"{entry_id}"'.encode()
    out: deque[dict[str, Any]] = deque(maxlen=limit)
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return []
    with fh:
        for line in fh:
            if needle not in line or not line.endswith(b"\n"):
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and entry_id in (rec.get("id"), rec.get("about")):
                out.append(rec)
    return list(out)
