"""How the supervisor starts a worker process, and what it keeps of the worker's stderr.

Responsible for: the worker's command line, and relaying a worker's stderr to the
supervisor's own while keeping its last lines, so that a worker that dies before it is
ready can be reported with its own error (`StderrTail.error`).
Not responsible for: deciding what a worker's death means (engine.runtime.supervisor
restarts it, or ends `volley run` when it died during start-up) or the control channel
(engine.runtime.ipc).

Why `-P`: `python -m` puts the working directory first on sys.path.  A regular package
there (the Dockerfile's /opt/volley holds copies of engine/ and spool/) wins over the
installed one, and a plain directory there becomes a namespace package whenever the
installed one is found only by an import hook that runs after the path search, as with
an editable install (`pip install -e .`, what `make run` does).  systemd starts Volley
in /var/lib/volley, which holds the spool *data* directory `spool/`: the worker's
`import spool` found it ("cannot import name 'EntryRef' from 'spool'") and crash-looped.
`-P` (Python 3.11+, the same as PYTHONSAFEPATH=1) leaves the working directory off the
worker's sys.path: a worker imports only what is installed (and PYTHONPATH, which the
user sets on purpose), wherever Volley is started.
"""

from __future__ import annotations

import asyncio
import sys
from typing import BinaryIO

__all__ = ["TAIL_BYTES", "WORKER_MODULE", "StderrTail", "relay", "worker_argv"]

WORKER_MODULE = "engine.runtime.worker"
# A Python traceback through the worker's import chain is ~1.5 kB; 8 kB keeps the whole
# of one plus whatever was printed just before it.
TAIL_BYTES = 8192
_CHUNK = 65536  # read(2) size: chunks, not lines, so a huge line cannot stall the relay


def worker_argv(shard: int, fd: int) -> list[str]:
    """The command line of worker `shard`, whose control socket is inherited as `fd`."""
    return [sys.executable, "-P", "-m", WORKER_MODULE, "--shard", str(shard), "--fd", str(fd)]


class StderrTail:
    """The last `limit` bytes one worker process wrote to its stderr."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self._limit = limit
        self._buf = bytearray()

    def add(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) > self._limit:
            del self._buf[: len(self._buf) - self._limit]

    def text(self) -> str:
        return self._buf.decode("utf-8", "replace")

    def error(self) -> str:
        """The last non-blank line: for a Python traceback, "ExceptionType: message"."""
        for line in reversed(self.text().splitlines()):
            if line.strip():
                return line.strip()
        return ""


async def relay(stream: asyncio.StreamReader, tail: StderrTail, out: BinaryIO | None) -> None:
    """Copy a worker's stderr to `out` as it comes (so tracebacks still reach the
    journal or terminal), keeping the tail; returns at EOF, i.e. when the worker is gone."""
    while data := await stream.read(_CHUNK):
        tail.add(data)
        if out is not None:
            try:
                out.write(data)
                out.flush()
            except (OSError, ValueError):  # our own stderr is gone (closed terminal)
                out = None
