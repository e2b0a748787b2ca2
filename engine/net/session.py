"""SMTP client sessions over asyncio: engine.smtp.ClientProtocol plus sockets and timers.

Responsible for: opening a connection to one MX address (bind the source IP, greeting,
EHLO/HELO, opportunistic, required or verified STARTTLS; to a relay also implicit TLS and
AUTH, engine.net.relay), running transactions on it with per-phase timeouts
(`SmtpTimeouts`) — one at a time (`send`), or pipelined behind each other (`start` now,
`result` later; RFC 2920) — and reporting everything as values: `TxnResult`,
`ConnectFailure`, `TransportFailure`.  Network trouble never raises; only
`CancelledError` (and `LocalProtocolError` for caller bugs) leave this module.
Not responsible for: protocol logic (engine.smtp decides every byte and every state),
choosing MX hosts or connections (engine.runtime.delivery), or what a reply means
(engine.sched.classify).

The wire itself (callbacks, timers, the reply waits) is engine.net.wire.
"""

from __future__ import annotations

import asyncio
import ssl

from engine.config.routes import Relay, RelayTls
from engine.model import (
    ConnectFailure,
    FailureKind,
    Phase,
    SmtpTimeouts,
    TlsPolicy,
    Transaction,
    TransportFailure,
    TxnResult,
)
from engine.net.relay import authenticate
from engine.net.results import txn_result
from engine.net.tls import (
    STARTTLS_NOT_OFFERED,
    STARTTLS_REFUSED,
    handshake,
    opportunistic_context,
    verify_context,
)
from engine.net.wire import XFER, Wire
from engine.smtp import (
    LocalProtocolError,
    Reply,
    State,
)
from engine.smtp.transaction import Txn

__all__ = ["SmtpSession", "open_session"]


# Policies under which no STARTTLS (or a failed handshake) means no session.
_MUST_ENCRYPT = frozenset({TlsPolicy.REQUIRED, TlsPolicy.VERIFY})


class SmtpSession:
    """An open, greeted (and maybe TLS-protected) SMTP connection to one MX address.

    Runs transactions one at a time (`send`), or, when the server offers PIPELINING,
    several in flight (`start` each while `can_start()`, then `result` of each in the
    order they were started).  Reuse it only while `is_reusable()`; a session that saw a
    transport failure, a cancellation or a 421 never becomes reusable again.
    """

    def __init__(self, wire: Wire, address: str, port: int, mx_host: str, tls_active: bool) -> None:
        self._wire = wire
        self._busy = False
        self.address = address
        self.port = port
        self.mx_host = mx_host
        self.tls_active = tls_active
        self.tls_fallback: str | None = None
        """Why STARTTLS failed when an OPPORTUNISTIC session went on in plaintext."""
        self.transactions = 0
        """Transactions completed on this connection (every reply received, accepted or
        not); the pool's messages-per-connection cap counts these."""

    def __repr__(self) -> str:
        state = self._wire.proto.state.value
        return (
            f"<SmtpSession {self.mx_host}[{self.address}]:{self.port} {state}"
            f" tls={self.tls_active} txns={self.transactions}>"
        )

    @property
    def state(self) -> State:
        return self._wire.proto.state

    @property
    def greeting(self) -> Reply | None:
        return self._wire.proto.greeting

    def supports(self, keyword: str) -> bool:
        """Whether the server's EHLO offered `keyword` (case-insensitive)."""
        return self._wire.proto.supports(keyword)

    @property
    def size_limit(self) -> int | None:
        """SIZE from EHLO (RFC 1870); None when absent or 0 (no limit)."""
        return self._wire.proto.size_limit

    @property
    def failure(self) -> TransportFailure | None:
        """Why the session can no longer be used, if the peer or the transport ended it:
        the transport failure, or the server's 421 (RFC 5321 §3.8).  None while it is
        usable, and after a polite close or a local abort (those are not the peer's)."""
        wire = self._wire
        failure = wire.failure
        if failure is not None:
            return None if failure.kind is FailureKind.LOCAL else failure
        proto = wire.proto
        if proto.closing_reply is not None:
            command = proto.closing_command
            phase = XFER[command][0] if command is not None else Phase.MAIL
            return TransportFailure(
                phase, FailureKind.CLOSED, f"server closing: {proto.closing_reply}"
            )
        return None

    def abort(self, detail: str) -> None:
        """Give the session up at once (our own error: its state is unknown); it is never
        reusable afterwards and `failure` stays None (the peer is not to blame)."""
        self._wire.fail(FailureKind.LOCAL, detail)

    def is_reusable(self) -> bool:
        """Open, READY, nothing outstanding, not broken, not in use, not past its
        lifetime."""
        wire = self._wire
        return (
            not self._busy
            and not wire.is_lost
            and wire.failure is None
            and wire.proto.is_reusable()
            and not wire.expired
        )

    @property
    def in_flight(self) -> int:
        """Transactions started and not finished."""
        return self._wire.proto.in_flight

    def can_start(self) -> bool:
        """`start` may be called now: the session is usable and either idle or (the
        server offers PIPELINING) running transactions that another may follow."""
        wire = self._wire
        return (
            not wire.is_lost
            and wire.failure is None
            and not wire.expired
            and wire.proto.can_begin()
        )

    async def send(self, txn: Transaction) -> TxnResult:
        """Run one mail transaction and report every reply: `start`, then `result`.

        A session that cannot take it (`can_start()` false) gets no byte; the result then
        carries a CLOSED failure at MAIL.

        Raises:
            LocalProtocolError: as `start`, or a concurrent `send`/`result`.
            CancelledError: the session is then aborted and never reusable.
        """
        if self._busy:
            raise LocalProtocolError("send() already running on this session")
        wire = self._wire
        if not self.can_start():
            failure = wire.failure
            detail = f"session not usable (state {wire.proto.state.value})"
            if failure is not None:
                detail += f" after {failure.kind.value} in {failure.phase.value}"
            return TxnResult(
                None,
                (None,) * len(txn.recipients),
                None,
                None,
                TransportFailure(Phase.MAIL, FailureKind.CLOSED, detail),
            )
        return await self.result(self.start(txn))

    def start(self, txn: Transaction) -> Txn:
        """Begin a mail transaction now, behind those in flight; `result` reports it.

        With PIPELINING, MAIL, every RCPT and DATA go out in one write (RFC 2920), then the
        content after a 354; a transaction started while others are in flight leaves right
        behind the newest one's content, in the same write (engine.smtp.pipeline).
        Without PIPELINING, lock-step, one at a time.  SIZE, BODY=8BITMIME and SMTPUTF8
        are added per the server's EHLO.

        Raises:
            LocalProtocolError: caller bugs, before anything is sent: not `can_start()`,
                SMTPUTF8 needed but not offered (check `supports()` first), no recipients,
                an address that cannot be sent, a body not in wire form.
        """
        wire = self._wire
        proto = wire.proto
        if not self.can_start():
            raise LocalProtocolError(f"session cannot start a transaction ({self!r})")
        handle = proto.start_transaction(
            txn.sender,
            txn.recipients,
            txn.body,
            body_8bit=txn.body_8bit,
            smtputf8=txn.smtputf8,
        )
        out = proto.data_to_send()
        if out:
            wire.write(out)
        return handle

    async def result(self, handle: Txn) -> TxnResult:
        """Wait for a started transaction's last reply (or the connection's end) and
        report it.  Call it for each transaction in the order they were started.

        Raises:
            LocalProtocolError: another `result` or `send` is waiting on this session.
            CancelledError: the session is then aborted and never reusable.
        """
        if self._busy:
            raise LocalProtocolError("result() already waiting on this session")
        wire = self._wire
        if not handle.done:
            self._busy = True
            try:
                await wire.wait(handle)
            except asyncio.CancelledError:
                # The server may be mid-transaction: never reuse (dependency-facts §1.2,
                # aiosmtplib's "503 nested MAIL" after a cancelled send).
                wire.fail(FailureKind.CANCELLED, "send() cancelled")
                raise
            finally:
                self._busy = False
        replies = handle.result
        assert replies is not None  # done (the connection's failure finishes it too)
        result = txn_result(replies, wire.failure, wire.proto)
        if result.failure is None:
            self.transactions += 1
        return result

    async def close(self) -> None:
        """QUIT politely if the session is reusable (quit timeout), else abort.  Never
        raises (except CancelledError)."""
        wire = self._wire
        timeout = wire.timeouts.quit
        try:
            if self.is_reusable():
                wire.write(wire.proto.send_quit())
                await wire.wait()
            await wire.closed(timeout)
        except asyncio.CancelledError:
            wire.fail(FailureKind.CANCELLED, "close() cancelled")
            raise
        except Exception as exc:  # never raise from close(): the caller is cleaning up
            wire.fail(FailureKind.CLOSED, f"close failed: {exc!r}")


class _HandshakeFailed(Exception):
    """Opportunistic STARTTLS handshake failed: retry the MX in plaintext."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


async def open_session(
    address: str,
    port: int,
    *,
    mx_host: str,
    helo_name: str,
    source_address: str | None,
    tls: TlsPolicy,
    timeouts: SmtpTimeouts,
    ssl_context: ssl.SSLContext | None = None,
    lifetime: float | None = None,
    relay: Relay | None = None,
) -> SmtpSession | ConnectFailure:
    """Connect to one MX address and bring the session to READY.

    Connect (`connect` timeout), greeting (`greeting`), EHLO with HELO fallback on 5xx
    (`ehlo`), then STARTTLS when offered and `tls` is not DISABLED (`starttls`; EHLO again
    afterwards, RFC 3207).  Certificates are not verified unless `ssl_context` says so;
    under VERIFY without one, the system CA store and the `mx_host` name are checked.
    `lifetime` bounds the connection's whole life, this opening included (engine.net.wire).
    An OPPORTUNISTIC handshake failure reconnects once in plaintext; under REQUIRED and
    VERIFY a missing, refused or failed STARTTLS (a certificate that does not verify
    included) is a `ConnectFailure` of kind TLS, never a plaintext session.  To a `relay`,
    `relay.tls` IMPLICIT runs the handshake right after connect (RFC 8314 §3; `tls` is
    then DISABLED: no STARTTLS inside TLS), and `relay.auth` logs in after the last EHLO
    (engine.net.relay); a refused login is a `ConnectFailure` of kind AUTH.

    Returns:
        The session, or a ConnectFailure carrying the server's refusal (`reply`: a 421
        or 554 greeting, a refused EHLO+HELO) or what the transport did (`failure`).
    """

    async def attempt(starttls: bool) -> SmtpSession | ConnectFailure:
        return await _open(
            address,
            port,
            mx_host,
            helo_name,
            source_address,
            tls,
            timeouts,
            ssl_context,
            starttls,
            lifetime,
            relay,
        )

    if ssl_context is None and tls is TlsPolicy.VERIFY:
        ssl_context = verify_context(None)
    try:
        return await attempt(tls is not TlsPolicy.DISABLED)
    except _HandshakeFailed as failed:
        got = await attempt(False)  # RFC 3207 §4.1: the MTA may then go on in plaintext
        if isinstance(got, SmtpSession):
            got.tls_fallback = failed.detail
        return got


async def _open(
    address: str,
    port: int,
    mx_host: str,
    helo_name: str,
    source_address: str | None,
    tls: TlsPolicy,
    timeouts: SmtpTimeouts,
    ssl_context: ssl.SSLContext | None,
    starttls: bool,
    lifetime: float | None,
    relay: Relay | None = None,
) -> SmtpSession | ConnectFailure:
    loop = asyncio.get_running_loop()
    wire = Wire(loop, timeouts, lifetime)
    proto = wire.proto
    local_addr = (source_address, 0) if source_address else None
    try:
        async with asyncio.timeout(timeouts.connect):
            await loop.create_connection(lambda: wire, address, port, local_addr=local_addr)
    except TimeoutError:  # before OSError: TimeoutError is an OSError subclass
        return _failure(mx_host, address, Phase.CONNECT, FailureKind.TIMEOUT, "connect timed out")
    except OSError as exc:  # refused, unreachable, cannot bind source_address
        return _failure(mx_host, address, Phase.CONNECT, FailureKind.REFUSED, str(exc))

    # From here on the socket is open: every way out that is not a session closes it, and
    # every failure is a ConnectFailure value.  A session that is not READY must never be
    # returned: a dead one made the caller reconnect at once, 15 360 times in 2 s against
    # a server that closed on accept (issue #14, finding 1).
    try:
        tls_active = False
        if relay is not None and relay.tls is RelayTls.IMPLICIT:
            context = ssl_context or opportunistic_context()
            await handshake(wire, mx_host, context, phase=Phase.CONNECT)
            if wire.failure is not None:
                return ConnectFailure(mx_host, address, failure=wire.failure)
            tls_active = True
        if not await _until_ready(wire, helo_name, wait_greeting=True):
            return await _give_up(wire, mx_host, address)
        if starttls and proto.supports("STARTTLS"):
            wire.write(proto.send_starttls())
            await wire.wait()
            if wire.failure is not None:
                return await _give_up(wire, mx_host, address)
            if proto.state is State.TLS_HANDSHAKE:
                await handshake(wire, mx_host, ssl_context or opportunistic_context())
                if wire.failure is not None:
                    if tls is TlsPolicy.OPPORTUNISTIC and wire.failure.kind is FailureKind.TLS:
                        raise _HandshakeFailed(wire.failure.detail)
                    return ConnectFailure(mx_host, address, failure=wire.failure)
                tls_active = True
                if not await _until_ready(wire, helo_name, wait_greeting=False):
                    return await _give_up(wire, mx_host, address)
            elif not proto.is_reusable():  # 421 to STARTTLS
                return await _give_up(wire, mx_host, address)
            elif tls in _MUST_ENCRYPT:
                return await _quit_tls_failure(
                    wire, mx_host, address, f"{STARTTLS_REFUSED}: {proto.last_reply}"
                )
        elif tls in _MUST_ENCRYPT:
            return await _quit_tls_failure(wire, mx_host, address, STARTTLS_NOT_OFFERED)
        if relay is not None and relay.auth is not None:
            refused = await authenticate(wire, relay, encrypted=tls_active)
            if wire.failure is not None or proto.closing_reply is not None:
                return await _give_up(wire, mx_host, address)
            if refused is not None:
                return await _quit_failure(wire, mx_host, address, refused)
    except asyncio.CancelledError:
        wire.fail(FailureKind.CANCELLED, "open_session() cancelled")
        raise
    except _HandshakeFailed:
        raise
    except Exception as exc:
        # Our own fault (e.g. an EHLO name encode refuses): still a value, and the socket
        # closes; before, the socket leaked and "Too many open files" came within 2 s.
        wire.fail(FailureKind.LOCAL, f"{type(exc).__name__}: {exc}")
        await wire.closed(timeouts.quit)
        assert wire.failure is not None
        return ConnectFailure(mx_host, address, failure=wire.failure)
    return SmtpSession(wire, address, port, mx_host, tls_active)


async def _until_ready(wire: Wire, helo_name: str, *, wait_greeting: bool) -> bool:
    """Greeting (optionally) and EHLO, HELO after a 5xx to EHLO; True when READY.

    False: the session will not become ready; `wire.failure` says what the transport did
    (closed, timed out, protocol error), else the server refused (`_give_up` reads which
    reply).
    """
    proto = wire.proto
    if wait_greeting:
        await wire.wait()
        if wire.failure is not None or proto.state is not State.GREETED:
            return False
    wire.write(proto.send_ehlo(helo_name))
    await wire.wait()
    if wire.failure is not None:
        return False
    if proto.state is State.GREETED:  # EHLO refused, no 421
        reply = proto.last_reply
        if reply is None or reply.code // 100 != 5:
            return False  # 4xx: try later, not with HELO
        wire.write(proto.send_helo(helo_name))
        await wire.wait()
        if wire.failure is not None:
            return False
    return proto.state is State.READY


def _failure(
    mx_host: str, address: str, phase: Phase, kind: FailureKind, detail: str
) -> ConnectFailure:
    return ConnectFailure(mx_host, address, failure=TransportFailure(phase, kind, detail))


async def _give_up(wire: Wire, mx_host: str, address: str) -> ConnectFailure:
    """Close the connection and report why the session did not become ready: the
    transport failure if there was one, else the server's refusal."""
    failure = wire.failure
    proto = wire.proto
    await wire.closed(wire.timeouts.quit)
    if failure is not None:
        return ConnectFailure(mx_host, address, failure=failure)
    reply = proto.closing_reply or proto.last_reply
    if reply is None:  # the peer closed while idle, before saying anything we can report
        phase = Phase.GREETING if proto.greeting is None else Phase.EHLO
        return _failure(mx_host, address, phase, FailureKind.CLOSED, "closed without a reply")
    return ConnectFailure(mx_host, address, reply=reply)


async def _quit_tls_failure(wire: Wire, mx_host: str, address: str, detail: str) -> ConnectFailure:
    """TLS REQUIRED but unavailable: QUIT politely, report kind TLS."""
    failure = TransportFailure(Phase.STARTTLS, FailureKind.TLS, detail)
    return await _quit_failure(wire, mx_host, address, failure)


async def _quit_failure(
    wire: Wire, mx_host: str, address: str, failure: TransportFailure
) -> ConnectFailure:
    """The session is fine but must not be used (no TLS, AUTH refused): QUIT politely
    and report `failure`."""
    if wire.proto.is_reusable():
        wire.write(wire.proto.send_quit())
        await wire.wait()
    await wire.closed(wire.timeouts.quit)
    return ConnectFailure(mx_host, address, failure=failure)
