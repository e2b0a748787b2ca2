"""The shaping store: SQLite at <spool>/shaping.db keeps each key's state across opens;
the in-memory one behaves the same."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engine.shaping.aimd import AimdState
from engine.shaping.rules import Action
from engine.shaping.store import (
    ActiveAction,
    MemoryShapingStore,
    ShapingStore,
    SiteState,
    SqliteShapingStore,
    StoreError,
    decode_state,
    encode_state,
)

STATE = SiteState(
    AimdState(4, 12.5, 25.0, 1000.0, "9% throttling", 2, refused_at=6, refused_when=990.0),
    (
        ActiveAction("yahoo-tss04", Action.SUSPEND, 8200.0, reason="rule yahoo-tss04"),
        ActiveAction("ip-reputation", Action.REDUCE, 6400.0, 1, 1 / 60, "rule ip-reputation"),
    ),
)


def test_encode_decode_round_trip() -> None:
    assert decode_state(encode_state(STATE)) == STATE
    assert decode_state(encode_state(SiteState())) == SiteState()
    for bad in ("", "{}", '{"aimd": {}, "actions": []}', "[1]"):
        with pytest.raises(ValueError, match="not a shaping state"):
            decode_state(bad)


def test_is_default() -> None:
    assert SiteState().is_default
    assert not STATE.is_default
    assert not SiteState(AimdState(connections=3)).is_default


@pytest.fixture(params=["sqlite", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ShapingStore:
    if request.param == "sqlite":
        return SqliteShapingStore(tmp_path / "shaping.db")
    return MemoryShapingStore()


def test_save_load_delete(store: ShapingStore) -> None:
    assert store.load() == {}
    store.save("mx.a.test", STATE)
    store.save("provider:yahoo", SiteState(actions=STATE.actions[:1]))
    store.save("mx.a.test", SiteState(AimdState(connections=5)))  # replaces
    assert store.load() == {
        "mx.a.test": SiteState(AimdState(connections=5)),
        "provider:yahoo": SiteState(actions=STATE.actions[:1]),
    }
    store.delete("mx.a.test")
    store.delete("never-saved")
    assert list(store.load()) == ["provider:yahoo"]
    store.close()


def test_sqlite_survives_reopening_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "shaping.db"
    first = SqliteShapingStore(path)
    first.save("site", STATE)
    first.close()
    again = SqliteShapingStore(path)
    assert again.load() == {"site": STATE}
    again.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sqlite_skips_a_row_it_cannot_read(tmp_path: Path) -> None:
    path = tmp_path / "shaping.db"
    s = SqliteShapingStore(path)
    s.save("good", STATE)
    s.close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO shaping (key, state) VALUES ('bad', 'not json')")
    assert SqliteShapingStore(path).load() == {"good": STATE}


def test_sqlite_refuses_a_newer_schema_and_a_bad_path(tmp_path: Path) -> None:
    path = tmp_path / "shaping.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(StoreError, match="written by a newer Volley"):
        SqliteShapingStore(path)
    with pytest.raises(StoreError, match="unable to open"):
        SqliteShapingStore(tmp_path / "missing" / "shaping.db")
