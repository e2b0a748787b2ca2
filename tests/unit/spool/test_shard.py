from __future__ import annotations

import errno
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule

from spool import atomic, segment
from spool.errors import CorruptEntry, SpoolFull
from spool.ids import entry_id
from spool.record import decode
from spool.scan import JOURNAL, read_shard
from spool.shard import EntryRef, NewEntry, ShardQueue
from spool.store import Spool
from tests.support.spool_entries import T0, new


@pytest.fixture
def q(sp: Spool) -> ShardQueue:
    q = sp.shard(0)
    q.recover()
    return q


def names(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def segments(q: ShardQueue) -> list[str]:
    return sorted(p.name for p in q.path.glob("*.seg"))


def restarted(sp: Spool, k: int = 0) -> ShardQueue:
    """The same shard as a new process sees it."""
    fresh = Spool(sp.root).shard(k)
    fresh.recover()
    return fresh


# --- add / scan / load ----------------------------------------------------------------------


def test_add_then_scan_after_a_restart(sp: Spool, q: ShardQueue) -> None:
    item = new(1, not_before=T0 + 300.125)
    [ref] = q.add([item])
    assert ref == EntryRef(f"{item.id}@example.com", "example.com", T0 + 300.125)
    assert ref.id == item.id
    assert q.load(ref) == (item.meta, item.body)
    again = restarted(sp)
    assert again.scan() == [ref]
    assert again.load(ref) == (item.meta, item.body)
    assert again.count() == 1


def test_a_batch_is_one_segment_and_one_file_fsync(q: ShardQueue, fsyncs: list[str]) -> None:
    refs = q.add([new(n) for n in range(50)])
    assert len(refs) == 50 and q.count() == 50
    assert [c.split(":")[0] for c in fsyncs] == ["file", "dir"]
    assert fsyncs[-1] == "dir:0"
    assert segments(q) == [segment.segment_name(1)]
    assert names(q.path.parent.parent / "tmp" / "0") == []
    assert [q.load(r)[0]["n"] for r in refs] == list(range(50))


def test_add_the_same_name_twice_keeps_one_entry(q: ShardQueue) -> None:
    [first] = q.add([new(1)])
    [second] = q.add([new(1, not_before=T0 + 999, body=b"different body")])
    assert second.name == first.name and q.count() == 1
    assert q.load(first)[1] == b"message 1\r\n"
    assert len(segments(q)) == 1  # nothing was written for it
    dup_a, dup_b = q.add([new(2), new(2)])
    assert dup_a.name == dup_b.name and q.count() == 2


def test_add_validates_every_name_before_writing(q: ShardQueue) -> None:
    with pytest.raises(ValueError, match="domain"):
        q.add([new(1), new(2, domain="Bad.Example")])
    assert q.scan() == [] and segments(q) == []


def test_add_nothing_writes_nothing(q: ShardQueue, fsyncs: list[str]) -> None:
    assert q.add([]) == []
    assert fsyncs == [] and segments(q) == []


def test_scan_is_fifo_and_ignores_what_is_not_ours(sp: Spool, q: ShardQueue) -> None:
    refs = q.add([new(n, domain=d) for n, d in [(3, "b.example"), (1, "a.example"), (2, "c")]])
    (q.path / "README").write_text("operator notes")
    (q.path / "notaseg.seg").write_bytes(b"x")
    scanned = restarted(sp).scan()
    assert [r.id for r in scanned] == sorted(r.id for r in refs)
    assert {r.domain for r in scanned} == {"a.example", "b.example", "c"}
    assert (q.path / "README").exists() and (q.path / "notaseg.seg").exists()


def test_scan_reads_indexes_never_records(
    sp: Spool, q: ShardQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    q.add([new(n, body=b"B" * 100_000) for n in range(3)])
    reads: list[int] = []
    real = os.pread

    def spy(fd: int, n: int, offset: int) -> bytes:
        reads.append(n)
        return real(fd, n, offset)

    monkeypatch.setattr(os, "pread", spy)
    assert len(restarted(sp).scan()) == 3
    assert reads == [64 * 1024]  # the first read holds the whole index


def test_load_missing_and_corrupt(q: ShardQueue) -> None:
    a, b = q.add([new(1), new(2)])
    [seg] = q.path.glob("*.seg")
    data = bytearray(seg.read_bytes())
    data[-3] ^= 0x01  # inside b's trailer
    seg.write_bytes(bytes(data))
    assert q.load(a)[0]["n"] == 1
    with pytest.raises(CorruptEntry, match="trailer"):
        q.load(b)
    q.remove(a)
    with pytest.raises(FileNotFoundError):
        q.load(a)


# --- rewrite / remove ---------------------------------------------------------------------


def test_rewrite_wins_over_the_old_version_also_after_a_restart(
    sp: Spool, q: ShardQueue, fsyncs: list[str]
) -> None:
    ref, other = q.add([new(1), new(2)])
    fsyncs.clear()
    updated = q.rewrite(ref, {"attempts": 1}, b"new body", T0 + 3600.5)
    assert (updated.name, updated.domain, updated.mtime) == (ref.name, ref.domain, T0 + 3600.5)
    assert [c.split(":")[0] for c in fsyncs] == ["file", "dir"]
    assert q.load(ref) == ({"attempts": 1}, b"new body")  # the old ref reads the new version
    assert len(segments(q)) == 2  # the first still holds `other`
    again = restarted(sp)
    assert {r.name: r.mtime for r in again.scan()} == {ref.name: T0 + 3600.5, other.name: T0}
    assert again.load(ref) == ({"attempts": 1}, b"new body")


def test_rewriting_the_last_live_entry_unlinks_its_old_segment(q: ShardQueue) -> None:
    [ref] = q.add([new(1)])
    q.rewrite(ref, {}, b"v2", T0 + 1)
    q.rewrite(ref, {}, b"v3", T0 + 2)
    assert segments(q) == [segment.segment_name(3)]
    assert q.load(ref) == ({}, b"v3")


def test_remove_journals_then_unlinks_the_emptied_segment(
    sp: Spool, q: ShardQueue, fsyncs: list[str]
) -> None:
    a, b, c = q.add([new(1), new(2), new(3)])
    fsyncs.clear()
    q.remove(a)
    q.remove(a)  # finishing twice is fine
    assert fsyncs == []  # not durable: at-least-once (module docstring)
    assert (q.path / JOURNAL).read_text() == f"1 {a.name}\n"
    assert [e.name for e in read_shard(q.path).live] == [b.name, c.name]
    q.remove(b)
    q.remove(c)  # the last one writes its line too, then the segment goes
    assert segments(q) == []
    assert (q.path / JOURNAL).read_text() == f"1 {a.name}\n1 {b.name}\n1 {c.name}\n"
    assert restarted(sp).scan() == []
    assert (q.path / JOURNAL).read_text() == ""  # compacted at start: nothing to kill


def test_removing_a_rewritten_entry_never_resurrects_its_older_version(
    sp: Spool, q: ShardQueue
) -> None:
    """Finding 2 of issue #14: deferred (rewritten into a one-entry segment), then
    delivered while a batch-mate is still queued.  The emptied rewrite segment goes, and
    the older version in the batch segment must stay dead after a restart."""
    greylisted, mate = q.add([new(1), new(2)])
    q.rewrite(greylisted, {"attempts": 1, "rcpts": ["left@example.com"]}, b"v2", T0 + 300)
    q.remove(greylisted)  # delivered at the retry
    assert [e.name for e in read_shard(q.path).live] == [mate.name]
    again = restarted(sp)
    assert [r.name for r in again.scan()] == [mate.name]
    q.close()
    again.remove(mate)
    assert restarted(sp).scan() == []


def test_a_removal_does_not_kill_a_later_version(sp: Spool, q: ShardQueue) -> None:
    a, keep = q.add([new(1), new(2)])
    q.remove(a)  # journal: "1 <a>"
    [back] = q.add([new(1)])  # the same name queued again later, in segment 2
    assert [r.name for r in restarted(sp).scan()] == sorted([back.name, keep.name])


def test_restart_compacts_the_journal_and_drops_dead_segments(sp: Spool, q: ShardQueue) -> None:
    first = q.add([new(n) for n in range(3)])
    second = q.add([new(n) for n in range(3, 6)])
    for r in first[:2] + second:
        q.remove(r)
    assert segments(q) == [segment.segment_name(1)]
    # A crash could leave an emptied segment behind (its unlink was not durable):
    (q.path / segment.segment_name(2)).write_bytes(
        segment.build([(r.name, T0, b"stale") for r in second])[0]
    )
    (q.path / JOURNAL).write_text(
        "".join(f"{s} {r.name}\n" for s, r in [(1, first[0]), (1, first[1])])
        + "".join(f"2 {r.name}\n" for r in second)
        + "2 torn-line-without-newl"
    )
    again = restarted(sp)
    assert [r.name for r in again.scan()] == [first[2].name]
    assert segments(again) == [segment.segment_name(1)]
    lines = (q.path / JOURNAL).read_text().splitlines()
    assert sorted(lines) == sorted(f"1 {r.name}" for r in first[:2])


def test_a_damaged_segment_goes_to_corrupt_with_its_reason(sp: Spool, q: ShardQueue) -> None:
    q.add([new(1)])
    [kept] = q.add([new(2)])
    bad = q.path / segment.segment_name(1)
    data = bytearray(bad.read_bytes())
    data[14] ^= 0x40  # inside the index
    bad.write_bytes(bytes(data))
    again = restarted(sp)
    assert again.scan() == [kept]
    assert names(sp.corrupt) == ["0-" + bad.name, f"0-{bad.name}.reason"]
    assert "CRC" in (sp.corrupt / f"0-{bad.name}.reason").read_text()
    [later] = again.add([new(3)])  # numbering goes on past the damaged segment
    assert segment.segment_name(3) in segments(again) and again.load(later)[0]["n"] == 3


# --- quarantine ---------------------------------------------------------------------------


def test_quarantine_copies_the_record_aside_and_never_overwrites(sp: Spool, q: ShardQueue) -> None:
    ref, other = q.add([new(1), new(2)])
    assert q.quarantine(ref, "meta frame: CRC mismatch") == ref.name
    [again] = q.add([new(1)])  # the same name queued again
    assert q.quarantine(again.name, "second time") == f"{ref.name}.1"
    assert [r.name for r in restarted(sp).scan()] == [other.name]
    assert names(sp.corrupt) == sorted(
        [ref.name, f"{ref.name}.reason", f"{ref.name}.1", f"{ref.name}.1.reason"]
    )
    assert decode((sp.corrupt / ref.name).read_bytes()) == (new(1).meta, new(1).body)
    assert (sp.corrupt / f"{ref.name}.1.reason").read_text() == "second time"


def test_quarantine_missing(q: ShardQueue) -> None:
    with pytest.raises(FileNotFoundError):
        q.quarantine(EntryRef(f"{entry_id(0, b'x')}@example.com", "example.com", 0.0), "r")


# --- recover, threads, read_shard ---------------------------------------------------------


def test_recover_empties_tmp_only(sp: Spool, q: ShardQueue) -> None:
    [ref] = q.add([new(1)])
    tmp0 = sp.root / "tmp" / "0"
    (tmp0 / ".123.4.leftover").write_bytes(b"half")
    (tmp0 / "sub").mkdir()
    (tmp0 / "sub" / "f").write_bytes(b"")
    (sp.root / "tmp" / "1" / "shard-1-file").write_bytes(b"")
    assert q.recover() == 2
    assert names(tmp0) == [] and names(sp.root / "tmp" / "1") == ["shard-1-file"]
    assert q.scan() == [ref]


def test_adds_on_one_thread_while_another_loads_and_removes(sp: Spool, q: ShardQueue) -> None:
    batches = [[new(100 * b + n) for n in range(20)] for b in range(10)]
    added: list[EntryRef] = []

    def intake() -> None:
        for batch in batches:
            added.extend(q.add(batch))

    t = threading.Thread(target=intake)
    t.start()
    seen = 0
    kept: set[str] = set()
    while t.is_alive() or seen < len(added):
        for ref in added[seen:]:
            assert q.load(ref)[0]["n"] >= 0
            if seen % 3 == 2:
                kept.add(ref.name)
            else:
                q.remove(ref)
            seen += 1
    t.join()
    assert seen == 200 and q.count() == len(kept) == 66
    assert {r.name for r in restarted(sp).scan()} == kept


# --- SpoolFull ----------------------------------------------------------------------------


def _fail_on_call(n: int, err: int, real: Any) -> Any:
    calls = 0

    def fn(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == n:
            raise OSError(err, os.strerror(err))
        return real(*args, **kwargs)

    return fn


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EDQUOT])
def test_spool_full_while_writing_leaves_nothing(
    sp: Spool, q: ShardQueue, monkeypatch: pytest.MonkeyPatch, err: int
) -> None:
    monkeypatch.setattr(atomic, "_write_all", _fail_on_call(1, err, atomic._write_all))
    with pytest.raises(SpoolFull):
        q.add([new(n) for n in range(4)])
    assert segments(q) == [] and names(sp.root / "tmp" / "0") == [] and q.count() == 0


def test_spool_full_on_fsync_leaves_nothing(
    sp: Spool, q: ShardQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ext4 delayed allocation: write() succeeds and fsync() reports ENOSPC.
    monkeypatch.setattr(os, "fsync", _fail_on_call(1, errno.ENOSPC, os.fsync))
    with pytest.raises(SpoolFull):
        q.add([new(n) for n in range(3)])
    assert segments(q) == [] and names(sp.root / "tmp" / "0") == [] and q.count() == 0


def test_other_errors_propagate_and_leave_nothing(
    sp: Spool, q: ShardQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as m:
        m.setattr(atomic, "_write_all", _fail_on_call(1, errno.EIO, atomic._write_all))
        with pytest.raises(OSError) as info:
            q.add([new(n) for n in range(3)])
    assert info.value.errno == errno.EIO and not isinstance(info.value, SpoolFull)
    with pytest.raises(TypeError):
        q.add([new(1), NewEntry(new(2).id, "example.com", {"x": object()}, b"", T0)])
    assert segments(q) == [] and names(sp.root / "tmp" / "0") == [] and q.count() == 0


def test_spool_full_on_rewrite_keeps_the_old_version(
    sp: Spool, q: ShardQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    [ref] = q.add([new(1)])
    monkeypatch.setattr(atomic, "_write_all", _fail_on_call(1, errno.ENOSPC, atomic._write_all))
    with pytest.raises(SpoolFull):
        q.rewrite(ref, {}, b"new", T0 + 60)
    assert q.load(ref) == (new(1).meta, new(1).body)
    assert restarted(sp).scan() == [ref]
    assert names(sp.root / "tmp" / "0") == []


def test_a_full_disk_delays_journal_lines_and_never_loses_them(
    sp: Spool, q: ShardQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, c, d = q.add([new(1), new(2), new(3), new(4)])
    with monkeypatch.context() as m:
        m.setattr(atomic, "_write_all", _fail_on_call(1, errno.ENOSPC, atomic._write_all))
        q.remove(a)  # refused by the disk: kept in memory
    assert (q.path / JOURNAL).read_text() == ""
    assert q.count() == 3
    q.remove(b)  # the next removal writes both lines
    assert (q.path / JOURNAL).read_text() == f"1 {a.name}\n1 {b.name}\n"
    assert [r.name for r in restarted(sp).scan()] == sorted([c.name, d.name])


def test_scan_after_recover_reports_what_recover_found_even_after_adds(
    sp: Spool, q: ShardQueue
) -> None:
    a, b = q.add([new(1), new(2)])
    again = Spool(sp.root).shard(0)
    again.recover()
    [c] = again.add([new(3)])  # e.g. an interrupted intake batch taken again at start
    again.remove(b)
    assert [r.name for r in again.scan()] == [a.name]
    assert again.count() == 2 and again.load(c)[0]["n"] == 3
    assert sorted(r.name for r in again.scan()) == sorted([a.name, c.name])  # from disk


# --- entries found at start live in the compact index (spool.compact) ---------------------


def test_entries_found_at_start_are_rows_not_dict_entries(sp: Spool, q: ShardQueue) -> None:
    refs = q.add([new(n) for n in range(5)])
    again = restarted(sp)
    index, odd = again.scan_compact()
    assert odd == [] and index.live_count == 5 and again._loc == {}
    assert [index.ref(r) for r in index.live_rows()] == refs
    assert again.count() == 5 and [again.load(r)[0]["n"] for r in refs] == list(range(5))
    # A name found at start is live: adding it again writes nothing.
    assert again.add([new(2, body=b"other")])[0].name == refs[2].name and again.count() == 5
    assert len(segments(again)) == 1


def test_remove_rewrite_and_quarantine_of_rows_found_at_start(sp: Spool, q: ShardQueue) -> None:
    refs = q.add([new(n) for n in range(4)])
    again = restarted(sp)
    index, _ = again.scan_compact()
    again.remove(refs[0])
    new1 = again.rewrite(refs[1], {"n": "one"}, b"rewritten", T0 + 60)
    final = again.quarantine(refs[2].name, "bad")
    assert index.live_count == 1 and index.live_row(refs[3].name) >= 0
    assert again.count() == 2 and again.load(new1) == ({"n": "one"}, b"rewritten")
    assert (sp.root / "corrupt" / final).exists()
    for gone in (refs[0], refs[2]):
        with pytest.raises(FileNotFoundError):
            again.load(gone)
    again.remove(refs[0])  # finished already: fine
    later = restarted(sp)
    assert {r.name: r.mtime for r in later.scan()} == {new1.name: T0 + 60, refs[3].name: T0}


def test_the_index_is_let_go_once_every_row_is_finished(sp: Spool, q: ShardQueue) -> None:
    refs = q.add([new(n) for n in range(3)])
    again = restarted(sp)
    for r in refs:
        assert again._cold is not None
        again.remove(r)
    assert again._cold is None and again.count() == 0 and segments(again) == []
    assert restarted(sp).scan() == []


def test_journal_compaction_keeps_lines_for_rows_finished_since_start(
    sp: Spool, q: ShardQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    refs = q.add([new(n) for n in range(4)])
    again = restarted(sp)
    monkeypatch.setattr("spool.shard.COMPACT_AT", 1)  # compact at every removal
    again.remove(refs[0])
    again.remove(refs[1])
    lines = (again.path / JOURNAL).read_text().splitlines()
    assert sorted(line.split()[1] for line in lines) == sorted([refs[0].name, refs[1].name])
    assert [r.name for r in restarted(sp).scan()] == [refs[2].name, refs[3].name]


# --- any sequence of operations and crashes (issue #14: "spool operations compose") ---------


class _Crash(Exception):
    """The process dies here: nothing after this point of the operation happens."""


class _Faults:
    """Counts the spool's file-system steps and raises _Crash at step number `at` (None:
    never).  The steps are every write, link, fsync and unlink the shard makes."""

    _ATOMIC = (
        "write_tmp", "link_batch", "write_all", "fsync_fd", "fsync_dir", "put_file",
        "unlink_quietly",
    )  # fmt: skip

    def __init__(self) -> None:
        self.at: int | None = None
        self.count = 0
        self._saved: list[tuple[object, str, object]] = []

    def __enter__(self) -> _Faults:
        for name in self._ATOMIC:
            self._wrap(atomic, name)
        return self

    def _wrap(self, module: object, name: str) -> None:
        real = getattr(module, name)

        def step(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            if self.at is not None and self.count >= self.at:
                raise _Crash(name)
            return real(*args, **kwargs)

        self._saved.append((module, name, real))
        setattr(module, name, step)

    def __exit__(self, *exc: object) -> None:
        for module, name, real in reversed(self._saved):
            setattr(module, name, real)


class ShardMachine(RuleBasedStateMachine):
    """The shard against a model (name -> version), with crashes between any two steps
    of add, rewrite and remove.  After a crash the interrupted operation must have
    happened whole or not at all, and nothing else may change: no entry lost, none
    resurrected, every live entry at its latest version."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="shard-machine-"))
        self.sp = Spool(self.root)
        self.sp.ensure(1)
        self.q = self.sp.shard(0)
        self.q.recover()
        self.live: dict[str, tuple[int, EntryRef]] = {}  # name -> (version, ref)
        self.gone: set[str] = set()
        self.n = 0
        self.faults = _Faults()

    names = Bundle("names")

    def teardown(self) -> None:
        self.q.close()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- operations, each maybe cut short by a crash at a random step ------------------
    def _run(self, op: Any, crash_at: int | None) -> bool:
        """Run `op` with a crash at step `crash_at`; True when it completed."""
        self.faults.at = crash_at
        self.faults.count = 0
        try:
            with self.faults:
                op()
        except _Crash:
            self._restart()
            return False
        return True

    def _restart(self) -> None:
        self.q.close()
        self.q = Spool(self.root).shard(0)
        self.q.recover()

    def _versions_on_disk(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for ref in self.q.scan():
            meta, _ = self.q.load(ref)
            out[ref.name] = int(meta["version"])
        return out

    @rule(target=names, k=st.integers(1, 4), crash_at=st.none() | st.integers(1, 6))
    def add(self, k: int, crash_at: int | None) -> Any:
        items = [new(self.n + i) for i in range(k)]
        for item in items:
            item.meta["version"] = 0
        self.n += k
        refs: list[EntryRef] = []
        if self._run(lambda: refs.extend(self.q.add(items)), crash_at):
            for ref in refs:
                self.live[ref.name] = (0, ref)
            return multiple(*(r.name for r in refs))
        on_disk = self._versions_on_disk()
        added = [i for i in items if f"{i.id}@{i.domain}" in on_disk]
        assert len(added) in (0, k), "a batch is added whole or not at all"
        for item in added:
            name = f"{item.id}@{item.domain}"
            self.live[name] = (0, EntryRef(name, item.domain, item.not_before))
        self._check_exact()
        return multiple(*(f"{i.id}@{i.domain}" for i in added))

    @rule(name=names, crash_at=st.none() | st.integers(1, 5))
    def rewrite(self, name: str, crash_at: int | None) -> None:
        if name not in self.live:
            return
        version, ref = self.live[name]
        meta = {"version": version + 1, "rcpts": [f"left{version}@example.com"]}
        out: list[EntryRef] = []
        if self._run(lambda: out.append(self.q.rewrite(ref, meta, b"v", T0 + version)), crash_at):
            self.live[name] = (version + 1, out[0])
            return
        got = self._versions_on_disk().get(name)
        assert got in (version, version + 1), f"rewrite left version {got}"
        self.live[name] = (int(got), ref) if got is not None else self.live[name]
        self._check_exact()

    @rule(name=names, crash_at=st.none() | st.integers(1, 4))
    def remove(self, name: str, crash_at: int | None) -> None:
        entry = self.live.get(name)
        ref = entry[1] if entry else EntryRef(name, "example.com", T0)
        if self._run(lambda: self.q.remove(ref), crash_at):
            self.live.pop(name, None)
            self.gone.add(name)
            return
        if name not in self._versions_on_disk():
            self.live.pop(name, None)
            self.gone.add(name)
        self._check_exact()

    @rule()
    def crash(self) -> None:
        self._restart()
        self._check_exact()

    # -- what must always hold ---------------------------------------------------------
    def _check_exact(self) -> None:
        on_disk = self._versions_on_disk()
        assert on_disk == {n: v for n, (v, _) in self.live.items()}
        assert not (self.gone & set(on_disk)), "a finished entry came back"

    @invariant()
    def index_matches_the_model(self) -> None:
        assert self.q.count() == len(self.live)
        for name, (version, ref) in self.live.items():
            meta, _ = self.q.load(ref)
            assert meta["version"] == version, name
        for name in self.gone:
            with pytest.raises(FileNotFoundError):
                self.q.load(EntryRef(name, "example.com", T0))


ShardMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=list(HealthCheck)
)
test_shard_operations_and_crashes_compose = ShardMachine.TestCase
