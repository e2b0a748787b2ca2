from __future__ import annotations

import os
from pathlib import Path

import pytest

from spool.ids import entry_id
from spool.store import NewEntry, Spool
from spool.summary import DomainSummary, queue_summary

NOW = 1_800_000_000.0


def entry(n: int, domain: str, created: float, next_attempt: float) -> NewEntry:
    return NewEntry(entry_id(int(created * 1e9), b"%d" % n), domain, {}, b"m", next_attempt)


def test_empty_and_missing_spool(tmp_path: Path) -> None:
    assert queue_summary(tmp_path / "nothing-here", NOW) == {}
    Spool(tmp_path).ensure(2)
    assert queue_summary(tmp_path, NOW) == {}


def test_summary_across_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sp = Spool(tmp_path)
    sp.ensure(2)
    sp.shard(0).add(
        [
            entry(1, "a.example", NOW - 500, NOW - 10),  # due
            entry(2, "a.example", NOW - 100, NOW),  # due: mtime == now counts as queued
            entry(3, "a.example", NOW - 50, NOW + 600),
            entry(4, "b.example", NOW - 7, NOW + 60),
        ]
    )
    sp.shard(1).add(
        [
            entry(5, "a.example", NOW - 900.5, NOW + 30),  # the oldest, in another shard
            entry(6, "b.example", NOW - 8, NOW + 120),
        ]
    )
    (sp.shard(1).path / "not-an-entry").write_bytes(b"")

    reads: list[int] = []
    real = os.pread

    def spy(fd: int, n: int, offset: int) -> bytes:
        reads.append(offset)
        return real(fd, n, offset)

    monkeypatch.setattr(os, "pread", spy)
    summary = queue_summary(tmp_path, NOW)
    monkeypatch.undo()
    assert reads == [0, 0]  # one index read per segment, never a record
    assert list(summary) == ["a.example", "b.example"]
    a, b = summary["a.example"], summary["b.example"]
    assert (a.queued, a.deferred) == (2, 2)
    assert a.oldest_id_time == pytest.approx(NOW - 900.5, abs=1e-6)
    assert a.next_attempt == pytest.approx(NOW + 30, abs=1e-6)
    assert (b.queued, b.deferred) == (0, 2)
    assert b.oldest_id_time == pytest.approx(NOW - 8, abs=1e-6)
    assert b.next_attempt == pytest.approx(NOW + 60, abs=1e-6)


def test_nothing_deferred_means_no_next_attempt(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    sp.ensure(1)
    sp.shard(0).add([entry(1, "c.example", NOW - 1, NOW - 1)])
    summary = queue_summary(str(tmp_path), NOW)
    assert summary == {"c.example": DomainSummary(1, 0, summary["c.example"].oldest_id_time, None)}
    assert summary["c.example"].oldest_id_time == pytest.approx(NOW - 1, abs=1e-6)
