"""engine.shaping.providers: the shipped data, user tables over it, matching by MX."""

from __future__ import annotations

import pytest

from engine.model import TlsPolicy
from engine.shaping.gcra import parse_rate
from engine.shaping.providers import (
    Provider,
    ProviderError,
    match_provider,
    read_providers,
    shipped_providers,
)


def test_the_shipped_file_knows_the_big_providers() -> None:
    p = shipped_providers()
    for name in ("google", "yahoo", "outlook", "office365", "apple", "comcast", "orange"):
        assert name in p
    assert p["google"].provider_max_connections == 5
    assert p["google"].max_messages_per_connection == 50
    assert p["google"].tls is TlsPolicy.REQUIRED
    assert p["comcast"].max_connection_rate == parse_rate("10000/h")


def _under(provider: str, *labels: str) -> list[str]:
    """MX host names under the shipped provider's suffixes (its first, then the next),
    built from the data file, so no real host is named here."""
    suffixes = shipped_providers()[provider].mx_suffixes
    return [label + suffixes[min(i, len(suffixes) - 1)] for i, label in enumerate(labels)]


@pytest.mark.parametrize(
    ("hosts", "name"),
    [
        (_under("google", "mx-in.l", "alt1.mx-in.l"), "google"),
        (_under("google", "aspmx.l", "alt2.aspmx.l"), "google"),  # both of its suffixes
        (_under("yahoo", "mta5.am0"), "yahoo"),
        (_under("office365", "example-com"), "office365"),
        (_under("apple", "mx01"), "apple"),
        (["mx.example.net"], None),
        ([*_under("google", "aspmx.l"), "backup.example.net"], None),  # spans providers
        ([], None),
    ],
)
def test_matching_by_suffix(hosts: list[str], name: str | None) -> None:
    got = match_provider(hosts, shipped_providers().values())
    assert (got.name if got else None) == name


def test_user_tables_change_only_what_they_set_and_may_add() -> None:
    base = shipped_providers()
    got = read_providers(
        {
            "google": {"provider_max_connections": 20, "tls": "opportunistic"},
            "mine": {"mx_suffixes": ["mail.mine.example"], "max_message_rate": "5/s"},
        },
        base,
        "providers",
    )
    assert got["google"].provider_max_connections == 20
    assert got["google"].max_messages_per_connection == 50  # kept
    assert got["google"].tls is TlsPolicy.OPPORTUNISTIC
    assert got["mine"] == Provider(
        "mine", (".mail.mine.example",), max_message_rate=parse_rate("5/s")
    )
    again = read_providers({n: p.to_dict() for n, p in got.items()}, {}, "providers")
    assert again == got


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"new": {"max_connections": 3}}, r"providers\.new\.mx_suffixes: a new provider"),
        ({"google": {"max_connections": 0}}, r"providers\.google\.max_connections: expected"),
        ({"google": {"max_message_rate": "fast"}}, r"providers\.google\.max_message_rate:"),
        ({"google": {"tls": "maybe"}}, r"providers\.google\.tls: expected one of"),
        ({"google": {"connections": 3}}, r"providers\.google\.connections: unknown key"),
        ({"google": 3}, r"providers\.google: expected a table"),
        ({"x": {"mx_suffixes": []}}, r"providers\.x\.mx_suffixes: expected a list"),
    ],
)
def test_bad_tables_name_the_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ProviderError, match=message):
        read_providers(raw, shipped_providers(), "providers")
