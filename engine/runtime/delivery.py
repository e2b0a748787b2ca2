"""Delivery: one task per SMTP connection to a destination, reused for many messages.

Responsible for: the life of one connection — resolve the route (cached), take the
leases of its site (the cross-process slots: engine.runtime.sites) before anything else
that costs the receiver, wait for the site's connection-rate instant, try the MX hosts
and their addresses in order until one gives a session, then send the destination's
ready entries one after another over it (up to max_messages_per_connection, each at its
message-rate instant), wait a little for more work when idle, QUIT, and give the leases
back in `finally`.  A rate instant too far off pauses the destination instead of holding
a connection open for it.
Not responsible for: what failures mean (engine.sched.classify), spool updates
(engine.runtime.outcome), or how many connections a destination gets (engine.sched.queue).

Whole-destination failures — no route, or no MX host would take a session while this
domain had no other open connection — suspend the destination and defer its ready
entries (Postfix's "dead destination"), so a broken domain is not hammered entry by entry.
A connection failure while other connections to the domain are open only lowers that
domain's concurrency window (the receiver is telling us it wants fewer connections).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping

from engine.clock import Clock
from engine.config import DomainPolicy, Settings
from engine.model import (
    ConnectFailure,
    FailureKind,
    Phase,
    RecipientOutcome,
    Transaction,
    TransportFailure,
    TxnResult,
)
from engine.net.mx import Route, RouteFailure, RouteFailureKind
from engine.net.relay import AuthAlarm, HostResolver, hop, resolve_route
from engine.net.session import SmtpSession, open_session
from engine.net.sts import StsResolver
from engine.net.targets import TargetRules
from engine.runtime.egress import EgressAccess, Outbound, QuotaGrants
from engine.runtime.flight import Flight, local_error, recipient_batches, start_batch
from engine.runtime.inflight import InflightJournal
from engine.runtime.outcome import Attempt, Outcomes
from engine.runtime.pacing import Pacer, RateGrants
from engine.runtime.shaping_feed import ShapingFeed
from engine.runtime.sites import Leases, SiteAccess
from engine.runtime.tlsguard import TlsGuard
from engine.runtime.verdicts import Verdicts
from engine.sched.classify import classify_txn
from engine.sched.queue import WorkQueue
from engine.shaping.gcra import Rate
from engine.shaping.limits import SiteLimits
from engine.shaping.rates import Grant
from engine.shaping.sites import Site
from engine.telemetry.catalog import CONNECTION_ERROR_KINDS
from engine.telemetry.metrics import Tally, counter_key, reply_key
from spool import EntryRef, ShardQueue

__all__ = ["Deliverer"]

# A window this large is no limit (max_connections decides); the cap keeps it an int
# of fixed size however many sessions succeed.
WINDOW_MAX = 1 << 16

# Counted per message: keys built once (Tally.bump).
_TRANSACTIONS = counter_key("volley_transactions")
_REUSED = counter_key("volley_connections", "reused")


class _NoRates:
    """For a Deliverer made without a rate service: every instant is now."""

    async def grant(self, keys: list[str], rates: list[Rate], want: int) -> Grant:
        return Grant((0.0,) * want, 0.0)

    def give_back(self, keys: list[str], unused: list[float]) -> None:
        pass


class Deliverer:
    def __init__(
        self,
        *,
        settings: Settings,
        shard: ShardQueue,
        queue: WorkQueue,
        resolver: HostResolver,  # MX routes and relays' addresses (engine.net.relay)
        leases: Leases,
        outcomes: Outcomes,
        tally: Tally,
        clock: Clock,
        rng: random.Random,
        kick: Callable[[], None],
        journal: InflightJournal | None = None,
        rates: RateGrants | None = None,
        feed: ShapingFeed | None = None,
        quota: QuotaGrants | None = None,
        open_session_fn: Callable[..., Awaitable[SmtpSession | ConnectFailure]] = open_session,
        sts: StsResolver | None = None,
    ) -> None:
        self._s = settings
        self._targets = TargetRules.from_settings(settings)
        self._shard = shard
        self._queue = queue
        self._resolver = resolver
        self._verdicts = Verdicts(settings, shard, queue, outcomes, tally, clock, rng)
        self._feed = feed
        self._sites = SiteAccess(settings, leases, rates or _NoRates(), clock, self._contend, feed)
        self._site_of: dict[str, tuple[Site, SiteLimits]] = {}  # domain -> site, ceiling
        self.egress = EgressAccess(settings, queue, clock, rng, tally, quota)
        self._outcomes = outcomes
        self._tally = tally
        self._clock = clock
        self._rng = rng
        self._kick = kick
        self._tls = TlsGuard(settings, tally, sts, open_session_fn)  # verify, MTA-STS
        self._journal = journal
        self._auth_alarm = AuthAlarm()
        self._work: dict[str, asyncio.Event] = {}
        self._contended: dict[str, float] = {}
        self.draining = False
        self.open_sessions: Counter[str] = Counter()  # per destination domain
        self.idle_sessions: Counter[str] = Counter()
        self.rate_waits: Counter[str] = Counter()  # connections waiting for a rate instant

    def reconfigure(self, settings: Settings) -> None:
        """A reload: connections opened from now on follow `settings`."""
        self._s = settings
        self._targets = TargetRules.from_settings(settings)
        self._tls.reconfigure(settings)
        self._sites.reconfigure(settings)
        self._verdicts.reconfigure(settings)
        self.egress.reconfigure(settings)

    @property
    def waiting_for_slot(self) -> Mapping[str, int]:
        """Connection tasks per destination waiting for a site's connection slot."""
        return self._sites.waiting

    # -- signals from the worker ------------------------------------------------------
    def work_arrived(self, domain: str) -> None:
        ev = self._work.get(domain)
        if ev is not None:
            ev.set()

    def contend(self, key: str) -> None:
        """Another worker waits for a slot of lease `key` (a site or a provider): this
        worker's idle connections that hold one close now."""
        for domain in list(self._sites.domains_of(key)):
            self._contend(domain)

    def _contend(self, domain: str) -> None:
        self._contended[domain] = self._clock.monotonic() + self._s.idle_timeout
        self.work_arrived(domain)

    def forget(self, domains: list[str]) -> None:
        """The queue forgot these idle domains (no connection is open to them): so do we."""
        for domain in domains:
            self._sites.forget(domain)
            self._site_of.pop(domain, None)
            self.egress.forget(domain)
            self._work.pop(domain, None)
            self._contended.pop(domain, None)
            self._verdicts.clear_refusals(domain)
            if not self.open_sessions.get(domain):
                self.open_sessions.pop(domain, None)
            if not self.idle_sessions.get(domain):
                self.idle_sessions.pop(domain, None)
            if not self.rate_waits.get(domain):
                self.rate_waits.pop(domain, None)

    def drain(self) -> None:
        self.draining = True
        for ev in self._work.values():
            ev.set()

    # -- one connection ------------------------------------------------------------------
    async def run_connection(self, domain: str) -> None:
        """Caller has counted this task in queue.domain(domain).connections."""
        policy = self._s.policy(domain)
        state = self._queue.domain(domain)
        held: list[str] = []
        out = self.egress.outbound()  # smtp.source_address until a source is chosen
        try:
            route = await self._resolve(domain)
            if isinstance(route, RouteFailure):
                self._verdicts.fail_destination(domain, policy, route=route)
                return
            site, ceiling = self._sites.site(domain, route, policy)
            self._site_of[domain] = (site, ceiling)
            limits, suspended, bouncing = self._sites.in_force(site, ceiling, self._clock.wall())
            if bouncing is not None:
                self._verdicts.bounce_ready(domain, site.name, bouncing)
                return
            if suspended is not None:
                self._queue.pause(domain, suspended, "shaping")
                return
            if (later := await self.egress.choose(domain, site, limits, out)) is not None:
                self._pause(domain, later, "warmup")
                return
            site, limits = out.apply(site, limits)  # keys per (source, site); quota caps
            base = out.apply(site, ceiling)[1]  # before shaping: it may go up as well as down
            await self._sites.acquire(domain, site, limits, held)
            if not state.ready or self.draining:
                return
            # The wait for a slot can be long: what shaping has in force now decides.
            limits, suspended, _ = self._sites.in_force(site, base, self._clock.wall())
            if suspended is not None:
                self._queue.pause(domain, suspended, "shaping")
                return
            later = await self._sites.connection_instant(site, limits)
            if later is not None:
                self._pause(domain, later, "rate")
                return
            session = await self._connect(out.reachable(route), limits, out)
            if isinstance(session, ConnectFailure):
                if self._feed is not None:
                    self._feed.refused(site, ceiling, session)
                self._verdicts.connection_failed(domain, policy, session)
                return
            self._tally.inc("volley_connections", "opened")
            self._verdicts.clear_refusals(domain)
            if self._feed is not None:
                self._feed.opened(site, ceiling)
            # Slow start: the window doubles with each session that reaches READY, so a
            # destination that fails sees one connection per worker, not max_connections.
            # Capped by a constant, not by the policy: max_connections applies where the
            # window is used, so a reload that raises it takes effect at once.
            state.window = min(WINDOW_MAX, state.window * 2)
            self._kick()
            self.open_sessions[domain] += 1
            try:
                pace = self._sites.pacing(site, base, out.counter)
                broke = await self._serve(session, domain, limits, pace(None), pace)
            finally:
                self.open_sessions[domain] -= 1
                self._count_error(session.failure)
                await session.close()
            if broke is not None:
                self._verdicts.connection_failed(domain, policy, broke)
        finally:
            state.connections -= 1
            self._sites.release(domain, held)
            self.egress.release(out)
            self._kick()

    async def _resolve(self, domain: str) -> Route | RouteFailure:
        try:
            relay = self._s.routes.relay_for(domain)  # [routes]; None: by MX, then MTA-STS
            return await resolve_route(
                domain, relay, self._resolver, self._targets, self._tls.screen
            )
        except Exception as exc:  # a bug of ours must defer the destination, not escape
            self._verdicts.internal_error(f"resolving {domain}", exc)
            return RouteFailure(
                domain, RouteFailureKind.TEMPORARY, f"local error: {type(exc).__name__}: {exc}"
            )

    async def _connect(
        self, route: Route, limits: SiteLimits, out: Outbound
    ) -> SmtpSession | ConnectFailure:
        last: ConnectFailure | None = None
        # smtp.mx_session_limit counts addresses that answered the connect (Postfix's
        # smtp_mx_session_limit): refused or unreachable ones cost nothing to skip.
        sessions = self._s.mx_session_limit
        relay, port, tls = hop(route, self._s.routes, limits.tls, self._s.smtp_port)
        for host in route.hosts:
            for address in host.addresses:
                if sessions <= 0:
                    break
                got = await self._tls.open(
                    route.sts,
                    address,
                    port,
                    mx_host=host.name,
                    helo_name=out.helo,
                    source_address=out.address,
                    tls=tls,
                    timeouts=self._s.smtp_timeouts,
                    lifetime=self._s.max_connection_lifetime,
                    relay=relay,
                )
                if not isinstance(got, ConnectFailure):
                    return got
                last = got
                failure = got.failure
                self._count_error(failure)
                self._auth_alarm.failed(relay, route.domain, failure, self._clock.monotonic())
                if failure is None or failure.phase is not Phase.CONNECT:
                    sessions -= 1
        return last or ConnectFailure(
            host=route.domain,
            address="",
            failure=TransportFailure(Phase.CONNECT, FailureKind.REFUSED, "no MX host address"),
        )

    def _count_error(self, failure: TransportFailure | None) -> None:
        """volley_connection_errors: what the peer or the network did to a connection
        (each is also in the log, as the deferral's text)."""
        if failure is not None and failure.kind.value in CONNECTION_ERROR_KINDS:
            self._tally.inc("volley_connection_errors", failure.kind.value)

    async def _serve(
        self,
        session: SmtpSession,
        domain: str,
        limits: SiteLimits,
        pacer: Pacer | None,
        pace: Callable[[Pacer | None], Pacer | None],
    ) -> ConnectFailure | None:
        """Send ready entries over `session`, each at its rate instant, up to
        `smtp.pipeline_depth` transactions in flight (RFC 2920: the next entries'
        transactions leave behind the oldest one's content; 1 = one at a time).  Outcomes
        are recorded in the order the entries were taken.  Returns the failure when the
        peer broke the session before one transaction completed on it: that is a failed
        connection, the same as one that never became ready (a server that closes at MAIL,
        or answers it with 421, must not get a new connection per queued message)."""
        attempt = Attempt(session.mx_host, session.address)  # the same for every message
        policy = self._s.policy(domain)
        state = self._queue.domain(domain)
        most = limits.max_messages_per_connection
        depth = self._s.pipeline_depth
        flights: deque[Flight] = deque()
        sent = 0
        paused = False
        try:
            while True:
                while (
                    len(flights) < depth
                    and sent < most
                    and not paused
                    and not self.draining
                    and state.ready
                    and session.can_start()
                ):
                    pacer = pace(pacer)  # what shaping has in force now
                    if pacer is not None:
                        self.rate_waits[domain] += 1
                        try:
                            later = await pacer.take(most - sent)
                        finally:
                            self.rate_waits[domain] -= 1
                        if later is not None:
                            self._pause(domain, later, "rate")
                            paused = True
                            break
                    ref = self._queue.take(domain)
                    if ref is None:  # another connection took it while this one waited
                        if pacer is not None:
                            pacer.undo()
                        break
                    assert isinstance(ref, EntryRef)
                    if sent:
                        self._tally.bump(_REUSED)
                    sent += 1
                    flight = self._begin(session, ref, policy)
                    if flight is not None:
                        flights.append(flight)
                if flights:
                    await self._finish(session, flights.popleft(), attempt)
                    continue  # the oldest is recorded: start the next behind the rest
                if paused or sent >= most or self.draining or not session.is_reusable():
                    break
                if not state.ready and not await self._wait_for_work(domain):
                    return None
        except BaseException:
            # Cancelled (shutdown): the entries stay as they are on disk and are retried
            # after restart; in memory they simply go back.
            for flight in flights:
                self._queue.untake(flight.ref)
            raise
        finally:
            if pacer is not None:
                pacer.close()
        failure = session.failure
        if (
            failure is None
            or not sent  # e.g. a 421 while idle: the server's own time-out, not a refusal
            or session.transactions
            or failure.kind is FailureKind.CANCELLED
        ):
            return None
        return ConnectFailure(session.mx_host, session.address, failure=failure)

    def _pause(self, domain: str, at: float, reason: str) -> None:
        """Start no connection to `domain` until monotonic instant `at` (the queue keeps
        wall time)."""
        now = self._clock.monotonic()
        self._queue.pause(domain, self._clock.wall() + max(0.0, at - now), reason)
        self._kick()

    async def _wait_for_work(self, domain: str) -> bool:
        """Idle: wait up to idle_timeout for ready work; False means close."""
        deadline = self._clock.monotonic() + self._s.idle_timeout
        ev = self._work.get(domain)
        if ev is None:  # not setdefault: that would build an Event on every idle wait
            ev = self._work[domain] = asyncio.Event()
        self.idle_sessions[domain] += 1
        try:
            while not self.draining:
                if self._queue.domain(domain).ready:
                    return True
                now = self._clock.monotonic()
                if now >= deadline or self._contended.get(domain, 0.0) > now:
                    return False
                ev.clear()
                try:
                    async with asyncio.timeout(deadline - now):  # not wait_for: gh-86296
                        await ev.wait()
                except TimeoutError:
                    return bool(self._queue.domain(domain).ready)
            return False
        finally:
            self.idle_sessions[domain] -= 1

    def _begin(self, session: SmtpSession, ref: EntryRef, policy: DomainPolicy) -> Flight | None:
        """Load `ref` and start its first transaction (behind those in flight); None when
        the entry is gone or corrupt (already handled)."""
        loaded = self._verdicts.load(ref, self._clock.wall())
        if loaded is None:
            return None
        meta, body = loaded
        size = policy.max_recipients_per_transaction
        flight = Flight(ref, meta, body, recipient_batches(meta["rcpts"], size))
        if self._journal is not None:
            self._journal.start(ref.name)  # before any byte of it leaves
        self._launch(session, flight)
        return flight

    def _launch(self, session: SmtpSession, flight: Flight) -> None:
        """Start the flight's next batch of recipients; verdicts known without sending
        go straight to its outcomes (and the batch after it is tried)."""
        while flight.rest and flight.pending is None:
            batch = flight.rest.pop(0)
            try:
                verdicts, flight.pending = start_batch(
                    session, flight.meta, flight.body, batch, self._s.dkim
                )
            except Exception as exc:
                self._local_failure(session, flight, batch, exc)
                continue
            flight.started = time.perf_counter()
            flight.outcomes += verdicts

    async def _finish(self, session: SmtpSession, flight: Flight, attempt: Attempt) -> None:
        """Wait for the flight's transactions (its later batches start one by one), then
        record its outcome.  Whatever happens, every recipient gets a verdict."""
        try:
            while flight.pending is not None:
                txn, handle = flight.pending
                try:
                    result = await session.result(handle)
                    flight.outcomes += self._classified(txn, result, flight.started)
                except Exception as exc:
                    self._local_failure(session, flight, list(txn.recipients), exc)
                flight.pending = None
                self._launch(session, flight)
        except BaseException:
            self._queue.untake(flight.ref)  # cancelled: see _serve
            raise
        ref, outcomes = flight.ref, flight.outcomes
        if self._feed is not None and (seen := self._site_of.get(ref.domain)) is not None:
            self._feed.outcomes(seen[0], seen[1], outcomes)
        now = self._clock.wall()
        finished = self._verdicts.apply(ref, flight.meta, flight.body, outcomes, attempt, now)
        if self._journal is not None:
            # An entry that left the queue needs no prompt "-" (engine.runtime.inflight).
            self._journal.done(ref.name, lazy=finished)

    def _local_failure(
        self, session: SmtpSession, flight: Flight, batch: list[str], exc: Exception
    ) -> None:
        """A bug of ours: the session's state is unknown, so it goes; the recipients are
        deferred with the reason (then retried, expired after max_age), never handed
        straight back to the queue (issue #14, #3)."""
        session.abort(f"local error: {exc!r}")
        self._verdicts.internal_error(f"delivering {flight.ref.name}", exc)
        flight.outcomes += local_error(batch, exc)

    def _classified(
        self, txn: Transaction, result: TxnResult, started: float
    ) -> list[RecipientOutcome]:
        """Count one finished transaction and classify it: a verdict per recipient."""
        tally = self._tally
        tally.bump(_TRANSACTIONS)
        tally.observe("volley_smtp_transaction_seconds", time.perf_counter() - started)
        for reply in (result.mail, result.data, result.final, *result.rcpts):
            if reply is not None:
                tally.bump(reply_key(reply.code, reply.enhanced))
        return classify_txn(txn, result)
