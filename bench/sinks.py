"""Destination receivers for the bench: Postfix's smtp-sink processes (bench.wan_sink has
the WAN-latency sink).

Responsible for:
  * `SmtpSinks`: one `smtp-sink` process per loopback address (all on one port, since
    Volley's `smtp.port` is one port for every MX), and counting what they received.
    Counting uses smtp-sink's `-c` option, the cheapest that works: the sink writes
    "sess=S quit=Q mesg=M\\r" to stdout whenever "." is received, a QUIT runs or a session
    ends (measured: flushed at once, also into a pipe). A reader thread per sink parses the
    last record of each read. `mesg` is messages received, `sess` is sessions ended, i.e.
    connections, once the client side has closed them. Nothing is written to disk (-d/-D
    dump files would put a disk write per message in the measurement).
Not responsible for: DNS (bench.phases publishes MX records pointing here), TLS (neither sink
offers STARTTLS, so Volley's opportunistic TLS stays plaintext), or judging results.

Every process or thread started here is stopped by `stop()`, also after errors; the sinks
listen on the given 127.0.0.x addresses only.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "FastReceivers",
    "SinkCounters",
    "SmtpSinks",
    "check_alive",
    "find_tool",
    "wait_listening",
]

_COUNTER = re.compile(rb"sess=(\d+) quit=(\d+) mesg=(\d+)")
# smtp-sink writes one ~30-byte record per message; reading every record as it comes would
# wake this (GIL-holding) thread up to ~13k times a second on the machine the bench measures.
# Reading every 2 ms batches them: at most 500 wake-ups/s, and a 2 ms error on a wall time
# of seconds. The 64 KB pipe holds ~2,000 records, ~150 ms at the raw limit: never full.
_READ_PAUSE = 0.002
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def find_tool(name: str) -> str:
    """Path of a Postfix tool (in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise FileNotFoundError(
            f"{name} not found: install Debian's postfix package (sudo .ci/install-postfix)"
        )
    return found


def wait_listening(ip: str, port: int, timeout: float) -> None:
    """Poll until a TCP connect to ip:port succeeds (the sink counts it as one session)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((ip, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def check_alive(alive: Callable[[], bool] | None) -> None:
    if alive is not None and not alive():
        raise RuntimeError("the sender exited before every message arrived")


@dataclass(slots=True)
class SinkCounters:
    """One sink's latest counters, and when they changed (time.monotonic())."""

    sessions: int = 0
    messages: int = 0
    first_message_at: float | None = None
    last_message_at: float | None = None


class SmtpSinks:
    """smtp-sink on each of `ips`, port `port`; counters summed over all of them."""

    def __init__(
        self, ips: Sequence[str], port: int, workdir: Path, *, max_conns: int = 2048
    ) -> None:
        self.ips = list(ips)
        self.port = port
        self.workdir = workdir
        self.max_conns = max_conns
        self._procs: list[subprocess.Popen[bytes]] = []
        self._threads: list[threading.Thread] = []
        self._counters: list[SinkCounters] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._probes = 0

    def start(self) -> SmtpSinks:
        binary = find_tool("smtp-sink")
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            for ip in self.ips:
                args = [binary, "-c", "-4", "-h", f"sink-{ip}", "-m", str(self.max_conns)]
                if os.geteuid() == 0:
                    args += ["-u", "nobody"]  # smtp-sink refuses to run as root without -u
                args += [f"{ip}:{self.port}", "1024"]
                with open(self.workdir / f"smtp-sink-{ip}.err", "ab") as err:
                    proc = subprocess.Popen(
                        args,
                        stdout=subprocess.PIPE,
                        stderr=err,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,  # Ctrl-C reaches the bench, which stops us
                    )
                self._procs.append(proc)
                counters = SinkCounters()
                self._counters.append(counters)
                t = threading.Thread(
                    target=self._read, args=(proc, counters), name=f"sink-{ip}", daemon=True
                )
                t.start()
                self._threads.append(t)
            for ip in self.ips:
                wait_listening(ip, self.port, START_TIMEOUT)
                self._probes += 1
        except BaseException:
            self.stop()
            raise
        return self

    def _read(self, proc: subprocess.Popen[bytes], c: SinkCounters) -> None:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                return
            if not data:
                return
            now = time.monotonic()
            found = _COUNTER.findall(data[-200:])  # only the last record matters
            if not found:
                continue
            with self._changed:
                sessions, messages = int(found[-1][0]), int(found[-1][2])
                if messages > c.messages:
                    if c.first_message_at is None:
                        c.first_message_at = now
                    c.last_message_at = now
                c.sessions, c.messages = sessions, messages
                self._changed.notify_all()
            time.sleep(_READ_PAUSE)

    # -- counters -----------------------------------------------------------------------
    @property
    def messages(self) -> int:
        with self._lock:
            return sum(c.messages for c in self._counters)

    @property
    def sessions(self) -> int:
        """Sessions ended (the start-up probes excluded): connections, once closed."""
        with self._lock:
            return sum(c.sessions for c in self._counters) - self._probes

    @property
    def first_message_at(self) -> float | None:
        with self._lock:
            times = [c.first_message_at for c in self._counters if c.first_message_at]
            return min(times) if times else None

    @property
    def last_message_at(self) -> float | None:
        with self._lock:
            times = [c.last_message_at for c in self._counters if c.last_message_at]
            return max(times) if times else None

    def wait_messages(
        self, n: int, timeout: float, alive: Callable[[], bool] | None = None
    ) -> float:
        """Block until `n` messages have arrived; return the monotonic time of the last.

        Raises TimeoutError with the count so far if they do not arrive in `timeout` s, and
        RuntimeError as soon as a sink dies or `alive()` (the sender) turns false.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while sum(c.messages for c in self._counters) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    got = sum(c.messages for c in self._counters)
                    raise TimeoutError(f"sinks received {got} of {n} messages in {timeout:g}s")
                if any(p.poll() is not None for p in self._procs):
                    raise RuntimeError(f"an smtp-sink exited; see {self.workdir}/*.err")
                check_alive(alive)
                self._changed.wait(min(left, 0.5))
            return max(c.last_message_at or 0.0 for c in self._counters)

    def wait_quiet(self, sessions: int, timeout: float) -> None:
        """Wait until `sessions` sessions have ended (the client closed its connections)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while sum(c.sessions for c in self._counters) - self._probes < sessions:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._changed.wait(min(left, 0.5))

    # -- lifecycle ----------------------------------------------------------------------
    def stop(self) -> None:
        for p in self._procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self._procs:
            try:
                p.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for t in self._threads:
            t.join(STOP_TIMEOUT)
        for p in self._procs:
            if p.stdout is not None:
                p.stdout.close()
        self._procs.clear()
        self._threads.clear()

    def __enter__(self) -> SmtpSinks:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class FastReceivers:
    """The fastest receivers at hand on `ips`: smtp-sink when Postfix's tools are installed,
    else the suite's aiosmtpd receivers (~2k msg/s each).  `kind` says which.  For the
    benches that measure Volley, not the receivers (restart_big_queue, soak_domains)."""

    def __init__(self, ips: Sequence[str], port: int, workdir: Path) -> None:
        self._sinks: SmtpSinks | None = None
        self._receivers: list[Any] = []
        try:
            find_tool("smtp-sink")
        except FileNotFoundError:
            from tests.support.receiver import Receiver

            self._receivers = [Receiver(ip, port) for ip in ips]
            self.kind = "aiosmtpd"
        else:
            self._sinks = SmtpSinks(ips, port, workdir)
            self.kind = "smtp-sink"

    def start(self) -> FastReceivers:
        if self._sinks is not None:
            self._sinks.start()
        for r in self._receivers:
            r.start()
        return self

    def stop(self) -> None:
        if self._sinks is not None:
            self._sinks.stop()
        for r in self._receivers:
            r.stop()
