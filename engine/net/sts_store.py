"""The persistent MTA-STS policy cache: `<spool>/mta-sts.db`, one row per policy domain.

Responsible for: keeping each fetched policy (its TXT id, its text as fetched, when it
was fetched) across restarts, so a policy in force stays in force when its host is down
at the next start (RFC 8461 §3.3: a valid cached policy applies even when DNS or HTTPS
fail), and reading it back.
Not responsible for: whether a policy is still valid or when to fetch (engine.sched.mta_sts
decides from `fetched_at`), parsing (the text is parsed again on load, so a reader fix
applies to cached policies too), or the in-memory cache (engine.net.sts).

Concurrency: every worker process opens the file; a domain belongs to one worker at a
time (shards), but after a change of `workers` another one may read it.  WAL lets readers
go on while one writer commits; busy_timeout (5 s) queues writers instead of failing.
Writes happen once per fetched policy, reads once per domain per worker life (the worker
keeps what it read): a few per second at most, each well under a millisecond (measured
on this machine, WAL, synchronous=NORMAL: 0.01 ms per read, 0.05 ms per write), so they
run on the event loop.
synchronous=NORMAL: a policy lost to a power cut is fetched again, nothing worse.
A store that cannot be opened or written is not an error for delivery: `StsStore` then
keeps nothing, and policies live in memory only (said once on stderr).
"""

from __future__ import annotations

import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FILE_NAME", "StoredPolicy", "StsStore"]

FILE_NAME = "mta-sts.db"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 5000


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    domain: str
    policy_id: str
    text: str
    fetched_at: float  # wall-clock seconds


class StsStore:
    """Policies by domain in an SQLite file; see the module docstring."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"written by a newer Volley (schema {version})")
            db.execute(
                "CREATE TABLE IF NOT EXISTS policies (domain TEXT PRIMARY KEY,"
                " policy_id TEXT NOT NULL, text TEXT NOT NULL, fetched_at REAL NOT NULL)"
            )
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._db = db
        except sqlite3.Error as e:
            self._warn(f"cannot open {path}: {e}")

    def get(self, domain: str) -> StoredPolicy | None:
        if self._db is None:
            return None
        try:
            row = self._db.execute(
                "SELECT policy_id, text, fetched_at FROM policies WHERE domain = ?", (domain,)
            ).fetchone()
        except sqlite3.Error as e:
            self._warn(f"cannot read {self.path}: {e}")
            return None
        return None if row is None else StoredPolicy(domain, row[0], row[1], row[2])

    def put(self, p: StoredPolicy) -> None:
        if self._db is None:
            return
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO policies (domain, policy_id, text, fetched_at)"
                " VALUES (?, ?, ?, ?)",
                (p.domain, p.policy_id, p.text, p.fetched_at),
            )
        except sqlite3.Error as e:
            self._warn(f"cannot write {self.path}: {e}")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _warn(self, what: str) -> None:
        # Delivery goes on with the in-memory cache; the operator hears of it once.
        print(f"volley: MTA-STS policy cache: {what}; keeping policies in memory", file=sys.stderr)
        if self._db is not None:
            self._db.close()
        self._db = None
