"""Provider settings: `[providers.NAME]` tables over the shipped provider data.

Responsible for: reading the user's provider tables over engine/shaping/providers.toml
(a table for a shipped provider changes only the keys it sets; a new name adds a
provider, which must give its `mx_suffixes`), with a bad value reported as one line
naming the key (`providers.google.max_message_rate: ...`), and writing them back.
Not responsible for: what a provider's limits mean (engine.shaping.limits).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.config.values import ConfigError, Table
from engine.shaping.providers import Provider, ProviderError, read_providers, shipped_providers

__all__ = ["providers_dict", "read_provider_tables"]


def read_provider_tables(t: Table) -> tuple[Provider, ...]:
    try:
        merged = read_providers(t.data, shipped_providers(), "providers")
    except ProviderError as e:
        raise ConfigError(str(e)) from None
    for name in t.data:
        t.get(name)  # every name is a provider: nothing is unknown at this level
    t.finish()
    return tuple(merged.values())


def providers_dict(providers: tuple[Provider, ...]) -> dict[str, Any]:
    """Every provider in full, so a worker reading it back gets exactly these."""
    out: Mapping[str, Any] = {p.name: p.to_dict() for p in providers}
    return dict(out)
