"""Where shaping state outlives a restart: an interface and its SQLite implementation.

Responsible for: `SiteState` (what is kept per key: a site's learned AIMD limits and the
rule actions in force on a site or a provider), the `ShapingStore` interface the
supervisor writes through, `SqliteShapingStore` (one table in `<spool>/shaping.db`) and
`MemoryShapingStore` (tests, and `[shaping] enabled = false`).
Not responsible for: deciding anything (engine.shaping.aimd, .adaptive), or dropping rule
actions that ended while Volley was down (the Shaper does, when it first sees the time).

The supervisor is the only writer and writes on change only (a limit moves at most once
per window per site, a rule action when it starts and ends), so a table of a few
thousand rows written a few times a minute is all there is.  WAL with
`synchronous=NORMAL`: a power cut may lose the last changes (they are advice that will
be learned again in a window or two), never corrupt the file.  The state is JSON per
key, so a new field needs no schema change.  A Redis store can provide the same three
methods (a hash of key -> JSON).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from engine.shaping.aimd import AimdState
from engine.shaping.rules import Action

__all__ = [
    "DB_NAME",
    "ActiveAction",
    "MemoryShapingStore",
    "ShapingStore",
    "SiteState",
    "SqliteShapingStore",
    "StoreError",
    "decode_state",
    "encode_state",
]

DB_NAME = "shaping.db"
SCHEMA_VERSION = 1


class StoreError(Exception):
    """The store cannot be opened or used (one line for the operator)."""


@dataclass(frozen=True, slots=True)
class ActiveAction:
    """A rule's action in force on a key until `until` (wall clock)."""

    rule: str
    action: Action
    until: float
    connections: int | None = None  # REDUCE: the cap it sets
    rate: float | None = None  # REDUCE: messages per second
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SiteState:
    """What is kept per key ("site" or "provider:NAME"; a provider has no AIMD state)."""

    aimd: AimdState = field(default_factory=AimdState)
    actions: tuple[ActiveAction, ...] = ()

    @property
    def is_default(self) -> bool:
        """Nothing to keep: the key is at its maximum with no action in force."""
        return self.aimd.at_ceiling and not self.actions


class ShapingStore(Protocol):
    def load(self) -> dict[str, SiteState]: ...

    def save(self, key: str, state: SiteState) -> None: ...

    def delete(self, key: str) -> None: ...

    def close(self) -> None: ...


def encode_state(state: SiteState) -> str:
    a = state.aimd
    return json.dumps(
        {
            "aimd": {
                "connections": a.connections,
                "rate": a.rate,
                "scale": a.scale,
                "changed": a.changed,
                "reason": a.reason,
                "probe": a.probe,
                "refused_at": a.refused_at,
                "refused_when": a.refused_when,
            },
            "actions": [
                {
                    "rule": x.rule,
                    "action": x.action.value,
                    "until": x.until,
                    "connections": x.connections,
                    "rate": x.rate,
                    "reason": x.reason,
                }
                for x in state.actions
            ],
        },
        separators=(",", ":"),
    )


def decode_state(text: str) -> SiteState:
    """The state encode_state wrote; ValueError when it is not one."""
    try:
        data: dict[str, Any] = json.loads(text)
        a = data["aimd"]
        aimd = AimdState(
            connections=a["connections"],
            rate=a["rate"],
            scale=a["scale"],
            changed=float(a["changed"]),
            reason=str(a["reason"]),
            # Not written before 2026-12-07:
            probe=int(a.get("probe", 0)),
            refused_at=a.get("refused_at"),
            refused_when=float(a.get("refused_when", 0.0)),
        )
        actions = tuple(
            ActiveAction(
                rule=str(x["rule"]),
                action=Action(x["action"]),
                until=float(x["until"]),
                connections=x["connections"],
                rate=x["rate"],
                reason=str(x["reason"]),
            )
            for x in data["actions"]
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"not a shaping state: {e}") from None
    return SiteState(aimd, actions)


class MemoryShapingStore:
    """A ShapingStore in a dict: nothing survives the process."""

    def __init__(self, initial: dict[str, SiteState] | None = None) -> None:
        self.states: dict[str, SiteState] = dict(initial or {})

    def load(self) -> dict[str, SiteState]:
        return dict(self.states)

    def save(self, key: str, state: SiteState) -> None:
        self.states[key] = state

    def delete(self, key: str) -> None:
        self.states.pop(key, None)

    def close(self) -> None:
        pass


class SqliteShapingStore:
    """The supervisor's store at `path` (`<spool>/shaping.db`); one thread at a time."""

    def __init__(self, path: Path) -> None:
        self._path = path
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                db.close()
                raise StoreError(
                    f"{path}: written by a newer Volley (schema {version}); refusing to change it"
                )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=10000")
            db.execute(
                "CREATE TABLE IF NOT EXISTS shaping (key TEXT PRIMARY KEY,"
                " state TEXT NOT NULL) WITHOUT ROWID"
            )
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as e:
            raise StoreError(f"{path}: {e}") from None
        self._db = db

    def load(self) -> dict[str, SiteState]:
        """Every key's state; a row that does not decode is skipped (and deleted on the
        next save of its key): shaping state is advice, never a reason not to start."""
        out: dict[str, SiteState] = {}
        for key, text in self._exec("SELECT key, state FROM shaping").fetchall():
            try:
                out[key] = decode_state(text)
            except ValueError:
                continue
        return out

    def save(self, key: str, state: SiteState) -> None:
        self._exec(
            "INSERT INTO shaping (key, state) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET state = excluded.state",
            (key, encode_state(state)),
        )

    def delete(self, key: str) -> None:
        self._exec("DELETE FROM shaping WHERE key = ?", (key,))

    def close(self) -> None:
        self._db.close()

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, args)
        except sqlite3.Error as e:
            raise StoreError(f"{self._path}: {e}") from None
