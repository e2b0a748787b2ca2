"""[dkim."domain"] settings: read, validated with the key named, round-tripped."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import ConfigError, DkimDomain, from_dict


def test_tables_are_read_and_round_trip() -> None:
    s = from_dict(
        {
            "dkim": {
                "Example.COM": {
                    "selector": "s2026",
                    "key": "/k/rsa.pem",
                    "headers": ["From", "To", "Subject"],
                    "over_sign": ["from"],
                    "also_sign": [{"selector": "ed2026", "key": "/k/ed.pem"}],
                },
                "other.test": {"selector": "a", "key": "/k/o.pem"},
            }
        }
    )
    assert s.dkim == (
        DkimDomain(
            "example.com",
            "s2026",
            Path("/k/rsa.pem"),
            ("from", "to", "subject"),
            ("from",),
            (("ed2026", Path("/k/ed.pem")),),
        ),
        DkimDomain("other.test", "a", Path("/k/o.pem")),
    )
    assert from_dict(s.to_dict()) == s
    assert from_dict({}).dkim == ()


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"key": "/k"}, "dkim.example.com.selector"),
        ({"selector": "s 1", "key": "/k"}, "dkim.example.com.selector"),
        ({"selector": "s1"}, "dkim.example.com.key"),
        ({"selector": "s1", "key": "/k", "headers": ["to"]}, "dkim.example.com.headers"),
        ({"selector": "s1", "key": "/k", "headers": ["fr:om"]}, "dkim.example.com.headers"),
        ({"selector": "s1", "key": "/k", "also_sign": [{"selector": "e"}]}, r"also_sign\[0\]\.key"),
        ({"selector": "s1", "key": "/k", "also_sign": "x"}, "dkim.example.com.also_sign"),
        ({"selector": "s1", "key": "/k", "extra": 1}, "dkim.example.com.extra"),
    ],
)
def test_a_bad_table_names_its_key(table: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        from_dict({"dkim": {"example.com": table}})


def test_a_signing_domain_must_be_a_domain() -> None:
    with pytest.raises(ConfigError, match="expected a domain name"):
        from_dict({"dkim": {"localhost": {"selector": "s", "key": "/k"}}})
