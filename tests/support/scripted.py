"""A raw SMTP server whose every reply comes from a script: the odd and hostile receivers.

Responsible for: `ScriptedServer`, one TCP server on one loopback IP, in its own thread
and event loop, that reads commands (and message content after a 354) and answers each
with whatever a `Script` returns — a normal reply, a reply the command cannot get (a 3xx
to MAIL, a 250 to DATA), bytes that are not SMTP at all, or a close.  It counts
connections (with their times) and records the commands and messages it saw, so tests can
assert that Volley's connection attempts stay bounded and that nothing was delivered that
should not be.  `standard` is a well-behaved server (PIPELINING, 2xx, 354) that scripts
change one command at a time.
Not responsible for: being a complete SMTP server (aiosmtpd, in tests.support.receiver, is
the well-behaved receiver of the mini internet), DNS, or anything off 127.0.0.0/8.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

CLOSE = b"\0close"  # a Script's answer that closes the connection (after what precedes it)
SILENT = b""  # answer nothing (the client's timeout will decide)


@dataclass
class Conn:
    """One client connection as the script sees it."""

    number: int  # 1 for the first connection the server accepted
    commands: list[str] = field(default_factory=list)  # lines received, without CRLF
    data: bytes = b""  # the content of the current message (set when "." arrives)
    in_data: bool = False
    # Reads of the client's bytes that the server answered: each is a round trip the
    # client waited for (replies to one read leave together, as a pipelining server's).
    turns: int = 0


# (connection, command line or None for the greeting, or "." at end of data) -> bytes to
# send; CLOSE anywhere in them closes the connection after the bytes before it.
Script = Callable[[Conn, str | None], bytes]


def standard(conn: Conn, line: str | None) -> bytes:
    """A well-behaved ESMTP server with PIPELINING."""
    if line is None:
        return b"220 scripted.test ESMTP\r\n"
    verb = line.split(" ", 1)[0].upper()
    if verb == "EHLO":
        return b"250-scripted.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 10240000\r\n"
    if verb == "HELO":
        return b"250 scripted.test\r\n"
    if verb == "DATA":
        return b"354 go ahead\r\n"
    if verb == ".":
        return b"250 2.0.0 queued\r\n"
    if verb == "QUIT":
        return b"221 2.0.0 bye\r\n" + CLOSE
    return b"250 2.0.0 ok\r\n"


def replace(verb: str, reply: bytes, base: Script = standard) -> Script:
    """`base`, except that `verb` ("GREETING", "EHLO", "MAIL", "RCPT", "DATA", ".") gets
    `reply`."""
    verb = verb.upper()

    def script(conn: Conn, line: str | None) -> bytes:
        this = "GREETING" if line is None else line.split(" ", 1)[0].upper()
        return reply if this == verb else base(conn, line)

    return script


_CODES = (220, 221, 250, 251, 252, 334, 354, 421, 450, 451, 452, 500, 501, 503, 550, 552, 553, 554)


def fuzz(seed: int, *, sane: float = 0.6) -> Script:
    """A script that answers each command at random: with probability `sane` what a
    standard server says, else any of: a random reply code (of a class the command may
    or may not get), a multi-line reply whose codes change, bytes that are not SMTP, a
    close, silence (the client's timeout decides), an extra unsolicited reply, a line
    over the client's limit, bare LF line ends.  Deterministic for a seed."""
    rng = random.Random(seed)
    lock = threading.Lock()  # one server thread, but a script may be shared: keep it exact

    def script(conn: Conn, line: str | None) -> bytes:
        with lock:
            roll = rng.random()
            if roll < sane:
                return standard(conn, line)
            kind = rng.randrange(9)
            code = rng.choice(_CODES)
            text = "".join(rng.choice("abc xyz.-") for _ in range(rng.randrange(0, 40)))
            if kind == 0:
                return f"{code} {text}\r\n".encode()
            if kind == 1:
                return f"{code}-{text}\r\n{rng.choice(_CODES)} {text}\r\n".encode()
            if kind == 2:
                return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
            if kind == 3:
                return CLOSE
            if kind == 4:
                return SILENT
            if kind == 5:
                return standard(conn, line) + f"{code} unsolicited\r\n".encode()
            if kind == 6:
                return f"{code}-".encode() + b"x" * 3000 + b"\r\n"
            if kind == 7:
                return standard(conn, line).replace(b"\r\n", b"\n")
            return f"{code}{text}\r\n".encode()  # no separator after the code

    return script


class _Protocol(asyncio.Protocol):
    def __init__(self, server: ScriptedServer) -> None:
        self._server = server
        self._buf = b""
        self._transport: asyncio.Transport | None = None
        self._conn = Conn(0)
        self._answered = False  # this read got a reply (Conn.turns)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._server._open.add(self._transport)
        self._conn = self._server._accepted()
        self._answer(None)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        conn = self._conn
        self._answered = False
        try:
            self._consume(conn)
        finally:
            conn.turns += self._answered

    def _consume(self, conn: Conn) -> None:
        while self._transport is not None and not self._transport.is_closing():
            if conn.in_data:
                end = self._buf.find(b"\r\n.\r\n")
                if end < 0:
                    if len(self._buf) > 64 * 1024 * 1024:
                        self._transport.abort()
                    return
                conn.data = self._buf[: end + 2]
                self._buf = self._buf[end + 5 :]
                conn.in_data = False
                self._server._message(conn.data)
                self._answer(".")
                continue
            end = self._buf.find(b"\r\n")
            if end < 0:
                return
            line = self._buf[:end].decode("utf-8", "replace")
            self._buf = self._buf[end + 2 :]
            conn.commands.append(line)
            out = self._answer(line)
            if line.upper().startswith("DATA") and out.startswith(b"354"):
                conn.in_data = True

    def _answer(self, line: str | None) -> bytes:
        transport = self._transport
        if transport is None:
            return b""
        out = self._server.script(self._conn, line)
        head, close, _ = out.partition(CLOSE)
        if head:
            transport.write(head)
            self._answered = True
        if close:
            transport.close()
        return head

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._server._open.discard(self._transport)
        self._transport = None


class ScriptedServer:
    """An SMTP server on `ip:port` answering every command with `script`."""

    def __init__(self, ip: str, port: int, script: Script = standard) -> None:
        if not ip.startswith("127."):
            raise ValueError("loopback only")
        self.ip = ip
        self.port = port
        self.script = script
        self._lock = threading.Lock()
        self._times: list[float] = []
        self._conns: list[Conn] = []
        self._messages: list[bytes] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._open: set[asyncio.Transport] = set()  # touched on the server's loop only

    # -- what was seen (thread-safe snapshots) ----------------------------------------
    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._times)

    @property
    def connection_times(self) -> list[float]:
        """time.monotonic() of every accepted connection, in order."""
        with self._lock:
            return list(self._times)

    @property
    def messages(self) -> list[bytes]:
        """The content of every message whose end of data the server read."""
        with self._lock:
            return list(self._messages)

    @property
    def conns(self) -> list[Conn]:
        """Every connection, in order (its `commands` keep growing while it is open)."""
        with self._lock:
            return list(self._conns)

    def _accepted(self) -> Conn:
        with self._lock:
            self._times.append(time.monotonic())
            conn = Conn(len(self._times))
            self._conns.append(conn)
            return conn

    def _message(self, data: bytes) -> None:
        with self._lock:
            self._messages.append(data)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> ScriptedServer:
        ready = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    loop.create_server(lambda: _Protocol(self), self.ip, self.port)
                )
            except BaseException as e:  # reported to start()'s caller
                failed.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name=f"scripted-{self.ip}", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failed:
            raise failed[0]
        return self

    def stop(self) -> None:
        """Stop listening and abort every open connection.  Idempotent."""
        loop, server, thread = self._loop, self._server, self._thread
        if loop is None or server is None or thread is None:
            return
        self._server = None

        async def close() -> None:
            server.close()
            for transport in list(self._open):
                transport.abort()
            await server.wait_closed()
            await asyncio.sleep(0)  # let connection_lost run for the aborted transports

        asyncio.run_coroutine_threadsafe(close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
