"""The delivery log: one JSON line per recipient outcome.

Responsible for: formatting `received`, `delivered`, `deferred`, `bounced`, `expired`
(these three with the failure's bounce `category` and the `category_rule` that chose it)
and `rejected` records, handing them to the writer in batches, and running the work that
must follow a record (removing the spool entry it reports) only once the record has been
handed over.
Not responsible for: deciding outcomes, rotation (rename the file, then SIGHUP: `reopen`;
or logrotate with copytruncate), or shipping logs anywhere.

Every worker appends to the same file opened with O_APPEND, and each batch of records
goes out in a single write(2): on Linux local filesystems an O_APPEND write is placed
atomically at the end, so lines from different workers never interleave.  A kill -9 can
at worst cut the very last line short; `read_log` skips such a torn line.

Batching.  Records wait in memory until `flush()`: the caller flushes before any
synchronous spool change (write-ahead), the worker every 250 ms, and `then()` flushes by
itself once BATCH follow-ups wait.  A follow-up (`then(fn, arg)`) runs right after the
records added before it went to the writer, so on the write-behind thread (FIFO) an
entry is never removed before its line is written.  A kill -9 loses the records still
in memory together with their follow-ups: those entries stay queued and are delivered
(and logged) again — at-least-once, never a delivery missing from the log.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any, TypeVar

from spool.atomic import write_all

__all__ = ["BATCH", "EventLog", "read_log", "repair_tail"]

_T = TypeVar("_T")

# Follow-ups (entry removals: completed deliveries) held before a flush.  Each flush is
# a hand-off to the write-behind thread (a log write plus the removals), which per
# message cost ~25 µs of event-loop CPU when it woke the thread every time.  A kill -9
# repeats the deliveries held here (their entries are still queued) and those queued on
# the thread (engine.runtime.writebehind.MAX_PENDING), so both stay small: 1 held + 4
# queued per worker is about the 4 the previous one-job-per-write design left, which
# tests/integration/test_crash_kill9_all.py bounds together with the transactions in
# flight.
BATCH = 2


class EventLog:
    def __init__(
        self,
        path: Path,
        worker: int | None,
        writer: Callable[[int, bytes], None] | None = None,
        *,
        batch: int = BATCH,
    ) -> None:
        """`worker`: the shard number in every record (None: the supervisor's records).
        `writer(fd, data)` does the write (e.g. on a write-behind thread); by default
        it happens here, synchronously.  `batch`: follow-ups that make `then` flush."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        _end_torn_line(self._fd)
        self._worker = worker
        self._worker_json = _num(worker)
        self._pending: list[str] = []
        self._after: list[tuple[Callable[[Any], None], Any]] = []
        self._batch = batch
        self._writer = writer or write_all

    def add(self, event: str, ts: float, **fields: Any) -> None:
        record = {"ts": round(ts, 6), "event": event, "worker": self._worker}
        record.update(fields)
        self._pending.append(_ENCODER.encode(record))

    def add_outcome(
        self,
        event: str,
        ts: float,
        id: str,
        msgid: Any,
        sender: Any,
        rcpt: str,
        domain: str,
        mx: str | None,
        ip: str | None,
        code: int,
        enhanced: str,
        text: str,
        attempt: int,
        queued_at: float,
        in_queue: float,
        category: str | None = None,
        category_rule: str = "",
    ) -> None:
        """The per-recipient outcome record: exactly what `add(event, ts, id=..., msgid=...,
        ..., in_queue=...[, category=..., category_rule=...])` writes (same keys, order and
        JSON) for arguments of the annotated types.  A failure has a bounce `category`; a
        delivery has none, and its line is the same as before categories existed (no
        bytes or CPU added to the delivered path).

        Why by hand: this is one line per delivered recipient.  A format string whose
        strings go through json's own C escaper (encode_basestring, the one json.dumps
        uses with ensure_ascii=False) took 4.4 µs against 8.4 µs for `add` (timeit,
        best of 5, this VM); values of other types (msgid and sender come from the
        spool's meta) take json.dumps itself.
        """
        enc = encode_basestring
        values = (
            _num(round(ts, 6)),
            enc(event),
            self._worker_json,
            enc(id),
            _str(msgid),
            _str(sender),
            enc(rcpt),
            enc(domain),
            _str(mx),
            _str(ip),
            _num(code),
            enc(enhanced),
            enc(text),
            _num(attempt),
            _num(queued_at),
            _num(in_queue),
        )
        if category is None:
            self._pending.append(_OUTCOME % values)
        else:
            self._pending.append(_FAILURE % (*values, enc(category), enc(category_rule)))

    def then(self, fn: Callable[[_T], None], arg: _T) -> None:
        """Call `fn(arg)` right after the records added so far are handed to the writer
        (e.g. remove the spool entry they report); flushes once `batch` calls wait."""
        self._after.append((fn, arg))
        if len(self._after) >= self._batch:
            self.flush()

    @property
    def waiting(self) -> int:
        """Records and follow-ups not handed over yet."""
        return len(self._pending) + len(self._after)

    def flush(self) -> None:
        """Write everything added so far in one write(2), then run the follow-ups.

        If the writer raises, the follow-ups are dropped: their entries stay queued (and
        are delivered again) rather than be removed without their records.
        """
        after = self._after
        if after:
            self._after = []
        if self._pending:
            # backslashreplace: a drop name with invalid UTF-8 (a lone surrogate from the
            # filesystem) must not make the log unwritable.
            data = ("\n".join(self._pending) + "\n").encode("utf-8", "backslashreplace")
            self._pending.clear()
            self._writer(self._fd, data)
        for fn, arg in after:
            fn(arg)

    def reopen(self, path: Path) -> None:
        """Write what waits, then append to `path` from now on (a reload: a new log.path,
        or the same path after a rotation renamed the file).  With a write-behind writer
        the caller flushes and waits for the writer first: it still holds the old fd."""
        self.flush()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        _end_torn_line(fd)
        old, self._fd = self._fd, fd
        os.close(old)

    def close(self) -> None:
        """Flush and close the file.  With a write-behind writer the caller flushes,
        then closes the writer (which runs what the flush queued), then calls this."""
        self.flush()
        os.close(self._fd)


_OUTCOME = (
    '{"ts":%s,"event":%s,"worker":%s,"id":%s,"msgid":%s,"sender":%s,"rcpt":%s,'
    '"domain":%s,"mx":%s,"ip":%s,"code":%s,"enhanced":%s,"text":%s,"attempt":%s,'
    '"queued_at":%s,"in_queue":%s}'
)
_FAILURE = _OUTCOME[:-1] + ',"category":%s,"category_rule":%s}'
_INF = float("inf")
# What json.dumps(ensure_ascii=False, separators=(",", ":")) uses, built once: json.dumps
# builds a new encoder for every call with non-default arguments (~1 µs of ~7).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _str(value: Any) -> str:
    """`value` as json.dumps(ensure_ascii=False) writes it (fast for str and None)."""
    if type(value) is str:
        return encode_basestring(value)
    if value is None:
        return "null"
    return json.dumps(value, ensure_ascii=False)


def _num(value: Any) -> str:
    """`value` as json.dumps writes it (fast for int and finite float)."""
    cls = type(value)
    if cls is int or (cls is float and -_INF < value < _INF):  # False for NaN
        return repr(value)
    return json.dumps(value, ensure_ascii=False)


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
