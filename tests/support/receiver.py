"""Test destination MTAs: aiosmtpd servers on 127.0.0.x whose behaviour is keyed on the recipient.

Responsible for:
  * `Receiver`: one real SMTP server on one loopback IP, in its own thread and uvloop loop,
    that records what it received (`Received`) and counts connections and transactions, so
    integration tests can run the real `volley run` process and assert on the outcome.
  * Failing on purpose, chosen by the recipient's local part (KumoMTA maildir-sink style),
    so one receiver serves every scenario at once -- see `scenario_for` for the table.
  * Switchable connection-level behaviour: a non-220 greeting, a connection limit, STARTTLS,
    and which of PIPELINING / 8BITMIME / SMTPUTF8 are advertised.
  * `self_signed_context()`: a throw-away certificate for STARTTLS tests.

Not responsible for:
  * Picking ports or waiting for conditions (tests.support.net).
  * DNS (the test DNS server maps names to these IPs), or anything off 127.0.0.0/8.
  * Speed beyond tests: aiosmtpd tops out near 2-2.8k msg/s per process (dependency-facts
    §1.9); load benches use Postfix's smtp-sink instead.

Invariants:
  * Only messages whose end-of-data was reached and not rejected are recorded; a transaction
    whose recipients were all refused never is. `dropdata` messages are recorded with
    `dropped=True`: the receiver HAS them, the sender cannot know (duplicate-on-retry case).
  * Counters exclude the probe connection aiosmtpd's `Controller.start()` opens to itself
    (dependency-facts §8): it is recognised by the source address the probe binds.
  * Recorded state survives `stop()`/`start()`: one `Receiver` is one MX host that may go down.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import datetime
import enum
import ipaddress
import re
import shutil
import socket
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import uvloop
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "Behaviour",
    "Received",
    "Receiver",
    "Scenario",
    "scenario_for",
    "self_signed_context",
]

TEMPFAIL_REPLY = "450 4.2.0 mailbox busy (test)"
PERMFAIL_REPLY = "550 5.1.1 no such user (test)"
FLAKY_REPLY = "451 4.3.0 try again (test)"
DATAFAIL_REPLY = "554 5.6.0 content rejected (test)"
DATATEMPFAIL_REPLY = "451 4.3.0 queue full (test)"
RCPT421_REPLY = "421 4.4.2 closing (test)"
TOO_MANY_REPLY = "421 4.7.0 too many connections"
NO_8BITMIME_REPLY = "555 5.5.4 BODY=8BITMIME not supported (test)"

DATA_SIZE_LIMIT = 60 * 1024 * 1024  # larger than any test message; SIZE= up to this is accepted
SESSION_TIMEOUT = 300.0  # idle seconds before aiosmtpd drops a session; tests never reach it
STALL_SECONDS = 60.0  # a `stall` RCPT reply is held this long unless released earlier
READY_TIMEOUT = 30.0  # aiosmtpd's default 5 s is too tight for a loaded 2-core machine
_PROBE_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0


class Behaviour(enum.Enum):
    """What the receiver does for a recipient, chosen by its local part's prefix."""

    ACCEPT = "accept"
    TEMPFAIL = "tempfail"  # 450 at RCPT, always
    PERMFAIL = "permfail"  # 550 at RCPT
    FLAKY = "flaky"  # flakyN-...: 451 for the first N RCPTs of the exact address, then accept
    DATAFAIL = "datafail"  # 554 at end of data
    DATATEMPFAIL = "datatempfail"  # 451 at end of data
    DROPDATA = "dropdata"  # record (dropped=True), then abort without replying
    DROPDATAONCE = "dropdataonce"  # as DROPDATA the first time for the address, then accept
    STALL = "stall"  # hold the RCPT reply until release_stalled() or STALL_SECONDS
    CLOSERCPT = "closercpt"  # abort the connection at RCPT
    RCPT421 = "rcpt421"  # 421 at RCPT, then close


@dataclass(frozen=True, slots=True)
class Scenario:
    behaviour: Behaviour
    flaky_count: int = 0  # only for Behaviour.FLAKY


# Longest prefix first where one prefix starts another (dropdataonce / dropdata).
_PREFIXES: tuple[tuple[str, Behaviour], ...] = (
    ("dropdataonce", Behaviour.DROPDATAONCE),
    ("dropdata", Behaviour.DROPDATA),
    ("datatempfail", Behaviour.DATATEMPFAIL),
    ("datafail", Behaviour.DATAFAIL),
    ("tempfail", Behaviour.TEMPFAIL),
    ("permfail", Behaviour.PERMFAIL),
    ("stall", Behaviour.STALL),
    ("closercpt", Behaviour.CLOSERCPT),
    ("rcpt421", Behaviour.RCPT421),
)
_FLAKY = re.compile(r"flaky(\d+)-")


def scenario_for(address: str) -> Scenario:
    """The behaviour for one recipient address (case-insensitive on the local part).

    `flaky` needs its count and a dash (`flaky3-bob@x`); anything unmatched is accepted.
    """
    local = address.rpartition("@")[0] if "@" in address else address
    local = local.lower()
    m = _FLAKY.match(local)
    if m is not None:
        return Scenario(Behaviour.FLAKY, int(m.group(1)))
    for prefix, behaviour in _PREFIXES:
        if local.startswith(prefix):
            return Scenario(behaviour)
    return Scenario(Behaviour.ACCEPT)


@dataclass(frozen=True, slots=True)
class Received:
    """One message as the receiver got it.

    `data` is aiosmtpd's `envelope.original_content`: the bytes after dot-unstuffing, CRLFs
    kept. `peer` is the client's IP (the source address Volley bound). `conn_id` numbers this
    receiver's connections from 1. `mail_options` are upper-cased by aiosmtpd; `rcpt_options`
    are those of the accepted RCPTs, concatenated. `at` is wall-clock `time.time()`.
    """

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    peer: str
    conn_id: int
    mail_options: tuple[str, ...]
    rcpt_options: tuple[str, ...]
    tls: bool
    dropped: bool
    at: float


class _Admission(enum.Enum):
    PROBE = "probe"  # aiosmtpd's own start() probe: served normally, never counted
    SESSION = "session"  # counted, served normally
    GREETING = "greeting"  # counted, gets the configured non-220 greeting, closed
    TOO_MANY = "too_many"  # counted, over max_connections: 421 before any greeting, closed


class _DataOutcome(enum.Enum):
    ACCEPT = "accept"
    DROP = "drop"
    REJECT_PERM = "reject_perm"
    REJECT_TEMP = "reject_temp"


class _State:
    """Everything a receiver records, shared by its loop thread and the test thread."""

    def __init__(self, greeting: tuple[int, str] | None, max_connections: int | None) -> None:
        self.lock = threading.Lock()
        self.greeting = greeting
        self.max_connections = max_connections
        self.probe_peer: tuple[str, int] | None = None
        self.messages: list[Received] = []
        self.rcpt_attempts: collections.Counter[str] = collections.Counter()
        self.dropped_once: set[str] = set()
        self.transactions: dict[int, int] = {}
        self.open: dict[_ReceiverSMTP, _Admission] = {}
        self.live = 0  # open SESSION connections
        self.peak = 0
        self.total = 0
        self.rejected = 0
        self.next_conn_id = 0
        self.stalled = 0
        self.stall_released = False

    def admit(
        self, proto: _ReceiverSMTP, peer: tuple[str, int] | None
    ) -> tuple[_Admission, int, bytes | None]:
        """Classify a new connection; returns (kind, conn_id, refusal line to send or None)."""
        refusal = None
        with self.lock:
            if peer is not None and peer == self.probe_peer:
                kind, conn_id = _Admission.PROBE, 0
                self.probe_peer = None  # one probe per start(); never match a later client
            else:
                self.next_conn_id += 1
                conn_id = self.next_conn_id
                self.total += 1
                self.transactions[conn_id] = 0
                if self.greeting is not None:
                    kind = _Admission.GREETING
                    refusal = f"{self.greeting[0]} {self.greeting[1]}\r\n".encode()
                elif self.max_connections is not None and self.live >= self.max_connections:
                    kind = _Admission.TOO_MANY
                    refusal = f"{TOO_MANY_REPLY}\r\n".encode()
                else:
                    kind = _Admission.SESSION
                    self.live += 1
                    self.peak = max(self.peak, self.live)
                if kind is not _Admission.SESSION:
                    self.rejected += 1
            self.open[proto] = kind
        return kind, conn_id, refusal

    def release(self, proto: _ReceiverSMTP) -> None:
        with self.lock:
            if self.open.pop(proto, None) is _Admission.SESSION:
                self.live -= 1

    def count_rcpt(self, address: str) -> int:
        with self.lock:
            self.rcpt_attempts[address] += 1
            return self.rcpt_attempts[address]

    def count_transaction(self, conn_id: int) -> None:
        with self.lock:
            self.transactions[conn_id] = self.transactions.get(conn_id, 0) + 1

    def data_outcome(self, rcpts: tuple[str, ...]) -> _DataOutcome:
        """One reply per message (not LMTP): drop beats 554 beats 451 beats accept."""
        behaviours = {r: scenario_for(r).behaviour for r in rcpts}
        once = [r for r, b in behaviours.items() if b is Behaviour.DROPDATAONCE]
        with self.lock:
            first_time = [r for r in once if r not in self.dropped_once]
            self.dropped_once.update(once)
        kinds = set(behaviours.values())
        if Behaviour.DROPDATA in kinds or first_time:
            return _DataOutcome.DROP
        if Behaviour.DATAFAIL in kinds:
            return _DataOutcome.REJECT_PERM
        if Behaviour.DATATEMPFAIL in kinds:
            return _DataOutcome.REJECT_TEMP
        return _DataOutcome.ACCEPT

    def record(self, message: Received) -> int:
        with self.lock:
            self.messages.append(message)
            return len(self.messages)


async def _park() -> None:
    """Wait until the session task is cancelled: aiosmtpd's connection_lost cancels it after
    we close or abort the transport, so the hook never returns a reply to send."""
    await asyncio.get_running_loop().create_future()


class _Handler:
    """aiosmtpd hooks (`handle_<VERB>`), one per running server."""

    def __init__(
        self,
        state: _State,
        *,
        pipelining: bool,
        eightbitmime: bool,
        stall_timeout: float,
    ) -> None:
        self._state = state
        self._pipelining = pipelining
        self._eightbitmime = eightbitmime
        self._stall_timeout = stall_timeout
        self.release = asyncio.Event()  # binds to the server loop on first wait

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # aiosmtpd only sets it when there is no hook
        # aiosmtpd always offers AUTH after STARTTLS; an MX does not, so drop it.
        kept = [r for r in responses if not r[4:].upper().startswith("AUTH")]
        if not self._eightbitmime:
            kept = [r for r in kept if r[4:].upper() != "8BITMIME"]
        if self._pipelining:
            # aiosmtpd handles pipelined groups correctly but never advertises it (§8).
            kept.insert(len(kept) - 1, "250-PIPELINING")
        return kept

    async def handle_MAIL(
        self,
        server: _ReceiverSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        # aiosmtpd accepts BODY=8BITMIME even when it did not offer it; a strict MX does not,
        # which lets tests catch a client sending options that were not advertised.
        if not self._eightbitmime and "BODY=8BITMIME" in mail_options:
            return NO_8BITMIME_REPLY
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        self._state.count_transaction(server.conn_id)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self,
        server: _ReceiverSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        attempts = self._state.count_rcpt(address)
        scenario = scenario_for(address)
        match scenario.behaviour:
            case Behaviour.TEMPFAIL:
                return TEMPFAIL_REPLY
            case Behaviour.PERMFAIL:
                return PERMFAIL_REPLY
            case Behaviour.FLAKY if attempts <= scenario.flaky_count:
                return FLAKY_REPLY
            case Behaviour.CLOSERCPT:
                server.abort_connection()
                await _park()
            case Behaviour.RCPT421:
                await server.push(RCPT421_REPLY)
                server.close_connection()
                await _park()
            case Behaviour.STALL:
                await self._stall()
            case _:
                pass
        # With a hook, aiosmtpd leaves accepting the recipient to us (§8).
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def _stall(self) -> None:
        with self._state.lock:
            if self._state.stall_released:
                return
            self._state.stalled += 1
        try:
            await asyncio.wait_for(self.release.wait(), self._stall_timeout)
        except TimeoutError:
            pass
        finally:
            with self._state.lock:
                self._state.stalled -= 1

    async def handle_DATA(self, server: _ReceiverSMTP, session: Session, envelope: Envelope) -> str:
        rcpts = tuple(envelope.rcpt_tos)
        outcome = self._state.data_outcome(rcpts)
        if outcome is _DataOutcome.REJECT_PERM:
            return DATAFAIL_REPLY
        if outcome is _DataOutcome.REJECT_TEMP:
            return DATATEMPFAIL_REPLY
        assert envelope.mail_from is not None and envelope.original_content is not None
        number = self._state.record(
            Received(
                mail_from=envelope.mail_from,
                rcpt_tos=rcpts,
                data=envelope.original_content,
                peer=server.peer_ip,
                conn_id=server.conn_id,
                mail_options=tuple(envelope.mail_options),
                rcpt_options=tuple(envelope.rcpt_options),
                tls=session.ssl is not None,
                dropped=outcome is _DataOutcome.DROP,
                at=time.time(),
            )
        )
        if outcome is _DataOutcome.DROP:
            server.abort_connection()
            await _park()
        return f"250 2.0.0 OK queued as {number} (test)"


class _ReceiverSMTP(SMTP):
    """aiosmtpd's protocol plus connection accounting; aiosmtpd has no connection hook (§8)."""

    def __init__(self, handler: _Handler, *, state: _State, **kwargs: Any) -> None:
        # aiosmtpd keeps command_size_limits in one class-level dict that every new
        # connection clear()s and every EHLO grows; give each connection its own.
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        super().__init__(handler, **kwargs)
        self._state = state
        self._admission: _Admission | None = None
        self.conn_id = 0
        self.peer_ip = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # aiosmtpd calls this again with the TLS transport after STARTTLS: count only once.
        if self.transport is None and self._admission is None:
            sockaddr = transport.get_extra_info("peername")
            peer = (sockaddr[0], sockaddr[1]) if sockaddr else None
            self.peer_ip = peer[0] if peer else ""
            self._admission, self.conn_id, refusal = self._state.admit(self, peer)
            if refusal is not None:
                # Before aiosmtpd's connection_made, so its 220 is never sent. (uvloop's
                # transports do not subclass asyncio's ABCs, hence the cast.)
                writer = cast(asyncio.WriteTransport, transport)
                writer.write(refusal)
                writer.close()
                return
        super().connection_made(transport)

    def _refused(self) -> bool:
        return self._admission in (_Admission.GREETING, _Admission.TOO_MANY)

    def eof_received(self) -> bool | None:
        return False if self._refused() else super().eof_received()

    def connection_lost(self, error: Exception | None) -> None:
        self._state.release(self)
        if not self._refused():  # aiosmtpd never set up a session for a refused connection
            super().connection_lost(error)

    def abort_connection(self) -> None:
        if self.transport is not None:
            cast(asyncio.WriteTransport, self.transport).abort()

    def close_connection(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _Controller(Controller):
    """aiosmtpd's threaded controller with our protocol, a recognisable start() probe, and
    a start() that fails fast when the bind fails."""

    def __init__(self, handler: _Handler, state: _State, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._state = state

    def factory(self) -> _ReceiverSMTP:
        return _ReceiverSMTP(self.handler, state=self._state, loop=self.loop, **self.SMTP_kwargs)

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
        self._stall_timeout = stall_timeout
        self._state = _State(greeting, max_connections)
        self._controller: _Controller | None = None
        self._handler: _Handler | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Listen on ip:port. Raises OSError if the address is taken."""
        if self._controller is not None:
            raise RuntimeError(f"{self!r} is already running")
        handler = _Handler(
            self._state,
            pipelining=self._pipelining,
            eightbitmime=self._eightbitmime,
            stall_timeout=self._stall_timeout,
        )
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
            require_starttls=False,
            timeout=SESSION_TIMEOUT,
        )
        controller.start()
        self._controller, self._handler = controller, handler

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


def self_signed_context(
    hostname: str, directory: Path | None = None
) -> tuple[ssl.SSLContext, Path]:
    """A server SSLContext with a fresh self-signed certificate for `hostname`.

    The certificate names `hostname` as a DNS name, or as an IP address if it is one, so a
    client that trusts the returned PEM file (`ssl.create_default_context(cafile=path)`)
    verifies it. The key is EC P-256: a 2048-bit RSA key takes 50-100 ms to generate.

    Args:
        hostname: the name (or IP) clients will check.
        directory: where to write `cert.pem`; default a temporary directory removed at exit.

    Returns:
        (server context for `Receiver(tls_context=...)`, path of the PEM certificate).
    """
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="volley-tls-"))
        atexit.register(shutil.rmtree, directory, True)
    cert_path, key_path = write_self_signed(hostname, directory)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    key_path.unlink()  # the context holds the key; only the certificate is needed on disk
    return ctx, cert_path


def write_self_signed(hostname: str, directory: Path) -> tuple[Path, Path]:
    """Write a throw-away self-signed certificate for `hostname` (a DNS name or an IP) and
    its key as PEM files in `directory`; returns (cert path, key path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        alt = x509.DNSName(hostname)
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
