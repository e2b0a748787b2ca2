"""A WAN-latency sink for the bench: an SMTP receiver one round trip away, on loopback.

Responsible for: `WanSink`, an asyncio SMTP receiver that holds every reply for one RTT,
so a client's per-connection throughput under real latency can be measured on loopback
(this kernel has no netem).  All replies to one read (a pipelined group) leave together
after one delay, as they would from a real server one RTT away.  It records, per
connection, the messages accepted and when (`ConnStats`), so the bench reports msgs/s
per connection.
Not responsible for: the fast sinks (bench.sinks), DNS, TLS, or judging results.

Everything it starts is stopped by `stop()`; it listens on the given 127.0.0.x address only.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import cast

import uvloop

from bench.sinks import START_TIMEOUT, STOP_TIMEOUT, check_alive

__all__ = ["ConnStats", "WanSink"]

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
        self._ready.wait(START_TIMEOUT)
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
            self._thread.join(STOP_TIMEOUT)

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
                check_alive(alive)
                self._cond.wait(min(left, 0.5))
            assert self._last is not None
            return self._last

    def __enter__(self) -> WanSink:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
