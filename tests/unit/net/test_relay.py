"""engine.net.relay: the route through a relay (no MX lookup, the relay's port, every
failure temporary), when a refused login is said on stderr, and `authenticate` through
open_session against real aiosmtpd relays on 127.0.0.77: PLAIN and LOGIN after
STARTTLS, refusals as AUTH failures that never show the password, and no AUTH line ever
written over an unencrypted connection unless tls = "disabled"."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from ipaddress import ip_network
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from engine.config.routes import Relay, RelayAuth, RelayTls, Routes, Secret
from engine.model import ConnectFailure, FailureKind, Phase, TlsPolicy, TransportFailure
from engine.net.mx import MxHost, Route, RouteFailure, RouteFailureKind
from engine.net.relay import AUTH_ALARM_EVERY, AuthAlarm, hop, resolve_route
from engine.net.session import SmtpSession, open_session
from engine.net.targets import TargetRules
from tests.unit.net.test_session import HOST, TIMEOUTS, Handler, Mx, server_context, txn

RELAY = Relay("smtp.relay.test", 587, False, RelayTls.REQUIRED, None, "routes.default")
MX_ROUTE = Route("dest.test", (MxHost("mx.dest.test", 10, ("192.0.2.1",)),), False)


class Resolver:
    def __init__(self, host: Route | RouteFailure | None = None) -> None:
        self.host = host
        self.mx = MX_ROUTE
        self.asked: list[tuple[str, ...]] = []

    async def resolve(self, domain: str) -> Route | RouteFailure:
        self.asked.append(("MX", domain))
        return self.mx

    async def resolve_host(self, domain: str, host: str) -> Route | RouteFailure:
        self.asked.append(("host", domain, host))
        assert self.host is not None
        return self.host


OPEN = TargetRules(ignore=(), address_limit=5, port=25, listeners=frozenset())


async def never(route: Route) -> Route | RouteFailure:
    raise AssertionError(f"MTA-STS screening asked for a relay's route {route}")


async def test_no_relay_is_mx_delivery_screened_then_narrowed_by_mta_sts() -> None:
    resolver = Resolver()
    seen: list[Route] = []

    async def sts(route: Route) -> Route:
        seen.append(route)
        return replace(route, hosts=())

    got = await resolve_route("dest.test", None, resolver, OPEN, sts)
    assert got == replace(MX_ROUTE, hosts=()) and seen == [MX_ROUTE]
    assert resolver.asked == [("MX", "dest.test")]
    # The targets' rules come first: an MX host on loopback is gone before MTA-STS looks.
    loopback = Route("dest.test", (MxHost("mx.dest.test", 10, ("127.0.0.1",)),), False)
    resolver.mx = loopback
    strict = TargetRules(
        ignore=(ip_network("127.0.0.0/8"),), address_limit=5, port=25, listeners=frozenset()
    )
    gone = await resolve_route("dest.test", None, resolver, strict, sts)
    assert isinstance(gone, RouteFailure) and gone.kind is RouteFailureKind.NO_ROUTE
    assert len(seen) == 1


async def test_a_relay_by_name_is_its_addresses_on_its_port_never_mx() -> None:
    found = Route("dest.test", (MxHost("smtp.relay.test", 0, ("192.0.2.9",)),), False)
    resolver = Resolver(found)
    got = await resolve_route("dest.test", RELAY, resolver, OPEN, never)
    assert got == replace(found, port=587)
    assert resolver.asked == [("host", "dest.test", "smtp.relay.test")]


async def test_a_relay_by_address_needs_no_dns() -> None:
    relay = replace(RELAY, host="127.0.0.9", literal=True, port=2525)
    resolver = Resolver()
    got = await resolve_route("dest.test", relay, resolver, OPEN, never)
    assert got == Route("dest.test", (MxHost("127.0.0.9", 0, ("127.0.0.9",)),), False, 2525)
    assert resolver.asked == []


async def test_every_failure_of_a_relay_route_defers_and_names_the_setting() -> None:
    """A typo in the relay must not bounce all mail, as a missing MX host would (5.4.4)."""
    gone = RouteFailure("dest.test", RouteFailureKind.NO_ROUTE, "no address")
    got = await resolve_route("dest.test", RELAY, Resolver(gone), OPEN, never)
    assert isinstance(got, RouteFailure) and got.kind is RouteFailureKind.TEMPORARY
    assert got.detail == "relay smtp.relay.test:587 (routes.default.relay): no address"

    relay = replace(RELAY, host="127.0.0.1", literal=True)
    ours = TargetRules(
        ignore=(), address_limit=5, port=25, listeners=frozenset({("127.0.0.1", 587)})
    )
    looped = await resolve_route("dest.test", relay, Resolver(), ours, never)
    assert isinstance(looped, RouteFailure) and looped.kind is RouteFailureKind.TEMPORARY
    assert "loops back to myself" in looped.detail


def test_the_auth_alarm_speaks_once_per_relay_per_period() -> None:
    alarm = AuthAlarm()
    refused = TransportFailure(
        Phase.AUTH, FailureKind.AUTH, "AUTH PLAIN as 'u' refused: 535 5.7.8 no"
    )
    line = alarm.line(RELAY, "dest.test", refused, 100.0)
    assert line is not None
    assert line.startswith("volley: relay smtp.relay.test:587: AUTH PLAIN as 'u' refused: 535")
    assert "deferred, not bounced" in line and "check routes.default.auth" in line
    assert alarm.line(RELAY, "other.test", refused, 100.0 + AUTH_ALARM_EVERY - 1) is None
    other = replace(RELAY, host="other.relay.test")
    assert alarm.line(other, "dest.test", refused, 101.0) is not None  # per relay
    assert alarm.line(RELAY, "dest.test", refused, 100.0 + AUTH_ALARM_EVERY) is not None


def test_the_auth_alarm_ignores_other_failures_and_mx_delivery() -> None:
    alarm = AuthAlarm()
    tls = TransportFailure(Phase.STARTTLS, FailureKind.TLS, "STARTTLS not offered")
    refused = TransportFailure(Phase.AUTH, FailureKind.AUTH, "refused")
    assert alarm.line(RELAY, "d.test", tls, 0.0) is None
    assert alarm.line(RELAY, "d.test", None, 0.0) is None
    assert alarm.line(None, "d.test", refused, 0.0) is None


def test_hop_takes_a_relays_port_and_tls_else_the_destinations() -> None:
    routes = Routes(default=RELAY)
    relayed = Route("dest.test", (MxHost("smtp.relay.test", 0, ("192.0.2.9",)),), False, 587)
    assert hop(relayed, routes, TlsPolicy.VERIFY, 25) == (RELAY, 587, TlsPolicy.REQUIRED)
    assert hop(MX_ROUTE, routes, TlsPolicy.VERIFY, 25) == (None, 25, TlsPolicy.VERIFY)
    # Routes reloaded away between resolving and connecting: the route's port, MX TLS.
    assert hop(relayed, Routes(), TlsPolicy.OPPORTUNISTIC, 25) == (
        None,
        587,
        TlsPolicy.OPPORTUNISTIC,
    )


# -- logging in (authenticate) against real relays ------------------------------------------

PASSWORD = "pä55 w0rd"


@dataclass
class Relayed(Handler):
    """The test_session handler, plus what AUTH brought; `offer_auth=False` hides AUTH."""

    offer_auth: bool = True
    logins: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    auth_lines: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
        responses: list[str],
    ) -> list[str]:  # fmt: skip
        responses = await super().handle_EHLO(server, session, envelope, hostname, responses)
        if not self.offer_auth:
            responses = [r for r in responses if not r[4:].upper().startswith("AUTH")]
        return responses

    def authenticator(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        with self.lock:
            self.logins.append((mechanism, data.login, data.password))
        if data.password == b"later":
            return AuthResult(success=False, handled=False, message="454 4.7.0 try again later")
        # handled=False: aiosmtpd then answers 535 itself (True would leave the client
        # waiting for a reply the authenticator was supposed to send).
        return AuthResult(success=data.password == PASSWORD.encode(), handled=False)


class CountingSMTP(SMTP):
    """Counts every AUTH command, also the ones aiosmtpd refuses before its authenticator
    (no TLS yet), so a test can say no AUTH line arrived at all."""

    async def smtp_AUTH(self, arg: str) -> None:
        handler = self.event_handler
        assert isinstance(handler, Relayed)
        with handler.lock:
            handler.auth_lines += 1
        await super().smtp_AUTH(arg)


class CountingController(Controller):
    def factory(self) -> SMTP:
        return CountingSMTP(self.handler, **self.SMTP_kwargs)


def relay_mx(start_mx: Callable[..., Mx], handler: Relayed, **smtp: Any) -> Mx:
    return start_mx(handler, CountingController, authenticator=handler.authenticator, **smtp)


def relay(tls: RelayTls, password: str = PASSWORD, user: str = "volley") -> Relay:
    auth = RelayAuth(user, Secret(password), Path("/unused"))
    return Relay(HOST, 0, True, tls, auth, "routes.default")


async def connect(mx: Mx, r: Relay) -> SmtpSession | ConnectFailure:
    return await open_session(
        HOST, mx.port, mx_host=HOST, helo_name="volley.test", source_address=None,
        tls=r.tls.starttls, timeouts=TIMEOUTS, relay=r,
    )  # fmt: skip


def refused(run: Callable[..., Any], mx: Mx, r: Relay) -> TransportFailure:
    """Open a session that must fail; what the failure says."""

    async def scenario() -> ConnectFailure:
        got = await connect(mx, r)
        assert isinstance(got, ConnectFailure), got
        return got

    failure = run(scenario()).failure
    assert failure is not None
    return failure


def test_plain_after_starttls_then_mail(
    run: Callable[..., Any], start_mx: Callable[..., Mx], tls_cert: tuple[Path, Path]
) -> None:
    handler = Relayed()
    mx = relay_mx(start_mx, handler, tls_context=server_context(tls_cert))

    async def scenario() -> None:
        session = await connect(mx, relay(RelayTls.REQUIRED))
        assert isinstance(session, SmtpSession), session
        try:
            assert session.tls_active
            result = await session.send(txn("ok@dst.test"))
            assert result.final is not None and result.final.code == 250
        finally:
            await session.close()

    run(scenario())
    assert handler.logins == [("PLAIN", b"volley", PASSWORD.encode())]
    assert len(handler.messages) == 1


def test_login_when_plain_is_not_offered(
    run: Callable[..., Any], start_mx: Callable[..., Mx], tls_cert: tuple[Path, Path]
) -> None:
    handler = Relayed()
    mx = relay_mx(
        start_mx, handler, tls_context=server_context(tls_cert), auth_exclude_mechanism=["PLAIN"]
    )

    async def scenario() -> None:
        session = await connect(mx, relay(RelayTls.REQUIRED))
        assert isinstance(session, SmtpSession), session
        await session.close()

    run(scenario())
    assert handler.logins == [("LOGIN", b"volley", PASSWORD.encode())]


def test_a_wrong_password_is_an_auth_failure_naming_the_reply_not_the_password(
    run: Callable[..., Any], start_mx: Callable[..., Mx], tls_cert: tuple[Path, Path]
) -> None:
    handler = Relayed()
    mx = relay_mx(start_mx, handler, tls_context=server_context(tls_cert))

    failure = refused(run, mx, relay(RelayTls.REQUIRED, password="wrong-secret"))
    assert (failure.phase, failure.kind) == (Phase.AUTH, FailureKind.AUTH)
    assert failure.detail.startswith("AUTH PLAIN as 'volley' refused: 535 5.7.8")
    assert "wrong-secret" not in failure.detail
    assert handler.logins == [("PLAIN", b"volley", b"wrong-secret")]


def test_a_temporary_refusal_is_an_auth_failure_too(
    run: Callable[..., Any], start_mx: Callable[..., Mx], tls_cert: tuple[Path, Path]
) -> None:
    mx = relay_mx(start_mx, Relayed(), tls_context=server_context(tls_cert))

    failure = refused(run, mx, relay(RelayTls.REQUIRED, password="later"))
    assert failure.kind is FailureKind.AUTH
    assert "454 4.7.0 try again later" in failure.detail


def test_required_tls_without_starttls_never_sends_auth(
    run: Callable[..., Any], start_mx: Callable[..., Mx]
) -> None:
    handler = Relayed()  # offers AUTH in plaintext: a misconfigured relay
    mx = relay_mx(start_mx, handler, auth_require_tls=False)

    failure = refused(run, mx, relay(RelayTls.REQUIRED))
    assert (failure.phase, failure.kind, failure.detail) == (
        Phase.STARTTLS,
        FailureKind.TLS,
        "STARTTLS not offered",
    )
    assert handler.auth_lines == 0 and handler.logins == []


def test_opportunistic_tls_without_starttls_still_never_sends_auth(
    run: Callable[..., Any], start_mx: Callable[..., Mx]
) -> None:
    handler = Relayed()
    mx = relay_mx(start_mx, handler, auth_require_tls=False)

    failure = refused(run, mx, relay(RelayTls.OPPORTUNISTIC))
    assert (failure.phase, failure.kind) == (Phase.AUTH, FailureKind.TLS)
    assert "AUTH is never sent over an unencrypted" in failure.detail
    assert 'routes.default.tls = "disabled"' in failure.detail
    assert handler.auth_lines == 0


def test_tls_disabled_sends_auth_in_clear_because_it_was_asked(
    run: Callable[..., Any], start_mx: Callable[..., Mx], tls_cert: tuple[Path, Path]
) -> None:
    handler = Relayed()
    mx = relay_mx(start_mx, handler, tls_context=server_context(tls_cert), auth_require_tls=False)

    async def scenario() -> None:
        session = await connect(mx, relay(RelayTls.DISABLED))
        assert isinstance(session, SmtpSession), session
        assert not session.tls_active and session.supports("STARTTLS")
        await session.close()

    run(scenario())
    assert handler.logins == [("PLAIN", b"volley", PASSWORD.encode())]


def test_a_relay_without_auth_is_an_auth_failure(
    run: Callable[..., Any], start_mx: Callable[..., Mx], tls_cert: tuple[Path, Path]
) -> None:
    handler = Relayed(offer_auth=False)
    mx = relay_mx(start_mx, handler, tls_context=server_context(tls_cert))

    failure = refused(run, mx, relay(RelayTls.REQUIRED))
    assert failure.kind is FailureKind.AUTH
    assert failure.detail == "the relay offers no AUTH; Volley logs in with PLAIN or LOGIN"
    assert handler.auth_lines == 0


def test_without_auth_a_relay_session_is_a_plain_session(
    run: Callable[..., Any], start_mx: Callable[..., Mx]
) -> None:
    handler = Relayed()
    mx = relay_mx(start_mx, handler)
    r = Relay(HOST, mx.port, True, RelayTls.OPPORTUNISTIC, None, "routes.default")

    async def scenario() -> None:
        session = await connect(mx, r)
        assert isinstance(session, SmtpSession), session
        assert r.tls.starttls is TlsPolicy.OPPORTUNISTIC
        await session.close()

    run(scenario())
    assert handler.auth_lines == 0
