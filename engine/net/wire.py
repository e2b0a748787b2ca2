"""The wire under one SMTP client session: asyncio callbacks <-> engine.smtp.ClientProtocol.

Responsible for: one TCP (then maybe TLS) connection's transport callbacks, feeding the
bytes to the sans-IO protocol, writing what it makes due, one timer for the reply that is
due, and waking the task waiting for a reply or a failure.
Not responsible for: opening connections, EHLO/STARTTLS decisions or transactions as
values (engine.net.session drives this), or any protocol logic (engine.smtp).

Why an `asyncio.Protocol` and not StreamReader/StreamWriter: this is the hot path.  Bytes
go straight from `data_received` into the sans-IO protocol, and whatever it answers
(the next lock-step command, or the content after a 354) is written from the same
callback, so the task that called `send` wakes once per transaction, not once per reply.
One exception: when the replies just read finish the transaction the task waits for and
also make bytes due (the next pipelined transaction's content), those bytes wait one loop
turn (`call_soon`): the woken task usually begins another transaction first, whose
envelope then leaves in the same write as that content (engine.smtp.pipeline), and if it
does not, the turn's flush writes them alone.
Measured against a minimal pipelining sink in another process (5 KB message, 1 RCPT, this
2-core VM): 38-42 µs client CPU per message over 20 connections under uvloop (46-68 µs
over one; 79-121 µs on the stdlib loop), of which ~22 µs is engine.smtp.  aiosmtplib
needs 250-300 µs and cannot pipeline (dependency-facts §1.9).

Deadlines bound whole phases, not reads (issue #11).  A phase is the run of replies
bounded by one SmtpTimeouts field: the greeting, EHLO (and a HELO after it), STARTTLS,
MAIL, every RCPT of a transaction, DATA, end of data, RSET, QUIT.  Its clock starts when
its first reply becomes due (the command was written, or the previous phase's last reply
arrived) and is not restarted by the bytes or replies within it, so a server dripping one
byte every 100 ms, or answering 1 000 RCPTs one just before the other's timeout, is cut
off when the phase's time is up.  (Postfix restarts per reply, as RFC 5321 §4.5.3.2's
per-command minimums allow; its smtp_per_record_deadline is the same idea, off by
default.)  The content has no deadline of its own: each stall of the write (between
pause_writing and resume_writing) may last `data_block`; once the transport has taken the
content (no pause pending), `data_done` covers the end-of-data reply.  Over everything,
the connection's `lifetime`: no deadline ever ends later than it, and a session past it
is not reused.
"""

from __future__ import annotations

import asyncio
from typing import cast

from engine.model import FailureKind, Phase, SmtpTimeouts, TransportFailure
from engine.smtp import ClientProtocol, Command, RemoteProtocolError, State
from engine.smtp.transaction import Txn

__all__ = ["XFER", "Wire"]

# Per command whose reply is due: the Phase a failure is reported in and the SmtpTimeouts
# field that bounds the wait (Postfix smtp_proto.c xfer_states[] / xfer_timeouts[]).
XFER: dict[Command, tuple[Phase, str]] = {
    Command.GREETING: (Phase.GREETING, "greeting"),
    Command.EHLO: (Phase.EHLO, "ehlo"),
    Command.HELO: (Phase.EHLO, "ehlo"),
    Command.STARTTLS: (Phase.STARTTLS, "starttls"),
    Command.AUTH: (Phase.AUTH, "ehlo"),  # part of opening the session, bounded like EHLO
    Command.MAIL: (Phase.MAIL, "mail"),
    Command.RCPT: (Phase.RCPT, "rcpt"),
    Command.DATA: (Phase.DATA, "data"),
    Command.END_OF_DATA: (Phase.BODY, "data_done"),  # "data_block" while the write stalls
    Command.RSET: (Phase.RSET, "rset"),
    Command.QUIT: (Phase.QUIT, "quit"),
}


class Wire(asyncio.Protocol):
    """One TCP (then maybe TLS) connection: asyncio callbacks <-> ClientProtocol.

    It arms one timer for the reply that is due, writes whatever the protocol makes due,
    and wakes the waiting task when nothing is outstanding any more or the connection
    failed.  `failure` records the first transport problem; the protocol is then BROKEN.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        timeouts: SmtpTimeouts,
        lifetime: float | None = None,
    ) -> None:
        """`lifetime`: seconds from now after which the connection is given up, whatever
        it is doing (None: no limit)."""
        self.loop = loop
        self.timeouts = timeouts
        self.lifetime = lifetime
        self.ends = loop.time() + lifetime if lifetime is not None else float("inf")
        self.proto = ClientProtocol()
        self.transport: asyncio.Transport | None = None
        self.failure: TransportFailure | None = None
        self.is_lost = False
        self._lost: asyncio.Future[None] = loop.create_future()
        self._waiter: asyncio.Future[None] | None = None
        self._until: Txn | None = None  # the transaction the waiter waits for (None: all)
        self._flush_due = False  # a call_soon(_flush) is pending
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None  # loop.time() by which the due reply must come
        self._delay = 0.0  # the timeout that deadline came from (for messages)
        self._due: Command | None = None  # the reply the clock is running for
        self._phase = ""  # the SmtpTimeouts field whose deadline is running
        self._paused = False

    # ------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._rearm()  # the greeting is due

    def data_received(self, data: bytes) -> None:
        proto = self.proto
        try:
            replies = proto.feed(data)
        except RemoteProtocolError as exc:
            broken_at = proto.broken_at
            self.fail(FailureKind.PROTOCOL, str(exc), XFER[broken_at][0] if broken_at else None)
            return
        if not replies:
            return
        until = self._until
        if until is not None and until.done and self._waiter is not None and proto.has_output:
            # The waiter wakes (its transaction is done) and will likely begin the next:
            # let that one's envelope join these bytes (module docstring).
            self._rearm()
            if not self._flush_due:
                self._flush_due = True
                self.loop.call_soon(self._flush)
            return
        out = proto.data_to_send()
        if out and self.transport is not None:
            self.transport.write(out)  # may call pause_writing() synchronously
        self._rearm()

    def eof_received(self) -> bool | None:
        if self._due is not None:
            self.fail(FailureKind.CLOSED, "connection closed by peer")
        else:
            self.proto.receive_eof()
        return None  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_lost = True
        if self._due is not None:
            self.fail(FailureKind.CLOSED, f"connection lost: {exc or 'closed by peer'}")
        elif self.proto.state is not State.BROKEN:
            self.proto.receive_eof()
        self._cancel_timer()
        if not self._lost.done():
            self._lost.set_result(None)
        self._wake()

    def pause_writing(self) -> None:
        self._paused = True
        if self._due is Command.END_OF_DATA:
            self._rearm(restart=True)  # a stall starts: data_block from now

    def resume_writing(self) -> None:
        self._paused = False
        if self._due is Command.END_OF_DATA:
            self._rearm(restart=True)  # content flushed (or flowing again)

    # ------------------------------------------------------------ driving

    @property
    def expired(self) -> bool:
        """The connection has outlived its lifetime: start nothing new on it."""
        return self.loop.time() >= self.ends

    def write(self, data: bytes) -> None:
        """Write bytes the protocol produced and start the clock for the reply due."""
        if self.transport is None or self.is_lost or self.transport.is_closing():
            self._due = self.proto.awaiting()
            self.fail(FailureKind.CLOSED, "connection already closed")
            return
        self.transport.write(data)
        self._rearm()

    def _flush(self) -> None:
        """The deferred write of data_received, unless a `write` took the bytes first."""
        self._flush_due = False
        if self.failure is not None or self.is_lost:
            return
        out = self.proto.data_to_send()
        if out:
            self.write(out)

    async def wait(self, until: Txn | None = None) -> None:
        """Until no reply is outstanding (`until` None) or transaction `until` is done,
        or the connection failed."""
        if self.failure is not None:
            return
        if until is None:
            if self._due is None:
                return
        elif until.done:
            return
        waiter = self.loop.create_future()
        self._waiter = waiter
        self._until = until
        try:
            await waiter
        finally:
            self._waiter = None
            self._until = None

    def fail(self, kind: FailureKind, detail: str, phase: Phase | None = None) -> None:
        """Record the first failure, break the protocol, abort the transport, wake."""
        if self.failure is None:
            if phase is None:
                phase = XFER[self._due][0] if self._due is not None else Phase.CONNECT
            self.failure = TransportFailure(phase, kind, detail)
        self.proto.abort()
        self._due = None
        self._cancel_timer()
        if self.transport is not None and not self.is_lost:
            self.transport.abort()
        self._wake()

    def detach(self) -> None:
        """The transport was handed to a TLS handshake that failed; asyncio closed it
        and may never call our connection_lost."""
        self.proto.abort()
        self._cancel_timer()
        self.is_lost = True
        if not self._lost.done():
            self._lost.set_result(None)

    async def closed(self, timeout: float) -> None:
        """Close the transport (gracefully, flushing, unless it failed) and wait until
        asyncio has released the socket; abort after `timeout`."""
        if self.transport is not None and not self.is_lost:
            if self.failure is None:
                self.transport.close()
            else:
                self.transport.abort()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._lost)
        except TimeoutError:
            if self.transport is not None:
                self.transport.abort()
            await asyncio.shield(self._lost)

    # ------------------------------------------------------------ timer

    def _rearm(self, *, restart: bool = False) -> None:
        """Run the clock for the reply now due; wake the waiter when none is.

        A new deadline starts when the due reply belongs to another phase than the one
        whose clock is running (or `restart`: the content's write stalled or resumed);
        within a phase the deadline stays.  The clock is a deadline plus at most one
        TimerHandle that re-checks it when it fires, instead of a cancel + call_later per
        reply: a reply that arrives in time (nearly all of them) then costs a
        `loop.time()` call, not a heap push and a cancelled handle.
        """
        due = self._due = self.proto.awaiting()
        if due is None:
            self._deadline = None
            self._phase = ""
            if self.proto.state is State.CLOSED and self.transport is not None:
                self.transport.close()  # 421 or QUIT answered: the server is closing
            self._wake()
            return
        until = self._until
        if until is not None and until.done:
            self._wake()  # the transaction waited for is done; later ones are in flight
        if due is Command.END_OF_DATA and self._paused:
            phase = "data_block"
        else:
            phase = XFER[due][1]
        if not restart and phase == self._phase and self._deadline is not None:
            return  # the same phase goes on: its deadline stands
        self._phase = phase
        delay = self._delay = getattr(self.timeouts, phase)
        deadline = self._deadline = min(self.loop.time() + delay, self.ends)
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return  # nothing outstanding any more
        if self.loop.time() < deadline:
            self._timer = self.loop.call_at(deadline, self._on_timer)  # moved on since
            return
        due = self._due
        if deadline >= self.ends:
            detail = f"connection lifetime of {self.lifetime:g}s reached"
        elif due is Command.END_OF_DATA and self._paused:
            detail = f"content write stalled for {self._delay:g}s"
        else:
            detail = f"no reply to {due.value if due else '?'} within {self._delay:g}s"
        self.fail(FailureKind.TIMEOUT, detail)

    def _cancel_timer(self) -> None:
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
