"""Durable file operations: the only module of Volley that calls fsync.

Responsible for: writing files so that a power cut leaves either the old state or the new
one, never a torn file, and for moving files without ever replacing someone else's.

The write protocol (our power-cut promise):

1. write the bytes to a new file in a temporary directory (`tmp/<k>/` for entries), opened
   with O_CREAT|O_EXCL so we never write into a file someone else holds;
2. `os.utime` it to the wanted mtime (for an entry, the next attempt time), *before* the
   fsync so the timestamp is as durable as the bytes;
3. `fsync(file)`;
4. move it into place: `link(tmp, final)` when an existing entry must win (EEXIST means
   "already there"), `rename(tmp, final)` when it must be replaced;
5. `fsync(directory)` of the destination, which makes the new name durable.

Until step 5 returns, a crash may lose the new file (it was never promised); after it, the
file and its name survive. A leftover in `tmp/<k>/` after a crash is garbage and is deleted
at worker start (`ShardQueue.recover`).

Group commit: for a batch, steps 1-3 run for every file, then every file is moved, then
the destination directory is fsynced *once*. Measured on this machine (ext4): fsync of a
5 KB file costs 136 µs serial and about 90 µs per file from 8 threads; a directory fsync
about 24 µs. So the per-file cost is the file fsync, and one directory fsync per batch
instead of one per file saves 24 µs * (batch - 1).

Split in two for a caller on an event loop (`stage_tmp`, then `commit_tmp` in a thread):
steps 1-2 are page-cache work, only steps 3-5 wait for the disk, and each blocking call
a thread makes releases and takes back the GIL — with a busy loop thread that costs ~90 µs
of futex traffic a call (measured: issue #13's listener went from 11 such calls a commit
to 5, engine/runtime/listener.py).

Not responsible for: file formats (`spool.record`), names and directories (`spool.layout`),
or which operations need which guarantees (`spool.store` decides; e.g. `remove` does not
fsync at all).
"""

from __future__ import annotations

import itertools
import math
import os
import shutil
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "StagedTmp",
    "TmpFile",
    "commit_tmp",
    "empty_dir",
    "fsync_dir",
    "fsync_fd",
    "link_batch",
    "move_unique",
    "put_file",
    "replace",
    "stage_tmp",
    "write_all",
    "write_tmp",
]

# Entries hold private mail; group/other get nothing (the umask may only remove bits).
_FILE_MODE = 0o600
_seq = itertools.count()


@dataclass(frozen=True, slots=True)
class TmpFile:
    """A fully written, fsynced temporary file and the mtime the file system recorded."""

    path: Path
    mtime: float


def fsync_dir(path: Path) -> None:
    """fsync a directory, making the names created or removed in it durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_fd(fd: int) -> None:
    """fsync an open file (the shard's removal journal, after a quarantine line)."""
    os.fsync(fd)


def write_tmp(directory: Path, stem: str, data: bytes, mtime: float | None = None) -> TmpFile:
    """Steps 1-3 of the protocol: a new file in `directory` holding `data`, fsynced.

    The name is `.<pid>.<seq>.<stem>`, unique among live processes; O_EXCL makes a clash
    with a leftover file an error we step over, never a shared write. With `mtime` the
    file's atime and mtime are set to it (epoch seconds). On any error the file is removed
    before the exception propagates, so a failed write (ENOSPC, EDQUOT) leaves nothing.
    """
    fd, path = _create_exclusive(directory, stem)
    try:
        _write_all(fd, data)
        if mtime is not None:
            ns = _to_ns(mtime)
            os.utime(fd, ns=(ns, ns))
        os.fsync(fd)
        recorded = os.fstat(fd).st_mtime
    except BaseException:
        os.close(fd)
        unlink_quietly(path)
        raise
    os.close(fd)
    return TmpFile(path, recorded)


@dataclass(slots=True)
class StagedTmp:
    """A tmp file written but not yet fsynced (`stage_tmp`); `fd` is open for writing."""

    fd: int
    path: Path


def stage_tmp(directory: Path, stem: str, data: bytes) -> StagedTmp:
    """Step 1 only: a new file in `directory` holding `data` (in the page cache; no fsync).
    On error the file is removed before the exception propagates."""
    fd, path = _create_exclusive(directory, stem)
    try:
        _write_all(fd, data)
    except BaseException:
        os.close(fd)
        unlink_quietly(path)
        raise
    return StagedTmp(fd, path)


def commit_tmp(staged: StagedTmp, final: Path, dir_fd: int) -> bool:
    """Steps 3-5 for a staged file: fsync it, link it to `final` (never replacing), fsync
    the directory open as `dir_fd`, remove the tmp name.  True if `final` was created,
    False if it existed (ours is discarded).  On error `final` is unlinked again if this
    call made it, and the tmp file is removed: all or nothing.  Closes `staged.fd`."""
    created = False
    try:
        os.fsync(staged.fd)
        os.close(staged.fd)
        staged.fd = -1
        try:
            os.link(staged.path, final, follow_symlinks=False)
        except FileExistsError:
            return False
        created = True
        os.fsync(dir_fd)
    except BaseException:
        if created:
            unlink_quietly(final)
        raise
    finally:
        if staged.fd >= 0:
            os.close(staged.fd)
            staged.fd = -1
        unlink_quietly(staged.path)
    return True


def link_batch(pairs: Sequence[tuple[Path, Path]], directory: Path) -> list[bool]:
    """Steps 4-5 for a batch, never replacing: link each tmp to its final name, fsync
    `directory` once, then unlink the tmp files.

    Returns, per pair, True if the final name was created by this call and False if it
    already existed (EEXIST: the existing file wins, ours is discarded). All finals must be
    in `directory`. On error, every final this call created is unlinked again and every
    tmp file is removed before the exception propagates: all or nothing.
    """
    created: list[Path] = []
    results: list[bool] = []
    try:
        for tmp, final in pairs:
            try:
                os.link(tmp, final, follow_symlinks=False)
            except FileExistsError:
                results.append(False)
            else:
                created.append(final)
                results.append(True)
        if created:
            fsync_dir(directory)
    except BaseException:
        for final in created:
            unlink_quietly(final)
        raise
    finally:
        # The tmp names need no fsync: a tmp file that comes back after a crash is
        # garbage that recover() deletes.
        for tmp, _ in pairs:
            unlink_quietly(tmp)
    return results


def replace(tmp: Path, final: Path) -> None:
    """Steps 4-5, replacing: rename `tmp` over `final`, then fsync final's directory."""
    try:
        os.replace(tmp, final)
    except BaseException:
        unlink_quietly(tmp)
        raise
    fsync_dir(final.parent)


def put_file(directory: Path, name: str, data: bytes) -> None:
    """Write `directory/name` atomically (steps 1-4 inside `directory`), replacing any old
    file of that name. The caller fsyncs `directory`, so several changes share one fsync."""
    tmp = write_tmp(directory, "put", data)
    try:
        os.replace(tmp.path, directory / name)
    except BaseException:
        unlink_quietly(tmp.path)
        raise


def move_unique(src: Path, directory: Path, name: str, max_bytes: int) -> str:
    """Move `src` (any kind of file, never followed) into `directory` without replacing
    anything; return the final name.

    The final name is `name`, else `name.1`, `name.2`, ...; names are cut at `max_bytes`
    (UTF-8 bytes, before the suffix) so the caller can append to them within NAME_MAX.

    How: rename(2) silently replaces a file, and Python has no renameat2(RENAME_NOREPLACE),
    so we first *reserve* the name with an exclusive create of the same kind (an empty
    file, or an empty directory for a directory), then rename `src` over our own
    placeholder, which rename(2) allows. A crash in between leaves an empty placeholder,
    never a lost or overwritten file. No fsync here: the caller fsyncs both directories.
    """
    is_dir = stat.S_ISDIR(os.lstat(src).st_mode)
    for candidate in _candidates(name, max_bytes):
        final = directory / candidate
        try:
            if is_dir:
                os.mkdir(final, 0o700)
            else:
                os.close(os.open(final, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC))
        except FileExistsError:
            continue
        try:
            os.rename(src, final)
        except BaseException:
            if is_dir:
                os.rmdir(final)
            else:
                unlink_quietly(final)
            raise
        return candidate
    raise AssertionError("unreachable: _candidates is infinite")  # pragma: no cover


def _candidates(name: str, max_bytes: int) -> Iterator[str]:
    raw = os.fsencode(name)
    for n in itertools.count():
        suffix = b"" if n == 0 else b".%d" % n
        # Cutting may split a UTF-8 sequence; fsdecode keeps the stray bytes as surrogate
        # escapes, which fsencode turns back into the same bytes, so the name stays valid.
        yield os.fsdecode(raw[: max_bytes - len(suffix)] + suffix)


def _create_exclusive(directory: Path, stem: str) -> tuple[int, Path]:
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC
    pid = os.getpid()
    while True:
        path = directory / f".{pid}.{next(_seq)}.{stem}"
        try:
            return os.open(path, flags, _FILE_MODE), path
        except FileExistsError:
            continue


def _to_ns(seconds: float) -> int:
    # round(seconds * 1e9) loses the nanoseconds: at 1.8e9 s the product is ~1.8e18, where
    # float spacing is 256 ns. Splitting off the whole seconds first is exact.
    whole = math.floor(seconds)
    return whole * 1_000_000_000 + round((seconds - whole) * 1e9)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of `data` to `fd` (through the write seam below)."""
    _write_all(fd, data)


def _write_all(fd: int, data: bytes) -> None:
    """The write seam: every byte the spool persists goes through here (tests inject
    ENOSPC by replacing it)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def unlink_quietly(path: Path) -> None:
    """Unlink `path`; one already gone is fine (not fsynced)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def empty_dir(path: Path) -> int:
    """Remove everything inside `path` (files and subtrees); return how many top-level
    names went. A missing `path` is empty."""
    removed = 0
    try:
        it = os.scandir(path)
    except FileNotFoundError:
        return 0
    with it:
        for e in it:
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path)
            else:
                os.unlink(e.path)
            removed += 1
    return removed
