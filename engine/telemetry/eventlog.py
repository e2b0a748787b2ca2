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

__all__ = ["EventLog", "read_log"]


class EventLog:
    def __init__(
        self, path: Path, worker: int, writer: Callable[[int, bytes], None] | None = None
    ) -> None:
        """`writer(fd, data)` does the write (e.g. on a write-behind thread); by default
        it happens here, synchronously."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
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
        data = ("\n".join(self._pending) + "\n").encode()
        self._pending.clear()
        self._writer(self._fd, data)

    def close(self) -> None:
        """Flush; the caller closes the writer (if any) before this, so the fd is idle."""
        self.flush()
        os.close(self._fd)


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
            try:
                yield json.loads(line)
            except ValueError:
                continue
