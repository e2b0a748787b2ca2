"""bench.threads: CPU per thread, summed per (role, thread name)."""

from __future__ import annotations

import os
import threading
import time

from bench.threads import CLK_TCK, ThreadTimes, per_thread, take


def test_deltas_are_summed_per_role_and_name_and_new_threads_count_from_zero() -> None:
    root, worker = 100, 200
    first = ThreadTimes(root, {(root, 100): (10, 5), (worker, 200): (50, 10)})
    last = ThreadTimes(
        root,
        {
            (root, 100): (10 + CLK_TCK, 5),  # supervisor loop: 1 s of user time
            (worker, 200): (50 + 2 * CLK_TCK, 10 + CLK_TCK),  # worker loop: 2 s + 1 s
            (worker, 201): (CLK_TCK, 0),  # an executor thread born meanwhile: 1 s
            (worker, 202): (CLK_TCK, 0),  # and its sibling
            (worker, 203): (0, CLK_TCK),  # a thread py-spy did not name
        },
    )
    named = {
        root: {100: "MainThread"},
        worker: {200: "MainThread", 201: "asyncio_*", 202: "asyncio_*"},
    }
    rows = per_thread(first, last, named, messages=1_000_000)
    assert rows == [
        {
            "role": "worker",
            "thread": "MainThread",
            "threads": 1,
            "cpu_us_per_msg": 3.0,
            "user_us_per_msg": 2.0,
        },
        {
            "role": "worker",
            "thread": "asyncio_*",
            "threads": 2,
            "cpu_us_per_msg": 2.0,
            "user_us_per_msg": 2.0,
        },
        {
            "role": "supervisor",
            "thread": "MainThread",
            "threads": 1,
            "cpu_us_per_msg": 1.0,
            "user_us_per_msg": 1.0,
        },
        {
            "role": "worker",
            "thread": "tid 203 (not Python)",
            "threads": 1,
            "cpu_us_per_msg": 1.0,
            "user_us_per_msg": 0.0,
        },
    ]


def test_take_reads_every_thread_of_a_process() -> None:
    started, stop = threading.Event(), threading.Event()

    def idle() -> None:
        started.set()
        stop.wait()

    t = threading.Thread(target=idle, daemon=True)
    t.start()
    try:
        assert started.wait(5)
        got = take(os.getpid())
        assert (os.getpid(), os.getpid()) in got.ticks
        assert (os.getpid(), t.native_id) in got.ticks
    finally:
        stop.set()
        t.join()


def test_the_main_thread_counts_its_own_time_not_the_process_total() -> None:
    """/proc/<pid>/stat is the whole process's; the main thread's own is under task/."""
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    t = threading.Thread(target=spin, daemon=True)
    t.start()
    assert t.native_id is not None
    me, spinner = (os.getpid(), os.getpid()), (os.getpid(), t.native_id)
    try:
        first = take(os.getpid())
        deadline = time.monotonic() + 30
        while True:
            last = take(os.getpid())
            busy = last.ticks[spinner][0] - first.ticks[spinner][0]
            if busy >= 20 or time.monotonic() > deadline:
                break
            stop.wait(0.05)
    finally:
        stop.set()
        t.join()
    assert busy >= 20
    assert last.ticks[me][0] - first.ticks[me][0] < busy / 2
