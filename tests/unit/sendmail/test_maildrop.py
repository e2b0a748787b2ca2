"""engine.sendmail.maildrop: the durable, group-readable write into incoming/.

The permission model itself (a user in the drop group, incoming/ mode 3730) is tested
with real uids in tests/integration/test_sendmail_drop_permissions.py; here the suite
runs as whoever runs it, so refusals are injected at the os call.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from engine.sendmail import maildrop
from engine.sendmail.exits import Exit, Failure
from spool.layout import is_drop_name


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    (tmp_path / "incoming").mkdir()
    return tmp_path


def _failure(spool: Path) -> Failure:
    with pytest.raises(Failure) as info:
        maildrop.deposit(spool, b"X-Sender: a@b.example\r\n")
    return info.value


def test_a_drop_is_complete_group_readable_and_taken_by_intake_name(spool: Path) -> None:
    name = maildrop.deposit(spool, b"data\r\n")
    assert re.fullmatch(r"sendmail-[0-9a-f]{16}-[0-9a-f]{32}\.eml", name)
    assert is_drop_name(name)
    path = spool / "incoming" / name
    assert path.read_bytes() == b"data\r\n"
    assert stat.S_IMODE(path.stat().st_mode) == maildrop.FILE_MODE
    assert os.listdir(spool / "incoming") == [name]  # no temporary file left


def test_names_sort_in_submission_order_and_never_repeat() -> None:
    names = [maildrop.drop_name(ns) for ns in (1, 2, 0x10, 10**18)]
    assert names == sorted(names) and len(set(names)) == 4
    assert maildrop.drop_name(5) != maildrop.drop_name(5)


def test_the_mode_is_set_whatever_the_umask(spool: Path) -> None:
    old = os.umask(0o077)  # cron's usual umask would hide the file from Volley
    try:
        name = maildrop.deposit(spool, b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((spool / "incoming" / name).stat().st_mode) == 0o640


def test_the_file_takes_the_directory_group(spool: Path) -> None:
    """incoming/ without its setgid bit: the file is given the directory's group anyway
    (root may pick any group, as CI runs; another user one of its own groups)."""
    others = [g for g in os.getgroups() if g != os.getgid()]
    group = os.getgid() + 4242 if os.geteuid() == 0 else (others or [os.getgid()])[0]
    os.chown(spool / "incoming", -1, group)
    name = maildrop.deposit(spool, b"x")
    assert (spool / "incoming" / name).stat().st_gid == group


def test_write_only_access_makes_the_rename_durable_with_syncfs(
    spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open
    synced: list[int] = []

    def no_read(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        if Path(path) == spool / "incoming" and not flags & os.O_PATH:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", no_read)
    monkeypatch.setattr(maildrop, "_syncfs", lambda fd: synced.append(fd))
    name = maildrop.deposit(spool, b"x")
    assert synced and (spool / "incoming" / name).read_bytes() == b"x"


def test_syncfs_runs(spool: Path) -> None:
    fd = os.open(spool / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        maildrop._syncfs(fd)
    finally:
        os.close(fd)


def test_missing_incoming_is_a_temporary_failure(tmp_path: Path) -> None:
    f = _failure(tmp_path)
    assert f.code is Exit.TEMPFAIL and "does not exist" in f.message


def test_no_permission_is_77(spool: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def denied(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        if flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", denied)
    f = _failure(spool)
    assert f.code is Exit.NOPERM and "drop group" in f.message


def test_disk_full_is_75_and_leaves_nothing(spool: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    f = _failure(spool)
    assert f.code is Exit.TEMPFAIL and "No space left" in f.message
    assert os.listdir(spool / "incoming") == []


def test_a_failed_directory_sync_takes_the_drop_back(
    spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync

    def fail_on_dir(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fail_on_dir)
    assert _failure(spool).code is Exit.TEMPFAIL
    assert os.listdir(spool / "incoming") == []
