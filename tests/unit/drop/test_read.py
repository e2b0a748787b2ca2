"""Tests for engine.drop.read: reading one drop file safely."""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.drop import read as read_module
from engine.drop.read import DropFile, DropRejection, NotReady, read_drop

MESSAGE = b"From: a@example.com\r\nTo: b@example.org\r\n\r\nhello\r\n"
MAX = 1 << 20


@pytest.fixture
def incoming(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    path = tmp_path / "incoming"
    path.mkdir()
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield path, fd
    finally:
        os.close(fd)


def _rchar() -> int:
    """Bytes this process has read with read(2) and friends (Linux task I/O accounting)."""
    with open("/proc/self/io", "rb") as f:
        for line in f:
            if line.startswith(b"rchar:"):
                return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_reads_a_regular_file(incoming: tuple[Path, int]) -> None:
    path, fd = incoming
    (path / "m1.eml").write_bytes(MESSAGE)
    result = read_drop(fd, "m1.eml", max_size=MAX)
    assert isinstance(result, DropFile)
    assert result.data == MESSAGE
    st = os.stat(path / "m1.eml")
    assert result.identity == b"m1.eml" + read_module._IDENTITY.pack(
        st.st_ino, st.st_size, st.st_mtime_ns
    )


def test_identity_is_stable_until_the_file_changes(incoming: tuple[Path, int]) -> None:
    path, fd = incoming
    (path / "m.eml").write_bytes(MESSAGE)
    first = read_drop(fd, "m.eml", max_size=MAX)
    second = read_drop(fd, "m.eml", max_size=MAX)
    assert isinstance(first, DropFile) and isinstance(second, DropFile)
    assert first.identity == second.identity
    st = os.stat(path / "m.eml")
    os.utime(path / "m.eml", ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    third = read_drop(fd, "m.eml", max_size=MAX)
    assert isinstance(third, DropFile)
    assert third.identity != first.identity
    (path / "other.eml").write_bytes(MESSAGE)
    other = read_drop(fd, "other.eml", max_size=MAX)
    assert isinstance(other, DropFile)
    assert other.identity != first.identity


def test_symlink_to_etc_passwd_is_rejected_and_nothing_is_read(
    incoming: tuple[Path, int],
) -> None:
    path, fd = incoming
    os.symlink("/etc/passwd", path / "evil.eml")
    before = _rchar()
    result = read_drop(fd, "evil.eml", max_size=MAX)
    read_bytes = _rchar() - before
    assert result == DropRejection("not a regular file: symbolic link")
    assert not hasattr(result, "data")
    # /etc/passwd is over 500 bytes here; nothing near that was read.
    assert os.path.getsize("/etc/passwd") > 500
    assert read_bytes < 500


def test_dangling_symlink_is_rejected(incoming: tuple[Path, int]) -> None:
    path, fd = incoming
    os.symlink(path / "nowhere", path / "dangling.eml")
    assert read_drop(fd, "dangling.eml", max_size=MAX) == DropRejection(
        "not a regular file: symbolic link"
    )


def test_open_flags_refuse_a_symlink_swapped_in_after_the_stat(
    incoming: tuple[Path, int],
) -> None:
    # The lstat catches the usual case; O_NOFOLLOW catches a link swapped in between.
    path, fd = incoming
    os.symlink("/etc/passwd", path / "race.eml")
    with pytest.raises(OSError) as info:
        os.open("race.eml", read_module._OPEN_FLAGS, dir_fd=fd)
    assert info.value.errno == errno.ELOOP


def test_fifo_is_rejected_without_blocking(incoming: tuple[Path, int]) -> None:
    path, fd = incoming
    os.mkfifo(path / "pipe.eml")
    results: list[object] = []
    worker = threading.Thread(
        target=lambda: results.append(read_drop(fd, "pipe.eml", max_size=MAX)), daemon=True
    )
    worker.start()
    worker.join(timeout=10)  # a deadline for a hang, not a wait: it returns at once
    assert not worker.is_alive(), "read_drop blocked on a FIFO"
    assert results == [DropRejection("not a regular file: FIFO (named pipe)")]


def test_directory_is_rejected(incoming: tuple[Path, int]) -> None:
    path, fd = incoming
    (path / "dir.eml").mkdir()
    assert read_drop(fd, "dir.eml", max_size=MAX) == DropRejection("not a regular file: directory")


def test_socket_is_rejected(incoming: tuple[Path, int]) -> None:
    path, fd = incoming
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path / "s.eml"))
        assert read_drop(fd, "s.eml", max_size=MAX) == DropRejection("not a regular file: socket")


def test_oversize_file_is_rejected_without_reading_it(incoming: tuple[Path, int]) -> None:
    path, fd = incoming
    size = 100 * 1024 * 1024
    with open(path / "huge.eml", "wb") as f:
        f.truncate(size)  # sparse: no blocks written
    before_read = _rchar()
    started = time.perf_counter()
    result = read_drop(fd, "huge.eml", max_size=MAX)
    elapsed = time.perf_counter() - started
    read_bytes = _rchar() - before_read
    assert result == DropRejection(f"message size {size} exceeds spool.max_message_size {MAX}")
    assert read_bytes < 64 * 1024, f"read {read_bytes} bytes of an over-size file"
    print(f"over-size rejection took {elapsed * 1e3:.2f} ms")


def test_file_of_exactly_max_size_is_read(incoming: tuple[Path, int]) -> None:
    path, fd = incoming
    (path / "edge.eml").write_bytes(b"x" * 1000)
    result = read_drop(fd, "edge.eml", max_size=1000)
    assert isinstance(result, DropFile)
    assert len(result.data) == 1000
    assert read_drop(fd, "edge.eml", max_size=999) == DropRejection(
        "message size 1000 exceeds spool.max_message_size 999"
    )


def test_empty_file_is_rejected(incoming: tuple[Path, int]) -> None:
    path, fd = incoming
    (path / "empty.eml").write_bytes(b"")
    assert read_drop(fd, "empty.eml", max_size=MAX) == DropRejection("empty file")


def test_file_open_for_writing_is_not_ready_then_read_once_closed(
    incoming: tuple[Path, int],
) -> None:
    path, fd = incoming
    writer = os.open(path / "w.eml", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(writer, MESSAGE[:10])  # a half-written message
        result = read_drop(fd, "w.eml", max_size=MAX)
        assert isinstance(result, NotReady)
        assert result.reason == "a process has the file open for writing"
        os.write(writer, MESSAGE[10:])
    finally:
        os.close(writer)
    result = read_drop(fd, "w.eml", max_size=MAX)
    assert isinstance(result, DropFile)
    assert result.data == MESSAGE


def test_empty_file_still_open_for_writing_is_not_ready(incoming: tuple[Path, int]) -> None:
    path, fd = incoming
    writer = os.open(path / "new.eml", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        assert isinstance(read_drop(fd, "new.eml", max_size=MAX), NotReady)
    finally:
        os.close(writer)
    assert read_drop(fd, "new.eml", max_size=MAX) == DropRejection("empty file")


def test_lease_is_released_after_reading(incoming: tuple[Path, int]) -> None:
    path, fd = incoming
    (path / "l.eml").write_bytes(MESSAGE)
    assert isinstance(read_drop(fd, "l.eml", max_size=MAX), DropFile)
    # A writer can open the file at once (O_NONBLOCK: EWOULDBLOCK if a lease were held).
    writer = os.open(path / "l.eml", os.O_WRONLY | os.O_NONBLOCK)
    os.close(writer)


def test_lease_break_is_detected_and_does_not_signal_us(incoming: tuple[Path, int]) -> None:
    """A writer opening the file during our read breaks the lease: we notice, and the
    kernel's break signal does not kill us (SIGIO's default action would)."""
    path, _fd = incoming
    (path / "b.eml").write_bytes(MESSAGE)
    reader = os.open(path / "b.eml", read_module._OPEN_FLAGS)
    try:
        st = os.fstat(reader)
        assert read_module._take_read_lease(reader) is read_module._Lease.HELD
        assert fcntl.fcntl(reader, fcntl.F_GETSIG) == signal.SIGURG
        assert read_module._unchanged_since(reader, st, read_module._Lease.HELD)
        # A non-blocking writer gets EWOULDBLOCK, but the break is started all the same.
        with pytest.raises(BlockingIOError):
            os.open(path / "b.eml", os.O_WRONLY | os.O_NONBLOCK)
        assert not read_module._unchanged_since(reader, st, read_module._Lease.HELD)
    finally:
        os.close(reader)  # drops the lease
    writer = os.open(path / "b.eml", os.O_WRONLY | os.O_NONBLOCK)  # free again
    os.close(writer)


def test_without_lease_a_recently_changed_file_is_not_ready(
    incoming: tuple[Path, int],
) -> None:
    path, fd = incoming
    (path / "f.eml").write_bytes(MESSAGE)
    st = os.stat(path / "f.eml")
    changed = max(st.st_mtime_ns, st.st_ctime_ns) / 1e9
    young = read_drop(fd, "f.eml", max_size=MAX, use_lease=False, now=lambda: changed + 0.5)
    assert isinstance(young, NotReady)
    assert "no lease" in young.reason
    old = read_drop(fd, "f.eml", max_size=MAX, use_lease=False, now=lambda: changed + 1.0)
    assert isinstance(old, DropFile)
    assert old.data == MESSAGE


def test_without_lease_an_old_mtime_does_not_hide_a_fresh_ctime(
    incoming: tuple[Path, int],
) -> None:
    path, fd = incoming
    (path / "t.eml").write_bytes(MESSAGE)
    os.utime(path / "t.eml", (0, 0))  # mtime 1970; ctime becomes "now"
    st = os.stat(path / "t.eml")
    result = read_drop(
        fd, "t.eml", max_size=MAX, use_lease=False, now=lambda: st.st_ctime_ns / 1e9 + 0.1
    )
    assert isinstance(result, NotReady)


def test_vanished_file_is_not_ready(incoming: tuple[Path, int]) -> None:
    _path, fd = incoming
    result = read_drop(fd, "gone.eml", max_size=MAX)
    assert isinstance(result, NotReady)
    assert "ENOENT" in result.reason


@pytest.mark.parametrize("name", ["", ".", "..", "a/b.eml", "../x.eml", "nul\0.eml"])
def test_invalid_names_are_rejected(incoming: tuple[Path, int], name: str) -> None:
    _path, fd = incoming
    result = read_drop(fd, name, max_size=MAX)
    assert isinstance(result, DropRejection)
    assert "invalid file name" in result.reason


def test_unencodable_name_is_rejected(incoming: tuple[Path, int]) -> None:
    _path, fd = incoming
    result = read_drop(fd, "bad\ud800.eml", max_size=MAX)  # not from surrogateescape
    assert isinstance(result, DropRejection)
    assert "cannot be encoded" in result.reason


def test_non_ascii_name_is_read(incoming: tuple[Path, int]) -> None:
    path, fd = incoming
    (path / "größe.eml").write_bytes(MESSAGE)
    result = read_drop(fd, "größe.eml", max_size=MAX)
    assert isinstance(result, DropFile)
    assert result.identity.startswith("größe.eml".encode())


def test_bad_directory_fd_is_a_caller_bug() -> None:
    never_open = 1 << 30  # above any RLIMIT_NOFILE
    with pytest.raises(OSError) as info:
        read_drop(never_open, "x.eml", max_size=MAX)
    assert info.value.errno == errno.EBADF


def test_not_ready_values_compare_equal() -> None:
    assert NotReady("a writer") == NotReady()


def _syscr() -> int:
    """read(2)-family syscalls this process has made (Linux task I/O accounting)."""
    with open("/proc/self/io", "rb") as f:
        for line in f:
            if line.startswith(b"syscr:"):
                return int(line.split()[1])
    raise AssertionError("no syscr in /proc/self/io")


def test_a_whole_drop_takes_one_read_syscall(incoming: tuple[Path, int]) -> None:
    path, fd = incoming
    (path / "one.eml").write_bytes(MESSAGE * 100)
    first = _syscr()
    probe = _syscr() - first  # what one _syscr() call itself adds
    before = _syscr()
    result = read_drop(fd, "one.eml", max_size=MAX)
    reads = _syscr() - before - probe
    assert isinstance(result, DropFile)
    assert result.data == MESSAGE * 100
    assert reads == 1  # no second read(2) just to see EOF


def test_short_reads_are_continued(
    incoming: tuple[Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Some FUSE file systems return less than asked before EOF.
    path, fd = incoming
    (path / "short.eml").write_bytes(MESSAGE * 10)
    real_read = os.read
    monkeypatch.setattr(read_module.os, "read", lambda f, n: real_read(f, min(n, 100)))
    result = read_drop(fd, "short.eml", max_size=MAX)
    assert isinstance(result, DropFile)
    assert result.data == MESSAGE * 10


def test_growth_after_the_fstat_is_seen_by_the_extra_byte(
    incoming: tuple[Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, fd = incoming
    (path / "grow.eml").write_bytes(MESSAGE)

    def append_instead_of_lease(_fd: int) -> object:
        with open(path / "grow.eml", "ab") as writer:  # between our fstat and our read
            writer.write(b"more\r\n")
        return read_module._Lease.UNAVAILABLE

    monkeypatch.setattr(read_module, "_take_read_lease", append_instead_of_lease)
    result = read_drop(fd, "grow.eml", max_size=MAX, now=lambda: time.time() + 60)
    assert result == NotReady()
    assert (
        result.reason == f"size changed while reading ({len(MESSAGE)} -> {len(MESSAGE) + 1}+ bytes)"
    )
