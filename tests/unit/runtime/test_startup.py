from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.runtime.startup import POISON_CRASHES, load_queue
from engine.sched.queue import EntryState, WorkQueue
from spool import EntryRef, Spool
from tests.support.spool_entries import T0, new


class Log:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []

    def add(self, kind: str, now: float, **fields: Any) -> None:
        self.records.append((kind, fields))

    def flush(self) -> None:
        pass


def restarted(root: Path) -> Spool:
    sp = Spool(root)
    sp.shard(0).recover()
    return sp


@pytest.fixture
def refs(tmp_path: Path) -> list[EntryRef]:
    sp = Spool(tmp_path)
    sp.ensure(1)
    return sp.shard(0).add(
        [new(1), new(2, not_before=T0 + 600), new(3, domain="b.example"), new(4)]
    )


def test_every_live_entry_is_queued_as_rows_due_or_waiting(
    tmp_path: Path, refs: list[EntryRef]
) -> None:
    shard = restarted(tmp_path).shard(0)
    q = WorkQueue()
    assert load_queue(shard, q, T0) == 4
    assert q._known == {}  # nothing made an object yet
    assert q.entries() == [
        (refs[0].name, EntryState.READY, None),
        (refs[1].name, EntryState.WAITING, T0 + 600),
        (refs[2].name, EntryState.READY, None),
        (refs[3].name, EntryState.READY, None),
    ]
    assert q.take("example.com") == refs[0]


def test_an_entry_queued_before_the_scan_is_not_queued_twice(
    tmp_path: Path, refs: list[EntryRef]
) -> None:
    shard = restarted(tmp_path).shard(0)
    q = WorkQueue()
    q.add(refs[3], refs[3].mtime, T0)  # an interrupted intake batch, taken again first
    assert load_queue(shard, q, T0) == 3 and len(q) == 4


def test_a_crash_is_counted_against_entries_in_flight_and_the_third_quarantines(
    tmp_path: Path, refs: list[EntryRef]
) -> None:
    quarantined: list[tuple[str, str]] = []

    def quarantine(ref: EntryRef, reason: str, kind: str, now: float) -> None:
        shard.quarantine(ref, reason)
        quarantined.append((ref.name, kind))

    crashed = {refs[0].name, refs[2].name, "gone@example.com"}
    for crash in range(1, POISON_CRASHES + 1):
        shard = restarted(tmp_path).shard(0)
        q, log = WorkQueue(), Log()
        queued = load_queue(shard, q, T0, crashed=crashed, quarantine=quarantine, log=log)  # type: ignore[arg-type]
        if crash < POISON_CRASHES:
            assert queued == 4 and [k for k, _ in log.records] == ["crash_counted"] * 2
            assert shard.load(refs[0])[0]["crashes"] == crash
            assert q._known.keys() == {refs[0].name, refs[2].name}  # rewritten: objects
        else:
            assert queued == 2 and sorted(quarantined) == sorted(
                [(refs[0].name, "poison"), (refs[2].name, "poison")]
            )
        shard.close()


def test_counting_crashes_needs_somewhere_to_put_them(tmp_path: Path, refs: list[EntryRef]) -> None:
    shard = restarted(tmp_path).shard(0)
    with pytest.raises(ValueError):
        load_queue(shard, WorkQueue(), T0, crashed={refs[0].name})
