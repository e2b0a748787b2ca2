"""Which MX hosts and addresses a route may use: DNS answers are untrusted input.

Responsible for: the sanity rules applied to a resolved `Route` before any connection —
addresses in `smtp.ignore_target_hosts` are dropped (loopback, link-local,
multicast, "this network" by default, as Exim's ignore_target_hosts), at most
`smtp.mx_address_limit` addresses are kept (Postfix's smtp_mx_address_limit), and an MX
host that is this Volley's own listener ends the list: the better-preference hosts before
it are kept, and with none the destination is a mail loop (Postfix's "mail for X loops
back to myself", 5.4.6).  A configured relay's route (`Route.port` set) gets the same
rules on its port, except that loopback addresses stay usable: the operator chose
that next hop (a local filter or sidecar on 127.0.0.1), no DNS answer did.
`screen_route` is pure; `is_local_address` is the one probe of
this host's addresses it needs.
Not responsible for: DNS, or MX targets that are not host names (engine.net.mx drops
those before looking up their addresses), how many of the kept addresses get a
connection attempt (`smtp.mx_session_limit`, engine.runtime.delivery), or what a failure
means for a message (engine.sched.classify).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from engine.config import Settings, parse_address
from engine.model import RouteFailure, RouteFailureKind
from engine.net.mx import MxHost, Route

__all__ = ["TargetRules", "is_local_address", "screen_route", "usable_addresses"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class TargetRules:
    ignore: tuple[_Network, ...]
    address_limit: int
    port: int  # the port Volley delivers to (smtp.port)
    listeners: frozenset[tuple[str, int]]  # Volley's own SMTP listeners: (ip, port)

    @classmethod
    def from_settings(cls, s: Settings) -> TargetRules:
        listeners: set[tuple[str, int]] = set()
        for text in (*s.smtpd.listen, *s.smtpd.implicit_tls_listen):
            host, port = parse_address(text, names=frozenset({"localhost"}), min_port=0)
            listeners.add(("127.0.0.1" if host == "localhost" else host, port))
        return cls(
            ignore=tuple(ipaddress.ip_network(n, strict=False) for n in s.ignore_target_hosts),
            address_limit=s.mx_address_limit,
            port=s.smtp_port,
            listeners=frozenset(listeners),
        )


def screen_route(
    route: Route, rules: TargetRules, is_local: Callable[[str], bool]
) -> Route | RouteFailure:
    """The part of `route` Volley may connect to, or why there is none.

    `is_local(address)`: whether the address belongs to this host (asked only when a
    listener of ours is bound to a wildcard address on the port we deliver to).
    """
    kept: list[MxHost] = []
    dropped: list[str] = []
    budget = rules.address_limit
    relay = route.port is not None
    target_port = rules.port if route.port is None else route.port
    own = [ip for ip, port in rules.listeners if port == target_port]
    for host in route.hosts:
        if any(_is_own(a, own, is_local) for a in host.addresses):
            if kept:
                break  # only better-preference hosts than ourselves (Postfix smtp_addr.c)
            return RouteFailure(
                route.domain,
                RouteFailureKind.LOOP,
                f"mail for {route.domain} loops back to myself"
                f" ({'relay' if relay else 'MX'} {host.name} is this Volley's listener)",
            )
        addresses = usable_addresses(host.addresses, rules.ignore, keep_loopback=relay)
        if len(addresses) < len(host.addresses):
            dropped.append(f"{host.name} (addresses in smtp.ignore_target_hosts)")
        if addresses and budget > 0:
            kept.append(MxHost(host.name, host.preference, addresses[:budget]))
            budget -= len(kept[-1].addresses)
    if kept:
        return replace(route, hosts=tuple(kept))  # keeps what else the route says (port, sts)
    return RouteFailure(
        route.domain,
        RouteFailureKind.NO_ROUTE,
        f"no usable mail exchanger for {route.domain}: " + ", ".join(dropped),
    )


def usable_addresses(
    addresses: Iterable[str], ignore: tuple[_Network, ...], *, keep_loopback: bool = False
) -> tuple[str, ...]:
    """`addresses` without the unparsable ones and those in the `ignore` networks (but
    for loopback ones with `keep_loopback`: a configured relay's)."""
    out = []
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            continue  # not an address at all: never connect to it
        if (keep_loopback and ip.is_loopback) or not any(
            ip.version == net.version and ip in net for net in ignore
        ):
            out.append(text)
    return tuple(out)


def _is_own(address: str, own: list[str], is_local: Callable[[str], bool]) -> bool:
    if not own:
        return False
    try:
        ip = str(ipaddress.ip_address(address))
    except ValueError:
        return False
    for listener in own:
        if listener == ip:
            return True
        # "::" also takes IPv4 on Linux (dual stack); "0.0.0.0" only IPv4.
        wildcard = listener == "::" or (listener == "0.0.0.0" and ":" not in ip)
        if wildcard and is_local(ip):
            return True
    return False


@functools.lru_cache(maxsize=1024)
def is_local_address(address: str) -> bool:
    """Whether `address` is one of this host's own (binding a UDP socket to it works only
    then; 127.0.0.0/8 always).  Cached: interfaces do not change under a running MTA
    often enough to matter, and the probe is a syscall pair."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((address, 0))
    except OSError:
        return False
    return True
