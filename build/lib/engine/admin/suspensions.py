"""Operator suspensions of destinations: the expiry rule and where they are kept.

Responsible for: the `Suspension` value (domain, end, reason, who, when), the pure rule
that a suspension is in effect while `now < until` (`in_effect`, `ended`), the
`SuspensionStore` interface, and its SQLite implementation (`<spool>/state.db`).
Not responsible for: applying suspensions to the queue (each worker's
engine.sched.queue holds) or telling workers (engine.admin.service).

Why a store behind a Protocol: suspensions are owned by the supervisor and must survive a
restart; on one node SQLite (stdlib, one file under the spool, transactional) is enough.
The team decided multi-node shared state will live in Redis: a `RedisSuspensionStore`
with the same four methods (e.g. one hash per suspension with EXPIREAT = until) can be
swapped in without touching the callers.

Why SQLite rather than a JSON file: a rewrite-and-rename JSON file is as durable, but
SQLite gives the atomic replace-one-row for free and is where more supervisor state
(e.g. bounce lists) can go later.  Each change is one transaction (synchronous=FULL:
fsynced before `suspend` returns, so an acknowledged `volley suspend` survives a power
cut).  Calls take well under 10 ms and happen only on operator actions, so they run on
the supervisor's event loop.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "SqliteSuspensionStore",
    "StoreError",
    "Suspension",
    "SuspensionStore",
    "ended",
    "in_effect",
]

SCHEMA_VERSION = 1
_SELECT = "SELECT domain, until, reason, by, created FROM suspensions"


class StoreError(Exception):
    """The store cannot be opened or used (one line for the operator)."""


@dataclass(frozen=True, slots=True)
class Suspension:
    """Destination `domain` gets no new connection until `until` (epoch seconds)."""

    domain: str
    until: float
    reason: str = ""
    by: str = ""  # who asked, as the client said (every holder of the token is trusted)
    created: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def in_effect(items: Iterable[Suspension], now: float) -> list[Suspension]:
    """The suspensions still in effect at `now`, by domain.  A suspension ends by itself:
    at `until` it stops counting, whether or not anyone removed it."""
    return sorted((s for s in items if s.until > now), key=lambda s: s.domain)


def ended(items: Iterable[Suspension], now: float) -> list[Suspension]:
    """The suspensions of `items` whose time is up at `now`."""
    return sorted((s for s in items if s.until <= now), key=lambda s: s.domain)


class SuspensionStore(Protocol):
    def suspend(self, s: Suspension) -> None:
        """Record `s`, replacing any suspension of the same domain."""
        ...

    def resume(self, domain: str) -> Suspension | None:
        """Remove the suspension of `domain`; returns it, or None if there was none."""
        ...

    def active(self, now: float) -> list[Suspension]:
        """Suspensions in effect at `now` (`in_effect`), by domain."""
        ...

    def purge(self, now: float) -> list[Suspension]:
        """Forget the suspensions that ended by `now`; returns them."""
        ...

    def close(self) -> None: ...


class SqliteSuspensionStore:
    """Suspensions in a table of an SQLite file (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        try:
            self._db = sqlite3.connect(path, isolation_level=None)  # explicit transactions
            self._db.execute("PRAGMA synchronous=FULL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{path}: written by a newer Volley (schema {version}); refusing to change it"
                )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS suspensions ("
                " domain TEXT PRIMARY KEY, until REAL NOT NULL, reason TEXT NOT NULL,"
                " by TEXT NOT NULL, created REAL NOT NULL)"
            )
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as e:
            raise StoreError(f"{path}: {e}") from None

    def suspend(self, s: Suspension) -> None:
        self._run(
            "INSERT OR REPLACE INTO suspensions (domain, until, reason, by, created)"
            " VALUES (?, ?, ?, ?, ?)",
            (s.domain, s.until, s.reason, s.by, s.created),
        )

    def resume(self, domain: str) -> Suspension | None:
        rows = self._rows(f"{_SELECT} WHERE domain = ?", (domain,))
        self._run("DELETE FROM suspensions WHERE domain = ?", (domain,))
        return rows[0] if rows else None

    def active(self, now: float) -> list[Suspension]:
        return in_effect(self._rows(_SELECT, ()), now)

    def purge(self, now: float) -> list[Suspension]:
        gone = ended(self._rows(_SELECT, ()), now)
        if gone:
            self._run("DELETE FROM suspensions WHERE until <= ?", (now,))
        return gone

    def close(self) -> None:
        self._db.close()

    def _run(self, sql: str, args: tuple[Any, ...]) -> None:
        try:
            with self._db:  # one transaction: committed (and fsynced) or rolled back
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(sql, args)
        except sqlite3.Error as e:
            raise StoreError(f"{self._path}: {e}") from None

    def _rows(self, sql: str, args: tuple[Any, ...]) -> list[Suspension]:
        try:
            rows = self._db.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise StoreError(f"{self._path}: {e}") from None
        return [Suspension(str(d), float(u), str(r), str(b), float(c)) for d, u, r, b, c in rows]
