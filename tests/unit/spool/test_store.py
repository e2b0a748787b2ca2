from __future__ import annotations

import builtins
import errno
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from spool import atomic
from spool.errors import CorruptEntry, SpoolFull
from spool.ids import entry_id
from spool.record import encode
from spool.store import EntryRef, NewEntry, ShardQueue, Spool

T0 = 1_795_704_371.0  # seconds
META: dict[str, Any] = {"sender": "b@example.org", "rcpts": ["x@example.com"], "attempts": 0}


def new(n: int, domain: str = "example.com", not_before: float = T0, body: bytes = b"") -> NewEntry:
    eid = entry_id(int(T0 * 1e9) + n * 1000, b"salt%d" % n)
    return NewEntry(eid, domain, dict(META, n=n), body or b"message %d\r\n" % n, not_before)


@pytest.fixture
def sp(tmp_path: Path) -> Spool:
    s = Spool(tmp_path / "spool")
    s.ensure(2)
    return s


@pytest.fixture
def q(sp: Spool) -> ShardQueue:
    return sp.shard(0)


def names(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


# --- Spool: tree, drops -------------------------------------------------------------------


def test_ensure_creates_the_tree_and_is_idempotent(tmp_path: Path) -> None:
    s = Spool(str(tmp_path / "root"))
    s.ensure(3)
    s.ensure(3)
    assert s.root == tmp_path / "root"
    assert names(s.root) == ["corrupt", "incoming", "queue", "rejected", "tmp"]
    assert names(s.root / "queue") == names(s.root / "tmp") == ["0", "1", "2"]
    assert (s.incoming, s.rejected, s.corrupt) == (
        s.root / "incoming",
        s.root / "rejected",
        s.root / "corrupt",
    )
    assert s.shard(2).path == s.root / "queue" / "2"
    assert s.shard(2).k == 2


def test_incoming_names_skips_in_progress_and_reason_files(sp: Spool) -> None:
    for name in ["b.eml", "a.eml", ".c.eml.tmp", "x.reason", "réponse urgente.eml"]:
        (sp.incoming / name).write_bytes(b"")
    assert sp.incoming_names() == ["a.eml", "b.eml", "réponse urgente.eml"]


def test_consume_drops_unlinks_and_fsyncs_once(sp: Spool, fsyncs: list[str]) -> None:
    for name in ["a.eml", "b.eml", "keep.eml"]:
        (sp.incoming / name).write_bytes(b"")
    sp.consume_drops(["a.eml", "b.eml", "already-gone.eml"])
    assert names(sp.incoming) == ["keep.eml"]
    assert fsyncs == ["dir:incoming"]
    fsyncs.clear()
    sp.consume_drops([])
    assert fsyncs == []


@pytest.mark.parametrize("bad", ["", ".", "..", "../queue/0/x", "a/b"])
def test_drop_operations_refuse_paths(sp: Spool, bad: str) -> None:
    with pytest.raises(ValueError):
        sp.reject_drop(bad, "r")
    with pytest.raises(ValueError):
        sp.consume_drops([bad])


def test_reject_drop_moves_with_reason_and_never_overwrites(sp: Spool, fsyncs: list[str]) -> None:
    name = "lettre n°1 à envoyer.eml"
    finals = []
    for n in range(3):
        (sp.incoming / name).write_bytes(b"drop %d" % n)
        finals.append(sp.reject_drop(name, f"attempt {n}: not RFC 5322 — no From"))
    assert finals == [name, f"{name}.1", f"{name}.2"]
    assert names(sp.incoming) == []
    for n, final in enumerate(finals):
        assert (sp.rejected / final).read_bytes() == b"drop %d" % n
        reason = (sp.rejected / f"{final}.reason").read_text(encoding="utf-8")
        assert reason == f"attempt {n}: not RFC 5322 — no From"
    assert "dir:rejected" in fsyncs and "dir:incoming" in fsyncs


def test_reject_drop_of_a_symlink_moves_the_link_and_never_reads_the_target(
    sp: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    (sp.incoming / "evil.eml").symlink_to("/etc/passwd")
    before = os.stat("/etc/passwd")
    real_open, real_os_open = builtins.open, os.open

    def guarded(opener: Any) -> Any:
        def wrapper(path: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(path, (str, Path)) and os.path.realpath(path) == "/etc/passwd":
                raise AssertionError(f"opened {path}")
            return opener(path, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(builtins, "open", guarded(real_open))
    monkeypatch.setattr(os, "open", guarded(real_os_open))
    final = sp.reject_drop("evil.eml", "symlink")
    monkeypatch.undo()
    assert final == "evil.eml"
    assert os.readlink(sp.rejected / "evil.eml") == "/etc/passwd"
    assert not os.path.lexists(sp.incoming / "evil.eml")
    after = os.stat("/etc/passwd")
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_size,
    )


def test_reject_drop_of_a_fifo_does_not_block(sp: Spool) -> None:
    os.mkfifo(sp.incoming / "pipe.eml")
    assert sp.reject_drop("pipe.eml", "not a regular file") == "pipe.eml"
    assert stat.S_ISFIFO(os.lstat(sp.rejected / "pipe.eml").st_mode)


def test_reject_drop_of_a_directory(sp: Spool) -> None:
    (sp.incoming / "dir.eml").mkdir()
    (sp.incoming / "dir.eml" / "inside").write_bytes(b"x")
    (sp.rejected / "dir.eml").mkdir()  # an earlier rejected directory, empty
    assert sp.reject_drop("dir.eml", "a directory") == "dir.eml.1"
    assert (sp.rejected / "dir.eml.1" / "inside").read_bytes() == b"x"
    assert (sp.rejected / "dir.eml.1.reason").read_text() == "a directory"


def test_reject_drop_of_a_name_at_name_max(sp: Spool) -> None:
    name = "d" * 255
    (sp.incoming / name).write_bytes(b"x")
    final = sp.reject_drop(name, "too long")
    assert final == "d" * 248  # room for ".reason"
    assert (sp.rejected / f"{final}.reason").read_text() == "too long"


def test_reject_drop_missing(sp: Spool) -> None:
    with pytest.raises(FileNotFoundError):
        sp.reject_drop("gone.eml", "r")
    assert names(sp.rejected) == []


# --- ShardQueue: add / scan / load --------------------------------------------------------


def test_add_then_scan_finds_it_with_the_right_mtime(q: ShardQueue) -> None:
    item = new(1, not_before=T0 + 300.123456)
    [ref] = q.add([item])
    assert ref.name == f"{item.id}@example.com"
    assert (ref.id, ref.domain) == (item.id, "example.com")
    assert ref.mtime == pytest.approx(T0 + 300.123456, abs=1e-6)
    assert q.scan() == [ref]
    assert q.load(ref) == (item.meta, item.body)
    assert q.count() == 1


def test_add_is_one_group_commit(q: ShardQueue, fsyncs: list[str]) -> None:
    refs = q.add([new(n) for n in range(5)])
    assert len(refs) == 5
    assert [c.split(":")[0] for c in fsyncs] == ["file"] * 5 + ["dir"]
    assert fsyncs[-1] == "dir:0"
    assert names(q.path.parent.parent / "tmp" / "0") == []


def test_add_the_same_id_twice_keeps_one_entry(q: ShardQueue) -> None:
    [first] = q.add([new(1, not_before=T0)])
    again = new(1, not_before=T0 + 999, body=b"different body")
    [second] = q.add([again])
    assert second == first  # the existing entry wins, with its own mtime
    assert q.count() == 1
    assert q.load(first)[1] == b"message 1\r\n"
    [dup_a, dup_b] = q.add([new(2), new(2)])
    assert dup_a.name == dup_b.name
    assert q.count() == 2


def test_add_validates_every_name_before_writing(q: ShardQueue) -> None:
    with pytest.raises(ValueError, match="domain"):
        q.add([new(1), new(2, domain="Bad.Example")])
    assert q.scan() == []
    assert names(q.path.parent.parent / "tmp" / "0") == []


def test_add_nothing(q: ShardQueue, fsyncs: list[str]) -> None:
    assert q.add([]) == []
    assert fsyncs == []


def test_scan_is_fifo_and_ignores_what_is_not_an_entry(q: ShardQueue) -> None:
    refs = q.add([new(n, domain=d) for n, d in [(3, "b.example"), (1, "a.example"), (2, "c")]])
    (q.path / "README").write_text("operator notes")
    (q.path / ".hidden").write_bytes(b"")
    (q.path / f"{refs[0].id}@UPPER.example").write_bytes(b"")
    (q.path / f"{entry_id(0, b'd')}@dir.example").mkdir()
    os.symlink(q.path / refs[0].name, q.path / f"{entry_id(0, b'l')}@link.example")
    scanned = q.scan()
    assert [r.id for r in scanned] == sorted(r.id for r in refs)
    assert {r.domain for r in scanned} == {"a.example", "b.example", "c"}
    assert q.count() == 3
    assert (q.path / "README").exists()  # left where it was


def test_scan_never_opens_a_file(q: ShardQueue, monkeypatch: pytest.MonkeyPatch) -> None:
    q.add([new(n) for n in range(3)])

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("scan opened a file")

    monkeypatch.setattr(builtins, "open", refuse)
    monkeypatch.setattr(os, "open", refuse)
    assert len(q.scan()) == 3
    assert q.count() == 3


def test_load_missing_and_corrupt(q: ShardQueue) -> None:
    [ref] = q.add([new(1)])
    data = (q.path / ref.name).read_bytes()
    (q.path / ref.name).write_bytes(data[:-1])
    with pytest.raises(CorruptEntry, match="trailer"):
        q.load(ref)
    q.remove(ref)
    with pytest.raises(FileNotFoundError):
        q.load(ref)


# --- rewrite / remove / quarantine --------------------------------------------------------


def test_rewrite_keeps_the_name_and_changes_mtime_and_content(
    q: ShardQueue, fsyncs: list[str]
) -> None:
    [ref] = q.add([new(1)])
    fsyncs.clear()
    updated = q.rewrite(ref, {"attempts": 1}, b"new body", T0 + 3600.5)
    assert (updated.name, updated.id, updated.domain) == (ref.name, ref.id, ref.domain)
    assert updated.mtime == pytest.approx(T0 + 3600.5, abs=1e-6)
    assert q.scan() == [updated]
    assert q.load(updated) == ({"attempts": 1}, b"new body")
    assert [c.split(":")[0] for c in fsyncs] == ["file", "dir"]  # tmp file, then queue/0
    assert fsyncs[1] == "dir:0"
    assert names(q.path.parent.parent / "tmp" / "0") == []


def test_remove_is_not_fsynced_and_tolerates_missing(q: ShardQueue, fsyncs: list[str]) -> None:
    [ref] = q.add([new(1)])
    fsyncs.clear()
    q.remove(ref)
    q.remove(ref)
    assert q.scan() == []
    assert fsyncs == []


def test_quarantine_by_ref_and_by_name_with_collisions(sp: Spool, q: ShardQueue) -> None:
    [ref] = q.add([new(1)])
    assert q.quarantine(ref, "meta frame: CRC mismatch") == ref.name
    [again] = q.add([new(1)])  # the same name comes back (e.g. restored from a backup)
    assert q.quarantine(again.name, "second time") == f"{ref.name}.1"
    odd = "stray file, über.msg"
    (q.path / odd).write_bytes(b"?")
    assert q.quarantine(odd, "not an entry name") == odd
    assert q.scan() == []
    moved = [ref.name, f"{ref.name}.1", odd]
    assert names(sp.corrupt) == sorted([*moved, *(f"{m}.reason" for m in moved)])
    assert (sp.corrupt / f"{ref.name}.1.reason").read_text() == "second time"
    assert (sp.corrupt / f"{odd}.reason").read_text(encoding="utf-8") == "not an entry name"


def test_quarantine_missing(q: ShardQueue) -> None:
    ref = EntryRef(f"{entry_id(0, b'x')}@example.com", entry_id(0, b"x"), "example.com", 0.0)
    with pytest.raises(FileNotFoundError):
        q.quarantine(ref, "r")


# --- recover / rehome ---------------------------------------------------------------------


def test_recover_empties_tmp_only(sp: Spool, q: ShardQueue) -> None:
    [ref] = q.add([new(1)])
    tmp0 = sp.root / "tmp" / "0"
    (tmp0 / ".123.4.leftover").write_bytes(b"half")
    (tmp0 / "other").write_bytes(b"")
    (tmp0 / "sub").mkdir()
    (tmp0 / "sub" / "f").write_bytes(b"")
    (sp.root / "tmp" / "1" / "shard-1-file").write_bytes(b"")
    assert q.recover() == 3
    assert names(tmp0) == []
    assert names(sp.root / "tmp" / "1") == ["shard-1-file"]
    assert q.scan() == [ref]
    assert q.recover() == 0


def test_rehome_moves_retired_shards(sp: Spool) -> None:
    sp.ensure(4)
    refs = {
        k: sp.shard(k).add([new(10 * k + n, not_before=T0 + k) for n in (0, 1)]) for k in range(4)
    }
    (sp.root / "tmp" / "3" / "leftover").write_bytes(b"")
    assert sp.rehome(2) == 4
    assert not (sp.root / "queue" / "2").exists() and not (sp.root / "queue" / "3").exists()
    assert not (sp.root / "tmp" / "3").exists()
    assert sp.shard(0).scan() == sorted(refs[0] + refs[2], key=lambda r: r.name)
    assert sp.shard(1).scan() == sorted(refs[1] + refs[3], key=lambda r: r.name)  # mtimes kept
    assert sp.rehome(2) == 0


def test_rehome_finishes_an_interrupted_rehome(sp: Spool) -> None:
    sp.ensure(3)
    [ref] = sp.shard(2).add([new(1)])
    os.link(sp.root / "queue" / "2" / ref.name, sp.root / "queue" / "0" / ref.name)
    assert sp.rehome(2) == 0
    assert sp.shard(0).scan() == [ref]
    assert not (sp.root / "queue" / "2").exists()


def test_rehome_never_loses_a_clashing_entry(sp: Spool) -> None:
    sp.ensure(3)
    [kept] = sp.shard(0).add([new(1, body=b"in shard 0")])
    sp.shard(2).add([new(1, body=b"in shard 2")])
    (sp.root / "queue" / "2" / "notes.txt").write_text("operator file")
    assert sp.rehome(2) == 0
    assert sp.shard(0).load(kept)[1] == b"in shard 0"
    assert names(sp.corrupt) == [kept.name, f"{kept.name}.reason"]
    assert (sp.corrupt / kept.name).read_bytes() == encode(new(1).meta, b"in shard 2")
    assert "already exists" in (sp.corrupt / f"{kept.name}.reason").read_text()
    assert names(sp.root / "queue" / "2") == ["notes.txt"]  # not ours: stays, so does the dir


def test_rehome_drops_an_identical_duplicate(sp: Spool) -> None:
    sp.ensure(3)
    [kept] = sp.shard(0).add([new(1)])
    sp.shard(2).add([new(1)])  # the same drop queued again under another shard count
    assert sp.rehome(2) == 0
    assert sp.shard(0).scan() == [kept]
    assert names(sp.corrupt) == []
    assert not (sp.root / "queue" / "2").exists()


def test_rehome_cleans_retired_tmp_dirs_without_queue_dirs(sp: Spool) -> None:
    (sp.root / "tmp" / "5").mkdir()
    (sp.root / "tmp" / "5" / ".1.2.x").write_bytes(b"")
    assert sp.rehome(2) == 0
    assert names(sp.root / "tmp") == ["0", "1"]


def test_consume_drops_validates_every_name_first(sp: Spool) -> None:
    (sp.incoming / "a.eml").write_bytes(b"")
    with pytest.raises(ValueError):
        sp.consume_drops(["a.eml", "../x"])
    assert names(sp.incoming) == ["a.eml"]


def test_rehome_rejects_zero_shards(sp: Spool) -> None:
    with pytest.raises(ValueError):
        sp.rehome(0)


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


def _assert_nothing_left(sp: Spool, q: ShardQueue) -> None:
    assert names(q.path) == []
    assert names(sp.root / "tmp" / "0") == []


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EDQUOT])
def test_spool_full_while_writing_leaves_nothing(
    sp: Spool, q: ShardQueue, monkeypatch: pytest.MonkeyPatch, err: int
) -> None:
    monkeypatch.setattr(atomic, "_write_all", _fail_on_call(3, err, atomic._write_all))
    with pytest.raises(SpoolFull):
        q.add([new(n) for n in range(4)])
    _assert_nothing_left(sp, q)


def test_spool_full_on_fsync_leaves_nothing(
    sp: Spool, q: ShardQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ext4 delayed allocation: write() succeeds and fsync() reports ENOSPC.
    monkeypatch.setattr(os, "fsync", _fail_on_call(2, errno.ENOSPC, os.fsync))
    with pytest.raises(SpoolFull):
        q.add([new(n) for n in range(3)])
    _assert_nothing_left(sp, q)


def test_spool_full_while_linking_leaves_nothing(
    sp: Spool, q: ShardQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "link", _fail_on_call(3, errno.ENOSPC, os.link))
    with pytest.raises(SpoolFull):
        q.add([new(n) for n in range(4)])
    _assert_nothing_left(sp, q)


def test_other_errors_propagate_and_leave_nothing(
    sp: Spool, q: ShardQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(atomic, "_write_all", _fail_on_call(2, errno.EIO, atomic._write_all))
    with pytest.raises(OSError) as info:
        q.add([new(n) for n in range(3)])
    assert info.value.errno == errno.EIO and not isinstance(info.value, SpoolFull)
    _assert_nothing_left(sp, q)
    with pytest.raises(TypeError):
        q.add([new(1), NewEntry(new(2).id, "example.com", {"x": object()}, b"", T0)])
    _assert_nothing_left(sp, q)


def test_spool_full_on_rewrite_keeps_the_old_version(
    sp: Spool, q: ShardQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    [ref] = q.add([new(1)])
    monkeypatch.setattr(atomic, "_write_all", _fail_on_call(1, errno.ENOSPC, atomic._write_all))
    with pytest.raises(SpoolFull):
        q.rewrite(ref, {}, b"new", T0 + 60)
    assert q.scan() == [ref]
    assert q.load(ref) == (new(1).meta, new(1).body)
    assert names(sp.root / "tmp" / "0") == []
