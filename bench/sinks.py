"""Destination receivers for the bench: Postfix's smtp-sink processes, and a WAN-latency sink.

Responsible for:
  * `SmtpSinks`: one `smtp-sink` process per loopback address (all on one port, since
    Volley's `smtp.port` is one port for every MX), and counting what they received.
    Counting uses smtp-sink's `-c` option, the cheapest that works: the sink writes
    "sess=S quit=Q mesg=M\\r" to stdout whenever "." is received, a QUIT runs or a session
    ends (measured: flushed at once, also into a pipe). A reader thread per sink parses the
    last record of each read. `mesg` is messages received, `sess` is sessions ended, i.e.
    connections, once the client side has closed them. Nothing is written to disk (-d/-D
    dump files would put a disk write per message in the measurement).
  * `WanSink`: an asyncio SMTP receiver that holds every reply for one RTT, so a client's
    per-connection throughput under real latency can be measured on loopback (this kernel
    has no netem). All replies to one read (a pipelined group) leave together after one
    delay, as they would from a real server one RTT away. It records, per connection, the
    messages accepted and when, so the bench reports msgs/s per connection.

Not responsible for: DNS (bench.phases publishes MX records pointing here), TLS (neither sink
offers STARTTLS, so Volley's opportunistic TLS stays plaintext), or judging results.

Every process or thread started here is stopped by `stop()`, also after errors; the sinks
listen on the given 127.0.0.x addresses only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import uvloop

__all__ = ["ConnStats", "SinkCounters", "SmtpSinks", "WanSink", "find_tool", "wait_listening"]

_COUNTER = re.compile(rb"sess=(\d+) quit=(\d+) mesg=(\d+)")
# smtp-sink writes one ~30-byte record per message; reading every record as it comes would
# wake this (GIL-holding) thread up to ~13k times a second on the machine the bench measures.
# Reading every 2 ms batches them: at most 500 wake-ups/s, and a 2 ms error on a wall time
# of seconds. The 64 KB pipe holds ~2,000 records, ~150 ms at the raw limit: never full.
_READ_PAUSE = 0.002
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0


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


def _check_alive(alive: Callable[[], bool] | None) -> None:
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
                wait_listening(ip, self.port, _START_TIMEOUT)
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
                _check_alive(alive)
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
                p.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for t in self._threads:
            t.join(_STOP_TIMEOUT)
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


# -- WAN sink ---------------------------------------------------------------------------------


@dataclass(slots=True)
class ConnStats:
    """One connection as the WAN sink saw it (times are time.monotonic())."""

    opened: float
    first_mail: float | None = None  # first MAIL command read
    last_done: float | None = None  # last end-of-data reply sent
    messages: int = 0
    done_times: list[float] = field(default_factory=list)

    def rate(self) -> float | None:
        """Messages per second from the first MAIL read to the last 250 sent."""
        if self.messages < 2 or self.first_mail is None or self.last_done is None:
            return None
        span = self.last_done - self.first_mail
        return self.messages / span if span > 0 else None


_EHLO_REPLY = (
    b"250-{name}\r\n250-PIPELINING\r\n250-SIZE 104857600\r\n250-8BITMIME\r\n"
    b"250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8\r\n"
)


class _WanSession(asyncio.Protocol):
    """One SMTP session whose every reply is written `rtt` seconds after its command."""

    def __init__(self, sink: WanSink) -> None:
        self.sink = sink
        self.loop = asyncio.get_running_loop()
        self.buf = bytearray()
        self.in_data = False
        self.transport: asyncio.Transport | None = None
        self.stats = ConnStats(opened=time.monotonic())
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass, but has its methods.
        self.transport = cast(asyncio.Transport, transport)
        self.sink._conns.append(self.stats)
        # The greeting also waits one RTT: a real client sees SYN/SYN-ACK, then the banner.
        self._later([b"220 " + self.sink.name + b" ESMTP wan-sink\r\n"], 0)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        replies: list[bytes] = []
        done = 0
        while True:
            if self.in_data:
                # The whole buffer is searched again on each read: fine for ~5 KB bodies.
                # It starts with "\r\n" (see DATA below), so "." on the first line matches.
                end = self.buf.find(b"\r\n.\r\n")
                if end < 0:
                    break
                del self.buf[: end + 5]
                self.in_data = False
                done += 1
                replies.append(b"250 2.0.0 Ok: queued\r\n")
                continue
            nl = self.buf.find(b"\r\n")
            if nl < 0:
                break
            line = bytes(self.buf[:nl])
            del self.buf[: nl + 2]
            reply = self._command(line)
            if reply:
                replies.append(reply)
            if self.in_data:
                self.buf[0:0] = b"\r\n"  # so an empty body's "." line is found too
            if self.closing:
                break
        if replies:
            self._later(replies, done)

    def _command(self, line: bytes) -> bytes:
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            return _EHLO_REPLY.replace(b"{name}", self.sink.name)
        if verb == b"MAIL":
            if self.stats.first_mail is None:
                self.stats.first_mail = time.monotonic()
            return b"250 2.1.0 Ok\r\n"
        if verb == b"RCPT":
            return b"250 2.1.5 Ok\r\n"
        if verb == b"DATA":
            self.in_data = True
            return b"354 End data with <CR><LF>.<CR><LF>\r\n"
        if verb in (b"RSET", b"NOOP"):
            return b"250 2.0.0 Ok\r\n"
        if verb == b"QUIT":
            self.closing = True
            return b"221 2.0.0 Bye\r\n"
        return b"502 5.5.2 Error: command not recognized\r\n"

    def _later(self, replies: list[bytes], done: int) -> None:
        # Same delay for every group, so call_later keeps replies in order.
        self.loop.call_later(self.sink.rtt, self._send, b"".join(replies), done, self.closing)

    def _send(self, data: bytes, done: int, close: bool) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        t.write(data)
        if done:
            now = time.monotonic()
            self.stats.messages += done
            self.stats.last_done = now
            self.stats.done_times.append(now)
            self.sink._delivered(done)
        if close:
            t.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


class WanSink:
    """An SMTP receiver on each of `ips`:`port` that answers everything one `rtt` late.

    Runs one uvloop loop in a thread; at WAN rates (tens of messages per second per
    connection) one Python thread is far from its limit.
    """

    def __init__(self, ips: Sequence[str], port: int, rtt: float) -> None:
        self.ips = list(ips)
        self.port = port
        self.rtt = rtt
        self.name = b"wan-sink"
        self._conns: list[ConnStats] = []
        self._count = 0
        self._first: float | None = None
        self._last: float | None = None
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._error: BaseException | None = None

    def _delivered(self, n: int) -> None:
        with self._cond:
            now = time.monotonic()
            self._first = self._first or now
            self._last = now
            self._count += n
            self._cond.notify_all()

    def start(self) -> WanSink:
        self._thread = threading.Thread(target=self._run, name="wan-sink", daemon=True)
        self._thread.start()
        self._ready.wait(_START_TIMEOUT)
        if self._error is not None:
            raise self._error
        if not self._ready.is_set():
            raise TimeoutError("wan sink did not start")
        return self

    def _run(self) -> None:
        loop = uvloop.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as e:  # reported to start() or ignored at stop
            self._error = e
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        servers = [
            await loop.create_server(lambda: _WanSession(self), ip, self.port, backlog=1024)
            for ip in self.ips
        ]
        self._ready.set()
        await self._stopping.wait()
        for s in servers:
            s.close()
        for s in servers:
            await s.wait_closed()

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None and self._loop.is_running():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(_STOP_TIMEOUT)

    @property
    def messages(self) -> int:
        with self._cond:
            return self._count

    @property
    def first_message_at(self) -> float | None:
        with self._cond:
            return self._first

    @property
    def last_message_at(self) -> float | None:
        with self._cond:
            return self._last

    @property
    def connections(self) -> list[ConnStats]:
        with self._cond:
            return list(self._conns)

    def wait_messages(
        self, n: int, timeout: float, alive: Callable[[], bool] | None = None
    ) -> float:
        """As `SmtpSinks.wait_messages`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._count < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"wan sink received {self._count} of {n} in {timeout:g}s")
                _check_alive(alive)
                self._cond.wait(min(left, 0.5))
            assert self._last is not None
            return self._last

    def __enter__(self) -> WanSink:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
