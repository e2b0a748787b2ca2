"""The in-flight journal: which entries a worker was delivering when it died.

Responsible for: recording, per shard, the names of entries handed to an SMTP session
("+name") and finished ("-name") in an append-only file, and reading back the names
started but not finished.  The worker uses that set after a crash to count a crash
against each entry and quarantine one that has crashed its worker 3 times (Mailman's
MAX_BAK_COUNT), so a poison message cannot take a shard down forever.
Not responsible for: deciding that a worker crashed (the supervisor knows: it restarted
a worker that died while the supervisor lived) or quarantining (the worker does).

Not fsynced: it answers "what was in flight when the *process* died", and the page cache
survives a process crash.  After a power cut the whole instance restarts, and a fresh
start counts no crash (a power cut is not the message's fault).  The file is compacted
when it passes 16 MiB.

Cost: one write(2) of ~60 bytes per message.  "+name" must reach the file before the
transaction starts; "-name" of an entry that left the queue (delivered or bounced:
`done(name, lazy=True)`) rides along with the next write instead of costing a write(2)
of its own (two per message were 1.3 % of a worker's GIL samples).  Losing it in a crash
only makes that name look in flight, and the worker (engine.runtime.startup
`count_crashes`) counts crashes only against names still in the queue's scan: a name
that left the queue is ignored.  The one window where it counts is an entry whose
removal was still on the write-behind thread at the crash: it is sent again anyway, and
one extra crash on its counter (three quarantine it) needs three such crashes.  An entry
that stays queued (deferred) writes its "-name" at once.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["InflightJournal"]

COMPACT_AT = 16 * 1024 * 1024


class InflightJournal:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._live: set[str] = set()
        self._size = 0  # bytes written since the file was (re)created; avoids an fstat
        self._unwritten = b""  # lazy "-name" lines waiting for the next write
        self._fd = self._open_fresh(path, ())

    @staticmethod
    def read(path: Path) -> set[str]:
        """Names started and not finished; a torn last line (kill -9) is ignored."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return set()
        live: set[str] = set()
        for line in data.split(b"\n")[:-1]:
            name = line[1:].decode("utf-8", "surrogateescape")
            if line[:1] == b"+":
                live.add(name)
            elif line[:1] == b"-":
                live.discard(name)
        return live

    @staticmethod
    def _open_fresh(path: Path, names: set[str] | tuple[()]) -> int:
        tmp = path.with_name(path.name + ".new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o600)
        if names:
            os.write(
                fd, b"".join(b"+" + n.encode("utf-8", "surrogateescape") + b"\n" for n in names)
            )
        os.replace(tmp, path)
        return fd

    def start(self, name: str) -> None:
        """Record that `name` is handed to a session (written before this returns)."""
        self._live.add(name)
        self._write(b"+" + name.encode("utf-8", "surrogateescape") + b"\n")

    def done(self, name: str, *, lazy: bool = False) -> None:
        """Record that `name` is finished; `lazy` (it left the queue): with the next write."""
        self._live.discard(name)
        line = b"-" + name.encode("utf-8", "surrogateescape") + b"\n"
        if lazy:
            self._unwritten += line
        else:
            self._write(line)
        if self._size > COMPACT_AT:
            old = self._fd
            self._fd = self._open_fresh(self._path, self._live)
            self._size = 0
            self._unwritten = b""  # the fresh file lists only live names
            os.close(old)

    def _write(self, line: bytes) -> None:
        if self._unwritten:
            line = self._unwritten + line
            self._unwritten = b""
        self._size += os.write(self._fd, line)

    def close(self) -> None:
        if self._unwritten:
            self._write(b"")
        os.close(self._fd)
