from __future__ import annotations

import builtins
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from spool.store import Spool
from tests.support.spool_entries import T0, new


def names(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


# --- Spool: tree, drops -------------------------------------------------------------------


def test_ensure_creates_the_tree_and_is_idempotent(tmp_path: Path) -> None:
    s = Spool(str(tmp_path / "root"))
    s.ensure(3)
    s.ensure(3)
    assert s.root == tmp_path / "root"
    assert names(s.root) == ["corrupt", "feedback", "incoming", "queue", "rejected", "tmp"]
    assert names(s.root / "feedback") == ["rejected"]
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


# --- recover / rehome ---------------------------------------------------------------------


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
    sp.shard(0).add([new(1)])  # a crash after the target's segment, before the rmtree
    assert sp.rehome(2) == 0
    assert sp.shard(0).scan() == [ref]
    assert not (sp.root / "queue" / "2").exists()


def test_rehome_keeps_the_targets_version_of_a_clash(sp: Spool) -> None:
    sp.ensure(3)
    [kept] = sp.shard(0).add([new(1, body=b"in shard 0")])
    sp.shard(2).add([new(1, body=b"in shard 2"), new(2)])
    assert sp.rehome(2) == 1
    assert sp.shard(0).load(kept)[1] == b"in shard 0"
    assert len(sp.shard(0).scan()) == 2
    assert not (sp.root / "queue" / "2").exists()


def test_rehome_quarantines_a_damaged_entry_and_moves_the_rest(sp: Spool) -> None:
    sp.ensure(3)
    refs = sp.shard(2).add([new(1), new(2)])
    seg = next((sp.root / "queue" / "2").glob("*.seg"))
    data = bytearray(seg.read_bytes())
    data[-10] ^= 0xFF  # inside the last record's body: its CRC no longer matches
    seg.write_bytes(bytes(data))
    assert sp.rehome(2) == 1
    assert [r.name for r in sp.shard(0).scan()] == [refs[0].name]
    assert names(sp.corrupt) == [refs[1].name, f"{refs[1].name}.reason"]


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
