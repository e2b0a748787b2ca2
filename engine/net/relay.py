"""Smarthost relays: the route of mail that goes through a configured next hop.

Responsible for: the `Route` of a destination domain under `[routes]` — the MX route
when no relay applies, else the relay as the route's one host with its port (an IP
literal as written; a host name by its A/AAAA records, never by MX) — with a relay that
has no usable address made a temporary failure; logging in (`authenticate`, SMTP AUTH,
RFC 4954, on a session that reached READY): AUTH never goes over an unencrypted
connection unless the route says `tls = "disabled"`, a relay offering no mechanism we
speak is refused, the exchange runs through the sans-IO protocol (engine.smtp.auth picks
PLAIN or LOGIN), and a refusal is a `TransportFailure` of kind AUTH (or TLS) naming the
relay's reply, the user and the setting to check — never the password; and `AuthAlarm`,
which decides when a relay's AUTH refusal is said on stderr (once per relay per
`AUTH_ALARM_EVERY` seconds).
Not responsible for: reading `[routes]` (engine.config.routes), which addresses may be
used (engine.net.targets: a relay may be on loopback), connecting, encrypting and
closing (engine.net.session calls `authenticate` after the last EHLO and QUITs on a
refusal), or what a failure means (engine.sched.classify defers a refused login).

Why a relay without a usable address defers where an MX host without one bounces (5.4.4,
and 5.4.6 for a loop to ourselves): the relay is the operator's setting, not the
recipient domain's; a typo in it must not bounce every message (the same reasoning as
for a wrong relay password).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Protocol

from engine.config.routes import Relay, RelayTls, Routes
from engine.model import (
    FailureKind,
    Phase,
    RouteFailure,
    RouteFailureKind,
    TlsPolicy,
    TransportFailure,
)
from engine.net.mx import MxHost, Route
from engine.net.targets import TargetRules, is_local_address, screen_route
from engine.net.wire import Wire
from engine.smtp.auth import choose_mechanism, offered_mechanisms

__all__ = [
    "AUTH_ALARM_EVERY",
    "AuthAlarm",
    "HostResolver",
    "authenticate",
    "hop",
    "resolve_route",
]

# A wrong password fails every connection of every worker to the relay: one stderr line
# per relay per 5 min says it without flooding the journal (the delivery log still has a
# deferral per entry, and volley_connection_errors_total{kind="auth"} counts each).
AUTH_ALARM_EVERY = 300.0


class HostResolver(Protocol):
    async def resolve(self, domain: str) -> Route | RouteFailure: ...

    async def resolve_host(self, domain: str, host: str) -> Route | RouteFailure: ...


async def resolve_route(
    domain: str,
    relay: Relay | None,
    resolver: HostResolver,
    targets: TargetRules,
    mx_screen: Callable[[Route], Awaitable[Route | RouteFailure]],
) -> Route | RouteFailure:
    """The route for `domain`: by MX when `relay` is None, else through the relay;
    `targets` (engine.net.targets.screen_route) keeps what may be connected to, and
    `mx_screen` (MTA-STS, engine.runtime.tlsguard) narrows an MX route after it, before
    anything derives from the route: a policy is the recipient domain's word on its own
    MX hosts, not on a relay.  Every failure of a relay's route is TEMPORARY (see the
    module docstring)."""
    if relay is None:
        route = await resolver.resolve(domain)
        if isinstance(route, RouteFailure):
            return route
        screened = screen_route(route, targets, is_local_address)
        return screened if isinstance(screened, RouteFailure) else await mx_screen(screened)
    if relay.literal:
        got: Route | RouteFailure = Route(
            domain, (MxHost(relay.host, 0, (relay.host,)),), False, relay.port
        )
    else:
        got = await resolver.resolve_host(domain, relay.host)
    if isinstance(got, Route):
        got = screen_route(replace(got, port=relay.port), targets, is_local_address)
    if isinstance(got, RouteFailure):
        detail = f"relay {relay.address} ({relay.table}.relay): {got.detail}"
        return RouteFailure(domain, RouteFailureKind.TEMPORARY, detail)
    return got


def hop(
    route: Route, routes: Routes, mx_tls: TlsPolicy, smtp_port: int
) -> tuple[Relay | None, int, TlsPolicy]:
    """(relay, port, STARTTLS policy) of a connection on `route`: a relay's own (its
    route has its port: `resolve_route`), else no relay, `smtp_port` and the
    destination's `mx_tls`."""
    relay = None if route.port is None else routes.relay_for(route.domain)
    if route.port is None or relay is None:
        return None, smtp_port if route.port is None else route.port, mx_tls
    return relay, route.port, relay.tls.starttls


async def authenticate(wire: Wire, relay: Relay, *, encrypted: bool) -> TransportFailure | None:
    """Log in to `relay` over `wire` (READY).  None: authenticated, or a transport
    failure or a 421 ended the exchange (the caller reads `wire`); else why not, with
    the session still READY for a QUIT.

    Args:
        encrypted: TLS protects the connection (STARTTLS ran, or implicit TLS).
    """
    auth = relay.auth
    assert auth is not None, "authenticate() needs a relay with auth"
    proto = wire.proto
    if not encrypted and relay.tls is not RelayTls.DISABLED:
        return TransportFailure(
            Phase.AUTH,
            FailureKind.TLS,
            "no TLS on this connection, and AUTH is never sent over an unencrypted one"
            f' (only {relay.table}.tls = "disabled" allows it)',
        )
    mechanism = choose_mechanism(proto.extensions)
    if mechanism is None:
        offered = " ".join(offered_mechanisms(proto.extensions))
        what = f"offers AUTH {offered}" if offered else "offers no AUTH"
        return TransportFailure(
            Phase.AUTH,
            FailureKind.AUTH,
            f"the relay {what}; Volley logs in with PLAIN or LOGIN",
        )
    wire.write(proto.send_auth(auth.user, auth.password.reveal()))
    await wire.wait()
    if proto.authenticated or wire.failure is not None or proto.closing_reply is not None:
        return None
    return TransportFailure(
        Phase.AUTH,
        FailureKind.AUTH,
        f"AUTH {mechanism.value} as {auth.user!r} refused: {proto.last_reply}",
    )


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class AuthAlarm:
    """When to say on stderr that a relay refused our AUTH: the first time, then at
    most every `every` seconds per relay address (`line` is pure: `now` is passed in;
    `failed` says it through `say`)."""

    def __init__(self, every: float = AUTH_ALARM_EVERY, say: Callable[[str], None] = _stderr):
        self._every = every
        self._say = say
        self._said: dict[str, float] = {}

    def failed(
        self, relay: Relay | None, domain: str, failure: TransportFailure | None, now: float
    ) -> None:
        """A connection on `relay` failed with `failure`: say it if `line` says so."""
        line = self.line(relay, domain, failure, now)
        if line is not None:
            self._say(line)

    def line(
        self, relay: Relay | None, domain: str, failure: TransportFailure | None, now: float
    ) -> str | None:
        """The line to print for this connection failure, or None (no relay, not an
        AUTH failure, or said recently)."""
        if relay is None or failure is None or failure.kind is not FailureKind.AUTH:
            return None
        last = self._said.get(relay.address)
        if last is not None and now - last < self._every:
            return None
        self._said[relay.address] = now
        return (
            f"volley: relay {relay.address}: {failure.detail}; mail through it (e.g. for"
            f" {domain}) is deferred, not bounced, until it accepts the login"
            f" (check {relay.table}.auth)"
        )
