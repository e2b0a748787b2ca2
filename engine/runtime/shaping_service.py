"""The supervisor's side of adaptive shaping: one Shaper for every worker.

Responsible for: feeding the workers' per-site reports to the `Shaper`
(engine.shaping.adaptive) with how many connections the site held meanwhile, ticking it
every second, writing a `shaping` record to the delivery log for every change (with the
reason and the rule), counting the changes (`volley_shaping_actions_total{kind}`),
setting the effective-limit gauges, and broadcasting the table of limits in force to
every worker whenever it changes (and to a worker when it starts).
Not responsible for: deciding (the Shaper), persisting (its store: <spool>/shaping.db),
or enforcing (the workers apply the table to each new connection: engine.runtime.sites).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from engine.config import Settings
from engine.runtime.ipc import Message
from engine.shaping.adaptive import Ceiling, Change, ReplySample, Shaper, Stage
from engine.shaping.rules import combine
from engine.shaping.store import SqliteShapingStore
from engine.telemetry.eventlog import EventLog
from engine.telemetry.export import Exporter

__all__ = ["ShapingService"]

TICK = 1.0  # seconds between Shaper.tick calls (rule actions end on time to the second)


class ShapingService:
    def __init__(
        self,
        settings: Settings,
        shaper: Shaper,
        log: EventLog,
        exporter: Exporter,
        broadcast: Callable[..., None],
        in_use: Callable[[str], int | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`broadcast(*msg)` writes to every live worker; `in_use(site)` is the most
        connection slots the site held since it was last asked (the lease table's)."""
        self._s = settings
        self.shaper = shaper
        self._log = log
        self._exporter = exporter
        self._broadcast = broadcast
        self._in_use = in_use
        self._clock = clock
        self._table: dict[str, list[Any]] = {}

    @classmethod
    def open(
        cls,
        settings: Settings,
        exporter: Exporter,
        broadcast: Callable[..., None],
        in_use: Callable[[str], int | None],
    ) -> ShapingService:
        s = settings.shaping
        store = SqliteShapingStore(settings.spool_path / "shaping.db")
        shaper = Shaper(s, combine(list(s.rules)), store)
        log = EventLog(settings.log_path, None)
        return cls(settings, shaper, log, exporter, broadcast, in_use)

    def reconfigure(self, settings: Settings) -> None:
        """SIGHUP: new parameters and rules; what was learned stays."""
        self._s = settings
        self.shaper.settings = settings.shaping
        self.shaper.rules = tuple(combine(list(settings.shaping.rules)))
        self._publish(self._clock())

    def reopen_log(self) -> None:
        self._log.flush()
        self._log.reopen(self._s.log_path)

    def table_message(self) -> Message:
        return ["shaping_limits", self._table]

    def on_report(self, msg: Message) -> None:
        _, site, provider, conns, rate, delivered, samples, opened, span = msg
        replies = [ReplySample(int(c), e, str(t), Stage(s)) for c, e, t, s in samples]
        ceiling = Ceiling(int(conns), None if rate is None else float(rate))
        now = self._clock()
        changes = self.shaper.observe(
            site,
            provider,
            int(delivered),
            replies,
            ceiling,
            now,
            in_use=self._in_use(site),
            opened=int(opened),
            span=float(span),
        )
        if changes:
            self._changed(changes, now)

    async def run(self) -> None:
        """Tick every second until cancelled."""
        while True:
            await asyncio.sleep(TICK)
            now = self._clock()
            changes = self.shaper.tick(now)
            if changes:
                self._changed(changes, now)
            else:
                self._publish(now, broadcast_if_changed=True)

    def close(self) -> None:
        self._log.flush()
        self._log.close()

    def _changed(self, changes: list[Change], now: float) -> None:
        for change in changes:
            record = self.shaper.record(change, now)
            record.pop("event")
            ts = float(record.pop("ts"))  # type: ignore[arg-type]
            self._log.add("shaping", ts, **record)
            self._exporter.count("volley_shaping_actions", change.kind.value)
        self._log.flush()
        self._publish(now)

    def _publish(self, now: float, *, broadcast_if_changed: bool = False) -> None:
        snapshot = self.shaper.snapshot(now)
        table: dict[str, list[Any]] = {}
        for key, st in snapshot.items():
            # The key's own bounce actions (a site's or a provider's: workers combine a
            # site's entry with its provider's).
            bouncing = self.shaper.bouncing_until(key, None, now)
            table[key] = [
                st.get("connections"),
                st.get("rate"),
                st.get("suspended_until"),
                bouncing,
            ]
        self._exporter.set_shaping(snapshot)
        if broadcast_if_changed and table == self._table:
            return
        self._table = table
        self._broadcast(*self.table_message())
