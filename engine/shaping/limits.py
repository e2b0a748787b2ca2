"""The limits that apply to one destination's site: its policy and its provider's.

Responsible for: `SiteLimits`, the limits a connection to a site is opened under (the
stricter of the destination's `[domains.*]` policy and its provider's data, each value
by itself), and `site_for`, the site of a resolved destination.
Not responsible for: adaptive reductions (the supervisor applies those to these
ceilings: engine.shaping.adaptive), or enforcing anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from engine.config.policy import DomainPolicy
from engine.model import TlsPolicy
from engine.shaping.gcra import Rate
from engine.shaping.providers import Provider, match_provider
from engine.shaping.sites import Site, domain_site, site_name

__all__ = ["SiteLimits", "shaped", "site_for", "site_limits", "stricter_tls"]

# From least to most demanding; a provider's TLS requirement applies unless the
# destination already asks for more (`verify` is checked certificates).
_TLS_RANK = {
    TlsPolicy.DISABLED: 0,
    TlsPolicy.OPPORTUNISTIC: 1,
    TlsPolicy.REQUIRED: 2,
    TlsPolicy.VERIFY: 3,
}


_NO_PROVIDER = Provider("", ())


@dataclass(frozen=True, slots=True)
class SiteLimits:
    max_connections: int
    max_messages_per_connection: int
    message_rate: Rate | None
    connection_rate: Rate | None
    provider_connections: int | None
    provider_message_rate: Rate | None
    provider_connection_rate: Rate | None
    tls: TlsPolicy


def _min_int(a: int, b: int | None) -> int:
    return a if b is None else min(a, b)


def _min_rate(a: Rate | None, b: Rate | None) -> Rate | None:
    if a is None or b is None:
        return a or b
    return a if a.per_second <= b.per_second else b


def stricter_tls(a: TlsPolicy, b: TlsPolicy | None) -> TlsPolicy:
    if b is None:
        return a
    return a if _TLS_RANK[a] >= _TLS_RANK[b] else b


def site_limits(policy: DomainPolicy, provider: Provider | None) -> SiteLimits:
    p = provider or _NO_PROVIDER
    return SiteLimits(
        max_connections=_min_int(policy.max_connections, p.max_connections),
        max_messages_per_connection=_min_int(
            policy.max_messages_per_connection, p.max_messages_per_connection
        ),
        message_rate=_min_rate(policy.max_message_rate, p.max_message_rate),
        connection_rate=_min_rate(policy.max_connection_rate, p.max_connection_rate),
        provider_connections=p.provider_max_connections,
        provider_message_rate=p.provider_max_message_rate,
        provider_connection_rate=p.provider_max_connection_rate,
        tls=stricter_tls(policy.tls, p.tls),
    )


def site_for(
    domain: str,
    hosts: Iterable[str],
    policy: DomainPolicy,
    providers: Iterable[Provider],
    port: int | None = None,
) -> Site:
    """The site of `domain`, resolved to MX `hosts`: named by the hosts (rollup), or by
    the domain alone when its policy says `mx_rollup = false`.  The provider is found
    from the hosts either way (a domain that opts out of rollup still shares its
    provider's limits)."""
    names = list(hosts)
    provider = match_provider(names, providers)
    name = site_name(names, port) if policy.mx_rollup and names else domain_site(domain)
    return Site(name, provider.name if provider else None)


def shaped(limits: SiteLimits, connections: int | None, rate: float | None) -> SiteLimits:
    """`limits` lowered to what adaptive shaping has in force for the site (None: no
    change); a rate shaping learned for a site without a configured one becomes a
    per-second limit."""
    out = limits
    if connections is not None and connections < limits.max_connections:
        out = replace(out, max_connections=max(1, connections))
    if rate is not None:
        current = limits.message_rate
        if current is None:
            out = replace(out, message_rate=Rate(rate, 1.0))
        elif rate < current.per_second:
            out = replace(out, message_rate=current.scaled(rate))
    return out
