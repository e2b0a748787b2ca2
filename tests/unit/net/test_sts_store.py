"""engine.net.sts_store: policies survive a reopen; a store that cannot work keeps nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engine.net.sts_store import StoredPolicy, StsStore

P1 = StoredPolicy("d.test", "1", "version: STSv1\n", 1000.0)


def test_put_get_and_reopen(tmp_path: Path) -> None:
    store = StsStore(tmp_path / "mta-sts.db")
    assert store.get("d.test") is None
    store.put(P1)
    store.put(StoredPolicy("d.test", "2", "version: STSv1\nmode: none\n", 2000.0))
    store.close()
    again = StsStore(tmp_path / "mta-sts.db")
    assert again.get("d.test") == StoredPolicy(
        "d.test", "2", "version: STSv1\nmode: none\n", 2000.0
    )
    other = StsStore(tmp_path / "mta-sts.db")  # a second worker, the file open at once
    other.put(StoredPolicy("e.test", "9", "x", 3.0))
    assert again.get("e.test") == StoredPolicy("e.test", "9", "x", 3.0)
    again.close()
    other.close()


def test_a_store_that_cannot_open_keeps_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = StsStore(tmp_path / "missing-dir" / "mta-sts.db")
    store.put(P1)
    assert store.get("d.test") is None
    assert "keeping policies in memory" in capsys.readouterr().err
    store.close()


def test_a_newer_schema_is_left_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mta-sts.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=99")
    store = StsStore(path)
    assert store.get("d.test") is None
    assert "newer Volley" in capsys.readouterr().err
