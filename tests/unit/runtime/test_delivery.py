"""engine.runtime.delivery: every connection ends in a decision for every entry it took.

A real spool shard, work queue, outcome recorder and delivery log on a temp dir; a fake
clock, resolver and lease table; fake sessions that fail in each way a receiver (or
Volley's own code) can.  Nothing touches the network."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from engine.config import DomainPolicy, Settings
from engine.config.routes import Relay, RelayAuth, RelayTls, Routes, Secret
from engine.model import (
    ConnectFailure,
    FailureKind,
    Phase,
    Reply,
    TlsPolicy,
    Transaction,
    TransportFailure,
    TxnResult,
)
from engine.net.mx import MxHost, Route
from engine.runtime.delivery import Deliverer
from engine.runtime.outcome import Outcomes
from engine.sched.queue import WorkQueue
from engine.smtp import encode
from engine.telemetry.eventlog import EventLog, read_log
from engine.telemetry.metrics import CheckedTally
from spool import EntryRef, NewEntry, Spool, entry_id
from tests.support.fake_clock import FakeClock

NOW = 1_800_000_000.0
OK = Reply(250, ("2.0.0 ok",))
GO = Reply(354, ("go",))
DOMAIN = "d.test"
ROUTE = Route(
    DOMAIN,
    (MxHost("mx1.d.test", 10, ("127.0.0.2",)), MxHost("mx2.d.test", 20, ("127.0.0.3",))),
    False,
)


class Resolver:
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def resolve(self, domain: str) -> Route:
        self.asked.append(f"MX {domain}")
        return ROUTE

    async def resolve_host(self, domain: str, host: str) -> Route:
        self.asked.append(f"host {host}")
        return Route(domain, (MxHost(host, 0, ("127.0.0.9",)),), False)


class Leases:
    async def acquire(self, domain: str, limit: int) -> None:
        return None

    def release(self, domain: str) -> None:
        return None


class Session:
    """What Deliverer uses of engine.net.session.SmtpSession; `reply(txn)` decides, when
    the transaction's result is asked for.  `calls` records ("start" | "result", first
    recipient) in order; `peak` the most transactions in flight at once."""

    def __init__(
        self,
        reply: Callable[[Session, Transaction], TxnResult],
        keywords: tuple[str, ...] = ("PIPELINING", "8BITMIME"),
    ) -> None:
        self.reply = reply
        self.keywords = keywords
        self.mx_host, self.address = "mx1.d.test", "127.0.0.2"
        self.transactions = 0
        self.failure: TransportFailure | None = None
        self.aborted: str | None = None
        self.closed = False
        self.sent: list[Transaction] = []
        self.calls: list[tuple[str, str]] = []
        self.in_flight = 0
        self.peak = 0

    def supports(self, keyword: str) -> bool:
        return keyword in self.keywords

    size_limit = None
    tls_active = False  # what engine.runtime.tlsguard counts
    tls_fallback: str | None = None

    def is_reusable(self) -> bool:
        return self.failure is None and self.aborted is None and not self.closed

    def can_start(self) -> bool:
        return self.is_reusable()

    def start(self, txn: Transaction) -> Transaction:
        for address in (txn.sender, *txn.recipients):  # what start_transaction checks first
            if address:
                encode.check_address(address, txn.smtputf8)
        self.sent.append(txn)
        self.calls.append(("start", txn.recipients[0]))
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        return txn  # the handle

    async def result(self, txn: Transaction) -> TxnResult:
        self.in_flight -= 1
        self.calls.append(("result", txn.recipients[0]))
        if not self.is_reusable():  # the connection ended behind an earlier one
            lost = self.failure or TransportFailure(Phase.MAIL, FailureKind.LOCAL, "aborted")
            return TxnResult(None, (None,) * len(txn.recipients), None, None, lost)
        result = self.reply(self, txn)
        if result.failure is None:
            self.transactions += 1
        return result

    def abort(self, detail: str) -> None:
        self.aborted = detail

    async def close(self) -> None:
        self.closed = True


def delivered(session: Session, txn: Transaction) -> TxnResult:
    return TxnResult(OK, (OK,) * len(txn.recipients), GO, OK)


class World:
    def __init__(
        self,
        tmp_path: Path,
        sessions: Callable[[], Session | ConnectFailure],
        depth: int = 1,
        policy: DomainPolicy | None = None,
        **overrides: Any,
    ) -> None:
        self.settings = Settings(
            spool_path=tmp_path / "spool",
            helo_name="mta.test",
            log_path=tmp_path / "delivery.jsonl",
            ignore_target_hosts=(),  # the fake MX hosts are on 127.0.0.x
            idle_timeout=0.0,  # serve what is ready, then close instead of idling
            pipeline_depth=depth,
            default_policy=policy or DomainPolicy(retry_schedule=(60.0,), retry_jitter=0.0),
        )
        self.settings = replace(self.settings, **overrides)
        spool = Spool(self.settings.spool_path)
        spool.ensure(1)
        self.shard = spool.shard(0)
        self.shard.recover()
        self.queue = WorkQueue()
        self.log = EventLog(self.settings.log_path, worker=0)
        self.tally = CheckedTally()
        self.clock = FakeClock(NOW)
        self.opened: list[str] = []
        self.opened_with: list[dict[str, Any]] = []  # port and keywords of each open
        self.resolver = Resolver()
        self.refs: list[EntryRef] = []
        outcomes = Outcomes(
            self.settings, self.shard, self.queue, self.log, self.tally, random.Random(1)
        )

        async def open_session(address: str, port: int, **kwargs: Any) -> Any:
            self.opened.append(address)
            self.opened_with.append({"port": port, **kwargs})
            got = sessions()
            if isinstance(got, ConnectFailure):
                return ConnectFailure(kwargs["mx_host"], address, got.reply, got.failure)
            return got

        self.deliverer = Deliverer(
            settings=self.settings,
            shard=self.shard,
            queue=self.queue,
            resolver=self.resolver,
            leases=Leases(),
            outcomes=outcomes,
            tally=self.tally,
            clock=self.clock,
            rng=random.Random(1),
            kick=lambda: None,
            open_session_fn=open_session,
        )

    def queue_entries(
        self, *rcpt_lists: list[str], body: bytes = b"Subject: x\r\n\r\nhi\r\n", **meta: Any
    ) -> None:
        items = []
        for i, rcpts in enumerate(rcpt_lists):
            entry = {"sender": "s@a.test", "rcpts": rcpts, "created": NOW, "attempts": 0, **meta}
            eid = entry_id(int(NOW * 1e9) + i * 1000, b"%d" % i)
            items.append(NewEntry(eid, DOMAIN, entry, body, NOW))
        for ref in self.shard.add(items):
            self.queue.add(ref, NOW, NOW)
            self.refs.append(ref)

    async def connect_once(self) -> None:
        """What the worker's dispatch loop does: start the connections the queue wants."""
        policy = self.settings.policy(DOMAIN)
        n = self.queue.connections_wanted(
            DOMAIN, policy.max_connections, policy.max_messages_per_connection
        )
        tasks = []
        for _ in range(n):
            self.queue.domain(DOMAIN).connections += 1
            tasks.append(asyncio.create_task(self.deliverer.run_connection(DOMAIN)))
        await asyncio.gather(*tasks)

    def records(self) -> list[dict[str, Any]]:
        self.log.flush()
        return list(read_log(self.settings.log_path))

    def events(self, event: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["event"] == event]

    def close(self) -> None:
        self.log.close()
        self.shard.close()


@pytest.fixture
def world(tmp_path: Path) -> Any:
    worlds: list[World] = []

    def make(sessions: Callable[[], Session | ConnectFailure], **kw: Any) -> World:
        w = World(tmp_path / str(len(worlds)), sessions, **kw)
        worlds.append(w)
        return w

    yield make
    for w in worlds:
        w.close()


async def test_no_session_ready_defers_every_entry_once_and_suspends(world: Any) -> None:
    """Finding 1: each MX address is tried once, the entries are deferred with the
    reason, and the destination waits for the retry step (one probe, not ten)."""
    lost = TransportFailure(Phase.GREETING, FailureKind.CLOSED, "connection closed by peer")
    w = world(lambda: ConnectFailure("", "", failure=lost))
    w.queue_entries(*[[f"u{i}@d.test"] for i in range(30)])
    await w.connect_once()
    assert w.opened == ["127.0.0.2", "127.0.0.3"]  # the backup MX too, then no more
    deferred = w.events("deferred")
    assert len(deferred) == 30 and "during greeting" in deferred[0]["text"]
    assert w.queue.counts() == (0, 30, 0)
    assert w.queue.connections_wanted(DOMAIN, 10, 100) == 0  # suspended
    assert w.tally.drain()[0].count(["volley_connections", ["failed"], 1]) == 1


async def test_slow_start_doubles_the_window_per_ready_session(world: Any) -> None:
    w = world(lambda: Session(delivered))
    w.queue_entries(*[[f"u{i}@d.test"] for i in range(1000)])
    assert w.queue.connections_wanted(DOMAIN, 10, 100) == 1
    await w.connect_once()
    assert w.queue.domain(DOMAIN).window == 2


async def test_an_error_of_ours_defers_the_entry_aborts_the_session_and_says_so(
    world: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Finding 3's general rule: an exception inside delivery ends in a logged deferral
    with a retry time, never in an instant requeue."""

    def boom(session: Session, txn: Transaction) -> TxnResult:
        raise RuntimeError("bug")

    session = Session(boom)
    w = world(lambda: session)
    w.queue_entries(["a@d.test"], ["b@d.test"])
    await w.connect_once()
    assert session.aborted is not None and "bug" in session.aborted
    (deferred,) = w.events("deferred")  # the second entry never got the broken session
    assert deferred["rcpt"] == "a@d.test" and "local error: RuntimeError: bug" in deferred["text"]
    (err,) = w.events("internal_error")
    assert "RuntimeError: bug" in err["error"]
    assert "Traceback" in capsys.readouterr().err
    ready, waiting, inflight = w.queue.counts()
    assert (ready, inflight) == (1, 0) and waiting == 1  # deferred, not handed straight back
    attempts = sorted(w.shard.load(r)[0]["attempts"] for r in w.refs)
    assert attempts == [0, 1]  # rewritten with its attempt counted: retried in 60 s
    counts = w.tally.drain()[0]
    assert ["volley_internal_errors", [], 1] in counts


async def test_an_unsendable_recipient_bounces_alone(world: Any) -> None:
    w = world(lambda: Session(delivered))
    w.queue_entries(['"a<b"@d.test', "bob@d.test"])
    await w.connect_once()
    (bounced,) = w.events("bounced")
    assert (bounced["rcpt"], bounced["code"], bounced["enhanced"]) == ('"a<b"@d.test', 553, "5.1.3")
    (ok,) = w.events("delivered")
    assert ok["rcpt"] == "bob@d.test"


async def test_broken_at_the_first_transaction_is_a_failed_connection(world: Any) -> None:
    """A server that takes the session and drops it at MAIL: the entry it carried is
    deferred, and so is the rest of the destination, without a connection each."""

    def drop_at_mail(session: Session, txn: Transaction) -> TxnResult:
        session.failure = TransportFailure(Phase.MAIL, FailureKind.CLOSED, "connection lost")
        return TxnResult(None, (None,) * len(txn.recipients), None, None, session.failure)

    sessions: list[Session] = []

    def make() -> Session:
        sessions.append(Session(drop_at_mail))
        return sessions[-1]

    w = world(make)
    w.queue_entries(*[[f"u{i}@d.test"] for i in range(20)])
    await w.connect_once()
    assert len(sessions) == 1 and len(sessions[0].sent) == 1
    assert len(w.events("deferred")) == 20
    assert w.queue.connections_wanted(DOMAIN, 10, 100) == 0  # suspended for the retry step


async def test_a_session_that_delivered_then_broke_is_no_connection_failure(world: Any) -> None:
    def second_breaks(session: Session, txn: Transaction) -> TxnResult:
        if session.transactions == 0:
            return delivered(session, txn)
        session.failure = TransportFailure(Phase.MAIL, FailureKind.CLOSED, "connection lost")
        return TxnResult(None, (None,), None, None, session.failure)

    w = world(lambda: Session(second_breaks))
    w.queue_entries(*[[f"u{i}@d.test"] for i in range(3)])
    await w.connect_once()
    assert [r["rcpt"] for r in w.events("delivered")] == ["u0@d.test"]
    assert [r["rcpt"] for r in w.events("deferred")] == ["u1@d.test"]
    assert w.queue.counts()[0] == 1  # u2 stays ready: the destination is not dead


# -- transactions pipelined across entries (smtp.pipeline_depth) ------------------------


async def test_depth_two_starts_the_next_before_the_oldest_result(world: Any) -> None:
    session = Session(delivered)
    w = world(lambda: session, depth=2)
    w.queue_entries(*[[f"u{i}@d.test"] for i in range(4)])
    await w.connect_once()
    assert session.calls == [
        ("start", "u0@d.test"),
        ("start", "u1@d.test"),
        ("result", "u0@d.test"),
        ("start", "u2@d.test"),  # begun as soon as u0 is recorded: behind u1
        ("result", "u1@d.test"),
        ("start", "u3@d.test"),
        ("result", "u2@d.test"),
        ("result", "u3@d.test"),  # the queue is empty: the pipeline drains
    ]
    assert session.peak == 2 and session.closed
    assert [r["rcpt"] for r in w.events("delivered")] == [f"u{i}@d.test" for i in range(4)]


async def test_a_lone_message_goes_as_before(world: Any) -> None:
    session = Session(delivered)
    w = world(lambda: session, depth=2)
    w.queue_entries(["solo@d.test"])
    await w.connect_once()
    assert session.calls == [("start", "solo@d.test"), ("result", "solo@d.test")]


async def test_depth_and_messages_per_connection_bound_the_pipeline(world: Any) -> None:
    sessions: list[Session] = []

    def make() -> Session:
        sessions.append(Session(delivered))
        return sessions[-1]

    policy = DomainPolicy(max_messages_per_connection=4, retry_schedule=(60.0,))
    w = world(make, depth=3, policy=policy)
    w.queue_entries(*[[f"u{i}@d.test"] for i in range(10)])
    await w.connect_once()
    assert len(sessions[0].sent) == 4 and sessions[0].peak == 3
    assert len(w.events("delivered")) == 4


async def test_a_421_mid_pipeline_defers_each_entry_in_flight_once(world: Any) -> None:
    """Depth 3: u0's result lets u3 in behind u1 and u2; the server closes at u1. u0
    delivered, u1-u3 deferred once each, u4 never taken (still ready), nothing twice."""

    def closes_at_u1(session: Session, txn: Transaction) -> TxnResult:
        if txn.recipients[0] != "u1@d.test":
            return delivered(session, txn)
        session.failure = TransportFailure(Phase.MAIL, FailureKind.CLOSED, "server closing: 421")
        return TxnResult(Reply(421, ("4.3.2 bye",)), (None,), None, None, session.failure)

    session = Session(closes_at_u1)
    w = world(lambda: session, depth=3)
    w.queue_entries(*[[f"u{i}@d.test"] for i in range(5)])
    await w.connect_once()
    assert [r["rcpt"] for r in w.events("delivered")] == ["u0@d.test"]
    deferred = w.events("deferred")
    assert [r["rcpt"] for r in deferred] == ["u1@d.test", "u2@d.test", "u3@d.test"]
    assert deferred[0]["code"] == 421
    assert [t.recipients[0] for t in session.sent] == [f"u{i}@d.test" for i in range(4)]
    ready, waiting, inflight = w.queue.counts()
    assert (ready, waiting, inflight) == (1, 3, 0)  # u4 untouched; u1-u3 wait for a retry


async def test_cancelled_mid_pipeline_every_entry_goes_back_unrecorded(world: Any) -> None:
    started = asyncio.Event()

    class Hanging(Session):
        async def result(self, txn: Transaction) -> TxnResult:
            started.set()
            await asyncio.Event().wait()  # the server never answers
            raise AssertionError("unreachable")

    session = Hanging(delivered)
    w = world(lambda: session, depth=2)
    w.queue_entries(*[[f"u{i}@d.test"] for i in range(3)])
    w.queue.domain(DOMAIN).connections += 1
    task = asyncio.create_task(w.deliverer.run_connection(DOMAIN))
    await asyncio.wait_for(started.wait(), 5)
    assert len(session.sent) == 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert w.queue.counts() == (3, 0, 0)  # both in flight are back, ready
    assert w.records() == []


async def test_an_entry_of_several_transactions_sends_the_next_behind_the_pipeline(
    world: Any,
) -> None:
    session = Session(delivered)
    policy = DomainPolicy(max_recipients_per_transaction=2, retry_schedule=(60.0,))
    w = world(lambda: session, depth=2, policy=policy)
    w.queue_entries(["a0@d.test", "a1@d.test", "a2@d.test"], ["b@d.test"])
    await w.connect_once()
    assert session.calls == [
        ("start", "a0@d.test"),
        ("start", "b@d.test"),
        ("result", "a0@d.test"),
        ("start", "a2@d.test"),  # the entry's second transaction, behind b's
        ("result", "a2@d.test"),
        ("result", "b@d.test"),
    ]
    assert session.peak == 2
    assert [r["rcpt"] for r in w.events("delivered")] == [
        "a0@d.test",
        "a1@d.test",
        "a2@d.test",
        "b@d.test",
    ]


# -- [routes]: a relay instead of MX ---------------------------------------------------------

AUTH = RelayAuth("volley", Secret("pw"), Path("/unused"))
BY_NAME = Relay("smtp.relay.test", 587, False, RelayTls.REQUIRED, AUTH, "routes.default")
BY_ADDRESS = Relay("127.0.0.9", 2525, True, RelayTls.IMPLICIT, None, "routes.default")


async def test_a_relay_by_name_is_looked_up_by_address_and_used_with_its_port_tls_and_login(
    world: Any,
) -> None:
    session = Session(delivered)
    w = world(lambda: session, routes=Routes(default=BY_NAME))
    w.queue_entries(["a@d.test"])
    await w.connect_once()
    assert w.resolver.asked == ["host smtp.relay.test"]  # no MX lookup for d.test
    assert w.opened == ["127.0.0.9"]
    (how,) = w.opened_with
    assert (how["port"], how["tls"], how["relay"], how["mx_host"]) == (
        587, TlsPolicy.REQUIRED, BY_NAME, "smtp.relay.test"
    )  # fmt: skip
    assert [e["rcpt"] for e in w.events("delivered")] == ["a@d.test"]


async def test_implicit_tls_sends_no_starttls_and_a_domain_route_opts_out(world: Any) -> None:
    routes = Routes(default=BY_ADDRESS, domains={"other.test": None})
    w = world(lambda: Session(delivered), routes=routes)
    w.queue_entries(["a@d.test"])
    await w.connect_once()
    assert w.resolver.asked == []  # an address needs no DNS at all
    (how,) = w.opened_with
    assert (how["port"], how["tls"], how["relay"]) == (2525, TlsPolicy.DISABLED, BY_ADDRESS)
    assert routes.relay_for("other.test") is None


async def test_mx_delivery_passes_no_relay(world: Any) -> None:
    w = world(lambda: Session(delivered))
    w.queue_entries(["a@d.test"])
    await w.connect_once()
    assert w.resolver.asked == ["MX d.test"]
    assert (w.opened_with[0]["port"], w.opened_with[0]["relay"]) == (25, None)


async def test_a_refused_login_defers_the_destination_and_is_said_on_stderr(
    world: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    refused = TransportFailure(
        Phase.AUTH, FailureKind.AUTH, "AUTH PLAIN as 'volley' refused: 535 5.7.8 bad credentials"
    )
    w = world(lambda: ConnectFailure("", "", failure=refused), routes=Routes(default=BY_NAME))
    w.queue_entries(["a@d.test"], ["b@d.test"])
    await w.connect_once()
    deferred = w.events("deferred")
    assert [d["rcpt"] for d in deferred] == ["a@d.test", "b@d.test"] and not w.events("bounced")
    assert (deferred[0]["code"], deferred[0]["enhanced"]) == (451, "4.7.8")
    assert "refused: 535 5.7.8 bad credentials" in deferred[0]["text"]
    err = capsys.readouterr().err
    assert err.count("volley: relay smtp.relay.test:587: AUTH PLAIN as 'volley' refused") == 1
    assert "check routes.default.auth" in err and "pw" not in err.replace("'volley'", "")
    assert ["volley_connection_errors", ["auth"], 1] in w.tally.drain()[0]


EIGHT_BIT = (
    b"Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n\r\n" + "Grüße\r\n".encode()
)


async def test_an_8bit_entry_goes_as_7bit_to_a_server_without_8bitmime(world: Any) -> None:
    session = Session(delivered, keywords=("PIPELINING",))
    w = world(lambda: session)
    w.queue_entries(["a@d.test"], body=EIGHT_BIT, **{"8bit": True})
    await w.connect_once()
    (txn,) = session.sent
    assert txn.body.isascii() and not txn.body_8bit
    assert b"Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe\r\n" in txn.body
    assert w.events("delivered")


async def test_an_8bit_entry_goes_as_is_to_a_server_with_8bitmime(world: Any) -> None:
    session = Session(delivered)
    w = world(lambda: session)
    w.queue_entries(["a@d.test"], body=EIGHT_BIT, **{"8bit": True})
    await w.connect_once()
    (txn,) = session.sent
    assert txn.body == EIGHT_BIT and txn.body_8bit


async def test_an_unconvertible_entry_bounces_5_6_3_and_is_never_sent(world: Any) -> None:
    session = Session(delivered, keywords=("PIPELINING",))
    w = world(lambda: session)
    body = EIGHT_BIT.replace(b"Subject: x", "Subject: Grüße".encode())
    w.queue_entries(["a@d.test"], body=body, **{"8bit": True})
    await w.connect_once()
    assert session.sent == []
    (bounced,) = w.events("bounced")
    assert (bounced["code"], bounced["enhanced"]) == (554, "5.6.3")
    assert "8-bit bytes in a header field" in bounced["text"]
