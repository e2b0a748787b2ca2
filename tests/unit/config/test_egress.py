"""engine.config.egress: [egress.sources.*] and [egress.pools.*], egress_pool of domains
and providers; every bad value is one line naming its key."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest

from engine.config import ConfigError, Settings, load_settings
from engine.config.egress import EgressPool, EgressSettings, EgressSource, Warmup
from engine.config.settings import from_dict

EGRESS: dict[str, Any] = {
    "sources": {
        "ip1": {
            "address": "192.0.2.10",
            "ehlo": "mta1.example.com",
            "warmup": {"start": "2026-12-01", "days": 30, "first": 200, "last": 100000},
        },
        "ip2": {"address": "2001:db8::0:1"},
        "ip3": {"address": "192.0.2.12"},
    },
    "pools": {
        "default": {"sources": {"ip1": 3, "ip2": 1}},
        "gmail": {"sources": {"ip3": 1}},
    },
}


def test_sources_pools_and_their_users_read_and_round_trip() -> None:
    s = load_settings(
        None,
        {
            "egress": EGRESS,
            "domains": {"x.test": {"egress_pool": "gmail"}},
            "providers": {"google": {"egress_pool": "gmail"}},
        },
    )
    ip1 = s.egress.sources["ip1"]
    assert ip1 == EgressSource(
        "ip1",
        "192.0.2.10",
        "mta1.example.com",
        Warmup(datetime.date(2026, 12, 1), 30, 200, 100000),
    )
    assert s.egress.sources["ip2"] == EgressSource("ip2", "2001:db8::1")  # as ipaddress writes it
    assert s.egress.pools["default"] == EgressPool("default", (("ip1", 3), ("ip2", 1)))
    assert s.policy("x.test").egress_pool == "gmail"
    assert s.policy("other.test").egress_pool is None
    assert next(p for p in s.providers if p.name == "google").egress_pool == "gmail"
    assert from_dict(s.to_dict()) == s


def test_without_egress_nothing_changes() -> None:
    s = load_settings(None, {})
    assert s.egress == EgressSettings() == Settings().egress
    assert s.to_dict()["egress"] == {"sources": {}, "pools": {}}
    assert from_dict(s.to_dict()) == s


def test_a_toml_date_is_a_start(tmp_path: Path) -> None:
    path = tmp_path / "volley.toml"
    path.write_text(
        "[egress.sources.ip1]\naddress = '192.0.2.10'\n"
        "warmup = { start = 2026-12-01, days = 30, first = 200, last = 100000 }\n"
    )
    warmup = load_settings(path).egress.sources["ip1"].warmup
    assert warmup is not None and warmup.start == datetime.date(2026, 12, 1)


def test_a_domain_can_lift_the_default_pool() -> None:
    s = load_settings(
        None,
        {
            "egress": EGRESS,
            "domains": {"default": {"egress_pool": "gmail"}, "own.test": {"egress_pool": ""}},
        },
    )
    assert s.policy("any.test").egress_pool == "gmail"
    assert s.policy("own.test").egress_pool is None
    assert from_dict(s.to_dict()) == s


def _with(path: str, value: Any) -> dict[str, Any]:
    """EGRESS with one dotted key set (or a whole table replaced)."""
    data: dict[str, Any] = {
        "sources": {k: dict(v) for k, v in EGRESS["sources"].items()},
        "pools": {k: {"sources": dict(v["sources"])} for k, v in EGRESS["pools"].items()},
    }
    node = data
    *parents, leaf = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return {"egress": data}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            _with("sources.ip1.address", "mx.example.com"),
            r"^egress\.sources\.ip1\.address: expected",
        ),
        (_with("sources.ip1.address", 7), r"^egress\.sources\.ip1\.address: expected"),
        (_with("sources.ip1.ehlo", "bad_name"), r"^egress\.sources\.ip1\.ehlo: 'bad_name' is not"),
        (_with("sources.ip1.port", 25), r"^unknown configuration key: egress\.sources\.ip1\.port"),
        (
            _with("sources.ip2.address", "192.0.2.10"),
            r"^egress\.sources\.ip2\.address: 192\.0\.2\.10 is already source 'ip1'",
        ),
        (_with("sources.a|b", {"address": "192.0.2.99"}), r"^egress\.sources\.a\|b: a source name"),
        (
            _with("sources.ip1.warmup", {"start": "tomorrow", "days": 1, "first": 1, "last": 2}),
            r"^egress\.sources\.ip1\.warmup\.start: expected a date",
        ),
        (
            _with("sources.ip1.warmup", {"start": "2026-12-01", "days": 0, "first": 1, "last": 2}),
            r"^egress\.sources\.ip1\.warmup\.days: expected a whole number >= 1",
        ),
        (
            _with("sources.ip1.warmup", {"start": "2026-12-01", "days": 3, "first": 9, "last": 2}),
            r"^egress\.sources\.ip1\.warmup\.last: must be at least first \(9\)",
        ),
        (
            _with("sources.ip1.warmup", {"start": "2026-12-01", "days": 3, "first": 1}),
            r"^egress\.sources\.ip1\.warmup\.last: expected a whole number",
        ),
        (
            _with("pools.gmail.sources", {"ip9": 1}),
            r"^egress\.pools\.gmail\.sources\.ip9: unknown source "
            r"\(egress\.sources has: ip1, ip2, ip3\)",
        ),
        (
            _with("pools.gmail.sources", {"ip3": 0}),
            r"^egress\.pools\.gmail\.sources\.ip3: expected a whole number >= 1",
        ),
        (
            _with("pools.gmail.sources", {}),
            r"^egress\.pools\.gmail\.sources: expected a table of source = weight",
        ),
        (
            _with("pools.gmail.weights", 1),
            r"^unknown configuration key: egress\.pools\.gmail\.weights",
        ),
        (
            {"domains": {"x.test": {"egress_pool": "gmail"}}},
            r"^domains\.x\.test\.egress_pool: unknown egress pool 'gmail' \(pools: none",
        ),
        (
            {
                **_with("pools.gmail.sources", {"ip3": 1}),
                "domains": {"default": {"egress_pool": "yahoo"}},
            },
            r"^domains\.default\.egress_pool: unknown egress pool 'yahoo' "
            r"\(pools: default, gmail\)",
        ),
        (
            {"domains": {"x.test": {"egress_pool": 3}}},
            r"^domains\.x\.test\.egress_pool: expected a pool name",
        ),
        (
            {"providers": {"google": {"egress_pool": "gmail"}}},
            r"^providers\.google\.egress_pool: unknown egress pool 'gmail'",
        ),
        (
            {"providers": {"google": {"egress_pool": ""}}},
            r"^providers\.google\.egress_pool: expected a pool name",
        ),
    ],
)
def test_bad_values_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, data)
