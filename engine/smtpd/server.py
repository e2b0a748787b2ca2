"""The listener's asyncio side: sockets in, ServerProtocol driven, sessions watched.

Responsible for: serving the listening sockets it is given (plain, where STARTTLS may be
offered, and implicit TLS, RFC 8314), one `Session` per connection driving an
engine.smtpd.protocol.ServerProtocol (writes, closes, the TLS upgrade after STARTTLS,
AUTH checks in a thread, messages handed to the committer and answered when it has made
them durable), the per-client connection limit (asked of a `Gate`: the supervisor counts
across workers; clients in relay_networks are exempt, as Postfix exempts $mynetworks),
cutting off idle sessions (one sweep a second, not a timer per session), stopping on
drain, and counting sessions and refusals.
Not responsible for: the SMTP rules (engine.smtpd.protocol), binding sockets (the
supervisor does: engine.smtpd.sockets), making messages durable (the `Committer`,
engine.runtime.listener), or password checks themselves (engine.smtpd.auth).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

from engine.smtpd.auth import FailureLimiter, UsersFile, UsersFileError
from engine.smtpd.events import (
    Authenticate,
    AuthResult,
    Close,
    Envelope,
    Event,
    MessageReceived,
    Peer,
    Refused,
    Send,
    ServerPolicy,
    StartTls,
    State,
)
from engine.smtpd.protocol import ServerProtocol
from engine.smtpd.relay import Network, is_loopback, trusted
from engine.smtpd.replies import Refusal, hostname_line
from engine.telemetry.metrics import Tally

__all__ = ["Committer", "Gate", "Listener", "ListenerConfig", "tls_context"]

# Input buffered while a message or an AUTH check is being answered beyond which the
# session stops reading: a pipelined next transaction is a few hundred bytes.
_WAIT_BUFFER = 64 * 1024
_EARLY_MAX = 4096  # bytes a client may send before the greeting (kept, then read)
_TLS_HANDSHAKE = 60.0  # seconds (aiosmtpd's and Postfix's smtpd_starttls_timeout order)
_AUTH_CONCURRENCY = 2  # scrypt runs at once per worker: 16 MB and ~40 ms each


class Committer(Protocol):
    def submit(self, envelope: Envelope, data: bytes) -> asyncio.Future[tuple[bytes, bool]]:
        """Make the message durable; the future gives (reply line, accepted)."""


class Gate(Protocol):
    async def admit(self, client: str, limit: int) -> bool:
        """Whether one more session from `client` is within `limit` (instance-wide)."""

    def leave(self, client: str) -> None:
        """A session `admit` let in has ended."""


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context for STARTTLS and implicit TLS.  Raises OSError / ssl.SSLError."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    policy: ServerPolicy
    networks: tuple[Network, ...]
    tls: ssl.SSLContext | None
    users: UsersFile | None
    idle_timeout: float
    max_connections_per_client: int


class Listener:
    """Every session of this worker's listening sockets."""

    def __init__(
        self,
        config: ListenerConfig,
        committer: Committer,
        gate: Gate,
        limiter: FailureLimiter,
        tally: Tally,
        clock: Callable[[], float] = time.monotonic,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.committer = committer
        self.gate = gate
        self.limiter = limiter
        self.tally = tally
        self.clock = clock
        self.on_error = on_error or (lambda text: None)
        self.sessions: set[Session] = set()
        self.draining = False
        self._servers: list[asyncio.AbstractServer] = []
        self._sweeper: asyncio.Task[None] | None = None
        self._auth_slots = asyncio.Semaphore(_AUTH_CONCURRENCY)
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self, sockets: Sequence[tuple[socket.socket, bool]]) -> None:
        """Serve each (listening socket, implicit TLS) pair."""
        loop = asyncio.get_running_loop()
        for sock, implicit in sockets:
            tls = self.config.tls if implicit else None
            if implicit and tls is None:
                raise ValueError("implicit TLS listener without a certificate")
            server = await loop.create_server(
                functools.partial(Session, self, implicit),
                sock=sock,
                ssl=tls,
                ssl_handshake_timeout=_TLS_HANDSHAKE if tls is not None else None,
            )
            self._servers.append(server)
        self._sweeper = asyncio.create_task(self._sweep(), name="smtpd-sweep")

    def reconfigure(self, config: ListenerConfig) -> None:
        """New sessions get the new policy, networks, certificate and users file; open
        sessions finish under the one they started with."""
        self.config = config

    async def close(self, timeout: float) -> None:
        """Drain: accept nothing new; idle sessions get 421 now, the others once the
        message they are sending is answered; after `timeout` what is left is cut."""
        self.draining = True
        for server in self._servers:
            server.close()
        for s in list(self.sessions):
            s.drain()
        deadline = self.clock() + timeout
        while self.sessions and self.clock() < deadline:
            await asyncio.sleep(0.05)
        for s in list(self.sessions):
            s.abort()
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def refused(self, reason: Refusal) -> None:
        self.tally.inc("volley_smtpd_rejected", reason.value)

    def opened(self, session: Session) -> None:
        self.sessions.add(session)
        self.tally.set("volley_smtpd_sessions_open", float(len(self.sessions)))

    def closed(self, session: Session) -> None:
        self.sessions.discard(session)
        self.tally.set("volley_smtpd_sessions_open", float(len(self.sessions)))

    async def authenticate(self, client: str, user: str, password: bytes) -> AuthResult:
        users = self.config.users
        now = time.time()
        if users is None:
            return AuthResult.TEMPORARY
        if self.limiter.blocked(client, now):
            return AuthResult.LIMITED
        loop = asyncio.get_running_loop()
        async with self._auth_slots:
            try:
                ok = await loop.run_in_executor(None, users.check, user, password)
            except UsersFileError as e:
                self.on_error(f"smtpd.users_file: {e}")
                return AuthResult.TEMPORARY
        if ok:
            return AuthResult.OK
        self.limiter.failed(client, time.time())
        self.tally.inc("volley_smtpd_auth_failures")
        return AuthResult.BAD

    async def _sweep(self) -> None:
        """Cut off sessions that sent nothing for idle_timeout (421 4.4.2)."""
        while True:
            timeout = self.config.idle_timeout
            await asyncio.sleep(min(1.0, timeout / 4))
            now = self.clock()
            for s in list(self.sessions):
                if now - s.last_activity > timeout:
                    s.idle()


class Session(asyncio.Protocol):
    """One client connection."""

    def __init__(self, listener: Listener, implicit_tls: bool) -> None:
        self.listener = listener
        self.implicit_tls = implicit_tls
        self.config = listener.config
        self.transport: asyncio.Transport | None = None
        self.proto: ServerProtocol | None = None
        self.client = ""
        self.last_activity = listener.clock()
        self._early: list[bytes] = []
        self._gated = False  # admitted by the gate: leave() at the end
        self._paused = False
        self._drain_after_reply = False

    # -- asyncio callbacks -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's ABCs, so cast rather than check.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if peer else ""
        self.listener.opened(self)
        if self.listener.draining:
            self._refuse("4.3.2 Service shutting down", None)
            return
        if trusted(self.client, self.config.networks):
            self._start(True)
        else:
            self.listener.spawn(self._admit())

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.listener.clock()
        proto = self.proto
        if proto is None:
            self._early.append(data)
            if sum(map(len, self._early)) > _EARLY_MAX:
                self.abort()
            return
        self._handle(proto.feed(data))
        if proto.state is State.WAIT and not self._paused and proto.buffered > _WAIT_BUFFER:
            assert self.transport is not None
            self.transport.pause_reading()
            self._paused = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.listener.closed(self)
        if self._gated:
            self._gated = False
            self.listener.gate.leave(self.client)

    # -- the session ---------------------------------------------------------------------------
    async def _admit(self) -> None:
        ok = await self.listener.gate.admit(self.client, self.config.max_connections_per_client)
        if ok:
            self._gated = True
        if self.transport is None:  # gone meanwhile
            if ok:
                self._gated = False
                self.listener.gate.leave(self.client)
            return
        if ok:
            self._start(False)
        else:
            self._refuse(
                f"4.7.0 Error: too many connections from {self.client}", Refusal.CONNECTION_LIMIT
            )

    def _start(self, is_trusted: bool) -> None:
        self.listener.tally.inc("volley_smtpd_sessions", "accepted")
        peer = Peer(
            address=self.client,
            trusted=is_trusted,
            loopback=is_loopback(self.client),
            tls=self.implicit_tls,
        )
        self.proto = proto = ServerProtocol(self.config.policy, peer)
        self._write(proto.greeting())
        self.last_activity = self.listener.clock()
        early, self._early = self._early, []
        for data in early:
            self._handle(proto.feed(data))

    def _refuse(self, text: str, reason: Refusal | None) -> None:
        self.listener.tally.inc("volley_smtpd_sessions", "refused")
        if reason is not None:
            self.listener.refused(reason)
        self._write(hostname_line("421", self.config.policy.hostname, text))
        if self.transport is not None:
            self.transport.close()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _handle(self, events: list[Event]) -> None:
        for ev in events:
            if isinstance(ev, Send):
                self._write(ev.data)
            elif isinstance(ev, MessageReceived):
                fut = self.listener.committer.submit(ev.envelope, ev.data)
                fut.add_done_callback(self._committed)
            elif isinstance(ev, Refused):
                self.listener.refused(ev.reason)
            elif isinstance(ev, Close):
                if self.transport is not None:
                    self.transport.close()
            elif isinstance(ev, Authenticate):
                self.listener.spawn(self._authenticate(ev))
            elif isinstance(ev, StartTls):
                self.listener.spawn(self._upgrade())

    def _resumed(self, events: list[Event]) -> None:
        """The answer to a WAIT went out: the client's idle time starts now."""
        self.last_activity = self.listener.clock()
        self._handle(events)
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        if self._drain_after_reply:
            self.drain()

    def _committed(self, fut: asyncio.Future[tuple[bytes, bool]]) -> None:
        proto = self.proto
        assert proto is not None
        if fut.cancelled() or fut.exception() is not None:
            reply, accepted = b"451 4.3.0 Error: queue file write error\r\n", False
        else:
            reply, accepted = fut.result()
        self._resumed(proto.finish_message(reply, accepted=accepted))

    async def _authenticate(self, ev: Authenticate) -> None:
        result = await self.listener.authenticate(self.client, ev.username, ev.password)
        if self.proto is not None and self.proto.state is State.WAIT:
            self._resumed(self.proto.finish_auth(result))

    async def _upgrade(self) -> None:
        loop = asyncio.get_running_loop()
        ctx = self.config.tls
        transport, proto = self.transport, self.proto
        if transport is None or proto is None or ctx is None:
            return
        try:
            async with asyncio.timeout(_TLS_HANDSHAKE):
                new = await loop.start_tls(transport, self, ctx, server_side=True)
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as e:
            self.listener.refused(Refusal.TLS_REQUIRED)
            self.listener.on_error(f"smtpd: TLS handshake with {self.client} failed: {e}")
            transport.abort()
            return
        if new is None:
            transport.abort()
            return
        self.transport = new
        proto.tls_started()
        self.last_activity = self.listener.clock()

    def idle(self) -> None:
        proto = self.proto
        if proto is None or proto.state in (State.WAIT, State.TLS):
            return  # waiting on us (a commit, an AUTH check, a handshake), not on the client
        self._handle(proto.timed_out())

    def drain(self) -> None:
        proto = self.proto
        if proto is None:
            return
        if proto.state in (State.COMMAND, State.AUTH):
            self._handle(proto.shutting_down())
        else:
            self._drain_after_reply = True  # its message's reply first

    def abort(self) -> None:
        if self.transport is not None:
            with contextlib.suppress(Exception):
                self.transport.abort()
