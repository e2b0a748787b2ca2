"""One `volley run` per spool: the instance lock.

Responsible for: `<spool>/volley.pid`, locked (flock) for the life of the process that
owns the spool, with that process's pid in it, and refusing a second owner at once with
the pid that holds the lock.  Before it existed a second `volley run` on a busy spool
printed "running" while its workers waited forever on their shard locks, and Ctrl-C then
took a minute.  The file also tells an operator whom to signal (`kill -HUP $(cat ...)`).
Not responsible for: the shard locks (one worker per shard, engine.runtime.worker), or
anything a process does with the spool once it owns it.

The lock, not the pid, decides: a pid file left by a killed process is taken over
(flock dies with its holder), and a reused pid can never lock anyone out.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["PID_FILE", "SpoolInUse", "lock_instance"]

PID_FILE = "volley.pid"


class SpoolInUse(Exception):
    """Another process holds the spool's instance lock; `pid` is its pid when readable."""

    def __init__(self, root: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid is not None else "another process"
        super().__init__(f"spool {root} is in use by {who} (another volley run)")
        self.pid = pid


def lock_instance(root: Path) -> int:
    """Lock `root`/volley.pid and write our pid into it; returns the descriptor, which
    holds the lock until it is closed (or the process ends).

    Raises:
        SpoolInUse: another process holds it.
    """
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / PID_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        raise SpoolInUse(root, int(text) if text.isdigit() else None) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd
