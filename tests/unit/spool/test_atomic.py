from __future__ import annotations

import errno
import itertools
import os
import stat
from pathlib import Path
from typing import Any

import pytest

import spool
from spool import atomic


def test_fsync_dir(tmp_path: Path, fsyncs: list[str]) -> None:
    atomic.fsync_dir(tmp_path)
    assert fsyncs == [f"dir:{tmp_path.name}"]
    with pytest.raises(FileNotFoundError):
        atomic.fsync_dir(tmp_path / "missing")
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        atomic.fsync_dir(tmp_path / "f")


def test_write_tmp_writes_sets_mtime_and_fsyncs(tmp_path: Path, fsyncs: list[str]) -> None:
    tmp = atomic.write_tmp(tmp_path, "stem", b"data" * 1000, mtime=1_800_000_000.25)
    assert tmp.path.parent == tmp_path
    assert tmp.path.name.startswith(".") and tmp.path.name.endswith(".stem")
    assert tmp.path.read_bytes() == b"data" * 1000
    st = os.stat(tmp.path)
    assert st.st_mtime_ns == 1_800_000_000_250_000_000
    assert tmp.mtime == st.st_mtime
    assert stat.S_IMODE(st.st_mode) & 0o077 == 0  # private mail
    assert fsyncs == [f"file:{tmp.path.name}"]


def test_write_tmp_without_mtime_keeps_the_current_time(tmp_path: Path) -> None:
    tmp = atomic.write_tmp(tmp_path, "s", b"")
    assert tmp.mtime == os.stat(tmp.path).st_mtime


def test_write_tmp_names_are_unique_and_step_over_leftovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(atomic, "_seq", itertools.count(7))
    leftover = tmp_path / f".{os.getpid()}.7.s"
    leftover.write_bytes(b"old")
    a = atomic.write_tmp(tmp_path, "s", b"a")
    b = atomic.write_tmp(tmp_path, "s", b"b")
    assert leftover.read_bytes() == b"old"  # O_EXCL: never written into
    assert a.path.name == f".{os.getpid()}.8.s"
    assert (a.path.read_bytes(), b.path.read_bytes()) == (b"a", b"b")


def test_write_tmp_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, data: bytes) -> None:
        os.write(fd, data[:10])  # a partial write, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic, "_write_all", full)
    with pytest.raises(OSError) as info:
        atomic.write_tmp(tmp_path, "s", b"x" * 100)
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_write_all_handles_short_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real(fd, bytes(data[:3])))
    tmp = atomic.write_tmp(tmp_path, "s", b"0123456789")
    assert tmp.path.read_bytes() == b"0123456789"


def _tmp(directory: Path, data: bytes) -> Path:
    return atomic.write_tmp(directory, "t", data).path


def test_link_batch_group_commit(tmp_path: Path, fsyncs: list[str]) -> None:
    tmpdir, dest = tmp_path / "tmp", tmp_path / "dest"
    tmpdir.mkdir()
    dest.mkdir()
    (dest / "b").write_bytes(b"existing")
    pairs = [(_tmp(tmpdir, b"A"), dest / "a"), (_tmp(tmpdir, b"B"), dest / "b")]
    pairs.append((_tmp(tmpdir, b"C"), dest / "c"))
    fsyncs.clear()
    assert atomic.link_batch(pairs, dest) == [True, False, True]
    assert fsyncs == ["dir:dest"]  # one directory fsync for the whole batch
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == {
        "a": b"A",
        "b": b"existing",  # never replaced
        "c": b"C",
    }
    assert list(tmpdir.iterdir()) == []


def test_link_batch_without_new_names_skips_the_fsync(tmp_path: Path, fsyncs: list[str]) -> None:
    (tmp_path / "a").write_bytes(b"old")
    t = _tmp(tmp_path, b"new")
    fsyncs.clear()
    assert atomic.link_batch([(t, tmp_path / "a")], tmp_path) == [False]
    assert fsyncs == []
    assert not t.exists()


def test_link_batch_failure_is_all_or_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pairs = [(_tmp(tmp_path, bytes([n])), tmp_path / f"final{n}") for n in range(3)]
    real = os.link
    calls = 0

    def link(src: Any, dst: Any, **kw: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(src, dst, **kw)

    monkeypatch.setattr(os, "link", link)
    with pytest.raises(OSError, match="No space"):
        atomic.link_batch(pairs, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_replace_overwrites_and_fsyncs_the_directory(tmp_path: Path, fsyncs: list[str]) -> None:
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "entry").write_bytes(b"old")
    t = _tmp(tmp_path, b"new")
    fsyncs.clear()
    atomic.replace(t, dest / "entry")
    assert (dest / "entry").read_bytes() == b"new"
    assert not t.exists()
    assert fsyncs == ["dir:d"]


def test_replace_failure_removes_the_tmp_file(tmp_path: Path) -> None:
    t = _tmp(tmp_path, b"new")
    with pytest.raises(FileNotFoundError):
        atomic.replace(t, tmp_path / "no-such-dir" / "entry")
    assert list(tmp_path.iterdir()) == []


def test_put_file_creates_and_replaces(tmp_path: Path, fsyncs: list[str]) -> None:
    atomic.put_file(tmp_path, "x.reason", b"first")
    atomic.put_file(tmp_path, "x.reason", b"second")
    assert [p.name for p in tmp_path.iterdir()] == ["x.reason"]
    assert (tmp_path / "x.reason").read_bytes() == b"second"
    assert all(c.startswith("file:") for c in fsyncs)  # the caller fsyncs the directory


def _dirs(tmp_path: Path) -> tuple[Path, Path]:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    return src, dst


def test_move_unique_never_overwrites(tmp_path: Path) -> None:
    src, dst = _dirs(tmp_path)
    finals = []
    for n in range(3):
        (src / "m.eml").write_bytes(b"%d" % n)
        finals.append(atomic.move_unique(src / "m.eml", dst, "m.eml", 200))
    assert finals == ["m.eml", "m.eml.1", "m.eml.2"]
    assert [(dst / f).read_bytes() for f in finals] == [b"0", b"1", b"2"]
    assert list(src.iterdir()) == []


def test_move_unique_moves_a_symlink_itself(tmp_path: Path) -> None:
    src, dst = _dirs(tmp_path)
    target = tmp_path / "target"
    target.write_bytes(b"secret")
    (src / "link").symlink_to(target)
    (dst / "link").write_bytes(b"taken")
    assert atomic.move_unique(src / "link", dst, "link", 200) == "link.1"
    assert os.readlink(dst / "link.1") == str(target)
    assert target.read_bytes() == b"secret"


def test_move_unique_moves_directories_without_merging(tmp_path: Path) -> None:
    src, dst = _dirs(tmp_path)
    (src / "d").mkdir()
    (src / "d" / "inner").write_bytes(b"1")
    (dst / "d").mkdir()  # an empty directory is exactly what rename(2) would replace
    assert atomic.move_unique(src / "d", dst, "d", 200) == "d.1"
    assert (dst / "d.1" / "inner").read_bytes() == b"1"
    assert list((dst / "d").iterdir()) == []


def test_move_unique_moves_a_fifo(tmp_path: Path) -> None:
    src, dst = _dirs(tmp_path)
    os.mkfifo(src / "pipe")
    assert atomic.move_unique(src / "pipe", dst, "pipe", 200) == "pipe"
    assert stat.S_ISFIFO(os.lstat(dst / "pipe").st_mode)


def test_move_unique_cuts_long_names_to_max_bytes(tmp_path: Path) -> None:
    src, dst = _dirs(tmp_path)
    name = "é" * 127  # 254 bytes of UTF-8
    (src / name).write_bytes(b"1")
    first = atomic.move_unique(src / name, dst, name, 248)
    (src / name).write_bytes(b"2")
    second = atomic.move_unique(src / name, dst, name, 248)
    assert first == "é" * 124
    assert len(os.fsencode(second)) <= 248 and second.endswith(".1")
    assert (dst / second).read_bytes() == b"2"


def test_move_unique_missing_source_leaves_no_placeholder(tmp_path: Path) -> None:
    src, dst = _dirs(tmp_path)
    with pytest.raises(FileNotFoundError):
        atomic.move_unique(src / "gone", dst, "gone", 200)
    assert list(dst.iterdir()) == []


def test_move_unique_failed_rename_removes_the_placeholder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = _dirs(tmp_path)
    (src / "f").write_bytes(b"")
    (src / "d").mkdir()

    def broken(a: Any, b: Any) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "rename", broken)
    for name in ("f", "d"):
        with pytest.raises(OSError, match="I/O error"):
            atomic.move_unique(src / name, dst, name, 200)
    assert list(dst.iterdir()) == []


def test_only_atomic_calls_fsync() -> None:
    package = Path(spool.__file__).parent
    callers = sorted(p.name for p in package.glob("*.py") if "fsync(" in p.read_text())
    assert callers == ["atomic.py"]
