"""The supervisor side of the suppression list: the one writer while Volley runs.

Responsible for: owning `<spool>/suppression.db`'s writer (engine.suppress.store) on one
dedicated thread - every write of the running instance goes through it, in order, so
SQLite's one-writer rule holds and the supervisor's event loop never waits for an fsync -
and what each writer asks for:
  * operators (admin API, engine.suppress.api): add, import, remove, list, check;
  * workers, over the control channel (engine.runtime.ipc):
      ["suppress", req, [entry row, ...]]   add (complaints and mailto: unsubscribes),
                                            answered ["suppressed", req, error | None]
                                            once committed (req 0: no answer wanted)
      ["suppress_events", [event, ...]]     delivery results to apply the rules to
                                            (engine.suppress.rules.decide; histories here)
  * the one-click endpoint (engine.unsubscribe.server): `unsubscribe`, committed before
    its 200;
and the records of what changed (`suppression_added`, `suppression_removed`, worker
null), volley_suppressions_added_total{source}, and an hourly purge of expired entries.
Not responsible for: checking recipients (each worker's engine.suppress.check reads the
file itself, read-only) or HTTP.

While Volley is stopped, `volley suppress` writes the file directly (it holds the spool's
instance lock meanwhile, so the two never write at once: engine.suppress.commands).

Loss window: a worker's bounce events wait up to 250 ms (its metrics flush) before they
are sent, and are not acknowledged; a kill -9 can lose those suppressions (the bounces
themselves are in the delivery log).  Complaints and unsubscribes are acknowledged: the
report file is removed, or the 200 sent, only after the commit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.config import Settings
from engine.suppress.model import Entry, Source, clean_reason
from engine.suppress.rules import decide
from engine.suppress.store import SqliteSuppressionStore, StoreError, db_path
from engine.telemetry.eventlog import EventLog
from engine.unsubscribe.token import Claim

__all__ = ["SuppressionService", "unsubscribe_entry"]

PURGE_EVERY = 3600.0  # seconds between purges of expired entries
CHECKPOINT_AFTER = 10_000  # entries of one add after which the WAL is folded back at once


def unsubscribe_entry(claim: Claim, now: float, via: str) -> Entry:
    """The entry a verified unsubscribe request adds: the address, for its sender domain."""
    listed = f" list {claim.list_id}" if claim.list_id else ""
    reason = clean_reason(f"unsubscribed ({via}){listed}")
    return Entry(claim.recipient, claim.sender_domain, reason, Source.UNSUBSCRIBE, now, None)


@dataclass(frozen=True, slots=True)
class Event:
    """A delivery result a worker reports (engine.suppress.feed)."""

    category: str | None  # None: delivered
    recipient: str  # address key
    sender_domain: str | None
    permanent: bool
    message: str
    text: str
    time: float

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Event:
        cat, rcpt, domain, permanent, message, text, t = row
        return cls(
            None if cat is None else str(cat),
            str(rcpt),
            None if domain is None else str(domain),
            bool(permanent),
            str(message),
            str(text),
            float(t),
        )


class SuppressionService:
    def __init__(
        self,
        settings: Settings,
        store: SqliteSuppressionStore,
        log: EventLog,
        count: Callable[..., None],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Use `open`.  `count(name, *labels)` counts supervisor metrics."""
        self.s = settings
        self._store = store
        self._log = log
        self._count = count
        self._clock = clock
        self._thread = concurrent.futures.ThreadPoolExecutor(1, "suppression-writer")
        self._purge: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        settings: Settings,
        count: Callable[..., None],
        *,
        clock: Callable[[], float] = time.time,
    ) -> SuppressionService:
        """Open the store (creating it) and start the purge; raises StoreError."""
        store = SqliteSuppressionStore(db_path(settings.spool_path))
        service = cls(settings, store, EventLog(settings.log_path, None), count, clock=clock)
        service._purge = asyncio.create_task(service._purge_loop(), name="suppression-purge")
        return service

    def reconfigure(self, settings: Settings) -> None:
        """SIGHUP: the rules' settings apply to the next events."""
        self.s = settings

    def reopen_log(self) -> None:
        self._log.reopen(self.s.log_path)

    async def close(self) -> None:
        if self._purge is not None:
            self._purge.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purge
        await self._run(self._store.close)
        self._thread.shutdown(wait=True)
        self._log.close()

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    # -- writes -----------------------------------------------------------------------------
    async def add(
        self,
        entries: Sequence[Entry],
        *,
        replace: bool,
        by: str,
        summary: bool = False,
        **fields: Any,
    ) -> int:
        """Store `entries` (an operator's or an import's: `replace`); how many changed
        something.  Each is logged (`by` and `fields` in the record), or with `summary`
        (an import) one `suppressions_imported` record says how many."""
        if summary:
            n: int = await self._run(self._add_all, list(entries), replace)
            self._log.add("suppressions_imported", self._clock(), entries=n, by=by)
            self._log.flush()
            self._count("volley_suppressions_added", Source.IMPORT.value, n=n)
            return n
        changed: list[Entry] = await self._run(self._add_each, list(entries), replace)
        self._added(changed, by, **fields)
        return len(changed)

    def _add_all(self, entries: list[Entry], replace: bool) -> int:
        n = self._store.add(entries, replace=replace)
        if len(entries) >= CHECKPOINT_AFTER:
            self._store.checkpoint()
        return n

    def _add_each(self, entries: list[Entry], replace: bool) -> list[Entry]:
        with self._store.transaction():
            return [e for e in entries if self._store.add([e], replace=replace)]

    def _added(self, changed: list[Entry], by: str, **fields: Any) -> None:
        now = self._clock()
        for e in changed:
            self._log.add(
                "suppression_added",
                now,
                **{
                    "entry": e.key,
                    "scope": e.scope,
                    "source": e.source.value,
                    "reason": e.reason,
                    "expires": e.expires,
                    "by": by,
                    **fields,
                },
            )
            self._count("volley_suppressions_added", e.source.value)
        self._log.flush()

    async def remove(self, key: str, scope: str | None, by: str) -> list[Entry]:
        gone: list[Entry] = await self._run(self._store.remove, key, scope)
        now = self._clock()
        for e in gone:
            self._log.add("suppression_removed", now, entry=e.key, scope=e.scope, by=by)
        self._log.flush()
        return gone

    async def unsubscribe(self, claim: Claim, client: str, via: str = "one-click") -> None:
        """A verified one-click request: durable when this returns (the 200 follows)."""
        entry = unsubscribe_entry(claim, self._clock(), via)
        changed = await self._run(self._add_each, [entry], False)
        # Logged even when already suppressed: the reader asked again.
        extra = {"list": claim.list_id or None, "client": client, "via": via}
        self._added(changed or [entry], "recipient", **extra)

    # -- reads ------------------------------------------------------------------------------
    async def page(self, after: tuple[str, str] | None, limit: int) -> list[Entry]:
        got: list[Entry] = await self._run(self._store.page, after, limit)
        return got

    async def lookup(self, keys: Sequence[str]) -> list[Entry]:
        got: list[Entry] = await self._run(self._store.lookup, list(keys))
        return got

    # -- workers ----------------------------------------------------------------------------
    def on_message(self, msg: list[Any], reply: Callable[..., None]) -> None:
        """A worker's "suppress" or "suppress_events"; `reply(*msg)` answers it."""
        if msg[0] == "suppress":
            _, req, rows = msg
            asyncio.get_running_loop().create_task(self._from_worker(int(req), rows, reply))
        elif msg[0] == "suppress_events":
            asyncio.get_running_loop().create_task(self._events(msg[1]))

    async def _from_worker(self, req: int, rows: list[Any], reply: Callable[..., None]) -> None:
        error: str | None = None
        try:
            entries = [Entry.from_row(r) for r in rows]
            changed = await self._run(self._add_each, entries, False)
            self._added(changed, "worker")
        except (StoreError, ValueError, TypeError) as e:
            error = f"{type(e).__name__}: {e}"
            self._log.add("suppression_error", self._clock(), error=error)
            self._log.flush()
        if req:
            reply("suppressed", req, error)

    async def _events(self, rows: list[Any]) -> None:
        try:
            events = [Event.from_row(r) for r in rows]
            changed = await self._run(self._apply_events, events, self.s)
        except (StoreError, ValueError, TypeError) as e:
            self._log.add("suppression_error", self._clock(), error=f"{type(e).__name__}: {e}")
            self._log.flush()
            return
        self._added(changed, "rule")

    def _apply_events(self, events: list[Event], settings: Settings) -> list[Entry]:
        """On the writer thread, one transaction: each event through the rules."""
        added: list[Entry] = []
        store = self._store
        with store.transaction():
            for ev in events:
                history = store.history(ev.recipient)
                d = decide(
                    ev.category,
                    ev.recipient,
                    ev.sender_domain,
                    permanent=ev.permanent,
                    message=ev.message,
                    text=ev.text,
                    history=history,
                    now=ev.time,
                    settings=settings.suppression,
                )
                if d.history is not None:
                    store.set_history(ev.recipient, d.history, ev.time)
                if d.entry is not None and store.add([d.entry], replace=False):
                    added.append(d.entry)
        return added

    async def _purge_loop(self) -> None:
        while True:
            with contextlib.suppress(StoreError):
                n = await self._run(self._store.purge, self._clock())
                if n:
                    self._log.add("suppressions_expired", self._clock(), entries=n)
                    self._log.flush()
            await asyncio.sleep(PURGE_EVERY)
