"""engine.suppress.model: keys, scopes and which entry suppresses a recipient."""

from __future__ import annotations

import pytest

from engine.suppress.model import (
    GLOBAL,
    BadEntry,
    Entry,
    Source,
    address_key,
    clean_reason,
    parse_scope,
    parse_target,
    scopes_of,
    winner,
)

T = 1_800_000_000.0


def test_keys_are_normalised() -> None:
    assert address_key("Bob@Example.COM") == "bob@example.com"
    assert address_key("bob@Bücher.example") == "bob@xn--bcher-kva.example"
    assert parse_target(" <Bob@Example.com> ") == "bob@example.com"
    assert parse_target("Example.com.") == "example.com"
    assert parse_target("@Example.com") == "example.com"
    for bad in ("", "nodot", "a b@example.com", "bob@", "@"):
        with pytest.raises(BadEntry):
            parse_target(bad)


def test_scopes() -> None:
    assert parse_scope(None) == parse_scope("") == parse_scope("Global") == GLOBAL
    assert parse_scope("News.Example.com") == "news.example.com"
    assert scopes_of(None) == (GLOBAL,)
    assert scopes_of("a.news.example.com") == (
        GLOBAL,
        "a.news.example.com",
        "news.example.com",
        "example.com",
    )


def test_winner_prefers_address_then_global_then_oldest_and_skips_expired() -> None:
    scopes = scopes_of("news.example.com")
    dom = Entry("example.org", GLOBAL, created=T)
    scoped = Entry("bob@example.org", "example.com", created=T - 10)
    glob = Entry("bob@example.org", GLOBAL, created=T + 5)
    other = Entry("bob@example.org", "other.example", created=T - 100)
    expired = Entry("bob@example.org", GLOBAL, created=T - 200, expires=T)
    assert winner([dom, scoped, glob, other], scopes, T) is glob
    assert winner([dom, scoped, other], scopes, T) is scoped
    assert winner([dom, other], scopes, T) is dom
    assert winner([other, expired], scopes, T) is None
    assert winner([expired], scopes, T - 1) is expired  # still in effect a second before


def test_rows_round_trip_and_reason_is_one_line() -> None:
    e = Entry("bob@example.org", "example.com", "r", Source.COMPLAINT, T, T + 60)
    assert Entry.from_row(e.to_row()) == e
    assert e.to_dict()["source"] == "complaint" and not e.is_domain
    assert Entry("example.org").is_domain
    assert clean_reason("a\r\nb\tc") == "a b c"
    assert len(clean_reason("x" * 9999)) == 500


def test_metric_labels_agree_with_the_sources() -> None:
    from engine.telemetry.catalog import SUPPRESSION_SOURCES

    assert SUPPRESSION_SOURCES == tuple(s.value for s in Source)
