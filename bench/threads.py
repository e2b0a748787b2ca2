"""CPU per thread of a process tree: which thread of which process spent the time.

Responsible for: reading utime and stime of every thread of a tree
(/proc/<pid>/task/<tid>/stat) at two instants, naming the threads with `py-spy dump` (CPython
3.11 leaves every OS thread's name as the process's, so /proc cannot tell the event loop
from the write-behind thread), and summing the differences per (role, thread name): the
supervisor or a worker; "MainThread" (the event loop), "write-behind", "asyncio_*" (the
loop's executor: intake), and so on.
Not responsible for: the tree's totals and memory (bench.measure.TreeSampler) or profiles
(bench.measure.PySpy).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from bench.measure import CLK_TCK, descendants

__all__ = ["CLK_TCK", "ThreadTimes", "per_thread", "take"]

_THREAD = re.compile(r'^Thread (\d+) \([^)]*\): "(.*)"', re.MULTILINE)
_NUMBERED = re.compile(r"_\d+$")  # asyncio_0, asyncio_1: one pool


@dataclass(frozen=True, slots=True)
class ThreadTimes:
    """One reading: (pid, tid) -> (utime, stime) in clock ticks, and the root pid."""

    root: int
    ticks: dict[tuple[int, int], tuple[int, int]]


def take(root: int) -> ThreadTimes:
    ticks: dict[tuple[int, int], tuple[int, int]] = {}
    for pid in (root, *descendants(root)):
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            # /proc/<pid>/task/<tid>/stat, not bench.measure.read_stat's /proc/<tid>/stat:
            # for the main thread (tid = pid) that is the whole process's times.
            try:
                raw = Path(f"/proc/{pid}/task/{tid}/stat").read_bytes()
            except OSError:
                continue
            # man 5 proc: after the ")" that ends comm, field 14 is utime, 15 stime.
            fields = raw[raw.rindex(b")") + 2 :].split()
            ticks[(pid, int(tid))] = (int(fields[11]), int(fields[12]))
    return ThreadTimes(root, ticks)


def names(pid: int, pyspy: str) -> dict[int, str]:
    """tid -> Python thread name, from one `py-spy dump` (a few ms of pause)."""
    out = subprocess.run(
        [pyspy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30
    ).stdout
    return {int(tid): _NUMBERED.sub("_*", name) for tid, name in _THREAD.findall(out)}


def per_thread(
    first: ThreadTimes, last: ThreadTimes, named: dict[int, dict[int, str]], messages: int
) -> list[dict[str, object]]:
    """CPU µs per message (and its user part) per (role, thread name), busiest first.
    A thread born after `first` counts from zero; one gone before `last` is not seen."""
    cpu: defaultdict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for (pid, tid), (u1, s1) in last.ticks.items():
        u0, s0 = first.ticks.get((pid, tid), (0, 0))
        role = "supervisor" if pid == last.root else "worker"
        name = named.get(pid, {}).get(tid, f"tid {tid} (not Python)")
        acc = cpu[(role, name)]
        acc[0] += u1 - u0
        acc[1] += s1 - s0
        acc[2] += 1
    rows = [
        {
            "role": role,
            "thread": name,
            "threads": n,
            "cpu_us_per_msg": round((u + s) / CLK_TCK / messages * 1e6, 1),
            "user_us_per_msg": round(u / CLK_TCK / messages * 1e6, 1),
        }
        for (role, name), (u, s, n) in cpu.items()
    ]
    rows.sort(key=lambda r: -float(r["cpu_us_per_msg"]))  # type: ignore[arg-type]
    return rows
