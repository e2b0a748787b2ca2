"""The listener's asyncio side on real loopback sockets, with a fake committer and gate:
answers come from the committer, the gate limits untrusted clients, idle sessions are
cut off, AUTH is checked off the loop and limited, and a drain says 421."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from engine.smtpd.auth import FailureLimiter, UsersFile, set_password
from engine.smtpd.events import Envelope, ServerPolicy
from engine.smtpd.server import Listener, ListenerConfig
from engine.telemetry.metrics import CheckedTally
from tests.support.net import async_wait_for

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
CONFIG = ListenerConfig(
    policy=ServerPolicy("mx.volley.test", 10_000, 10),
    networks=LOOPBACK,
    tls=None,
    users=None,
    idle_timeout=30.0,
    max_connections_per_client=2,
)


class Committer:
    def __init__(self) -> None:
        self.got: list[tuple[Envelope, bytes]] = []
        self.fail = False

    def submit(self, envelope: Envelope, data: bytes) -> asyncio.Future[tuple[bytes, bool]]:
        fut: asyncio.Future[tuple[bytes, bool]] = asyncio.get_running_loop().create_future()
        if self.fail:
            fut.set_exception(RuntimeError("boom"))
        else:
            self.got.append((envelope, data))
            fut.set_result((b"250 2.0.0 Ok: queued as T\r\n", True))
        return fut


class Gate:
    def __init__(self, allow: bool) -> None:
        self.allow = allow
        self.open: list[str] = []

    async def admit(self, client: str, limit: int) -> bool:
        if self.allow:
            self.open.append(client)
        return self.allow

    def leave(self, client: str) -> None:
        self.open.remove(client)


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def reply(self) -> bytes:
        """One whole (possibly multi-line) reply."""
        out = b""
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 10)
            out += line
            if not line or line[3:4] == b" ":
                return out

    async def cmd(self, line: bytes) -> bytes:
        self.writer.write(line + b"\r\n")
        return await self.reply()


@pytest.fixture
async def served() -> AsyncIterator[tuple[Listener, int, Committer, Gate]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    committer, gate = Committer(), Gate(allow=True)
    listener = Listener(CONFIG, committer, gate, FailureLimiter(2, 60.0), CheckedTally())
    await listener.start([(sock, False)])
    yield listener, port, committer, gate
    await listener.close(1.0)
    for c in _clients:
        c.writer.close()
        with contextlib.suppress(OSError):
            await c.writer.wait_closed()
    _clients.clear()


_clients: list[Client] = []


async def connect(port: int) -> Client:
    c = Client(*await asyncio.open_connection("127.0.0.1", port))
    _clients.append(c)
    return c


async def test_a_message_is_answered_by_the_committer(
    served: tuple[Listener, int, Committer, Gate],
) -> None:
    _, port, committer, _ = served
    c = await connect(port)
    assert (await c.reply()).startswith(b"220 mx.volley.test")
    assert b"ENHANCEDSTATUSCODES" in await c.cmd(b"EHLO client.test")
    c.writer.write(b"MAIL FROM:<a@s.test>\r\nRCPT TO:<b@d.test>\r\nDATA\r\n")
    assert [await c.reply() for _ in range(3)] == [
        b"250 2.1.0 Ok\r\n",
        b"250 2.1.5 Ok\r\n",
        b"354 End data with <CR><LF>.<CR><LF>\r\n",
    ]
    assert await c.cmd(b"hello\r\n.") == b"250 2.0.0 Ok: queued as T\r\n"
    assert committer.got[0][1] == b"hello\r\n"
    committer.fail = True
    c.writer.write(b"MAIL FROM:<a@s.test>\r\nRCPT TO:<b@d.test>\r\nDATA\r\n")
    for _ in range(3):
        await c.reply()
    assert (await c.cmd(b"x\r\n.")).startswith(b"451 4.3.0")
    assert await c.cmd(b"QUIT") == b"221 2.0.0 Bye\r\n"
    assert await c.reader.read() == b""


async def test_untrusted_clients_pass_the_gate_trusted_ones_do_not_ask(
    served: tuple[Listener, int, Committer, Gate],
) -> None:
    listener, port, _, gate = served
    c = await connect(port)
    assert (await c.reply()).startswith(b"220")
    assert gate.open == []  # 127.0.0.1 is in relay_networks: exempt
    listener.reconfigure(replace(CONFIG, networks=()))
    d = await connect(port)
    assert (await d.reply()).startswith(b"220") and gate.open == ["127.0.0.1"]
    d.writer.close()
    await d.reader.read()
    await async_wait_for(lambda: gate.open == [], timeout=5)
    gate.allow = False
    e = await connect(port)
    assert (await e.reply()).startswith(b"421 mx.volley.test 4.7.0 Error: too many connections")
    assert await e.reader.read() == b""


async def test_an_idle_session_is_cut_off_with_421(
    served: tuple[Listener, int, Committer, Gate],
) -> None:
    listener, port, _, _ = served
    listener.reconfigure(replace(CONFIG, idle_timeout=0.2))
    c = await connect(port)
    await c.reply()
    assert (await c.reply()).startswith(b"421 mx.volley.test 4.4.2 Error: timeout exceeded")
    assert await c.reader.read() == b""


async def test_auth_is_checked_off_the_loop_and_guessing_is_limited(
    served: tuple[Listener, int, Committer, Gate], tmp_path: Path
) -> None:
    listener, port, _, _ = served
    set_password(tmp_path / "users", "alice", b"right")
    policy = replace(CONFIG.policy, auth_enabled=True)
    listener.reconfigure(replace(CONFIG, policy=policy, users=UsersFile(tmp_path / "users")))
    c = await connect(port)
    await c.reply()
    await c.cmd(b"EHLO c")

    def plain(pw: bytes) -> bytes:
        return b"AUTH PLAIN " + base64.b64encode(b"\0alice\0" + pw)

    assert (await c.cmd(plain(b"wrong"))).startswith(b"535 5.7.8")
    assert (await c.cmd(plain(b"wrong"))).startswith(b"535 5.7.8")
    assert (await c.cmd(plain(b"right"))).startswith(b"454 4.7.0 Too many failed")  # limited
    d = await connect(port)  # another session, same address: still limited
    await d.reply()
    await d.cmd(b"EHLO c")
    assert (await d.cmd(plain(b"right"))).startswith(b"454")
    listener.limiter = FailureLimiter(2, 60.0)
    assert (await d.cmd(plain(b"right"))).startswith(b"235 2.7.0")


async def test_a_drain_says_421_to_idle_sessions_and_takes_no_new_ones(
    served: tuple[Listener, int, Committer, Gate],
) -> None:
    listener, port, _, _ = served
    c = await connect(port)
    await c.reply()
    await listener.close(1.0)
    assert (await c.reply()).startswith(b"421 mx.volley.test 4.3.2 Service shutting down")
    assert listener.sessions == set()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
