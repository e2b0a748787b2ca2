"""engine.net.relay: the route through a relay (no MX lookup, the relay's port, every
failure temporary) and when a refused login is said on stderr."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_network

from engine.config.routes import Relay, RelayTls, Routes
from engine.model import FailureKind, Phase, TlsPolicy, TransportFailure
from engine.net.mx import MxHost, Route, RouteFailure, RouteFailureKind
from engine.net.relay import AUTH_ALARM_EVERY, AuthAlarm, hop, resolve_route
from engine.net.targets import TargetRules

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
