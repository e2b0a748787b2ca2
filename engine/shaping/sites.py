"""Sites: the receiver a destination domain really is, named by its MX hosts.

Responsible for: naming the site of a resolved route (the set of its MX host names,
factored like KumoMTA's site names: "(alt1|alt2).mx.example.net"), the
site of a domain that opts out of rollup (`mx_rollup = false`: the domain alone), and
the `Site` value the rest of shaping keys on: its name, its provider, and the keys of
the shared limits (connections, rates) that apply to it.
Not responsible for: resolving MX records (engine.net.mx) or the limits' values
(engine.shaping.limits).

Why sites: receivers limit per sending IP and per MX cluster, not per recipient domain.
gmail.com, googlemail.com and every Google Workspace domain land on the same hosts; a
sender limiting per domain would open 10 connections for each of a thousand Workspace
domains to the same five Google hosts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Site", "domain_site", "site_name"]


@dataclass(frozen=True, slots=True)
class Site:
    name: str  # "(mx1|mx2).example.net", or "domain:<name>" without rollup
    provider: str | None  # a providers.toml / [providers.NAME] name
    # The egress source a connection binds ([egress.sources.NAME]): receivers count per
    # sending IP, so its limits are its own ("ip1|<site>"); None: smtp.source_address.
    source: str | None = None

    @property
    def connection_keys(self) -> tuple[str, ...]:
        """Lease keys, in the order they are taken: the site's, then its provider's
        (a worker waiting for the provider's slot then holds only this site's), each
        prefixed with the egress source when there is one."""
        keys = (self.name,) if self.provider is None else (self.name, f"provider:{self.provider}")
        if self.source is None:
            return keys
        return tuple(f"{self.source}|{key}" for key in keys)


def site_name(hosts: Iterable[str], port: int | None = None) -> str:
    """The name of the site whose MX hosts are `hosts` (any order, any preference).

    Names sharing a parent are factored, and a parent that is itself one of the hosts
    makes its group optional, as KumoMTA names sites: mx.example.net and alt1..alt4 of
    it give "(alt1|alt2|alt3|alt4)?.mx.example.net".  Groups
    are sorted, so equal sets give equal names.  A `port` (a relay's) is part of it.
    """
    names = {h.lower().rstrip(".") for h in hosts}
    by_parent: dict[str, set[str]] = defaultdict(set)
    for host in names:
        label, _, parent = host.partition(".")
        by_parent[parent].add(label)
    parts: list[str] = []
    for parent in sorted(by_parent):
        labels = sorted(by_parent[parent])
        if parent in names and parent:
            parts.append("(" + "|".join(labels) + ")?." + parent)
            continue
        # A host that is another group's parent is named there, as that group's "?".
        labels = [label for label in labels if f"{label}.{parent}" not in by_parent]
        if not labels:
            continue
        head = labels[0] if len(labels) == 1 else "(" + "|".join(labels) + ")"
        parts.append(f"{head}.{parent}" if parent else head)
    name = ",".join(parts)
    return f"{name}:{port}" if port is not None else name


def domain_site(domain: str) -> str:
    """The site of a destination that does not roll up: the domain by itself."""
    return f"domain:{domain}"
