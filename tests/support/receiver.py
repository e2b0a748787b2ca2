"""Test destination MTAs: aiosmtpd servers on 127.0.0.x whose behaviour is keyed on the recipient.

Responsible for:
  * `Receiver`: one real SMTP server on one loopback IP, in its own thread and uvloop loop,
    that records what it received (`Received`) and counts connections and transactions, so
    integration tests can run the real `volley run` process and assert on the outcome.
  * Switchable connection-level behaviour: a non-220 greeting, a connection limit, STARTTLS
    (optionally required before anything else), implicit TLS (TLS from connect, a relay's
    port 465), AUTH with a table of users (a smarthost relay), and which of PIPELINING /
    8BITMIME / SMTPUTF8 are advertised.
  * The one import for tests: the public names of the modules below are re-exported here.

Not responsible for:
  * What happens on a session (tests.support.receiver_smtp), or failing on purpose, chosen
    by the recipient's local part (tests.support.receiver_scenarios: see `scenario_for` for
    the table).
  * Certificates for STARTTLS (tests.support.tls_certs: `self_signed_context()`).
  * Picking ports or waiting for conditions (tests.support.net).
  * DNS (the test DNS server maps names to these IPs), or anything off 127.0.0.0/8.
  * Speed beyond tests: aiosmtpd tops out near 2-2.8k msg/s per process (dependency-facts
    §1.9); load benches use Postfix's smtp-sink instead.

Invariants:
  * Counters exclude the probe connection aiosmtpd's `Controller.start()` opens to itself
    (dependency-facts §8): the probe binds its source address first and records it, so the
    session side can recognise it.
  * Recorded state survives `stop()`/`start()`: one `Receiver` is one MX host that may go down.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from contextlib import ExitStack
from types import TracebackType
from typing import Any

import uvloop
from aiosmtpd.controller import Controller

from tests.support.receiver_scenarios import (
    DATAFAIL_REPLY,
    DATATEMPFAIL_REPLY,
    FLAKY_REPLY,
    PERMFAIL_REPLY,
    RCPT421_REPLY,
    TEMPFAIL_REPLY,
    Behaviour,
    Scenario,
    scenario_for,
)
from tests.support.receiver_smtp import (
    NO_8BITMIME_REPLY,
    TOO_MANY_REPLY,
    Handler,
    Received,
    ReceiverSMTP,
    State,
)
from tests.support.tls_certs import self_signed_context, write_self_signed

__all__ = [
    "DATAFAIL_REPLY",
    "DATATEMPFAIL_REPLY",
    "FLAKY_REPLY",
    "NO_8BITMIME_REPLY",
    "PERMFAIL_REPLY",
    "RCPT421_REPLY",
    "TEMPFAIL_REPLY",
    "TOO_MANY_REPLY",
    "Behaviour",
    "Received",
    "Receiver",
    "Scenario",
    "scenario_for",
    "self_signed_context",
    "write_self_signed",
]

DATA_SIZE_LIMIT = 60 * 1024 * 1024  # larger than any test message; SIZE= up to this is accepted
SESSION_TIMEOUT = 300.0  # idle seconds before aiosmtpd drops a session; tests never reach it
STALL_SECONDS = 60.0  # a `stall` RCPT reply is held this long unless released earlier
READY_TIMEOUT = 30.0  # aiosmtpd's default 5 s is too tight for a loaded 2-core machine
_PROBE_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0


class _Controller(Controller):
    """aiosmtpd's threaded controller with our protocol, a recognisable start() probe, and
    a start() that fails fast when the bind fails."""

    def __init__(self, handler: Handler, state: State, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._state = state

    def factory(self) -> ReceiverSMTP:
        return ReceiverSMTP(self.handler, state=self._state, loop=self.loop, **self.SMTP_kwargs)

    def _run(self, ready_event: threading.Event) -> None:
        try:
            super()._run(ready_event)
        finally:
            if self._thread_exception is not None and not self.loop.is_closed():
                self.loop.close()
            # aiosmtpd only sets ready_event on success, so a failed bind would make start()
            # wait the whole READY_TIMEOUT before reporting it; _trigger_server raises it.
            ready_event.set()

    def _trigger_server(self) -> None:
        if self._thread_exception is not None:
            raise self._thread_exception
        family = socket.AF_INET6 if ":" in self.hostname else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.settimeout(_PROBE_TIMEOUT)
            # Bind the probe's source first so the server can tell it apart by its peer
            # address: counting it would make every peak_connections test off by one.
            probe.bind((self.hostname, 0))
            host, port = probe.getsockname()[:2]
            with self._state.lock:
                self._state.probe_peer = (host, port)
            probe.connect((self.hostname, self.port))
            with ExitStack() as stack:
                if self.ssl_context is not None:  # implicit TLS: say hello in TLS
                    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
                    probe = stack.enter_context(client.wrap_socket(probe))
                try:
                    probe.recv(1024)
                except TimeoutError:
                    pass  # the factory has run by now; aiosmtpd ignores this timeout too


class Receiver:
    """A destination MTA on `ip:port`; see the module docstring for the behaviour table.

    Use as a context manager, or call `start()` and `stop()`. All properties are thread-safe
    snapshots; poll them with tests.support.net.wait_for.
    """

    def __init__(
        self,
        ip: str,
        port: int,
        *,
        name: str = "",
        pipelining: bool = True,
        smtputf8: bool = True,
        eightbitmime: bool = True,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        implicit_tls_context: ssl.SSLContext | None = None,
        users: dict[str, str] | None = None,
        auth_require_tls: bool = True,
        greeting: tuple[int, str] | None = None,
        max_connections: int | None = None,
        stall_timeout: float = STALL_SECONDS,
    ) -> None:
        _check_greeting(greeting)
        if max_connections is not None and max_connections < 0:
            raise ValueError("max_connections must be >= 0")
        self.ip = ip
        self.port = port
        self.name = name or ip
        self._pipelining = pipelining
        self._smtputf8 = smtputf8
        self._eightbitmime = eightbitmime
        self._tls_context = tls_context
        self._require_starttls = require_starttls
        self._implicit_tls_context = implicit_tls_context
        self._users = users
        self._auth_require_tls = auth_require_tls
        self._stall_timeout = stall_timeout
        self._state = State(greeting, max_connections)
        self._controller: _Controller | None = None
        self._handler: Handler | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Listen on ip:port. Raises OSError if the address is taken."""
        if self._controller is not None:
            raise RuntimeError(f"{self!r} is already running")
        handler = self._new_handler()
        relay: dict[str, Any] = {}
        if self._users is not None:
            relay = {
                "authenticator": handler.authenticator,
                # aiosmtpd only counts STARTTLS as TLS: with implicit TLS every session is
                # encrypted, and it would otherwise never offer AUTH.
                "auth_require_tls": self._auth_require_tls and self._implicit_tls_context is None,
            }
        controller = _Controller(
            handler,
            self._state,
            hostname=self.ip,  # the bind address; aiosmtpd would default to ::1
            port=self.port,
            loop=uvloop.new_event_loop(),
            ready_timeout=READY_TIMEOUT,
            server_hostname=self.name,  # banner/EHLO name; the default runs getfqdn() per conn
            data_size_limit=DATA_SIZE_LIMIT,
            enable_SMTPUTF8=self._smtputf8,
            decode_data=False,
            tls_context=self._tls_context,
            require_starttls=self._require_starttls,
            ssl_context=self._implicit_tls_context,
            **relay,
            timeout=SESSION_TIMEOUT,
        )
        controller.start()
        self._controller, self._handler = controller, handler

    def _new_handler(self) -> Handler:
        """The session hooks for one start(); a subclass adds behaviour by returning a
        Handler subclass (tests.support.throttling)."""
        return Handler(
            self._state,
            pipelining=self._pipelining,
            eightbitmime=self._eightbitmime,
            stall_timeout=self._stall_timeout,
            users=self._users,
        )

    def stop(self) -> None:
        """Stop listening and abort every open connection (the MX goes away). Idempotent.

        Stalled replies do not hold it up: their sessions are aborted and cancelled.
        """
        controller, self._controller = self._controller, None
        if controller is None:
            return
        closing = asyncio.run_coroutine_threadsafe(self._close_all(controller), controller.loop)
        try:
            closing.result(_STOP_TIMEOUT)
        finally:
            controller.stop()

    async def _close_all(self, controller: _Controller) -> None:
        if controller.server is not None:
            controller.server.close()
        with self._state.lock:
            protos = list(self._state.open)
        for proto in protos:
            proto.abort_connection()
        # Let connection_lost run and the cancelled sessions unwind before the loop stops, so
        # no task or transport is left half-closed (a ResourceWarning fails the tests).
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        if tasks:
            await asyncio.wait(tasks, timeout=_STOP_TIMEOUT / 2)

    @property
    def is_running(self) -> bool:
        return self._controller is not None

    def __enter__(self) -> Receiver:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- switches --------------------------------------------------------------------------

    def set_greeting(self, greeting: tuple[int, str] | None) -> None:
        """Send `greeting` (a 4xx/5xx) and close on new connections; None restores 220."""
        _check_greeting(greeting)
        with self._state.lock:
            self._state.greeting = greeting

    def release_stalled(self) -> None:
        """Answer every held `stall` RCPT now, and every later one at once."""
        with self._state.lock:
            self._state.stall_released = True
        controller, handler = self._controller, self._handler
        if controller is not None and handler is not None:
            try:
                controller.loop.call_soon_threadsafe(handler.release.set)
            except RuntimeError:
                pass  # the loop closed under us: stop() has cancelled every stalled session

    # -- what was seen ---------------------------------------------------------------------

    @property
    def messages(self) -> list[Received]:
        """Every recorded message, in arrival order (dropped ones included)."""
        with self._state.lock:
            return list(self._state.messages)

    def delivered_to(self, rcpt: str) -> list[Received]:
        """Recorded messages (dropped ones included) whose recipients include exactly `rcpt`."""
        return [m for m in self.messages if rcpt in m.rcpt_tos]

    def rcpt_attempts(self, rcpt: str) -> int:
        """How many RCPT commands for exactly this address reached the receiver."""
        with self._state.lock:
            return self._state.rcpt_attempts[rcpt]

    @property
    def connections_total(self) -> int:
        """Accepted TCP connections, refused ones (greeting, limit) included; no probe."""
        with self._state.lock:
            return self._state.total

    @property
    def peak_connections(self) -> int:
        """Most sessions open at once; refused connections and the probe never count."""
        with self._state.lock:
            return self._state.peak

    @property
    def peak_connections_by_peer(self) -> dict[str, int]:
        """Most sessions open at once from each client address (Volley's source address)."""
        with self._state.lock:
            return dict(self._state.peak_by_peer)

    @property
    def open_connections(self) -> int:
        """Sessions open now."""
        with self._state.lock:
            return self._state.live

    @property
    def rejected_connections(self) -> int:
        """Connections refused with the configured greeting or the max_connections 421."""
        with self._state.lock:
            return self._state.rejected

    @property
    def transactions_per_connection(self) -> dict[int, int]:
        """conn_id -> accepted MAIL commands, for every counted connection (0 if none)."""
        with self._state.lock:
            return dict(self._state.transactions)

    @property
    def auth_commands(self) -> int:
        """AUTH command lines received (also those refused before any check)."""
        with self._state.lock:
            return self._state.auth_commands

    @property
    def logins(self) -> list[tuple[str, str, bool]]:
        """Every checked login: (mechanism, user, accepted)."""
        with self._state.lock:
            return list(self._state.logins)

    @property
    def stalled_count(self) -> int:
        """`stall` RCPT replies being held right now."""
        with self._state.lock:
            return self._state.stalled

    def __repr__(self) -> str:
        with self._state.lock:
            s = self._state
            return (
                f"<Receiver {self.name} {self.ip}:{self.port} "
                f"{'running' if self._controller else 'stopped'} | messages={len(s.messages)} "
                f"conns total={s.total} open={s.live} peak={s.peak} rejected={s.rejected}>"
            )


def _check_greeting(greeting: tuple[int, str] | None) -> None:
    # RFC 5321 §3.1: a server that will not serve answers 554 (or 421) instead of 220.
    if greeting is not None and not 400 <= greeting[0] <= 599:
        raise ValueError(f"greeting must be a 4xx or 5xx reply, got {greeting[0]}")
