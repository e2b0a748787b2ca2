"""engine.suppress.store: the SQLite file - upserts, pages, expiry, histories, readers."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from engine.suppress.model import GLOBAL, Entry, Source
from engine.suppress.store import SqliteSuppressionReader, SqliteSuppressionStore, StoreError

T = 1_800_000_000.0


def test_add_lookup_remove_and_file_mode(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    s = SqliteSuppressionStore(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # addresses are personal data
    a = Entry("bob@x.test", GLOBAL, "r", Source.MANUAL, T)
    b = Entry("bob@x.test", "news.test", "u", Source.UNSUBSCRIBE, T)
    assert s.add([a, b], replace=True) == 2
    assert sorted(s.lookup(["bob@x.test", "x.test"]), key=lambda e: e.scope) == [a, b]
    reader = SqliteSuppressionReader(path)  # another process's view: read-only
    assert len(reader.lookup(["bob@x.test"])) == 2
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader._db().execute("DELETE FROM suppressions")
    assert s.remove("bob@x.test", "news.test") == [b]
    assert s.remove("bob@x.test", None) == [a]
    assert reader.lookup(["bob@x.test"]) == [] and s.count() == 0
    reader.close()
    s.close()


def test_automatic_adds_never_shorten_an_entry(tmp_path: Path) -> None:
    s = SqliteSuppressionStore(tmp_path / "s.db")
    forever = Entry("bob@x.test", GLOBAL, "manual", Source.MANUAL, T)
    s.add([forever], replace=True)
    soft = Entry("bob@x.test", GLOBAL, "quota", Source.BOUNCE, T + 1, T + 100)
    assert s.add([soft], replace=False) == 0
    assert s.lookup(["bob@x.test"]) == [forever]
    # An expiring entry is lengthened by a longer one, and made permanent by a permanent one.
    s.add([soft], replace=True)
    assert (
        s.add([Entry("bob@x.test", GLOBAL, "q2", Source.BOUNCE, T + 2, T + 50)], replace=False) == 0
    )
    longer = Entry("bob@x.test", GLOBAL, "q3", Source.BOUNCE, T + 3, T + 500)
    assert s.add([longer], replace=False) == 1
    hard = Entry("bob@x.test", GLOBAL, "hard", Source.BOUNCE, T + 4)
    assert s.add([hard], replace=False) == 1
    assert s.lookup(["bob@x.test"]) == [hard]
    s.close()


def test_pages_purge_and_transactions(tmp_path: Path) -> None:
    s = SqliteSuppressionStore(tmp_path / "s.db")
    entries = [Entry(f"u{i:03d}@x.test", GLOBAL, created=T, expires=T + i) for i in range(1, 26)]
    s.add(entries, replace=True)
    got: list[Entry] = []
    after = None
    while True:
        page = s.page(after, 10)
        got += page
        if len(page) < 10:
            break
        after = (page[-1].key, page[-1].scope)
    assert got == entries
    assert s.purge(T + 10) == 10 and s.count() == 15
    with pytest.raises(RuntimeError), s.transaction():
        s.add([Entry("gone@x.test")], replace=True)
        raise RuntimeError("rolled back")
    assert s.lookup(["gone@x.test"]) == []
    s.close()


def test_histories(tmp_path: Path) -> None:
    s = SqliteSuppressionStore(tmp_path / "s.db")
    assert s.history("bob@x.test") == ()
    s.set_history("bob@x.test", ((T, "m1"), (T + 1, "m2")), T + 1)
    assert s.history("bob@x.test") == ((T, "m1"), (T + 1, "m2"))
    assert s.soft_addresses() == ["bob@x.test"]
    s.set_history("bob@x.test", (), T + 2)
    assert s.history("bob@x.test") == () and s.soft_addresses() == []
    s.close()


def test_refuses_a_newer_schema_and_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SqliteSuppressionStore(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(StoreError, match="newer Volley"):
        SqliteSuppressionStore(path)
    with pytest.raises(StoreError):
        SqliteSuppressionReader(tmp_path / "missing.db").lookup(["a@b.test"])
