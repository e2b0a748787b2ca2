"""Write-behind: filesystem work that must not block a worker's event loop.

Responsible for: running delivery-log appends and spool-entry removals on one background
thread, in the order they were asked for (FIFO), so the log line of a delivery is always
written before its entry disappears; bounding how much may wait (back-pressure); and
handing the first error a job raised back to the event loop.
Not responsible for: deciding what to batch (engine.telemetry.eventlog hands its lines
over together with the removals that must follow them), nor anything that must be durable
before the loop goes on (entry writes, rewrites and DSNs stay synchronous: the next
attempt must see them).

Why: on this machine's ext4 an unlink of a just-fsynced 5 KB entry took 300-600 µs and an
O_APPEND write up to 200 µs while intake's fsyncs ran in another thread (jbd2 journal
contention); done on the loop, that capped a worker near 600 msg/s with the CPU idle.
Deferred work only ever *removes* finished entries or *appends* log lines, so a crash
that loses some of it costs a duplicate delivery or a missing log line for a message that
is then delivered again and logged then — never a lost message.

Why a hand-written thread and not `ThreadPoolExecutor` (which this was): the executor
makes a Future, a work item and a semaphore round per job and wakes its thread for every
job.  With two jobs per message that cost ~25 µs of event-loop CPU per message in a
py-spy profile (`ThreadPoolExecutor.submit` alone was 10 % of the delivery path's GIL
samples).  Here a job is a deque append; the thread is woken only when it sleeps, and on
waking takes every job queued so far, so a burst of jobs submitted together (a log batch
and its removals) costs one wake-up; after a batch it stays up LINGER for more, so a
steady stream of deliveries needs no wake-up at all.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from collections import deque
from collections.abc import Callable

from spool.atomic import write_all

__all__ = ["MAX_PENDING", "WriteBehind"]


# Removals (jobs of weight 1; log writes weigh 0) allowed to wait at once before the
# loop itself waits for the disk.  Every queued removal is a completed delivery that a
# kill -9 repeats, so this bounds the duplicates per kill beyond the transactions in
# flight (issue 3: "duplicates only for messages in flight").  Unbounded, one kill
# repeated up to 63 deliveries with 16 connections open (tests/integration/
# test_crash_kill9_all.py); the executor this replaced allowed 8 jobs, about 4 removals.
MAX_PENDING = 4
# After a batch the thread waits this long for more before it sleeps: jobs submitted
# meanwhile need no wake-up.  A wake-up (futex + IPI on this VM) cost the loop thread more
# than the rest of submit.  0.5 ms delays a removal by at most that, and more than
# MAX_PENDING removals pile up in it (a back-pressure prod, which wakes the thread) only
# beyond ~8 000 msg/s per worker.
LINGER = 0.0005


class WriteBehind:
    def __init__(self, max_pending: int = MAX_PENDING, linger: float = LINGER) -> None:
        self._max = max_pending
        self._linger = linger
        self._lingering = False  # the thread waits up to `linger` for more jobs, unprompted
        self._cond = threading.Condition(threading.Lock())
        self._jobs: deque[tuple[Callable[[], None], int]] = deque()  # (job, weight)
        self._submitted = 0  # jobs ever queued (loop side)
        self._done = 0  # jobs ever finished (thread side); both under _cond
        self._weight_submitted = 0  # the same in weight (back-pressure)
        self._weight_done = 0
        self._sleeping = False  # the thread waits on _cond and needs a notify
        self._closed = False
        self._error: BaseException | None = None  # first job failure, not yet reported
        # A daemon thread, finished at interpreter exit by _close_all (as the executor's
        # atexit hook did), so a worker that dies of an exception still writes its queue.
        self._thread = threading.Thread(target=self._run, name="write-behind", daemon=True)
        self._thread.start()
        _open.add(self)

    def submit(self, fn: Callable[[], None], weight: int = 1) -> None:
        """Queue `fn` to run after everything queued before it.  Blocks only while jobs
        weighing more than `max_pending` wait (a removal weighs 1, a log write 0).

        Raises:
            RuntimeError: after close().
            Exception: the first error an earlier job raised (reported once).
        """
        with self._cond:
            if self._closed:
                raise RuntimeError("write-behind closed")
            self._jobs.append((fn, weight))
            self._submitted += 1
            self._weight_submitted += weight
            if self._sleeping:
                # One notify per wake-up: the thread takes every job queued by the time it
                # holds the lock again, so the rest of a burst costs a deque append each.
                self._sleeping = False
                self._cond.notify()
            while self._weight_submitted - self._weight_done > self._max and self._error is None:
                self._prod()
                self._cond.wait()  # back-pressure: the loop waits for the disk
            self._raise_error()

    def append(self, fd: int, data: bytes) -> None:
        """Queue a write of all of `data` to `fd` (the EventLog writer).  Weighs 0: a
        late log line repeats no delivery."""
        self.submit(lambda: write_all(fd, data), 0)

    def wait(self) -> None:
        """Block until everything submitted so far has run; re-raise a job's error."""
        with self._cond:
            target = self._submitted
            while self._done < target and self._error is None:
                self._prod()
                self._cond.wait()
            self._raise_error()

    def close(self) -> None:
        """Finish everything queued (shutdown, drain) and stop the thread."""
        with self._cond:
            if not self._closed:
                self._closed = True
                self._cond.notify_all()
        self._thread.join()
        _open.discard(self)
        with self._cond:
            self._raise_error()

    def _prod(self) -> None:
        """Under _cond, before the loop waits for the thread: cut a linger short."""
        if self._lingering:
            self._lingering = False
            self._cond.notify()

    # -- the thread ------------------------------------------------------------------
    def _run(self) -> None:
        cond = self._cond
        linger = 0.0  # none before the first batch: sleep until a submit
        while True:
            with cond:
                if linger and not self._jobs and not self._closed:
                    # Stay up a moment: jobs of a steady stream arrive meanwhile and need
                    # no wake-up (see LINGER).
                    self._lingering = True
                    cond.wait(linger)
                    self._lingering = False
                while not self._jobs and not self._closed:
                    self._sleeping = True
                    cond.wait()
                self._sleeping = False
                if not self._jobs:
                    return  # closed and drained
                jobs = self._jobs
                self._jobs = deque()
            linger = self._linger
            error: BaseException | None = None
            weight = 0
            for fn, w in jobs:
                weight += w
                try:
                    fn()
                except BaseException as exc:  # keep going: later jobs are independent
                    error = error or exc
            with cond:
                self._done += len(jobs)
                self._weight_done += weight
                if error is not None and self._error is None:
                    self._error = error
                cond.notify_all()  # waiters in wait() and back-pressure

    def _raise_error(self) -> None:
        """Under _cond: report the first job error once, in the caller's thread."""
        error = self._error
        if error is not None:
            self._error = None
            raise error


# Not closed yet.  (The thread holds its WriteBehind anyway: it lives until close().)
_open: set[WriteBehind] = set()


@atexit.register
def _close_all() -> None:
    for behind in list(_open):
        with contextlib.suppress(Exception):
            behind.close()
