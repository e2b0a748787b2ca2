"""Reading one drop file from the incoming directory, safely (engine.drop.read).

Responsibilities:
  * open one name relative to the incoming directory's fd without ever following a
    symbolic link, blocking on a FIFO or opening a device;
  * refuse what is not a regular file, is empty, or is over the size limit (without
    reading it), with a reason fit for a log line and the `rejected/` directory;
  * never hand over a half-written file (the guarantee below);
  * return the bytes and an identity that is stable while the file is unchanged.

Not responsible for: listing the directory or skipping dot-files (the intake lister),
parsing the content (engine.drop.parse), moving a rejected file, unlinking a queued one.

Guarantee: a half-written file is never taken.
  Writers should write `.name.tmp` (dot-files are never listed) and `rename(2)` it into
  place; a rename is atomic, so such a file is complete the moment it is visible.  A writer
  that writes in place is also safe:
  1. We take a Linux read lease on the open file (`fcntl(F_SETLEASE, F_RDLCK)`).  The
     kernel refuses it with EAGAIN while any process has the file open for writing
     (measured on this machine: refused with a writer's fd open, granted once it was
     closed), and we answer `NotReady`: the next scan tries again.
  2. While we hold the lease, a process that opens the file for writing or truncates it
     breaks the lease.  After reading we ask `F_GETLEASE`; if the lease is being broken the
     data may be torn, so again `NotReady`.  The writer's open(2) waits for us (at most
     /proc/sys/fs/lease-break-time, 45 s here; we hold the lease for one read, microseconds
     for a 5 KB message) and then proceeds.
  3. A lease break signals the lease holder, by default with SIGIO, whose default action
     kills the process (measured: a writer opening the file killed the reader, "I/O
     possible").  So before taking the lease we set the break signal to SIGURG, whose
     default action is to ignore it (F_SETSIG), and right after we clear the fd's owner so
     that no signal is sent at all (F_SETOWN 0); we detect breaks by polling F_GETLEASE.
  Fallback: leases need the caller to own the file or hold CAP_LEASE (EACCES/EPERM), and
  some filesystems refuse them (EINVAL, e.g. NFS and many FUSE mounts).  Then the file must
  have been unchanged for `STABLE_AGE` (1.0 s): the later of its mtime and ctime must be at
  least that old, and its size, mtime and ctime must be the same after the read as before.
  ctime is used as well because utime(2) can set an old mtime but cannot set ctime.  This is
  weaker: a writer that pauses for more than 1 s in the middle of a file can be caught
  mid-way.  Such writers must use the rename convention.
  Neither check can help a writer that closes the file and later reopens it to append.

Cost: 9 syscalls per drop taken with a lease (lstat, open, fstat, F_SETSIG, F_SETLEASE,
F_SETOWN, one read, F_GETLEASE, close; strace), ~13 us of CPU for a 5 KB drop (bench
workload, the median of 8 runs of 9 interleaved passes each; this VM is noisy).  It was
11 syscalls and ~16 us: a second read(2) only confirmed EOF (`_read_size` says why it is
not needed), and an explicit F_UNLCK came right before the close(2) that drops the lease.

See also: engine.drop.parse, engine.drop.address; Postfix `safe_open(3)` (lstat, open,
fstat and compare), Mailman `Switchboard` (write `.tmp`, then rename).
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import os
import signal
import stat
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["STABLE_AGE", "DropFile", "DropRejection", "NotReady", "read_drop"]

# How long an unchanged file must have been left alone before we take it when no lease
# can be had.  Writers that write in place issue writes microseconds apart; 1 s is far
# longer than any such gap while adding at most 1 s of latency to a drop.
STABLE_AGE = 1.0

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
# identity = name (fs-encoded) + st_ino, st_size, st_mtime_ns (network byte order).
_IDENTITY = struct.Struct("!QQq")
# Errors that say "not now" rather than "never": the file went away, or we are short of
# descriptors or memory.  EWOULDBLOCK: another process holds a write lease on the file.
_TRANSIENT = frozenset(
    {errno.ENOENT, errno.EAGAIN, errno.EWOULDBLOCK, errno.EMFILE, errno.ENFILE, errno.ENOMEM}
)
# Errors that mean the caller passed a bad directory fd: a bug, not bad input.
_CALLER_BUGS = frozenset({errno.EBADF, errno.ENOTDIR})


@dataclass(frozen=True, slots=True)
class NotReady:
    """Leave the file where it is and look again on the next scan.

    All instances compare equal; `reason` only says why, for debug logs (a writer has it
    open, it changed less than STABLE_AGE ago, it vanished between listing and opening).
    """

    reason: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class DropRejection:
    """The file can never be accepted; move it to `rejected/` with this reason."""

    reason: str


@dataclass(frozen=True, slots=True)
class DropFile:
    """A complete drop file.

    `identity` packs the name, inode number, size and mtime (ns): equal identities mean the
    same unchanged file, so the intake can recognise a file it already queued.
    """

    data: bytes
    identity: bytes
    mtime_ns: int  # the drop's mtime: the time part of its deterministic spool id


class _Lease(enum.Enum):
    HELD = "held"  # we hold a read lease: no writer had the file open
    WRITER_OPEN = "writer_open"  # a process has the file open for writing
    UNAVAILABLE = "unavailable"  # no lease on this file for us: use the mtime rule


def read_drop(
    dir_fd: int,
    name: str,
    *,
    max_size: int,
    now: Callable[[], float] = time.time,
    use_lease: bool = True,
) -> DropFile | DropRejection | NotReady:
    """Read the drop file `name` in the directory open as `dir_fd`.

    Args:
        dir_fd: an fd of the incoming directory (O_RDONLY or O_PATH).
        name: a directory entry name as listed (no "/").
        max_size: the largest message accepted (config spool.max_message_size).
        now: wall clock, compared with the file's mtime/ctime in the no-lease fallback.
        use_lease: False skips the lease and applies the fallback rule (for tests, or for
            a filesystem known to grant leases it cannot enforce).

    Returns:
        DropFile with the complete contents; DropRejection (never acceptable: symlink,
        not a regular file, empty, too big, unreadable); NotReady (being written, changed
        very recently, vanished, or we are short of resources: try again later).

    Raises:
        OSError: EBADF or ENOTDIR, i.e. `dir_fd` is not an open directory (a caller bug).
    """
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        return DropRejection(f"invalid file name {name[:200]!r}")
    try:
        os.fsencode(name)
    except UnicodeError:
        return DropRejection(f"file name {name[:200]!r} cannot be encoded")

    # lstat first, so a FIFO, socket or device is never even opened (opening some devices
    # has side effects, e.g. a tape rewinds); O_NOFOLLOW and the fstat below close the
    # window in which the name could be replaced.
    try:
        before = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        return _os_error(exc, "stat")
    if not stat.S_ISREG(before.st_mode):
        return DropRejection(f"not a regular file: {_file_type(before.st_mode)}")

    try:
        fd = os.open(name, _OPEN_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW on a link swapped in after the lstat
            return DropRejection("not a regular file: symbolic link")
        return _os_error(exc, "open")
    try:
        return _read_open_file(fd, name, before, max_size=max_size, now=now, use_lease=use_lease)
    finally:
        # Also drops our read lease, if _read_open_file took one.  A read-only fd has no
        # unwritten data, so an error from close(2) loses nothing.
        with contextlib.suppress(OSError):
            os.close(fd)


def _read_open_file(
    fd: int,
    name: str,
    before: os.stat_result,
    *,
    max_size: int,
    now: Callable[[], float],
    use_lease: bool,
) -> DropFile | DropRejection | NotReady:
    try:
        st = os.fstat(fd)
    except OSError as exc:
        return _os_error(exc, "fstat")
    if not stat.S_ISREG(st.st_mode):
        return DropRejection(f"not a regular file: {_file_type(st.st_mode)}")
    if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
        return NotReady("the name was replaced between stat and open")

    # The lease, if we get one, is never released here: read_drop closes the fd right
    # after we return, and close(2) drops the lease with it (no other fd shares this
    # open file description).  An explicit F_UNLCK was one more syscall per drop, ~1 us
    # (a whole open/lease/close cycle: 7.1 -> 6.1 us, timeit median, this VM).
    lease = _take_read_lease(fd) if use_lease else _Lease.UNAVAILABLE
    if lease is _Lease.WRITER_OPEN:
        return NotReady("a process has the file open for writing")
    if lease is _Lease.UNAVAILABLE:
        age = now() - max(st.st_mtime_ns, st.st_ctime_ns) / 1e9
        if age < STABLE_AGE:
            return NotReady(f"changed {age:.3f} s ago (no lease; must be {STABLE_AGE} s)")

    size = st.st_size
    if size > max_size:
        return DropRejection(f"message size {size} exceeds spool.max_message_size {max_size}")
    if size == 0:
        return DropRejection("empty file")
    try:
        data = _read_size(fd, size)
    except OSError as exc:
        return _os_error(exc, "read")
    if len(data) != size:
        return NotReady(f"size changed while reading ({size} -> {len(data)}+ bytes)")

    if not _unchanged_since(fd, st, lease):
        return NotReady("the file was opened for writing or changed while being read")

    identity = os.fsencode(name) + _IDENTITY.pack(st.st_ino, st.st_size, st.st_mtime_ns)
    return DropFile(data=data, identity=identity, mtime_ns=st.st_mtime_ns)


def _take_read_lease(fd: int) -> _Lease:
    """Try to take a read lease; see the module docstring, "Guarantee"."""
    try:
        # Break signal: SIGURG (ignored by default) instead of SIGIO (kills by default).
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
            return _Lease.WRITER_OPEN
        # EACCES/EPERM: not our file and no CAP_LEASE.  EINVAL: the filesystem refuses
        # leases (or fs.leases-enable=0).  ENOLCK and anything else: same fallback.
        return _Lease.UNAVAILABLE
    # F_SETLEASE made us the fd's owner; no owner, no signal.  Should this fail, the
    # break signal is still SIGURG: harmless.
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, fcntl.F_SETOWN, 0)
    return _Lease.HELD


def _unchanged_since(fd: int, st: os.stat_result, lease: _Lease) -> bool:
    """After the read: did no writer touch the file while we read it?"""
    try:
        if lease is _Lease.HELD:
            # A pending break reports the lease type it is being broken to (F_UNLCK).
            return fcntl.fcntl(fd, fcntl.F_GETLEASE) == fcntl.F_RDLCK
        after = os.fstat(fd)
    except OSError:
        return False
    return (after.st_size, after.st_mtime_ns, after.st_ctime_ns) == (
        st.st_size,
        st.st_mtime_ns,
        st.st_ctime_ns,
    )


def _read_size(fd: int, size: int) -> bytes:
    """Read the `size` bytes fstat reported, and one more if the file has grown.

    Reads until EOF or `size + 1` bytes (the extra byte detects growth), except that a
    read which brings the total to exactly `size` ends it: on a regular file a read
    returns less than asked only at EOF, and should it not have been EOF (a signal, a
    FUSE file system), the file has grown since the fstat, which `_unchanged_since`
    detects (the lease was broken, or the size changed).  That saves the read(2) which
    would only confirm EOF, one of the 11 syscalls a drop took (strace).
    """
    limit = size + 1
    chunks: list[bytes] = []
    got = 0
    while got < limit:
        chunk = os.read(fd, limit - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
        if got == size:
            break
    return b"".join(chunks)  # one chunk: join returns it, no copy


def _os_error(exc: OSError, what: str) -> DropRejection | NotReady:
    """Map an OSError on the drop file to a verdict (transient -> NotReady)."""
    code = exc.errno if exc.errno is not None else 0
    if code in _CALLER_BUGS:
        raise exc
    if code in _TRANSIENT:
        return NotReady(f"{what}: {errno.errorcode.get(code, code)}")
    name = errno.errorcode.get(code, str(code))
    return DropRejection(f"cannot {what} the file: {name} ({os.strerror(code)})")


def _file_type(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    return f"unknown file type (mode {mode:o})"
