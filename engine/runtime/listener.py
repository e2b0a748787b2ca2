"""The SMTP listener inside a worker: accepted messages -> durable entries of its shard.

Responsible for: starting engine.smtpd's Listener on the sockets the supervisor bound for
this worker, with the group commit behind it (engine.runtime.smtp_commit: how an
accepted message becomes durable before its 250), its configuration from the settings,
the checks at start (`startup_problem`), and the worker side of the per-client
connection limit (`ClientGate`, answered by the supervisor).
Not responsible for: SMTP (engine.smtpd), making messages durable (smtp_commit),
scheduling (the worker's queue), or binding sockets (the supervisor).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from engine.config import Settings
from engine.runtime.ipc import Channel
from engine.runtime.smtp_commit import GroupCommit
from engine.sched.queue import WorkQueue
from engine.smtpd.auth import FailureLimiter, UsersFile, UsersFileError
from engine.smtpd.events import ServerPolicy
from engine.smtpd.server import Listener, ListenerConfig, tls_context
from engine.suppress.gate import IntakeGate
from engine.telemetry.eventlog import EventLog
from engine.telemetry.metrics import Tally
from spool import (
    ShardQueue,
)

__all__ = [
    "ClientGate",
    "SmtpListener",
    "listener_config",
    "startup_problem",
]


def listener_config(settings: Settings) -> ListenerConfig:
    """The listener's view of the settings (certificate loaded, networks parsed).
    Raises OSError / ssl.SSLError for a certificate that cannot be loaded."""
    s = settings.smtpd
    tls = tls_context(s.tls_cert, s.tls_key) if s.tls_cert and s.tls_key else None
    return ListenerConfig(
        policy=ServerPolicy(
            hostname=settings.helo_name,
            max_message_size=s.max_message_size,
            max_recipients=s.max_recipients,
            bounce_domains=frozenset(s.bounce_domains),
            auth_enabled=s.users_file is not None,
            starttls=tls is not None,
            max_errors=s.max_errors,
            max_unknown_commands=s.max_unknown_commands,
        ),
        networks=s.networks,
        tls=tls,
        users=UsersFile(s.users_file) if s.users_file else None,
        idle_timeout=s.idle_timeout,
        max_connections_per_client=s.max_connections_per_client,
    )


def startup_problem(settings: Settings) -> str | None:
    """What keeps the listener from starting (one line naming the key), or None: checked
    by the supervisor before any worker starts."""
    s = settings.smtpd
    if not s.listen and not s.implicit_tls_listen:
        return None
    if s.tls_cert is not None and s.tls_key is not None:
        try:
            tls_context(s.tls_cert, s.tls_key)
        except OSError as e:  # ssl.SSLError is an OSError
            why = e.strerror or str(e)
            return f"smtpd.tls_cert: cannot load {s.tls_cert} with {s.tls_key}: {why}"
    if s.users_file is not None:
        try:
            UsersFile(s.users_file).users()
        except UsersFileError as e:
            return f"smtpd.users_file: {e} (`volley passwd USER --config FILE` creates it)"
    return None


class ClientGate:
    """Worker side of the per-client connection count the supervisor keeps across
    workers: ["smtpd_open", req, client, limit] -> ["smtpd_admit", req, ok];
    ["smtpd_close", client] when a session admitted ends."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._waiting: dict[int, asyncio.Future[bool]] = {}
        self._next = 0

    async def admit(self, client: str, limit: int) -> bool:
        self._next += 1
        req = self._next
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting[req] = fut
        self._channel.send("smtpd_open", req, client, limit)
        try:
            return await fut
        finally:
            self._waiting.pop(req, None)

    def answered(self, req: int, ok: bool) -> None:
        fut = self._waiting.pop(req, None)
        if fut is not None and not fut.done():
            fut.set_result(ok)
        elif ok:
            pass  # the session went away before the answer: Session gives it back itself

    def leave(self, client: str) -> None:
        self._channel.send("smtpd_close", client)


class SmtpListener:
    """What the worker holds: the listener and its group commit (None when off)."""

    def __init__(
        self,
        settings: Settings,
        shard: ShardQueue,
        queue: WorkQueue,
        log: EventLog,
        tally: Tally,
        kick: Callable[[], None],
        channel: Channel,
        sockets: Sequence[tuple[socket.socket, bool]],
        gate: IntakeGate | None = None,
    ) -> None:
        """`gate`: the worker's suppression check and List-Unsubscribe stamping, the one
        drop intake uses (engine.suppress.gate)."""
        self.sockets = list(sockets)
        self.log = log
        self.commit = GroupCommit(settings, shard, queue, log, tally, kick, gate=gate)
        self.gate = ClientGate(channel)
        self.listener: Listener | None = None
        self._settings = settings
        self._tally = tally

    async def start(self) -> None:
        if not self.sockets:
            return
        s = self._settings.smtpd
        limiter = FailureLimiter(s.max_auth_failures, s.auth_failure_window)
        self.listener = Listener(
            listener_config(self._settings),
            self.commit,
            self.gate,
            limiter,
            self._tally,
            on_error=self._error,
        )
        await self.listener.start(self.sockets)

    def _error(self, text: str) -> None:
        self.log.add("smtpd_error", time.time(), error=text)

    def reconfigure(self, settings: Settings) -> None:
        """SIGHUP: relay networks, limits, users file and certificate (re-read from disk,
        so a renewed certificate is used) apply to new sessions; the listening addresses
        need a restart (engine.runtime.reload)."""
        self._settings = settings
        self.commit.s = settings
        if self.listener is None:
            return
        try:
            self.listener.reconfigure(listener_config(settings))
        except OSError as e:  # ssl.SSLError is an OSError
            self._error(f"smtpd.tls_cert: reload failed, the previous certificate stays: {e}")
        s = settings.smtpd
        self.listener.limiter.limit = s.max_auth_failures
        self.listener.limiter.window = s.auth_failure_window

    def on_message(self, msg: list[Any]) -> None:
        self.gate.answered(int(msg[1]), bool(msg[2]))

    async def close(self, timeout: float) -> None:
        if self.listener is not None:
            await self.listener.close(timeout)
        # The commits of messages already answered are done; wait for one in progress.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.commit.wait_idle()
