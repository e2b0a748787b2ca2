"""Egress settings: `[egress.sources.NAME]` and `[egress.pools.NAME]`.

Responsible for: the values of the egress section — each source's address to bind, its
EHLO name and optional warm-up schedule, each pool's sources and weights — read from
their tables with a bad value reported as one line naming the key
(`egress.pools.gmail.sources.ip9: unknown source`), written back for the workers, and
the check that every `egress_pool` a domain or provider names exists.
Not responsible for: choosing a source for a connection or the warm-up arithmetic
(engine.shaping.egress), or counting a day's quota (engine.shaping.quota).

Without `[egress]` nothing changes: connections bind `smtp.source_address` and announce
`smtp.helo_name`, as before.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.config.helo import helo_name_error
from engine.config.values import ConfigError, Table

__all__ = [
    "DEFAULT_POOL",
    "EgressPool",
    "EgressSettings",
    "EgressSource",
    "Warmup",
    "check_pool_names",
    "egress_dict",
    "read_egress",
]

# The pool used for every destination that names none (and whose provider names none).
DEFAULT_POOL = "default"

# Source names become metric labels and prefixes of shared-limit keys ("ip1|<site>"):
# no "|" or spaces, so a key always splits back into its source and its site.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True, slots=True)
class Warmup:
    """Messages per UTC day grow geometrically from `first` on day 0 (`start`) to `last`
    on day `days`; after that the source has no warm-up limit."""

    start: datetime.date
    days: int
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class EgressSource:
    name: str
    address: str  # IPv4 or IPv6, as ipaddress writes it
    ehlo: str | None = None  # None: smtp.helo_name
    warmup: Warmup | None = None


@dataclass(frozen=True, slots=True)
class EgressPool:
    name: str
    sources: tuple[tuple[str, int], ...]  # (source name, weight), in the file's order


@dataclass(frozen=True, slots=True)
class EgressSettings:
    sources: Mapping[str, EgressSource] = field(default_factory=dict)
    pools: Mapping[str, EgressPool] = field(default_factory=dict)


def _positive(t: Table, name: str, minimum: int = 1) -> int:
    v = t.get(name)
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ConfigError(f"{t.key(name)}: expected a whole number >= {minimum}, got {v!r}")
    return v


def _date(t: Table, name: str) -> datetime.date:
    v = t.get(name)
    if isinstance(v, str):
        try:
            return datetime.date.fromisoformat(v)
        except ValueError:
            pass
    elif isinstance(v, datetime.date) and not isinstance(v, datetime.datetime):
        return v
    raise ConfigError(f"{t.key(name)}: expected a date like 2026-12-01, got {v!r}")


def _warmup(t: Table) -> Warmup:
    start = _date(t, "start")
    days = _positive(t, "days")
    first = _positive(t, "first")
    last = _positive(t, "last")
    if last < first:
        raise ConfigError(f"{t.key('last')}: must be at least first ({first}), got {last}")
    t.finish()
    return Warmup(start, days, first, last)


def _source(t: Table, name: str) -> EgressSource:
    raw = t.get("address")
    try:
        if not isinstance(raw, str):
            raise ValueError
        address = str(ipaddress.ip_address(raw))
    except ValueError:
        raise ConfigError(
            f"{t.key('address')}: expected an IPv4 or IPv6 address to bind, got {raw!r}"
        ) from None
    ehlo = t.string("ehlo", None)
    if ehlo is not None and (why := helo_name_error(ehlo)) is not None:
        raise ConfigError(f"{t.key('ehlo')}: {ehlo!r} {why}")
    warmup = _warmup(t.table("warmup")) if t.data.get("warmup") is not None else None
    t.finish()
    return EgressSource(name, address, ehlo, warmup)


def _pool(t: Table, name: str, sources: Mapping[str, EgressSource]) -> EgressPool:
    st = t.table("sources")
    if not st.data:
        raise ConfigError(
            f"{t.key('sources')}: expected a table of source = weight like {{ ip1 = 3 }}"
        )
    members: list[tuple[str, int]] = []
    for source in st.data:
        if source not in sources:
            known = ", ".join(sorted(sources)) or "none"
            raise ConfigError(f"{st.key(source)}: unknown source (egress.sources has: {known})")
        members.append((source, _positive(st, source)))
    st.finish()
    t.finish()
    return EgressPool(name, tuple(members))


def read_egress(t: Table) -> EgressSettings:
    st = t.table("sources")
    sources: dict[str, EgressSource] = {}
    bound: dict[str, str] = {}
    for name in st.data:
        if not _NAME.fullmatch(name):
            raise ConfigError(
                f"{st.key(name)}: a source name is letters, digits, '_', '.', '-' (64 at most)"
            )
        source = _source(st.table(name), name)
        if source.address in bound:
            # Receivers count per IP: two names for one address would get twice its limits.
            other = bound[source.address]
            raise ConfigError(
                f"{st.key(name)}.address: {source.address} is already source {other!r}"
            )
        bound[source.address] = name
        sources[name] = source
    st.finish()
    pt = t.table("pools")
    pools = {name: _pool(pt.table(name), name, sources) for name in pt.data}
    pt.finish()
    t.finish()
    return EgressSettings(sources, pools)


def check_pool_names(egress: EgressSettings, named: Iterable[tuple[str, str | None]]) -> None:
    """Every (key, pool name) of `named` names a pool of `egress`."""
    for key, pool in named:
        if pool is not None and pool not in egress.pools:
            known = ", ".join(sorted(egress.pools)) or "none: there is no [egress.pools.*]"
            raise ConfigError(f"{key}: unknown egress pool {pool!r} (pools: {known})")


def egress_dict(e: EgressSettings) -> dict[str, Any]:
    sources: dict[str, Any] = {}
    for name, s in e.sources.items():
        out: dict[str, Any] = {"address": s.address}
        if s.ehlo is not None:
            out["ehlo"] = s.ehlo
        if (w := s.warmup) is not None:
            # A string, not a date: the dict goes to the workers as msgpack.
            out["warmup"] = {
                "start": w.start.isoformat(),
                "days": w.days,
                "first": w.first,
                "last": w.last,
            }
        sources[name] = out
    pools = {name: {"sources": dict(p.sources)} for name, p in e.pools.items()}
    return {"sources": sources, "pools": pools}
