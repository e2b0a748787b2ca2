"""One test receiver's SMTP sessions: aiosmtpd hooks and protocol, and what they record.

Responsible for:
  * `Handler`: aiosmtpd's `handle_<VERB>` hooks. They carry out what each recipient's
    scenario asks for (tests.support.receiver_scenarios), advertise PIPELINING / 8BITMIME
    as switched, refuse an unadvertised BODY=8BITMIME, and hold `stall` RCPT replies;
    as a relay (`users`), they offer AUTH and check the passwords (`authenticator`).
  * `ReceiverSMTP`: aiosmtpd's protocol plus connection accounting (aiosmtpd has no
    connection hook): the configured non-220 greeting, the max_connections 421, connection
    ids, aborting or closing a connection on purpose, and counting every AUTH command
    (also those aiosmtpd refuses before asking the authenticator).
  * `State`: everything a receiver records (`Received` messages, RCPT attempts, connection
    and transaction counts), shared by its loop thread and the test thread under one lock.

Not responsible for:
  * Threads, event loops, listening, start/stop and the start() probe (tests.support.receiver).
  * Choosing a behaviour from an address (tests.support.receiver_scenarios).
  * Certificates for STARTTLS (tests.support.tls_certs).

Invariants:
  * Only messages whose end-of-data was reached and not rejected are recorded; a transaction
    whose recipients were all refused never is. `dropdata` messages are recorded with
    `dropped=True`: the receiver HAS them, the sender cannot know (duplicate-on-retry case).
  * Counters exclude the probe connection aiosmtpd's `Controller.start()` opens to itself
    (dependency-facts §8): it is recognised by the source address the probe binds, which
    tests.support.receiver stores in `State.probe_peer` before connecting.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import threading
import time
from dataclasses import dataclass
from typing import Any, cast

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.support.receiver_scenarios import (
    DATAFAIL_REPLY,
    DATATEMPFAIL_REPLY,
    FLAKY_REPLY,
    PERMFAIL_REPLY,
    RCPT421_REPLY,
    TEMPFAIL_REPLY,
    Behaviour,
    scenario_for,
)

__all__ = [
    "NO_8BITMIME_REPLY",
    "TOO_MANY_REPLY",
    "Handler",
    "Received",
    "ReceiverSMTP",
    "State",
]

TOO_MANY_REPLY = "421 4.7.0 too many connections"
NO_8BITMIME_REPLY = "555 5.5.4 BODY=8BITMIME not supported (test)"


@dataclass(frozen=True, slots=True)
class Received:
    """One message as the receiver got it.

    `data` is aiosmtpd's `envelope.original_content`: the bytes after dot-unstuffing, CRLFs
    kept. `peer` is the client's IP (the source address Volley bound). `conn_id` numbers this
    receiver's connections from 1. `mail_options` are upper-cased by aiosmtpd; `rcpt_options`
    are those of the accepted RCPTs, concatenated. `at` is wall-clock `time.time()`. `helo` is
    the name the client gave in its last EHLO/HELO on the connection.
    `auth_user` is who logged in on the session ("" when nobody did).
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
    auth_user: str = ""
    helo: str = ""


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


class State:
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
        self.open: dict[ReceiverSMTP, _Admission] = {}
        self.live = 0  # open SESSION connections
        self.peak = 0
        # The same per client address (the source address Volley bound).
        self.live_by_peer: collections.Counter[str] = collections.Counter()
        self.peak_by_peer: dict[str, int] = {}
        self.total = 0
        self.rejected = 0
        self.next_conn_id = 0
        self.stalled = 0
        self.stall_released = False
        self.auth_commands = 0  # AUTH lines received, refused ones included
        self.logins: list[tuple[str, str, bool]] = []  # (mechanism, user, accepted)

    def admit(
        self, proto: ReceiverSMTP, peer: tuple[str, int] | None
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
                    ip = proto.peer_ip
                    self.live_by_peer[ip] += 1
                    self.peak_by_peer[ip] = max(self.peak_by_peer.get(ip, 0), self.live_by_peer[ip])
                if kind is not _Admission.SESSION:
                    self.rejected += 1
            self.open[proto] = kind
        return kind, conn_id, refusal

    def release(self, proto: ReceiverSMTP) -> None:
        with self.lock:
            if self.open.pop(proto, None) is _Admission.SESSION:
                self.live -= 1
                self.live_by_peer[proto.peer_ip] -= 1

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


def _login(session: Session) -> str:
    data = session.auth_data  # (login_data is deprecated: a warning, an error in tests)
    return data.login.decode("utf-8", "replace") if isinstance(data, LoginPassword) else ""


async def _park() -> None:
    """Wait until the session task is cancelled: aiosmtpd's connection_lost cancels it after
    we close or abort the transport, so the hook never returns a reply to send."""
    await asyncio.get_running_loop().create_future()


class Handler:
    """aiosmtpd hooks (`handle_<VERB>`), one per running server."""

    def __init__(
        self,
        state: State,
        *,
        pipelining: bool,
        eightbitmime: bool,
        stall_timeout: float,
        users: dict[str, str] | None = None,
    ) -> None:
        self._state = state
        self._pipelining = pipelining
        self._eightbitmime = eightbitmime
        self._users = users
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
        # aiosmtpd always offers AUTH after STARTTLS; an MX does not, so drop it (a relay
        # with users keeps it).
        kept = responses
        if self._users is None:
            kept = [r for r in responses if not r[4:].upper().startswith("AUTH")]
        if not self._eightbitmime:
            kept = [r for r in kept if r[4:].upper() != "8BITMIME"]
        if self._pipelining:
            # aiosmtpd handles pipelined groups correctly but never advertises it (§8).
            kept.insert(len(kept) - 1, "250-PIPELINING")
        return kept

    def authenticator(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        """aiosmtpd's check of a LOGIN or PLAIN login against `users`."""
        assert isinstance(data, LoginPassword) and self._users is not None
        user = data.login.decode("utf-8", "replace")
        ok = self._users.get(user, None) == data.password.decode("utf-8", "replace")
        with self._state.lock:
            self._state.logins.append((mechanism, user, ok))
        # handled=False: aiosmtpd answers 235 or 535 itself.
        return AuthResult(success=ok, handled=False, auth_data=data)

    async def handle_MAIL(
        self,
        server: ReceiverSMTP,
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
        server: ReceiverSMTP,
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

    async def handle_DATA(self, server: ReceiverSMTP, session: Session, envelope: Envelope) -> str:
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
                auth_user=_login(session),
                helo=session.host_name or "",
            )
        )
        if outcome is _DataOutcome.DROP:
            server.abort_connection()
            await _park()
        return f"250 2.0.0 OK queued as {number} (test)"


class ReceiverSMTP(SMTP):
    """aiosmtpd's protocol plus connection accounting; aiosmtpd has no connection hook (§8)."""

    def __init__(self, handler: Handler, *, state: State, **kwargs: Any) -> None:
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
        if self.session is not None and self.session.ssl is None:
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is not None:  # implicit TLS: aiosmtpd records only STARTTLS's
                self.session.ssl = {"ssl_object": ssl_object}

    async def smtp_AUTH(self, arg: str) -> None:
        with self._state.lock:
            self._state.auth_commands += 1
        await super().smtp_AUTH(arg)

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
