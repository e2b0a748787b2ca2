"""engine.runtime.writebehind: FIFO jobs on one thread, back-pressure, errors, linger.

Nothing sleeps: a job that must stay busy blocks on a threading.Event, and waits on the
thread are polls with a deadline."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.runtime.writebehind import WriteBehind

DEADLINE = 10.0


def until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0)  # yield the GIL to the write-behind thread


def test_jobs_run_in_order_and_wait_covers_all_of_them(tmp_path: Path) -> None:
    behind = WriteBehind()
    fd = os.open(tmp_path / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    ran: list[int] = []
    try:
        for i in range(100):
            behind.submit(lambda i=i: ran.append(i))
            behind.append(fd, b"%d\n" % i)
        behind.wait()
        assert ran == list(range(100))
        assert (tmp_path / "log").read_bytes() == b"".join(b"%d\n" % i for i in range(100))
    finally:
        behind.close()
        os.close(fd)


def test_back_pressure_blocks_the_submitter_until_the_thread_catches_up() -> None:
    behind = WriteBehind(max_pending=2)
    gate = threading.Event()
    started = threading.Event()
    ran: list[str] = []

    def blocker() -> None:
        started.set()
        gate.wait(DEADLINE)
        ran.append("blocker")

    behind.submit(blocker)
    assert started.wait(DEADLINE)  # the thread is busy with the blocker
    behind.submit(lambda: ran.append("a"))  # 2 submitted, none done: not more than 2
    returned = threading.Event()

    def third() -> None:
        behind.submit(lambda: ran.append("b"))
        returned.set()

    submitter = threading.Thread(target=third)
    submitter.start()
    # 3 submitted and none done: more than max_pending would wait, so the submitter is
    # held until the blocker finishes.
    assert not returned.wait(0.05)
    assert ran == []
    gate.set()
    submitter.join(DEADLINE)
    assert returned.is_set()
    behind.wait()
    assert ran == ["blocker", "a", "b"]
    behind.close()


def test_a_job_error_is_reported_once_and_later_jobs_still_run() -> None:
    behind = WriteBehind()
    ran: list[str] = []

    def boom() -> None:
        raise OSError(28, "No space left on device")

    behind.submit(boom)
    behind.submit(lambda: ran.append("after"))
    with pytest.raises(OSError, match="No space left"):
        behind.wait()
    behind.wait()  # reported once
    assert ran == ["after"]
    behind.submit(boom)
    with pytest.raises(OSError):
        behind.close()  # close finishes the queue and reports what is left
    with pytest.raises(RuntimeError, match="closed"):
        behind.submit(lambda: None)


def test_close_runs_everything_queued() -> None:
    behind = WriteBehind(linger=30.0)
    ran: list[int] = []
    for i in range(20):
        behind.submit(lambda i=i: ran.append(i))
    behind.close()
    assert ran == list(range(20))


def test_wait_cuts_a_linger_short() -> None:
    # A 30 s linger: wait() returning at all within the deadline proves it prods the
    # thread instead of waiting for the linger to run out.
    behind = WriteBehind(linger=30.0)
    ran: list[int] = []
    behind.submit(lambda: ran.append(1))
    until(lambda: ran == [1], "the first job")  # the thread now lingers
    started = time.monotonic()
    behind.submit(lambda: ran.append(2))
    behind.wait()
    assert ran == [1, 2]
    assert time.monotonic() - started < DEADLINE
    behind.close()


def test_a_sleeping_thread_is_woken_by_submit() -> None:
    behind = WriteBehind(linger=0.001)
    ran: list[int] = []
    behind.submit(lambda: ran.append(1))
    until(lambda: ran == [1], "the first job")
    until(lambda: behind._sleeping, "the thread to go to sleep after its linger")
    behind.submit(lambda: ran.append(2))
    until(lambda: ran == [1, 2], "the job submitted to a sleeping thread")
    behind.close()


def test_jobs_submitted_while_the_thread_lingers_run_without_a_prod() -> None:
    behind = WriteBehind(linger=0.005)
    ran: list[int] = []
    for i in range(50):
        behind.submit(lambda i=i: ran.append(i))
    until(lambda: len(ran) == 50, "every job, picked up after a linger at the latest")
    assert ran == list(range(50))
    behind.close()
