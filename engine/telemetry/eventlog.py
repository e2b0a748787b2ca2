"""The delivery log: one JSON line per recipient outcome.

Responsible for: formatting `received`, `delivered`, `deferred`, `bounced`, `expired`
and `rejected` records and appending them to the log file.
Not responsible for: deciding outcomes, rotation (use logrotate with copytruncate), or
shipping logs anywhere.

Every worker appends to the same file opened with O_APPEND, and each batch of records
goes out in a single write(2): on Linux local filesystems an O_APPEND write is placed
atomically at the end, so lines from different workers never interleave.  A kill -9 can
at worst cut the very last line short; `read_log` skips such a torn line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["EventLog", "read_log", "repair_tail"]


class EventLog:
    def __init__(
        self, path: Path, worker: int, writer: Callable[[int, bytes], None] | None = None
    ) -> None:
        """`writer(fd, data)` does the write (e.g. on a write-behind thread); by default
        it happens here, synchronously."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        _end_torn_line(self._fd)
        self._worker = worker
        self._pending: list[str] = []
        self._writer = writer or _write_all

    def add(self, event: str, ts: float, **fields: Any) -> None:
        record = {"ts": round(ts, 6), "event": event, "worker": self._worker}
        record.update(fields)
        self._pending.append(json.dumps(record, ensure_ascii=False, separators=(",", ":")))

    def flush(self) -> None:
        """Write everything added so far in one write(2)."""
        if not self._pending:
            return
        # backslashreplace: a drop name with invalid UTF-8 (a lone surrogate from the
        # filesystem) must not make the log unwritable.
        data = ("\n".join(self._pending) + "\n").encode("utf-8", "backslashreplace")
        self._pending.clear()
        self._writer(self._fd, data)

    def close(self) -> None:
        """Flush; the caller closes the writer (if any) before this, so the fd is idle."""
        self.flush()
        os.close(self._fd)


def repair_tail(path: Path) -> int:
    """Cut a torn last line (a kill -9 mid-write) off the log; returns the bytes removed.

    Only safe while nobody appends: the supervisor calls it before starting workers.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    try:
        size = os.fstat(fd).st_size
        if not size or os.pread(fd, 1, size - 1) == b"\n":
            return 0
        tail = os.pread(fd, min(size, 1 << 20), max(0, size - (1 << 20)))
        keep = size - len(tail) + tail.rfind(b"\n") + 1 if b"\n" in tail else 0
        os.ftruncate(fd, keep)
        return size - keep
    finally:
        os.close(fd)


def _end_torn_line(fd: int) -> None:
    """A kill -9 mid-write can leave the last line without its newline; end it, so the
    next record starts on a line of its own instead of being glued to the torn one.
    (Two workers opening at once may both add one: an empty line, which readers skip.)"""
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        os.write(fd, b"\n")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_log(path: Path) -> Iterator[dict[str, Any]]:
    """Every complete record of a delivery log; a torn last line (kill -9) is skipped."""
    with open(path, "rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                return
            if line == b"\n":
                continue
            try:
                yield json.loads(line)
            except ValueError:
                continue
