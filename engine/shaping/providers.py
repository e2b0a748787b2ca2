"""Providers: groups of sites recognised by their MX host names, with their limits.

Responsible for: the `Provider` value, reading the shipped data file
(engine/shaping/providers.toml) and a user's `[providers.NAME]` tables over it (a user's
table changes only the keys it sets, or adds a provider), and finding the provider of a
set of MX hosts.
Not responsible for: combining a provider's limits with a destination's
(engine.shaping.limits) or enforcing them (the supervisor's leases and rates).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

from engine.model import TlsPolicy
from engine.shaping.gcra import Rate, RateError, parse_rate

__all__ = ["Provider", "ProviderError", "match_provider", "read_providers", "shipped_providers"]

_INTS = (
    "max_connections",
    "max_messages_per_connection",
    "provider_max_connections",
)
_RATES = (
    "max_message_rate",
    "max_connection_rate",
    "provider_max_message_rate",
    "provider_max_connection_rate",
)
_KEYS = frozenset((*_INTS, *_RATES, "mx_suffixes", "tls", "egress_pool"))


class ProviderError(ValueError):
    """A provider table that does not parse; the message starts with the key."""


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    mx_suffixes: tuple[str, ...]
    max_connections: int | None = None
    max_messages_per_connection: int | None = None
    max_message_rate: Rate | None = None
    max_connection_rate: Rate | None = None
    provider_max_connections: int | None = None
    provider_max_message_rate: Rate | None = None
    provider_max_connection_rate: Rate | None = None
    tls: TlsPolicy | None = None
    egress_pool: str | None = None  # [egress.pools.NAME] for its sites (engine.config.egress)

    def matches(self, host: str) -> bool:
        return any(host.endswith(s) for s in self.mx_suffixes)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mx_suffixes": list(self.mx_suffixes)}
        for key in _INTS:
            if (v := getattr(self, key)) is not None:
                out[key] = v
        for key in _RATES:
            if (r := getattr(self, key)) is not None:
                out[key] = f"{r.count:g}/{r.period:g}s"
        if self.tls is not None:
            out["tls"] = self.tls.value
        if self.egress_pool is not None:
            out["egress_pool"] = self.egress_pool
        return out


def shipped_providers() -> dict[str, Provider]:
    text = resources.files("engine.shaping").joinpath("providers.toml").read_text()
    return read_providers(tomllib.loads(text), {}, "providers.toml")


def read_providers(
    raw: Mapping[str, Any], base: Mapping[str, Provider], where: str
) -> dict[str, Provider]:
    """`base` with each table of `raw` applied: an existing provider's keys replaced, a
    new provider added (it must name its mx_suffixes)."""
    out = dict(base)
    for name, table in raw.items():
        key = f"{where}.{name}"
        if not isinstance(table, Mapping):
            raise ProviderError(f"{key}: expected a table")
        unknown = sorted(set(table) - _KEYS)
        if unknown:
            raise ProviderError(f"{key}.{unknown[0]}: unknown key")
        current = out.get(name) or Provider(name, ())
        changes: dict[str, Any] = {}
        for k, v in table.items():
            changes[k] = _value(f"{key}.{k}", k, v)
        provider = replace(current, **changes)
        if not provider.mx_suffixes:
            raise ProviderError(f"{key}.mx_suffixes: a new provider needs its MX suffixes")
        out[name] = provider
    return out


def _value(key: str, name: str, v: object) -> object:
    if name == "mx_suffixes":
        if not isinstance(v, list) or not v or not all(isinstance(s, str) and s for s in v):
            raise ProviderError(f'{key}: expected a list of suffixes such as [".google.com"]')
        return tuple(s.lower().rstrip(".") if s.startswith(".") else "." + s.lower() for s in v)
    if name == "tls":
        try:
            return TlsPolicy(v)
        except ValueError:
            choices = ", ".join(p.value for p in TlsPolicy)
            raise ProviderError(f"{key}: expected one of {choices}; got {v!r}") from None
    if name == "egress_pool":
        if not isinstance(v, str) or not v:
            raise ProviderError(f'{key}: expected a pool name such as "gmail"; got {v!r}')
        return v
    if name in _INTS:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ProviderError(f"{key}: expected a whole number >= 1; got {v!r}")
        return v
    if not isinstance(v, str):
        raise ProviderError(f'{key}: expected a rate such as "100/s"; got {v!r}')
    try:
        return parse_rate(v)
    except RateError as e:
        raise ProviderError(f"{key}: {e}") from None


def match_provider(hosts: Iterable[str], providers: Iterable[Provider]) -> Provider | None:
    """The provider every one of `hosts` belongs to (a site whose MX hosts span
    providers — a domain with a backup MX elsewhere — gets none)."""
    names = list(hosts)
    if not names:
        return None
    for provider in providers:
        if all(provider.matches(h) for h in names):
            return provider
    return None
