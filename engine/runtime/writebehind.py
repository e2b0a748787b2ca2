"""Write-behind: filesystem work that must not block a worker's event loop.

Responsible for: running delivery-log appends and spool-entry unlinks on one background
thread, in the order they were asked for (FIFO), so the log line of a delivery is always
written before its entry disappears.
Not responsible for: anything that must be durable before the loop goes on (entry
writes, rewrites and DSNs stay synchronous: the next attempt must see them).

Why: on this machine's ext4 an unlink of a just-fsynced 5 KB entry took 300-600 µs and an
O_APPEND write up to 200 µs while intake's fsyncs ran in another thread (jbd2 journal
contention); done on the loop, that capped a worker near 600 msg/s with the CPU idle.
Deferred work only ever *removes* finished entries or *appends* log lines, so a crash
that loses some of it costs a duplicate delivery or a missing log line for a message that
is then delivered again and logged then — never a lost message.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["WriteBehind"]


# Jobs allowed to wait at once. Every queued unlink is a completed delivery that a kill -9
# repeats, so this bounds the duplicates per kill beyond the transactions in flight
# (issue 3: "duplicates only for messages in flight"). Unbounded, one kill repeated up to
# 63 deliveries with 16 connections open (tests/integration/test_crash_kill9_all.py); at
# 8 the loop only waits when the thread is 8 jobs (a few ms of jbd2 contention) behind.
MAX_PENDING = 8


class WriteBehind:
    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="write-behind")
        self._last: Future[None] | None = None
        self._pending: deque[Future[None]] = deque()
        self._max = max_pending

    def submit(self, fn: Callable[[], None]) -> None:
        pending = self._pending
        while pending and pending[0].done():
            pending.popleft()
        if len(pending) >= self._max:
            pending.popleft().result()  # back-pressure: the loop waits for the disk
        self._last = self._pool.submit(fn)
        pending.append(self._last)

    def wait(self) -> None:
        """Block until everything submitted so far has run (one thread, FIFO: the last
        job done means every earlier one is)."""
        if self._last is not None:
            self._last.result()

    def append(self, fd: int, data: bytes) -> None:
        self.submit(lambda: _write_all(fd, data))

    def close(self) -> None:
        """Finish everything queued (shutdown, drain)."""
        self._pool.shutdown(wait=True)
        if self._last is not None:
            self._last.result()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
