"""CPU time and memory of a process tree, read from /proc (Linux only).

Responsible for: finding every descendant of a root pid, reading utime+stime (and the
cutime+cstime of children already reaped) from /proc/<pid>/stat, RSS from
/proc/<pid>/statm, and a background sampler that tracks the CPU delta and the peak summed
RSS of a tree over a measured window.
Not responsible for: deciding what to measure (bench.phases, bench.modes), or other
operating systems.

CPU accounting over a window: total(t) = sum over the live tree of utime + stime + cutime +
cstime. A child that exits and is reaped moves its time into its parent's cutime/cstime, so
total(end) - total(start) counts every process that ran in the window, short-lived ones
included (Postfix's smtp processes exit after max_use = 100 deliveries), as long as the
root itself lives through the window. Resolution is one clock tick (10 ms at 100 Hz).

Peak RSS is sampled (default every 100 ms) as the sum over the tree; `hwm_sum` adds each
process's own VmHWM, an upper bound a 100 ms sampler cannot miss. A sum of RSS counts
shared pages (the interpreter, libc) once per process, so it overstates a many-process
program such as Postfix; the sampler also keeps the peak sum of PSS (proportional set size,
/proc/<pid>/smaps_rollup), which splits shared pages between their users.

`PySpy` runs py-spy on a live tree (the profile asked for by `--profile`) and `hotspots`
ranks the sampled functions; py-spy itself takes CPU on a 2-core machine, so numbers from
a profiled run are not the bench's numbers.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CLK_TCK",
    "PAGE",
    "ProcStat",
    "PySpy",
    "TreeSampler",
    "TreeSnapshot",
    "descendants",
    "hotspots",
    "read_hwm",
    "read_pss",
    "read_rss",
    "read_stat",
    "run_numbers",
    "snapshot",
]

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The CPU fields of /proc/<pid>/stat, in clock ticks."""

    pid: int
    comm: str
    utime: int
    stime: int
    cutime: int
    cstime: int

    @property
    def own(self) -> int:
        return self.utime + self.stime

    @property
    def total(self) -> int:
        return self.utime + self.stime + self.cutime + self.cstime


def read_stat(pid: int) -> ProcStat | None:
    """Parse /proc/<pid>/stat; None if the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # comm is in parentheses and may itself contain ") ", so split at the last one.
    lpar, rpar = raw.index(b"("), raw.rindex(b")")
    comm = raw[lpar + 1 : rpar].decode(errors="replace")
    fields = raw[rpar + 2 :].split()
    # man 5 proc: field 14 utime, 15 stime, 16 cutime, 17 cstime; fields[0] is field 3.
    return ProcStat(pid, comm, int(fields[11]), int(fields[12]), int(fields[13]), int(fields[14]))


def read_rss(pid: int) -> int:
    """Resident set size in bytes (0 if the process is gone)."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_bytes().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def read_hwm(pid: int) -> int:
    """Peak resident set size in bytes over the process's life (VmHWM), 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def read_pss(pid: int) -> int:
    """Proportional set size in bytes (0 if the process is gone or it is unreadable)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid`, depth first (not `pid` itself)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            kids = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
        except OSError:
            continue
        for k in kids:
            out.append(int(k))
            out.extend(descendants(int(k)))
    return out


@dataclass(frozen=True, slots=True)
class TreeSnapshot:
    """One reading of a tree: stats per live pid, and the summed RSS."""

    at: float  # time.monotonic()
    stats: dict[int, ProcStat]
    rss: int
    pss: int

    @property
    def ticks(self) -> int:
        return sum(s.total for s in self.stats.values())

    @property
    def user_ticks(self) -> int:
        return sum(s.utime + s.cutime for s in self.stats.values())


def snapshot(root: int) -> TreeSnapshot:
    stats: dict[int, ProcStat] = {}
    rss = pss = 0
    for pid in (root, *descendants(root)):
        st = read_stat(pid)
        if st is not None:
            stats[pid] = st
            rss += read_rss(pid)
            pss += read_pss(pid)
    return TreeSnapshot(time.monotonic(), stats, rss, pss)


@dataclass(slots=True)
class _Peak:
    rss: int = 0
    pss: int = 0
    per_pid_rss: dict[int, int] = field(default_factory=dict)
    hwm: dict[int, int] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    samples: int = 0


class TreeSampler:
    """CPU delta and peak RSS of the tree under `root` between `start()` and `stop()`.

    Example:
        s = TreeSampler(proc.pid).start()
        ...                       # the measured work
        s.stop()
        s.cpu_seconds, s.peak_rss
    """

    def __init__(self, root: int, interval: float = 0.1) -> None:
        self.root = root
        self.interval = interval
        self._peak = _Peak()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.first: TreeSnapshot | None = None
        self.last: TreeSnapshot | None = None

    def start(self) -> TreeSampler:
        self.first = self._take()
        self._thread = threading.Thread(target=self._run, name="tree-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> TreeSampler:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.last = self._take()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._take()

    def _take(self) -> TreeSnapshot:
        snap = snapshot(self.root)
        with self._lock:
            p = self._peak
            p.samples += 1
            p.rss = max(p.rss, snap.rss)
            p.pss = max(p.pss, snap.pss)
            for pid, st in snap.stats.items():
                p.names.setdefault(pid, st.comm)
                p.per_pid_rss[pid] = max(p.per_pid_rss.get(pid, 0), read_rss(pid))
                p.hwm[pid] = max(p.hwm.get(pid, 0), read_hwm(pid))
        return snap

    # -- results (after stop) -----------------------------------------------------------
    @property
    def cpu_seconds(self) -> float:
        assert self.first is not None and self.last is not None, "start() and stop() first"
        return (self.last.ticks - self.first.ticks) / CLK_TCK

    @property
    def user_seconds(self) -> float:
        """The user-mode part of `cpu_seconds`; the rest is kernel time (syscalls)."""
        assert self.first is not None and self.last is not None
        return (self.last.user_ticks - self.first.user_ticks) / CLK_TCK

    @property
    def wall_seconds(self) -> float:
        assert self.first is not None and self.last is not None
        return self.last.at - self.first.at

    @property
    def peak_rss(self) -> int:
        with self._lock:
            return self._peak.rss

    @property
    def peak_pss(self) -> int:
        with self._lock:
            return self._peak.pss

    @property
    def hwm_sum(self) -> int:
        with self._lock:
            return sum(self._peak.hwm.values())

    @property
    def processes(self) -> int:
        with self._lock:
            return len(self._peak.names)

    def per_process(self) -> list[dict[str, object]]:
        """CPU seconds in the window and peak RSS per pid seen (exited ones: their last
        reading; their remaining time shows in the parent's cutime)."""
        assert self.first is not None and self.last is not None
        out: list[dict[str, object]] = []
        with self._lock:
            for pid, name in sorted(self._peak.names.items()):
                a = self.first.stats.get(pid)
                b = self.last.stats.get(pid)
                cpu = user = None
                if b is not None:
                    cpu = (b.own - (a.own if a else 0)) / CLK_TCK
                    user = (b.utime - (a.utime if a else 0)) / CLK_TCK
                out.append(
                    {
                        "pid": pid,
                        "comm": name,
                        "cpu_s": None if cpu is None else round(cpu, 3),
                        "user_s": None if user is None else round(user, 3),
                        "peak_rss_mb": round(self._peak.per_pid_rss.get(pid, 0) / 2**20, 1),
                    }
                )
        return out


def run_numbers(n: int, wall: float, sampler: TreeSampler) -> dict[str, Any]:
    """The figures every phase reports for `n` messages in `wall` seconds."""
    return {
        "messages": n,
        "wall_s": round(wall, 3),
        "msgs_per_s": round(n / wall, 1),
        "cpu_s": round(sampler.cpu_seconds, 3),
        "cpu_us_per_msg": round(sampler.cpu_seconds / n * 1e6, 1),
        "user_us_per_msg": round(sampler.user_seconds / n * 1e6, 1),
        "peak_rss_mb": round(sampler.peak_rss / 2**20, 1),
    }


class PySpy:
    """`py-spy record` on `pid` and its subprocesses, raw (collapsed-stack) output.

    Runs until `stop()` (SIGINT makes py-spy write its file). `--nonblocking` keeps py-spy
    from pausing the target at every sample; `--nolineno` aggregates per function.
    Without `gil`, a thread blocked in a syscall py-spy does not know as idle (fsync,
    unlink, rename: not epoll or a lock wait) is sampled too: that view is "where threads
    spend their time"; with `gil` it is "where the interpreter spends CPU".
    """

    def __init__(self, pid: int, out: Path, *, gil: bool = False, rate: int = 200) -> None:
        self.pid = pid
        self.out = out
        self.gil = gil
        self.rate = rate
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, binary: str) -> PySpy:
        args = [binary, "record", "-p", str(self.pid), "-s", "-f", "raw", "--nolineno"]
        args += ["--nonblocking", "-r", str(self.rate), "-o", str(self.out)]
        if self.gil:
            args.append("--gil")  # only samples holding the GIL: Python CPU, not syscalls
        with open(self.out.with_suffix(".log"), "ab") as log:
            self._proc = subprocess.Popen(
                args, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
            )
        return self

    def stop(self, timeout: float = 30.0) -> Path | None:
        p = self._proc
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self._proc = None
        return self.out if self.out.exists() else None


def hotspots(
    paths: Sequence[Path], top: int = 15, packages: Sequence[str] = ("engine/", "spool/")
) -> dict[str, object]:
    """Rank functions in py-spy raw files: self time (the innermost frame, any code) and
    inclusive time (anywhere on the stack; only functions of `packages`, since the
    interpreter's and asyncio's frames are on every stack), as percentages of all samples
    with a Python stack."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            # Frames look like "take_batch (engine/runtime/intake.py)"; with -s the first
            # one names the process, which we merge across workers.
            frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
            if not frames:
                continue
            total += n
            own[frames[-1]] += n
            for f in set(frames):
                if any(f"({p}" in f for p in packages) and not f.startswith("<module>"):
                    incl[f] += n

    def pct(c: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(f, round(100.0 * n / total, 1)) for f, n in c.most_common(top)] if total else []

    return {"samples": total, "self": pct(own), "inclusive": pct(incl)}
