"""Writing one drop into <spool>/incoming/ as a producer, durably (volley-sendmail).

Responsible for: the README's safe write ("Writing safely") done by a process that may
be an ordinary user in the drop group: create `.<name>.tmp` exclusively, make it
readable by the group, write, fsync, rename it to `<name>.eml`, and make the rename
durable before returning - after which `volley run` (running or not) owns the message;
and mapping failures to sendmail exit statuses (77 no permission, 75 try later).
Not responsible for: the bytes (engine.sendmail.message), the directory's permissions
(the administrator sets them: README "Sendmail"), taking the drop (intake).

Names: `sendmail-<ns since the epoch, 16 hex>-<128 random bits, hex>.eml`.  The time
first keeps intake's sorted pickup in submission order; the random part makes the name
unguessable, which is what keeps one user from reading another's queued message when
incoming/ is group-writable but not listable (mode 3730, README "Sendmail"), as Postfix's
maildrop/ (0730) does with its own random names.

Durability of the name: fsync(incoming/) needs a descriptor opened for reading, which a
drop-group member without read permission on incoming/ cannot get (open(2) gives EACCES;
an O_PATH descriptor cannot be fsynced: EBADF).  Then syncfs(2) on the file commits the
file system, rename included.  Its cost is what the file system has dirty at that moment:
on this VM's ext4, idle, after a 5 KB write, syncfs took 0.26 ms, fsync of the file
0.31 ms and fsync of the directory 0.05 ms (medians of 30); on a busy spool it shares
the journal commit that Volley's own fsyncs force anyway.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import time
from pathlib import Path

from engine.sendmail.exits import Exit, Failure
from spool.layout import INCOMING

__all__ = ["FILE_MODE", "deposit", "drop_name"]

# rw for the writer, r for the drop group (Volley reads through it), nothing for others.
FILE_MODE = 0o640


def drop_name(now_ns: int | None = None) -> str:
    """A new, unguessable drop name (see the module docstring)."""
    ns = time.time_ns() if now_ns is None else now_ns
    return f"sendmail-{ns:016x}-{secrets.token_hex(16)}.eml"


def deposit(spool_root: Path, data: bytes) -> str:
    """Write `data` as a new drop in `<spool_root>/incoming/`; the final name.

    Durable on return: the file's bytes and its name survive a power cut.

    Raises:
        Failure(Exit.NOPERM): we may not create files in incoming/ (or reach it).
        Failure(Exit.TEMPFAIL): incoming/ does not exist yet, the disk is full, or any
            other I/O error: nothing was left behind, the caller may try again.
    """
    incoming = spool_root / INCOMING
    dir_fd, readable = _open_dir(incoming)
    try:
        name = drop_name()
        tmp = f".{name}.tmp"
        try:
            fd = os.open(
                tmp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                FILE_MODE,
                dir_fd=dir_fd,
            )
        except OSError as e:
            raise _failure(e, incoming, "create a file in") from None
        try:
            _write(fd, dir_fd, data)
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            try:
                if readable:
                    os.fsync(dir_fd)
                else:
                    _syncfs(fd)
            except OSError:
                # The name may not be durable: take it back rather than say "sent".
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=dir_fd)
                raise
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise _failure(e, incoming, "write into") from None
        finally:
            os.close(fd)
        return name
    finally:
        os.close(dir_fd)


def _open_dir(incoming: Path) -> tuple[int, bool]:
    """A descriptor of incoming/ and whether it can be fsynced (opened for reading)."""
    flags = os.O_DIRECTORY | os.O_CLOEXEC
    try:
        return os.open(incoming, os.O_RDONLY | flags), True
    except PermissionError:
        pass  # no read permission (mode 3730 for the drop group): write-only access
    except OSError as e:
        raise _failure(e, incoming, "open") from None
    try:
        return os.open(incoming, os.O_PATH | flags), False
    except OSError as e:
        raise _failure(e, incoming, "open") from None


def _write(fd: int, dir_fd: int, data: bytes) -> None:
    """Mode, group, bytes, fsync.  The mode is set explicitly: the caller's umask (077
    is common for cron jobs) would otherwise take away the group's read bit."""
    os.fchmod(fd, FILE_MODE)
    group = os.fstat(dir_fd).st_gid
    if os.fstat(fd).st_gid != group:
        # incoming/ without its setgid bit gives the file our primary group; Volley
        # reads through the directory's.  Allowed when we are a member (or root).
        with contextlib.suppress(PermissionError):
            os.fchown(fd, -1, group)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def _syncfs(fd: int) -> None:
    """syncfs(2) (Linux, glibc >= 2.14); the whole-system sync(2) where it is missing."""
    libc = ctypes.CDLL(None, use_errno=True)
    syncfs = getattr(libc, "syncfs", None)
    if syncfs is None:  # pragma: no cover - every supported Linux libc has it
        os.sync()
        return
    if syncfs(fd) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _failure(e: OSError, incoming: Path, what: str) -> Failure:
    reason = e.strerror or str(e)
    if isinstance(e, PermissionError) or e.errno in (errno.EACCES, errno.EPERM):
        return Failure(
            Exit.NOPERM,
            f"cannot {what} {incoming}: {reason} (to send as this user, join the drop "
            "group: README 'Sendmail')",
        )
    if isinstance(e, FileNotFoundError) and what == "open":
        return Failure(
            Exit.TEMPFAIL,
            f"{incoming} does not exist: `volley run` creates the spool at its first start "
            "(spool.path in the configuration)",
        )
    # Disk full, quota, I/O error, a read-only file system: nothing was left behind.
    return Failure(Exit.TEMPFAIL, f"cannot {what} {incoming}: {reason}; try again later")
