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
start counts no crash (a power cut is not the message's fault).  Cost: two write(2)s of
~60 bytes per message.  The file is compacted when it passes 16 MiB.
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
        self._live.add(name)
        self._size += os.write(self._fd, b"+" + name.encode("utf-8", "surrogateescape") + b"\n")

    def done(self, name: str) -> None:
        self._live.discard(name)
        self._size += os.write(self._fd, b"-" + name.encode("utf-8", "surrogateescape") + b"\n")
        if self._size > COMPACT_AT:
            old = self._fd
            self._fd = self._open_fresh(self._path, self._live)
            self._size = 0
            os.close(old)

    def close(self) -> None:
        os.close(self._fd)
