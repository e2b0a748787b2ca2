"""Where the suppression list is kept: an interface and its SQLite implementation.

Responsible for: the `SuppressionStore` interface the supervisor writes through, the
`SuppressionReader` interface every checker reads through, and both on one SQLite file
(`<spool>/suppression.db`): the schema, WAL mode, transactions, upserts that never
shorten a suppression by accident, keyset pages for listing and export, the soft-bounce
histories (engine.suppress.rules keeps them per address), and purging expired entries.
Not responsible for: who may write (engine.suppress.service: the supervisor is the one
writer while Volley runs; `volley suppress` writes directly only while it holds the
spool's instance lock), what an entry means (engine.suppress.model), or deciding
anything (engine.suppress.rules).

Why SQLite: stdlib, one file under the spool, transactional, and a 1 000 000-entry table
answers a recipient's lookup in a few µs (bench/README.md, "suppression check").  WAL
mode lets the workers' read-only connections read while the supervisor writes, without
blocking each other (capability-anchors §5).  `synchronous=FULL`: every commit is fsynced
before it returns, so an unsubscribe answered 200 or an acknowledged complaint survives a
power cut; the writer batches (engine.suppress.service), so this costs one fsync per
batch, not per entry.  Same host only: SQLite's WAL needs shared memory, so the file
must not be on a network filesystem.

Why a Protocol: shared state for many nodes will live in Redis; a Redis store (a hash
per key with the scopes as fields, EXPIREAT for expiring entries) can provide the same
methods, and callers do not change.

Schema (user_version 1):
  suppressions(key, scope, reason, source, created, expires)  WITHOUT ROWID, PK (key, scope)
  soft_bounces(address, events, updated)                       events: JSON [[time, msg], ...]
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from engine.suppress.model import Entry, Source

__all__ = [
    "DB_NAME",
    "SqliteSuppressionReader",
    "SqliteSuppressionStore",
    "StoreError",
    "SuppressionReader",
    "SuppressionStore",
    "db_path",
]

DB_NAME = "suppression.db"
SCHEMA_VERSION = 1
_COLUMNS = "key, scope, reason, source, created, expires"
# An automatic entry (a bounce, a complaint, the soft-bounce rule) never shortens one that
# is already there: it replaces it only when it lasts longer.  An operator's add or an
# import replaces whatever is there (they asked for exactly that).
_UPSERT_KEEP_LONGER = (
    f"INSERT INTO suppressions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (key, scope) DO UPDATE SET reason = excluded.reason,"
    " source = excluded.source, created = excluded.created, expires = excluded.expires"
    " WHERE suppressions.expires IS NOT NULL"
    " AND (excluded.expires IS NULL OR excluded.expires > suppressions.expires)"
)
_UPSERT_REPLACE = (
    f"INSERT INTO suppressions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (key, scope) DO UPDATE SET reason = excluded.reason,"
    " source = excluded.source, created = excluded.created, expires = excluded.expires"
)


class StoreError(Exception):
    """The store cannot be opened or used (one line for the operator)."""


def db_path(spool: Path) -> Path:
    return spool / DB_NAME


class SuppressionReader(Protocol):
    def lookup(self, keys: Sequence[str]) -> list[Entry]:
        """Every entry stored under any of `keys` (active or not, any scope)."""
        ...

    def soft_addresses(self) -> list[str]:
        """The addresses with a soft-bounce history (engine.suppress.rules)."""
        ...

    def close(self) -> None: ...


class SuppressionStore(SuppressionReader, Protocol):
    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """Group the calls inside into one commit."""
        ...

    def add(self, entries: Sequence[Entry], *, replace: bool) -> int:
        """Store `entries`; `replace`: an operator's (always replaces), else automatic
        (replaces only an entry that ends sooner).  Returns how many rows changed."""
        ...

    def remove(self, key: str, scope: str | None) -> list[Entry]:
        """Remove the entries of `key` (of one scope, or all when None); returns them."""
        ...

    def page(self, after: tuple[str, str] | None, limit: int) -> list[Entry]:
        """Up to `limit` entries ordered by (key, scope), after `after`."""
        ...

    def count(self) -> int: ...

    def purge(self, now: float) -> int:
        """Forget the entries that expired by `now`; returns how many."""
        ...

    def history(self, address: str) -> tuple[tuple[float, str], ...]: ...

    def set_history(self, address: str, events: tuple[tuple[float, str], ...], now: float) -> None:
        """Keep `events` for `address` (an empty tuple forgets it)."""
        ...


def _entry(row: Sequence[Any]) -> Entry:
    key, scope, reason, source, created, expires = row
    try:
        src = Source(source)
    except ValueError:
        src = Source.MANUAL  # written by a newer Volley: still a suppression
    return Entry(key, scope, reason, src, created, expires)


def _row(e: Entry) -> tuple[Any, ...]:
    return (e.key, e.scope, e.reason, e.source.value, e.created, e.expires)


class SqliteSuppressionReader:
    """Read-only access for checkers: one connection per thread (the intake thread and
    the event loop may check at the same time), opened on first use."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(
                    f"file:{self._path}?mode=ro", uri=True, check_same_thread=False
                )
                db.execute("PRAGMA query_only=1")
            except sqlite3.Error as e:
                raise StoreError(f"{self._path}: {e}") from None
            self._local.db = db
            with self._lock:
                self._all.append(db)
        return db

    def lookup(self, keys: Sequence[str]) -> list[Entry]:
        if not keys:
            return []
        marks = ",".join("?" * len(keys))
        sql = f"SELECT {_COLUMNS} FROM suppressions WHERE key IN ({marks})"
        try:
            return [_entry(r) for r in self._db().execute(sql, tuple(keys))]
        except sqlite3.Error as e:
            raise StoreError(f"{self._path}: {e}") from None

    def soft_addresses(self) -> list[str]:
        try:
            return [r[0] for r in self._db().execute("SELECT address FROM soft_bounces")]
        except sqlite3.Error as e:
            raise StoreError(f"{self._path}: {e}") from None

    def close(self) -> None:
        with self._lock:
            for db in self._all:
                db.close()
            self._all.clear()
        self._local = threading.local()


class SqliteSuppressionStore(SqliteSuppressionReader):
    """The writer: one connection, used by one thread at a time (the supervisor's
    writer thread, or the `volley suppress` command)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._depth = 0
        try:
            if not path.exists():
                # Addresses are personal data: the file is the Volley user's alone.
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                db.close()
                raise StoreError(
                    f"{path}: written by a newer Volley (schema {version}); refusing to change it"
                )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=10000")
            db.execute(
                "CREATE TABLE IF NOT EXISTS suppressions (key TEXT NOT NULL,"
                " scope TEXT NOT NULL, reason TEXT NOT NULL, source TEXT NOT NULL,"
                " created REAL NOT NULL, expires REAL, PRIMARY KEY (key, scope)) WITHOUT ROWID"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS soft_bounces (address TEXT PRIMARY KEY,"
                " events TEXT NOT NULL, updated REAL NOT NULL) WITHOUT ROWID"
            )
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as e:
            raise StoreError(f"{path}: {e}") from None
        except OSError as e:
            raise StoreError(f"{path}: {e.strerror}") from None
        self._w = db
        # The writer reads through its own connection: it sees its uncommitted changes.
        self._local.db = db
        self._all.append(db)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            self._w.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise StoreError(f"{self._path}: {e}") from None
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            with contextlib.suppress(sqlite3.Error):
                self._w.execute("ROLLBACK")
            raise
        self._depth = 0
        try:
            self._w.execute("COMMIT")
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                self._w.execute("ROLLBACK")
            raise StoreError(f"{self._path}: {e}") from None

    def _exec(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._w.execute(sql, args)
        except sqlite3.Error as e:
            raise StoreError(f"{self._path}: {e}") from None

    def add(self, entries: Sequence[Entry], *, replace: bool) -> int:
        sql = _UPSERT_REPLACE if replace else _UPSERT_KEEP_LONGER
        with self.transaction():
            before = self._w.total_changes
            try:
                self._w.executemany(sql, [_row(e) for e in entries])
            except sqlite3.Error as e:
                raise StoreError(f"{self._path}: {e}") from None
            return self._w.total_changes - before

    def remove(self, key: str, scope: str | None) -> list[Entry]:
        where, args = (
            ("key = ?", (key,)) if scope is None else ("key = ? AND scope = ?", (key, scope))
        )
        with self.transaction():
            gone = [
                _entry(r)
                for r in self._exec(f"SELECT {_COLUMNS} FROM suppressions WHERE {where}", args)
            ]
            self._exec(f"DELETE FROM suppressions WHERE {where}", args)
        return gone

    def page(self, after: tuple[str, str] | None, limit: int) -> list[Entry]:
        args: tuple[Any, ...]
        if after is None:
            sql, args = f"SELECT {_COLUMNS} FROM suppressions ORDER BY key, scope LIMIT ?", (limit,)
        else:
            sql = (
                f"SELECT {_COLUMNS} FROM suppressions WHERE (key, scope) > (?, ?)"
                " ORDER BY key, scope LIMIT ?"
            )
            args = (after[0], after[1], limit)
        return [_entry(r) for r in self._exec(sql, args)]

    def count(self) -> int:
        return int(self._exec("SELECT COUNT(*) FROM suppressions").fetchone()[0])

    def purge(self, now: float) -> int:
        with self.transaction():
            cur = self._exec(
                "DELETE FROM suppressions WHERE expires IS NOT NULL AND expires <= ?", (now,)
            )
            return cur.rowcount

    def history(self, address: str) -> tuple[tuple[float, str], ...]:
        row = self._exec("SELECT events FROM soft_bounces WHERE address = ?", (address,)).fetchone()
        if row is None:
            return ()
        try:
            return tuple((float(t), str(m)) for t, m in json.loads(row[0]))
        except (ValueError, TypeError):
            return ()  # unreadable: start the count again, never suppress on garbage

    def set_history(self, address: str, events: tuple[tuple[float, str], ...], now: float) -> None:
        with self.transaction():
            if not events:
                self._exec("DELETE FROM soft_bounces WHERE address = ?", (address,))
                return
            self._exec(
                "INSERT INTO soft_bounces (address, events, updated) VALUES (?, ?, ?)"
                " ON CONFLICT (address) DO UPDATE SET events = excluded.events,"
                " updated = excluded.updated",
                (address, json.dumps([list(e) for e in events]), now),
            )

    def checkpoint(self) -> None:
        """Fold the WAL back into the database (after a large import: the WAL holds all of
        it until then, and every reader pays for a long WAL)."""
        with contextlib.suppress(sqlite3.Error):
            self._w.execute("PRAGMA wal_checkpoint(TRUNCATE)")
