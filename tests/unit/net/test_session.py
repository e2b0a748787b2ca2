"""engine.net.session against real aiosmtpd servers on 127.0.0.77 (loopback only).

Every scenario runs twice, under the stdlib loop and under uvloop: the tests are plain
functions that run their coroutine in a fresh `asyncio.Runner(loop_factory=...)`, which
keeps the loop choice local to this file.  Nothing sleeps: waits are on events with
deadlines.  Servers fail on purpose by recipient local part (r450*, r550*, r554data*,
stall*, dropdata*), KumoMTA maildir-sink style.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvloop
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from engine.config.routes import Relay, RelayTls
from engine.model import (
    ConnectFailure,
    FailureKind,
    Phase,
    SmtpTimeouts,
    TlsPolicy,
    Transaction,
)
from engine.net.session import SmtpSession, open_session
from engine.smtp import LocalProtocolError, State, wire_body
from tests.support.receiver import write_self_signed
from tests.support.tls_certs import LocalCA

HOST = "127.0.0.77"
SOURCE = "127.0.0.78"
T = TypeVar("T")
# Short enough that a lost wake-up fails fast, long enough for a loaded 2-core VM.
TIMEOUTS = SmtpTimeouts(
    connect=5, greeting=5, ehlo=5, starttls=5, mail=5, rcpt=5, data=5,
    data_block=5, data_done=5, rset=5, quit=5,
)  # fmt: skip
DEADLINE = 10.0  # for waiting on server-side events


# ---------------------------------------------------------------------------- servers


@dataclass
class Got:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    mail_options: list[str]


@dataclass
class Handler:
    """aiosmtpd handler: records messages, fails on purpose by recipient local part."""

    pipelining: bool = True
    refuse_ehlo: bool = False
    refuse_helo: bool = False
    messages: list[Got] = field(default_factory=list)
    peers: list[str] = field(default_factory=list)
    stalled: threading.Event = field(default_factory=threading.Event)
    _releases: list[asyncio.Event] = field(default_factory=list)

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
        responses: list[str],
    ) -> list[str]:  # fmt: skip
        self.peers.append(session.peer[0])
        if self.refuse_ehlo:
            return ["502 5.5.2 EHLO not implemented"]
        session.host_name = hostname  # the 5-argument hook must set it itself
        if self.pipelining:  # aiosmtpd handles pipelined groups but never offers it
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_HELO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str
    ) -> str:
        if self.refuse_helo:
            return "550 5.7.1 go away"
        session.host_name = hostname
        return "250 helo.test"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        rcpt_options: list[str],
    ) -> str:  # fmt: skip
        local = address.partition("@")[0]
        if local.startswith("r450"):
            return "450 4.2.1 mailbox busy"
        if local.startswith("r550"):
            return "550 5.1.1 no such user"
        if local.startswith("r421"):
            return "421 4.3.2 shutting down"  # aiosmtpd keeps going; the client must not
        if local.startswith("stall"):
            release = asyncio.Event()
            self._releases.append(release)
            self.stalled.set()
            await release.wait()
        envelope.rcpt_tos.append(address)  # a RCPT hook must do aiosmtpd's job
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.original_content, bytes)
        if any(r.startswith("r554data") for r in envelope.rcpt_tos):
            return "554 5.7.1 content rejected"
        self.messages.append(
            Got(
                envelope.mail_from or "",
                list(envelope.rcpt_tos),
                envelope.original_content,
                list(envelope.mail_options),
            )
        )
        if any(r.startswith("dropdata") for r in envelope.rcpt_tos):
            assert server.transport is not None
            server.transport.abort()  # we have the message; the client never learns it
        return "250 2.0.0 queued"

    def release_all(self) -> None:
        for release in self._releases:
            release.set()


class RefusingSMTP(SMTP):
    """Says 421 before aiosmtpd's 220 and hangs up (a connection limit)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(b"421 4.7.0 too many connections\r\n")
        transport.close()
        super().connection_made(transport)


class RefusingController(Controller):
    def factory(self) -> SMTP:
        return RefusingSMTP(self.handler, **self.SMTP_kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Mx:
    handler: Handler
    port: int


@pytest.fixture
def start_mx() -> Iterator[Callable[..., Mx]]:
    """Start aiosmtpd servers on HOST; all are stopped at teardown."""
    running: list[tuple[Controller, Handler]] = []

    def start(
        handler: Handler | None = None, controller: type[Controller] = Controller, **smtp: Any
    ) -> Mx:
        handler = handler or Handler()
        port = free_port()  # aiosmtpd cannot use port 0 (dependency-facts §8)
        ctl = controller(handler, hostname=HOST, port=port, **smtp)
        ctl.start()
        running.append((ctl, handler))
        return Mx(handler, port)

    yield start
    for ctl, handler in running:
        ctl.loop.call_soon_threadsafe(handler.release_all)
        ctl.stop()


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throw-away self-signed certificate and its key, as PEM files."""
    return write_self_signed("mx.test", tmp_path_factory.mktemp("tls"))


def server_context(cert: tuple[Path, Path], *, tls13_only: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*cert)
    if tls13_only:  # a TLS 1.2-only client then fails the handshake
        context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, T]], T]:
    """Run a coroutine to completion in a fresh loop of the parametrised kind."""
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop

    def run_it(coro: Coroutine[Any, Any, T]) -> T:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coro)

    return run_it


# ---------------------------------------------------------------------------- helpers


async def connect(
    mx: Mx, *, tls: TlsPolicy = TlsPolicy.OPPORTUNISTIC, timeouts: SmtpTimeouts = TIMEOUTS,
    ssl_context: ssl.SSLContext | None = None, source_address: str | None = None,
) -> SmtpSession:  # fmt: skip
    session = await open_session(
        HOST,
        mx.port,
        mx_host="mx.test",
        helo_name="volley.test",
        source_address=source_address,
        tls=tls,
        timeouts=timeouts,
        ssl_context=ssl_context,
    )
    assert isinstance(session, SmtpSession), session
    return session


def txn(*rcpts: str, body: bytes = b"Subject: t\r\n\r\nhello\r\n", **kw: Any) -> Transaction:
    return Transaction("sender@src.test", rcpts, wire_body(body), **kw)


def codes(replies: tuple[Any, ...]) -> list[int | None]:
    return [r.code if r is not None else None for r in replies]


async def wait_thread_event(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, DEADLINE), "server never got there"


# ---------------------------------------------------------------------------- happy paths

TRICKY = b"Subject: dots\n\n.leading dot\n..two dots\n.\nbare LF above, CRLF here\r\nend"


@pytest.mark.parametrize("pipelining", [True, False])
def test_happy_path_delivers_byte_identical_content(
    run: Callable[..., Any], start_mx: Callable[..., Mx], pipelining: bool
) -> None:
    mx = start_mx(Handler(pipelining=pipelining))

    async def scenario() -> None:
        session = await connect(mx, source_address=SOURCE)
        try:
            assert session.supports("pipelining") is pipelining
            assert session.is_reusable()
            result = await session.send(txn("a@dst.test", "b@dst.test", body=TRICKY))
            assert result.failure is None
            assert result.mail is not None and result.mail.code == 250
            assert codes(result.rcpts) == [250, 250]
            assert result.data is not None and result.data.code == 354
            assert result.final is not None and result.final.code == 250
            assert session.transactions == 1 and session.is_reusable()
        finally:
            await session.close()
        assert session.state is State.CLOSED

    run(scenario())
    (got,) = mx.handler.messages
    expected = TRICKY.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + b"\r\n"
    assert got.content == expected
    assert got.rcpt_tos == ["a@dst.test", "b@dst.test"]
    assert mx.handler.peers == [SOURCE]  # source_address was bound


def test_three_transactions_on_one_session(
    run: Callable[..., Any], start_mx: Callable[..., Mx]
) -> None:
    mx = start_mx()

    async def scenario() -> None:
        session = await connect(mx)
        try:
            for i in range(3):
                result = await session.send(txn(f"n{i}@dst.test"))
                assert result.final is not None and result.final.code == 250, result
            assert session.transactions == 3 and session.is_reusable()
        finally:
            await session.close()

    run(scenario())
    assert [m.rcpt_tos for m in mx.handler.messages] == [[f"n{i}@dst.test"] for i in range(3)]


def test_pipelined_transactions_cross_on_one_connection_in_order(
    run: Callable[..., Any], start_mx: Callable[..., Mx]
) -> None:
    """Three started before the first ends (RFC 2920): each result is its own, the
    refused one costs no content, and the one after it goes out behind a RSET."""
    mx = start_mx()
    batches = [("a@dst.test",), ("r550-b@dst.test",), ("c@dst.test", "r450-d@dst.test")]

    async def scenario() -> list[Any]:
        session = await connect(mx)
        try:
            handles = []
            for rcpts in batches:
                assert session.can_start()
                handles.append(session.start(txn(*rcpts)))
            assert session.in_flight == 3 and not session.is_reusable()
            results = [await session.result(h) for h in handles]
            assert session.transactions == 3 and session.is_reusable()
            return results
        finally:
            await session.close()

    first, refused, last = run(scenario())
    assert codes(first.rcpts) == [250] and first.final.code == 250 and first.failure is None
    assert codes(refused.rcpts) == [550] and refused.final is None and refused.failure is None
    assert codes(last.rcpts) == [250, 450] and last.final.code == 250 and last.failure is None
    assert [m.rcpt_tos for m in mx.handler.messages] == [["a@dst.test"], ["c@dst.test"]]


def test_a_close_mid_pipeline_fails_each_transaction_in_its_own_phase(
    run: Callable[..., Any], start_mx: Callable[..., Mx]
) -> None:
    """The server drops the connection after the first content: that one may have been
    delivered (BODY), the next had its envelope out (MAIL), the third never left."""
    mx = start_mx()

    async def scenario() -> list[Any]:
        session = await connect(mx)
        try:
            handles = [session.start(txn(r)) for r in ("dropdata@dst.test", "b@dst.test")]
            handles.append(session.start(txn("c@dst.test")))
            return [await session.result(h) for h in handles]
        finally:
            await session.close()

    dropped, next_one, never = run(scenario())
    assert dropped.failure is not None and dropped.failure.phase is Phase.BODY
    assert next_one.failure is not None and next_one.failure.phase is Phase.MAIL
    assert next_one.mail is None and next_one.failure.kind is FailureKind.CLOSED
    assert never.failure is not None and "before this transaction was sent" in (
        never.failure.detail
    )
    assert [m.rcpt_tos for m in mx.handler.messages] == [["dropdata@dst.test"]]


def test_mixed_recipient_replies_are_kept_per_recipient(
    run: Callable[..., Any], start_mx: Callable[..., Mx]
) -> None:
    mx = start_mx()

    async def scenario() -> None:
        session = await connect(mx)
        try:
            result = await session.send(txn("ok@dst.test", "r450-x@dst.test", "r550-y@dst.test"))
            assert codes(result.rcpts) == [250, 450, 550]
            assert result.rcpts[2] is not None and result.rcpts[2].enhanced == "5.1.1"
            assert result.final is not None and result.final.code == 250
            assert session.is_reusable()
        finally:
            await session.close()

    run(scenario())
    assert [m.rcpt_tos for m in mx.handler.messages] == [["ok@dst.test"]]


@pytest.mark.parametrize("pipelining", [True, False])
def test_all_recipients_refused_then_next_transaction_works(
    run: Callable[..., Any], start_mx: Callable[..., Mx], pipelining: bool
) -> None:
    mx = start_mx(Handler(pipelining=pipelining))

    async def scenario() -> None:
        session = await connect(mx)
        try:
            first = await session.send(txn("r550-a@dst.test", "r450-b@dst.test"))
            assert first.failure is None
            assert codes(first.rcpts) == [550, 450]
            assert first.data is None and first.final is None  # aiosmtpd's 503 is ignored
            assert session.is_reusable()
            second = await session.send(txn("fine@dst.test"))
            assert second.failure is None
            assert second.mail is not None and second.mail.code == 250  # no 503 nested MAIL
            assert second.final is not None and second.final.code == 250
        finally:
            await session.close()

    run(scenario())
    assert [m.rcpt_tos for m in mx.handler.messages] == [["fine@dst.test"]]


def test_554_at_end_of_data_keeps_the_session_usable(
    run: Callable[..., Any], start_mx: Callable[..., Mx]
) -> None:
    mx = start_mx()

    async def scenario() -> None:
        session = await connect(mx)
        try:
            result = await session.send(txn("r554data@dst.test"))
            assert result.final is not None and result.final.code == 554
            assert result.failure is None and session.is_reusable()
            again = await session.send(txn("ok@dst.test"))
            assert again.final is not None and again.final.code == 250
        finally:
            await session.close()

    run(scenario())


def test_esmtp_parameters_reach_the_server(
    run: Callable[..., Any], start_mx: Callable[..., Mx]
) -> None:
    mx = start_mx()
    body = "Subject: Grüße\r\n\r\nÄ\r\n".encode()

    async def scenario() -> None:
        session = await connect(mx)
        try:
            assert session.size_limit == 33554432  # aiosmtpd's default data_size_limit
            result = await session.send(
                Transaction("jörg@src.test", ("zoë@dst.test",), body, body_8bit=True, smtputf8=True)
            )
            assert result.final is not None and result.final.code == 250, result
        finally:
            await session.close()

    run(scenario())
    (got,) = mx.handler.messages
    assert got.mail_options == [f"SIZE={len(body)}", "BODY=8BITMIME", "SMTPUTF8"]
    assert got.mail_from == "jörg@src.test" and got.rcpt_tos == ["zoë@dst.test"]
    assert got.content == body


def test_smtputf8_not_offered_raises_before_sending(
    run: Callable[..., Any], start_mx: Callable[..., Mx]
) -> None:
    mx = start_mx(enable_SMTPUTF8=False)

    async def scenario() -> None:
        session = await connect(mx)
        try:
            assert not session.supports("SMTPUTF8")
            with pytest.raises(LocalProtocolError):
                await session.send(txn("zoë@dst.test", smtputf8=True))
            assert session.is_reusable()  # nothing was sent
            result = await session.send(txn("plain@dst.test"))
            assert result.final is not None and result.final.code == 250
        finally:
            await session.close()

    run(scenario())


@pytest.mark.parametrize("pipelining", [True, False])
def test_421_to_a_rcpt_ends_the_session_and_defers_the_rest(
    run: Callable[..., Any], start_mx: Callable[..., Mx], pipelining: bool
) -> None:
    mx = start_mx(Handler(pipelining=pipelining))

    async def scenario() -> None:
        session = await connect(mx)
        try:
            result = await session.send(txn("ok@dst.test", "r421@dst.test", "later@dst.test"))
            assert codes(result.rcpts) == [250, 421, None]
            assert result.data is None and result.final is None
            assert result.failure is not None
            assert (result.failure.phase, result.failure.kind) == (Phase.RCPT, FailureKind.CLOSED)
            assert "421" in result.failure.detail
            assert not session.is_reusable() and session.state is State.CLOSED
            assert session.transactions == 0
        finally:
            await session.close()

    run(scenario())
    assert mx.handler.messages == []


def test_null_sender_goes_out_as_empty_path(
    run: Callable[..., Any], start_mx: Callable[..., Mx]
) -> None:
    mx = start_mx()

    async def scenario() -> None:
        session = await connect(mx)
        try:
            result = await session.send(Transaction("", ("ok@dst.test",), b"bounce\r\n"))
            assert result.final is not None and result.final.code == 250
        finally:
            await session.close()

    run(scenario())
    (got,) = mx.handler.messages
    assert got.mail_from == "<>"  # aiosmtpd's spelling of the null reverse-path


def test_ehlo_refused_falls_back_to_helo(
    run: Callable[..., Any], start_mx: Callable[..., Mx]
) -> None:
    mx = start_mx(Handler(refuse_ehlo=True))

    async def scenario() -> None:
        session = await connect(mx)
        try:
            assert not session.supports("PIPELINING") and session.size_limit is None
            result = await session.send(txn("ok@dst.test", "r550@dst.test"))  # lock-step
            assert codes(result.rcpts) == [250, 550]
            assert result.final is not None and result.final.code == 250
        finally:
            await session.close()

    run(scenario())
    assert [m.rcpt_tos for m in mx.handler.messages] == [["ok@dst.test"]]


def test_ehlo_and_helo_refused_is_a_connect_failure_with_the_reply(
    run: Callable[..., Any], start_mx: Callable[..., Mx]
) -> None:
    mx = start_mx(Handler(refuse_ehlo=True, refuse_helo=True))

    async def scenario() -> None:
        result = await open_session(
            HOST, mx.port, mx_host="mx.test", helo_name="volley.test",
            source_address=None, tls=TlsPolicy.OPPORTUNISTIC, timeouts=TIMEOUTS,
        )  # fmt: skip
        assert isinstance(result, ConnectFailure)
        assert result.reply is not None and result.reply.code == 550
        assert result.failure is None

    run(scenario())


# ---------------------------------------------------------------------------- connect failures


def test_421_greeting_is_a_connect_failure_with_the_reply(
    run: Callable[..., Any], start_mx: Callable[..., Mx]
) -> None:
    mx = start_mx(controller=RefusingController)

    async def scenario() -> None:
        result = await open_session(
            HOST, mx.port, mx_host="mx.test", helo_name="volley.test",
            source_address=None, tls=TlsPolicy.OPPORTUNISTIC, timeouts=TIMEOUTS,
        )  # fmt: skip
        assert isinstance(result, ConnectFailure)
        assert result.reply is not None and result.reply.code == 421
        assert result.failure is None
        assert (result.host, result.address) == ("mx.test", HOST)

    run(scenario())


def test_connection_refused(run: Callable[..., Any]) -> None:
    port = free_port()  # nothing listens there

    async def scenario() -> None:
        result = await open_session(
            HOST, port, mx_host="mx.test", helo_name="volley.test",
            source_address=None, tls=TlsPolicy.OPPORTUNISTIC, timeouts=TIMEOUTS,
        )  # fmt: skip
        assert isinstance(result, ConnectFailure)
        assert result.failure is not None
        assert (result.failure.phase, result.failure.kind) == (Phase.CONNECT, FailureKind.REFUSED)

    run(scenario())


# ---------------------------------------------------------------------------- transport failures


def test_stalled_rcpt_reply_times_out_in_phase_rcpt(
    run: Callable[..., Any], start_mx: Callable[..., Mx]
) -> None:
    mx = start_mx()
    rcpt_timeout = 0.3

    async def scenario() -> None:
        session = await connect(mx, timeouts=replace(TIMEOUTS, rcpt=rcpt_timeout))
        loop = asyncio.get_running_loop()
        try:
            started = loop.time()
            result = await session.send(txn("ok@dst.test", "stall@dst.test"))
            elapsed = loop.time() - started
            assert result.failure is not None
            assert (result.failure.phase, result.failure.kind) == (Phase.RCPT, FailureKind.TIMEOUT)
            assert rcpt_timeout <= elapsed < rcpt_timeout + 3.0  # generous: noisy 2-core VM
            assert result.mail is not None and codes(result.rcpts) == [250, None]
            assert not session.is_reusable() and session.state is State.BROKEN
            again = await session.send(txn("ok@dst.test"))  # refused without a byte sent
            assert again.failure is not None and again.failure.kind is FailureKind.CLOSED
        finally:
            await session.close()

    run(scenario())


def test_server_aborting_after_data_is_closed_in_phase_body(
    run: Callable[..., Any], start_mx: Callable[..., Mx]
) -> None:
    mx = start_mx()

    async def scenario() -> None:
        session = await connect(mx)
        try:
            result = await session.send(txn("dropdata@dst.test"))
            assert result.failure is not None
            assert (result.failure.phase, result.failure.kind) == (Phase.BODY, FailureKind.CLOSED)
            assert result.data is not None and result.data.code == 354
            assert result.final is None
            assert not session.is_reusable()
        finally:
            await session.close()

    run(scenario())
    assert len(mx.handler.messages) == 1  # the duplicate-on-retry case: the server has it


def test_cancelled_send_breaks_the_session_and_a_fresh_one_works(
    run: Callable[..., Any], start_mx: Callable[..., Mx]
) -> None:
    mx = start_mx()

    async def scenario() -> None:
        session = await connect(mx)
        fresh = None
        try:
            task = asyncio.create_task(session.send(txn("stall@dst.test")))
            await wait_thread_event(mx.handler.stalled)  # server is inside the RCPT hook
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not session.is_reusable() and session.state is State.BROKEN
            late = await session.send(txn("ok@dst.test"))
            assert late.failure is not None and late.mail is None  # never attempted
            fresh = await connect(mx)
            result = await fresh.send(txn("ok@dst.test"))
            assert result.mail is not None and result.mail.code == 250  # no 503 nested MAIL
            assert result.final is not None and result.final.code == 250
        finally:
            await session.close()
            if fresh is not None:
                await fresh.close()

    run(scenario())
    assert [m.rcpt_tos for m in mx.handler.messages] == [["ok@dst.test"]]


def test_stalled_content_write_times_out_after_data_block(run: Callable[..., Any]) -> None:
    # aiosmtpd always reads, so this server is hand-rolled: after its 354 it stops
    # reading, the StreamReader pauses the socket at 2 x limit, and the client's
    # kernel and transport buffers fill up.
    async def scenario() -> None:
        got_354 = asyncio.Event()
        finished = asyncio.Event()
        replies = {b"EHLO": b"250-stall.test\r\n250 PIPELINING\r\n", b"MAIL": b"250 ok\r\n",
                   b"RCPT": b"250 ok\r\n", b"DATA": b"354 go\r\n"}  # fmt: skip

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"220 stall.test\r\n")
            while line := await reader.readline():
                writer.write(replies.get(line[:4].upper(), b"500 what\r\n"))
                if line.upper().startswith(b"DATA"):
                    got_354.set()
                    break
            await finished.wait()
            writer.close()

        server = await asyncio.start_server(on_client, HOST, 0, limit=1024)
        port = server.sockets[0].getsockname()[1]
        timeouts = replace(TIMEOUTS, data_block=0.3, data_done=30)
        session = await connect(Mx(Handler(), port), timeouts=timeouts)
        body = (b"x" * 998 + b"\r\n") * 16_000  # 16 MB: more than loopback buffers absorb
        try:
            result = await session.send(Transaction("a@src.test", ("b@dst.test",), body))
            assert result.failure is not None
            assert (result.failure.phase, result.failure.kind) == (Phase.BODY, FailureKind.TIMEOUT)
            assert "stalled" in result.failure.detail
            assert got_354.is_set()
        finally:
            await session.close()
            finished.set()
            server.close()
            await server.wait_closed()

    run(scenario())


# ---------------------------------------------------------------------------- TLS


def test_starttls_with_a_self_signed_certificate(
    run: Callable[..., Any], start_mx: Callable[..., Mx], tls_cert: tuple[Path, Path]
) -> None:
    mx = start_mx(tls_context=server_context(tls_cert))

    async def scenario() -> None:
        session = await connect(mx)
        try:
            assert session.tls_active
            assert not session.supports("STARTTLS")  # the post-TLS EHLO no longer offers it
            result = await session.send(txn("ok@dst.test"))
            assert result.final is not None and result.final.code == 250
        finally:
            await session.close()

    run(scenario())
    assert len(mx.handler.peers) == 2  # EHLO before and after the handshake (RFC 3207)


def test_tls_disabled_never_sends_starttls(
    run: Callable[..., Any], start_mx: Callable[..., Mx], tls_cert: tuple[Path, Path]
) -> None:
    mx = start_mx(tls_context=server_context(tls_cert))

    async def scenario() -> None:
        session = await connect(mx, tls=TlsPolicy.DISABLED)
        try:
            assert not session.tls_active and session.supports("STARTTLS")
        finally:
            await session.close()

    run(scenario())


def _tls12_only_client() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


def test_opportunistic_tls_with_broken_handshake_falls_back_to_plaintext(
    run: Callable[..., Any], start_mx: Callable[..., Mx], tls_cert: tuple[Path, Path]
) -> None:
    mx = start_mx(tls_context=server_context(tls_cert, tls13_only=True))

    async def scenario() -> None:
        session = await connect(mx, ssl_context=_tls12_only_client())
        try:
            assert not session.tls_active
            result = await session.send(txn("ok@dst.test"))
            assert result.final is not None and result.final.code == 250
        finally:
            await session.close()

    run(scenario())
    assert len(mx.handler.peers) == 2  # one EHLO per connection: the retry skipped STARTTLS


def test_required_tls_with_broken_handshake_fails(
    run: Callable[..., Any], start_mx: Callable[..., Mx], tls_cert: tuple[Path, Path]
) -> None:
    mx = start_mx(tls_context=server_context(tls_cert, tls13_only=True))

    async def scenario() -> None:
        result = await open_session(
            HOST, mx.port, mx_host="mx.test", helo_name="volley.test", source_address=None,
            tls=TlsPolicy.REQUIRED, timeouts=TIMEOUTS, ssl_context=_tls12_only_client(),
        )  # fmt: skip
        assert isinstance(result, ConnectFailure)
        assert result.failure is not None
        assert (result.failure.phase, result.failure.kind) == (Phase.STARTTLS, FailureKind.TLS)

    run(scenario())


def test_an_oversized_certificate_chain_is_a_tls_failure_not_a_memory_sink(
    run: Callable[..., Any], start_mx: Callable[..., Mx], tmp_path: Path
) -> None:
    """Issue #11: a 190 KB certificate (DER) is refused by OpenSSL's certificate-list limit
    (100 KB by default), before it is parsed: a TLS failure, so the mail is deferred."""
    cert = write_self_signed("mx.test", tmp_path, padding_names=10_000)
    assert cert[0].stat().st_size > 200_000
    mx = start_mx(tls_context=server_context(cert))

    async def scenario() -> None:
        result = await open_session(
            HOST, mx.port, mx_host="mx.test", helo_name="volley.test", source_address=None,
            tls=TlsPolicy.REQUIRED, timeouts=TIMEOUTS,
        )  # fmt: skip
        assert isinstance(result, ConnectFailure)
        assert result.failure is not None
        assert (result.failure.phase, result.failure.kind) == (Phase.STARTTLS, FailureKind.TLS)
        assert "excessive message size" in result.failure.detail.lower()

    run(scenario())


def test_required_tls_without_starttls_is_a_tls_connect_failure(
    run: Callable[..., Any], start_mx: Callable[..., Mx]
) -> None:
    mx = start_mx()

    async def scenario() -> None:
        result = await open_session(
            HOST, mx.port, mx_host="mx.test", helo_name="volley.test", source_address=None,
            tls=TlsPolicy.REQUIRED, timeouts=TIMEOUTS,
        )  # fmt: skip
        assert isinstance(result, ConnectFailure)
        assert result.failure is not None
        assert (result.failure.phase, result.failure.kind) == (Phase.STARTTLS, FailureKind.TLS)
        assert "not offered" in result.failure.detail

    run(scenario())


# ---------------------------------------------------------------------------- TLS verify


def _ca_server(names: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context with a certificate for `names` from a fresh CA, a client verify
    context trusting only that CA)."""
    ca = LocalCA()
    return ca.server_context(names), ssl.create_default_context(cafile=ca.cert_path)


def test_verify_accepts_a_certificate_for_the_mx_name(
    run: Callable[..., Any], start_mx: Callable[..., Mx]
) -> None:
    server, client = _ca_server("mx.test")
    mx = start_mx(tls_context=server)

    async def scenario() -> None:
        session = await connect(mx, tls=TlsPolicy.VERIFY, ssl_context=client)
        try:
            assert session.tls_active and session.tls_fallback is None
        finally:
            await session.close()

    run(scenario())


def test_verify_refuses_a_certificate_for_another_name(
    run: Callable[..., Any], start_mx: Callable[..., Mx]
) -> None:
    server, client = _ca_server("other.test")
    mx = start_mx(tls_context=server)

    async def scenario() -> None:
        result = await open_session(
            HOST, mx.port, mx_host="mx.test", helo_name="volley.test", source_address=None,
            tls=TlsPolicy.VERIFY, timeouts=TIMEOUTS, ssl_context=client,
        )  # fmt: skip
        assert isinstance(result, ConnectFailure)
        assert result.failure is not None
        assert (result.failure.phase, result.failure.kind) == (Phase.STARTTLS, FailureKind.TLS)
        assert result.failure.detail == "certificate verify failed: hostname mismatch for mx.test"

    run(scenario())
    assert mx.handler.messages == []
    assert len(mx.handler.peers) == 1  # one EHLO: no plaintext retry


def test_verify_without_a_context_uses_the_system_store(
    run: Callable[..., Any], start_mx: Callable[..., Mx]
) -> None:
    server, _ = _ca_server("mx.test")  # a CA the system does not know
    mx = start_mx(tls_context=server)

    async def scenario() -> None:
        result = await open_session(
            HOST, mx.port, mx_host="mx.test", helo_name="volley.test", source_address=None,
            tls=TlsPolicy.VERIFY, timeouts=TIMEOUTS,
        )  # fmt: skip
        assert isinstance(result, ConnectFailure) and result.failure is not None
        assert result.failure.detail.startswith("certificate verify failed: ")
        assert "mx.test" in result.failure.detail

    run(scenario())


def test_verify_without_starttls_is_a_tls_connect_failure(
    run: Callable[..., Any], start_mx: Callable[..., Mx]
) -> None:
    mx = start_mx()

    async def scenario() -> None:
        result = await open_session(
            HOST, mx.port, mx_host="mx.test", helo_name="volley.test", source_address=None,
            tls=TlsPolicy.VERIFY, timeouts=TIMEOUTS,
        )  # fmt: skip
        assert isinstance(result, ConnectFailure) and result.failure is not None
        assert result.failure.detail == "STARTTLS not offered"

    run(scenario())


def test_opportunistic_fallback_says_why_tls_failed(
    run: Callable[..., Any], start_mx: Callable[..., Mx], tls_cert: tuple[Path, Path]
) -> None:
    mx = start_mx(tls_context=server_context(tls_cert, tls13_only=True))

    async def scenario() -> None:
        session = await connect(mx, ssl_context=_tls12_only_client())
        try:
            assert not session.tls_active
            assert session.tls_fallback is not None
            assert session.tls_fallback.startswith("handshake failed: ")
        finally:
            await session.close()

    run(scenario())


# ---------------------------------------------------------------------------- implicit TLS


def _implicit(port: int) -> Relay:
    return Relay(HOST, port, True, RelayTls.IMPLICIT, None, "routes.default")


def test_implicit_tls_handshakes_before_the_greeting_and_sends_no_starttls(
    run: Callable[..., Any], start_mx: Callable[..., Mx], tls_cert: tuple[Path, Path]
) -> None:
    """RFC 8314 §3 (port 465): TLS from the first byte; EHLO once, inside TLS."""
    mx = start_mx(ssl_context=server_context(tls_cert))

    async def scenario() -> None:
        session = await open_session(
            HOST, mx.port, mx_host="mx.test", helo_name="volley.test", source_address=None,
            tls=TlsPolicy.DISABLED, timeouts=TIMEOUTS, relay=_implicit(mx.port),
        )  # fmt: skip
        assert isinstance(session, SmtpSession), session
        try:
            assert session.tls_active and not session.supports("STARTTLS")
            result = await session.send(txn("ok@dst.test"))
            assert result.final is not None and result.final.code == 250
        finally:
            await session.close()

    run(scenario())
    assert len(mx.handler.peers) == 1 and len(mx.handler.messages) == 1


def test_implicit_tls_to_a_plaintext_server_is_a_tls_failure_at_connect(
    run: Callable[..., Any], start_mx: Callable[..., Mx]
) -> None:
    mx = start_mx()

    async def scenario() -> None:
        result = await open_session(
            HOST, mx.port, mx_host="mx.test", helo_name="volley.test", source_address=None,
            tls=TlsPolicy.DISABLED, timeouts=TIMEOUTS, relay=_implicit(mx.port),
        )  # fmt: skip
        assert isinstance(result, ConnectFailure)
        assert result.failure is not None
        assert (result.failure.phase, result.failure.kind) == (Phase.CONNECT, FailureKind.TLS)

    run(scenario())
    assert mx.handler.peers == []  # no EHLO ever went out in clear
