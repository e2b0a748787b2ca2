"""engine.admin.requests: what a well-formed request is, and which entries a selector takes."""

from __future__ import annotations

import pytest

from engine.admin.requests import (
    DEFAULT_LIMIT,
    DEFAULT_SUSPENSION,
    MAX_LIMIT,
    MAX_REASON,
    BadRequest,
    Selector,
    parse_domain,
    parse_duration_value,
    parse_entry_id,
    parse_limit,
    parse_reason,
    parse_selector,
)

ID = "0005f3a1b2c3d4e5f60718293a4b5"


@pytest.mark.parametrize(
    ("raw", "domain"),
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        (" bücher.example ", "xn--bcher-kva.example"),
    ],
)
def test_domains_are_normalised_as_the_spool_names_them(raw: str, domain: str) -> None:
    assert parse_domain(raw) == domain


@pytest.mark.parametrize("raw", ["", "not a domain", "a..b", "[127.0.0.1]", "1.2.3.4", None, 5])
def test_bad_domains_are_refused(raw: object) -> None:
    with pytest.raises(BadRequest, match="domain"):
        parse_domain(raw)


def test_entry_ids() -> None:
    assert parse_entry_id(ID.upper()) == ID
    for bad in ("", "xyz", ID[:-1], ID + "0", None):
        with pytest.raises(BadRequest, match="29 hex digits"):
            parse_entry_id(bad)


def test_durations() -> None:
    assert parse_duration_value(None) == DEFAULT_SUSPENSION == 3600.0
    assert parse_duration_value("30m") == 1800.0
    assert parse_duration_value(90) == 90.0
    for bad in ("0s", 0, "-1h", "soon", "400d", True):
        with pytest.raises(BadRequest, match="duration"):
            parse_duration_value(bad)


def test_reasons_are_one_bounded_line() -> None:
    assert parse_reason(None) == "" and parse_reason(None, "api") == "api"
    assert parse_reason("  two\nlines\tand tabs ") == "two lines and tabs"
    assert parse_reason("x" * MAX_REASON) == "x" * MAX_REASON
    with pytest.raises(BadRequest, match="at most"):
        parse_reason("x" * (MAX_REASON + 1))
    with pytest.raises(BadRequest, match="text"):
        parse_reason(42)


def test_limits() -> None:
    assert parse_limit(None) == DEFAULT_LIMIT and parse_limit("5") == 5
    for bad in ("0", "x", MAX_LIMIT + 1, -1):
        with pytest.raises(BadRequest, match="limit"):
            parse_limit(bad)


def test_a_destructive_selector_names_exactly_one_thing() -> None:
    assert parse_selector({"domain": "D.test"}) == Selector(domain="d.test")
    assert parse_selector({"id": ID}) == Selector(id=ID)
    assert parse_selector({"sender": "<News@Sender.test>"}) == Selector(sender="news@sender.test")
    assert parse_selector({"sender": "<>"}) == Selector(sender="")
    assert parse_selector({"sender": ""}) == Selector(sender="")  # the null sender, as sent on
    assert parse_selector({"all": True}) == Selector(everything=True)
    assert parse_selector({"all": False, "domain": "d.test"}) == Selector(domain="d.test")
    with pytest.raises(BadRequest, match="selector is required"):
        parse_selector({})
    with pytest.raises(BadRequest, match="selector is required"):
        parse_selector({"reason": "oops", "all": False})
    with pytest.raises(BadRequest, match="give one selector, not domain and id"):
        parse_selector({"domain": "d.test", "id": ID})
    with pytest.raises(BadRequest, match="all: expected true"):
        parse_selector({"all": "yes"})
    with pytest.raises(BadRequest, match="sender"):
        parse_selector({"sender": "no at sign"})


def test_selectors_travel_as_dicts() -> None:
    for sel in (
        Selector(domain="d.test"),
        Selector(id=ID),
        Selector(sender=""),
        Selector(sender="a@b.test"),
        Selector(everything=True),
    ):
        assert parse_selector(sel.to_dict()) == sel


def test_which_entries_a_selector_takes() -> None:
    name = f"{ID}@d.test"
    other = f"{'1' * 29}@sub.d.test"
    assert Selector(domain="d.test").matches(name, None)
    assert not Selector(domain="d.test").matches(other, None)  # not a subdomain
    assert Selector(id=ID).matches(name, None) and not Selector(id=ID).matches(other, None)
    by_sender = Selector(sender="news@sender.test")
    assert by_sender.needs_meta and by_sender.matches_name(other)
    assert by_sender.matches(name, "News@Sender.TEST")
    assert not by_sender.matches(name, "other@sender.test") and not by_sender.matches(name, None)
    assert Selector(sender="").matches(name, "") and not Selector(sender="").matches(name, "a@b")
    assert Selector(everything=True).matches(other, None)
    assert Selector(domain="d.test").describe() == "domain d.test"
    assert Selector(sender="").describe() == "sender <>"
