"""engine.admin.suspensions: suspensions end by themselves (time passed in), and the
SQLite store keeps them across a reopen (a restart)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engine.admin.suspensions import (
    SqliteSuspensionStore,
    StoreError,
    Suspension,
    SuspensionStore,
    ended,
    in_effect,
)

T = 1_800_000_000.0


def test_a_suspension_is_in_effect_until_its_end() -> None:
    items = [Suspension("b.test", T + 10), Suspension("a.test", T + 20), Suspension("c.test", T)]
    assert [s.domain for s in in_effect(items, T)] == ["a.test", "b.test"]  # by domain
    assert [s.domain for s in in_effect(items, T + 10)] == ["a.test"]
    assert in_effect(items, T + 20) == []
    assert [s.domain for s in ended(items, T + 10)] == ["b.test", "c.test"]


def test_the_store_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store: SuspensionStore = SqliteSuspensionStore(path)
    store.suspend(Suspension("a.test", T + 3600, "blocked", "ops", T))
    store.suspend(Suspension("b.test", T + 60, "", "api", T))
    store.close()
    again = SqliteSuspensionStore(path)
    assert again.active(T) == [
        Suspension("a.test", T + 3600, "blocked", "ops", T),
        Suspension("b.test", T + 60, "", "api", T),
    ]
    assert [s.domain for s in again.active(T + 60)] == ["a.test"]  # b ended by itself
    again.close()


def test_suspend_replaces_and_resume_removes(tmp_path: Path) -> None:
    store = SqliteSuspensionStore(tmp_path / "state.db")
    store.suspend(Suspension("a.test", T + 10, "first", "x", T))
    store.suspend(Suspension("a.test", T + 99, "second", "y", T + 1))
    assert store.active(T) == [Suspension("a.test", T + 99, "second", "y", T + 1)]
    assert store.resume("a.test") == Suspension("a.test", T + 99, "second", "y", T + 1)
    assert store.resume("a.test") is None
    assert store.active(T) == []
    store.close()


def test_purge_forgets_what_ended(tmp_path: Path) -> None:
    store = SqliteSuspensionStore(tmp_path / "state.db")
    store.suspend(Suspension("a.test", T + 10))
    store.suspend(Suspension("b.test", T + 20))
    assert store.purge(T + 5) == []
    assert [s.domain for s in store.purge(T + 10)] == ["a.test"]
    assert [s.domain for s in store.active(T)] == ["b.test"]  # a is gone for good
    store.close()


def test_a_damaged_or_newer_file_is_refused_in_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"junk\.db"):
        SqliteSuspensionStore(junk)
    newer = tmp_path / "newer.db"
    db = sqlite3.connect(newer)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(StoreError, match="newer Volley"):
        SqliteSuspensionStore(newer)
