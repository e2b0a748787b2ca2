"""engine.net.wire: its per-command table, and its deadlines on a fake clock (the
transport behaviour is driven end to end through real sockets in test_session.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import cast

import pytest

from engine.model import FailureKind, Phase, SmtpTimeouts, Transaction
from engine.net.session import SmtpSession
from engine.net.wire import XFER, Wire
from engine.smtp import Command
from engine.smtp.transaction import Txn


def test_every_command_has_a_phase_and_a_timeout_field() -> None:
    # A reply can be due for any command; a missing row would be a KeyError in a timer.
    assert set(XFER) == set(Command)
    fields = set(SmtpTimeouts.__dataclass_fields__)
    assert {field for _, field in XFER.values()} <= fields
    assert XFER[Command.END_OF_DATA][1] == "data_done"  # not one timeout for the whole DATA


# -- whole-phase deadlines and the connection's lifetime (issue #11), on a fake clock ----


class FakeHandle:
    def __init__(self, loop: FakeLoop, when: float, callback: Callable[[], None]) -> None:
        self.loop, self._when, self.callback, self.cancelled = loop, when, callback, False

    def when(self) -> float:
        return self._when

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """The three things Wire asks of its loop, with time moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.timers: list[FakeHandle] = []
        self._real = asyncio.new_event_loop()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> FakeHandle:
        handle = FakeHandle(self, when, callback)
        self.timers.append(handle)
        return handle

    def create_future(self) -> asyncio.Future[None]:
        return self._real.create_future()

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for handle in sorted(self.timers, key=FakeHandle.when):
            if handle.when() <= self.now and not handle.cancelled and handle in self.timers:
                self.timers.remove(handle)
                handle.callback()

    def close(self) -> None:
        self._real.close()


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.aborted = True


TIMEOUTS = SmtpTimeouts(greeting=10.0, ehlo=10.0, mail=10.0, rcpt=10.0, data=10.0)


def wire_on(loop: FakeLoop, lifetime: float | None = None) -> tuple[Wire, FakeTransport]:
    wire = Wire(cast(asyncio.AbstractEventLoop, loop), TIMEOUTS, lifetime)
    transport = FakeTransport()
    wire.connection_made(cast(asyncio.Transport, transport))
    return wire, transport


@pytest.fixture
def loop() -> Iterator[FakeLoop]:
    fake = FakeLoop()
    yield fake
    fake.close()


def test_a_greeting_dripped_a_byte_at_a_time_is_cut_off_when_the_phase_ends(
    loop: FakeLoop,
) -> None:
    wire, transport = wire_on(loop)
    for byte in b"220-" + b"x" * 95:  # one byte every 100 ms: 9.9 s, no reply completes
        wire.data_received(bytes([byte]))
        loop.advance(0.1)
        assert wire.failure is None
    loop.advance(0.2)
    assert wire.failure is not None and wire.failure.kind is FailureKind.TIMEOUT
    assert wire.failure.phase is Phase.GREETING and transport.aborted


def ready_wire(loop: FakeLoop, lifetime: float | None = None) -> tuple[Wire, FakeTransport]:
    wire, transport = wire_on(loop, lifetime)
    wire.data_received(b"220 mx ESMTP\r\n")
    wire.write(wire.proto.send_ehlo("client.example"))
    wire.data_received(b"250-mx\r\n250 PIPELINING\r\n")
    assert wire.proto.is_reusable()
    return wire, transport


def test_rcpt_replies_share_one_deadline_not_one_each(loop: FakeLoop) -> None:
    """Before: each of 1 000 RCPT replies restarted a 5-minute clock (83 hours in all)."""
    wire, _ = ready_wire(loop)
    rcpts = [f"u{i}@d.example" for i in range(20)]
    wire.write(wire.proto.begin_transaction("s@b.example", rcpts, b"x\r\n"))
    loop.advance(1.0)
    wire.data_received(b"250 sender ok\r\n")  # MAIL answered: the RCPT phase's 10 s start
    for _ in range(19):  # one RCPT reply every 0.5 s: each in time, the phase is not
        loop.advance(0.5)
        wire.data_received(b"250 rcpt ok\r\n")
        assert wire.failure is None
    loop.advance(0.6)  # 10.1 s since the RCPT phase began
    assert wire.failure is not None and wire.failure.phase is Phase.RCPT
    assert "within 10s" in wire.failure.detail


def test_each_phase_gets_its_own_full_time(loop: FakeLoop) -> None:
    wire, _ = ready_wire(loop)
    wire.write(wire.proto.begin_transaction("s@b.example", ["u@d.example"], b"x\r\n"))
    loop.advance(9.0)
    wire.data_received(b"250 sender ok\r\n")  # MAIL at 9 s of 10
    loop.advance(9.0)
    wire.data_received(b"250 rcpt ok\r\n")  # RCPT at 9 s of 10
    loop.advance(9.0)
    wire.data_received(b"354 go\r\n")  # DATA at 9 s of 10
    loop.advance(9.0)
    wire.data_received(b"250 queued\r\n")
    assert wire.failure is None and wire.proto.is_reusable()


def test_the_connection_lifetime_bounds_every_deadline(loop: FakeLoop) -> None:
    wire, _ = ready_wire(loop, lifetime=15.0)
    loop.advance(10.0)
    assert not wire.expired
    wire.write(wire.proto.begin_transaction("s@b.example", ["u@d.example"], b"x\r\n"))
    loop.advance(5.0)  # MAIL's 10 s would end at 20 s; the lifetime ends at 15 s
    assert wire.failure is not None and wire.failure.kind is FailureKind.TIMEOUT
    assert "lifetime of 15s" in wire.failure.detail and wire.expired


# -- pipelined transactions: one write per message (engine.smtp.pipeline) ---------------


def test_the_next_envelope_joins_the_content_in_one_write_per_message() -> None:
    """The replies that finish t1 also make t2's content due; the write waits one loop
    turn, so t3's envelope (begun by the task t1's end wakes) leaves in the same write."""

    def txn(n: int) -> Transaction:
        return Transaction("s@b.example", (f"u{n}@d.example",), b"body %d\r\n" % n)

    async def scenario() -> list[bytes]:
        loop = asyncio.get_running_loop()
        wire = Wire(loop, TIMEOUTS)
        transport = FakeTransport()
        wire.connection_made(cast(asyncio.Transport, transport))
        wire.data_received(b"220 mx ESMTP\r\n")
        wire.write(wire.proto.send_ehlo("client.example"))
        wire.data_received(b"250-mx\r\n250 PIPELINING\r\n")
        session = SmtpSession(wire, "127.0.0.2", 25, "mx.test", False)
        transport.written.clear()
        t1 = session.start(txn(1))
        t2 = session.start(txn(2))  # staged behind t1's DATA

        async def deliver_next() -> Txn:
            result = await session.result(t1)
            assert result.final is not None and result.final.code == 250
            return session.start(txn(3))  # what delivery does once t1's outcome is in

        task = asyncio.create_task(deliver_next())
        await asyncio.sleep(0)
        wire.data_received(b"250 ok\r\n250 ok\r\n354 go\r\n")
        wire.data_received(b"250 queued 1\r\n250 ok\r\n250 ok\r\n354 go\r\n")
        t3 = await task
        await asyncio.sleep(0)  # the deferred flush's turn: nothing is left for it
        wire.data_received(b"250 queued 2\r\n250 ok\r\n250 ok\r\n354 go\r\n")
        wire.data_received(b"250 queued 3\r\n")
        for handle in (t2, t3):
            result = await session.result(handle)
            assert result.failure is None and result.final is not None
        assert session.transactions == 3 and session.is_reusable()
        return transport.written

    written = asyncio.run(asyncio.wait_for(scenario(), 5))
    env = b"MAIL FROM:<s@b.example>\r\nRCPT TO:<u%d@d.example>\r\nDATA\r\n"
    assert written == [
        env % 1,
        b"body 1\r\n.\r\n" + env % 2,
        b"body 2\r\n.\r\n" + env % 3,  # one write: the content and the next envelope
        b"body 3\r\n.\r\n",
    ]
