"""The supervisor's warm-up quota on disk: `<spool>/egress.db`, so that a restart on the
same UTC day does not give a warming-up source its whole day again.

Responsible for: `QuotaDb`, the `QuotaLedger` the supervisor's Arbiter uses when egress
sources are configured: the in-memory `QuotaTable` (engine.shaping.quota) with each
source's count for a day written through to SQLite after every grant and every give-back
that changes it (one small write per connection, never per message), loaded back at
start, and forgotten two days later.
Not responsible for: the quota arithmetic (engine.shaping.quota) or who asks (the
workers, through engine.runtime.arbiter).

Only the supervisor writes the file (one `volley run` per spool: spool.instance).  WAL
with synchronous=NORMAL: a commit is a write to the WAL, not an fsync (35 us a write
against 1.6 ms with FULL, measured on the dev machine), and survives a crash of the
process; a power cut may lose the last commits, and
so let a source send up to one more connection's grant than its day's limit.  A write
that fails (disk full) is reported once and the count goes on in memory: mail is not
held back because the quota's copy on disk is behind.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from engine.shaping.egress import utc_day
from engine.shaping.quota import QuotaGrant, QuotaTable

__all__ = ["QuotaDb", "QuotaDbError"]

FILE_NAME = "egress.db"
KEEP_DAYS = 2  # today and yesterday: a connection opened before midnight gives back after it


class QuotaDbError(Exception):
    """The file cannot be opened or read; the message names it."""


class QuotaDb:
    def __init__(self, conn: sqlite3.Connection, table: QuotaTable, today: int) -> None:
        self._conn = conn
        self._table = table
        self._today = today
        self._warned: set[str] = set()

    @classmethod
    def open(cls, spool: Path, now: float) -> QuotaDb:
        """Open (or create) `<spool>/egress.db` and load the counts of the last two days."""
        path = spool / FILE_NAME
        today = utc_day(now)
        try:
            conn = sqlite3.connect(path, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS quota (source TEXT NOT NULL, day INTEGER NOT NULL,"
                " used INTEGER NOT NULL, PRIMARY KEY (source, day))"
            )
            conn.execute("DELETE FROM quota WHERE day <= ?", (today - KEEP_DAYS,))
            rows = conn.execute("SELECT source, day, used FROM quota").fetchall()
        except sqlite3.Error as e:
            raise QuotaDbError(f"{path}: {e}") from None
        return cls(conn, QuotaTable({(s, int(d)): int(u) for s, d, u in rows}), today)

    # -- QuotaLedger ------------------------------------------------------------------------
    def grant(self, source: str, day: int, limit: int, want: int, holder: int) -> QuotaGrant:
        if day > self._today:
            self._new_day(day)
        got = self._table.grant(source, day, limit, want, holder)
        if got.granted:
            self._save(source, day)
        return got

    def give_back(self, source: str, day: int, granted: int, unused: int, holder: int) -> None:
        before = self._table.used(source, day)
        self._table.give_back(source, day, granted, unused, holder)
        if self._table.used(source, day) != before:
            self._save(source, day)

    def used(self, source: str, day: int) -> int:
        return self._table.used(source, day)

    def drop_holder(self, holder: int) -> None:
        self._table.drop_holder(holder)

    # -- the file -----------------------------------------------------------------------------
    def close(self) -> None:
        self._conn.close()

    def _new_day(self, day: int) -> None:
        self._today = day
        self._table.forget_before(day - KEEP_DAYS + 1)
        self._write("DELETE FROM quota WHERE day <= ?", (day - KEEP_DAYS,))

    def _save(self, source: str, day: int) -> None:
        self._write(
            "INSERT INTO quota (source, day, used) VALUES (?, ?, ?)"
            " ON CONFLICT (source, day) DO UPDATE SET used = excluded.used",
            (source, day, self._table.used(source, day)),
        )

    def _write(self, sql: str, args: tuple[object, ...]) -> None:
        try:
            self._conn.execute(sql, args)
        except sqlite3.Error as e:
            problem = str(e)
            if problem not in self._warned:
                self._warned.add(problem)
                print(
                    f"volley: {FILE_NAME}: cannot record the warm-up quota ({problem}); "
                    "counting goes on in memory",
                    file=sys.stderr,
                    flush=True,
                )
