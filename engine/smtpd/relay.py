"""Who may send what through the listener: the relay decision, as pure functions.

Responsible for: whether a client address is trusted (in `smtpd.relay_networks`), and,
per recipient, what the listener does with it: relay it (queue it for delivery), keep it
(a bounce domain: the mail is local and never relayed), or refuse it; and whether a
client can be refused at MAIL already (530: nothing it could send would be taken).
Not responsible for: checking passwords (engine.smtpd.auth), address syntax
(engine.drop.address), or the replies' wording (engine.smtpd.protocol).

The rules (Postfix's `permit_mynetworks, permit_sasl_authenticated,
reject_unauth_destination` with its `relay_domains` turned into bounce domains):
  1. a recipient in a bounce domain is LOCAL, from anyone, trusted or not: reports come
     back from every MX on the internet; and such mail is never relayed, even when a
     trusted client sends it;
  2. any other recipient is RELAY when the client is in relay_networks or authenticated;
  3. else it is DENIED (554 5.7.1): never an open relay.

Pure: no I/O.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable

__all__ = ["Network", "Verdict", "decide", "is_loopback", "must_authenticate", "trusted"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Verdict(enum.Enum):
    RELAY = "relay"  # queue it for delivery
    LOCAL = "local"  # a bounce domain: keep it (engine.feedback), never relay
    DENIED = "denied"  # 554 5.7.1 Relay access denied


def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(ip.partition("%")[0])  # fe80::1%eth0: drop the zone
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped  # ::ffff:192.0.2.1 on a dual-stack socket is 192.0.2.1
    return addr


def trusted(ip: str, networks: Iterable[Network]) -> bool:
    """Whether a client at `ip` is in one of `networks` (relay without AUTH)."""
    addr = _address(ip)
    return addr is not None and any(addr in net for net in networks)


def is_loopback(ip: str) -> bool:
    """127.0.0.0/8 or ::1: AUTH may be offered without TLS (the password never leaves
    the host)."""
    addr = _address(ip)
    return addr is not None and addr.is_loopback


def decide(
    domain: str, *, trusted: bool, authenticated: bool, bounce_domains: frozenset[str]
) -> Verdict:
    """What to do with a recipient in `domain` (lower-case A-label, engine.drop.domain_of)."""
    if domain in bounce_domains:
        return Verdict.LOCAL
    if trusted or authenticated:
        return Verdict.RELAY
    return Verdict.DENIED


def must_authenticate(
    *, trusted: bool, authenticated: bool, bounce_domains: frozenset[str]
) -> bool:
    """Whether MAIL can be refused with 530 at once: the client may not relay and there
    is no bounce domain it could be writing to."""
    return not (trusted or authenticated or bounce_domains)
