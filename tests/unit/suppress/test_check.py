"""engine.suppress.check: one query per message; the entry that caused each hit."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from engine.suppress.check import Hit, SuppressionCheck, record_fields
from engine.suppress.model import GLOBAL, Entry, Source
from engine.suppress.store import SqliteSuppressionStore

T = 1_800_000_000.0


class CountingReader:
    def __init__(self, store: SqliteSuppressionStore) -> None:
        self.store = store
        self.calls: list[Sequence[str]] = []

    def lookup(self, keys: Sequence[str]) -> list[Entry]:
        self.calls.append(list(keys))
        return self.store.lookup(keys)

    def soft_addresses(self) -> list[str]:
        return []

    def close(self) -> None:
        pass


def test_split(tmp_path: Path) -> None:
    store = SqliteSuppressionStore(tmp_path / "s.db")
    bounce = Entry("gone@x.test", GLOBAL, "InvalidRecipient", Source.BOUNCE, T)
    unsub = Entry("ann@y.test", "example.com", "unsubscribed", Source.UNSUBSCRIBE, T)
    domain = Entry("typo.test", GLOBAL, "no such domain", Source.MANUAL, T)
    later = Entry("soon@x.test", GLOBAL, "", Source.BOUNCE, T, expires=T + 10)
    store.add([bounce, unsub, domain, later], replace=True)
    reader = CountingReader(store)
    check = SuppressionCheck(reader)
    rcpts = ["Gone@X.test", "ann@y.test", "bob@x.test", "any@typo.test", "soon@x.test"]
    keep, hits = check.split("news.example.com", rcpts, T)
    assert keep == ["bob@x.test"]
    assert hits == [
        Hit("Gone@X.test", bounce),
        Hit("ann@y.test", unsub),
        Hit("any@typo.test", domain),
        Hit("soon@x.test", later),
    ]
    assert len(reader.calls) == 1  # one query for the whole message
    # Another sender domain: the unsubscribe does not apply; time passed: the expiry did.
    keep, hits = check.split("other.test", rcpts, T + 10)
    assert keep == ["ann@y.test", "bob@x.test", "soon@x.test"]
    fields = record_fields(hits[0], "news@other.test", "other.test")
    assert fields["entry"] == "gone@x.test" and fields["source"] == "bounce"
    assert fields["rcpt"] == "Gone@X.test" and fields["scope"] == GLOBAL
    store.close()
