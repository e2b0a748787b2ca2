"""[suppression] and [unsubscribe]: defaults, validation naming the key, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import ConfigError, SoftBounce, SuppressionSettings, from_dict


def test_defaults() -> None:
    s = from_dict({})
    assert s.suppression == SuppressionSettings()
    assert s.suppression.categories == ("InvalidRecipient", "BadDomain", "InactiveMailbox")
    assert s.suppression.soft_bounce == SoftBounce("QuotaIssues", 3, 7.0, 30 * 86400.0)
    assert s.unsubscribe is None  # off unless configured
    assert s.unsubscribe_secret_path == Path("var/spool/unsubscribe.key")


def test_values_are_read_and_round_trip() -> None:
    data = {
        "suppression": {
            "categories": ["InvalidRecipient"],
            "soft_bounce": {"category": "QuotaIssues", "count": 5, "days": 3, "expire_after": "2d"},
        },
        "unsubscribe": {
            "listen": "127.0.0.1:8026",
            "url_base": "https://unsub.example.com/",
            "secret_file": "/etc/volley/unsubscribe.key",
            "mailto": "unsubscribe@bounces.example.com",
        },
    }
    s = from_dict(data)
    assert s.suppression.soft_bounce == SoftBounce("QuotaIssues", 5, 3.0, 172800.0)
    u = s.unsubscribe
    assert u is not None and u.url_base == "https://unsub.example.com"
    assert s.unsubscribe_secret_path == Path("/etc/volley/unsubscribe.key")
    assert from_dict(s.to_dict()) == s
    off = from_dict({"suppression": {"soft_bounce": {"count": 0}}})
    assert not off.suppression.soft_bounce.enabled


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"suppression": {"categories": ["InvalidRecipients"]}}, "suppression.categories"),
        ({"suppression": {"categories": "InvalidRecipient"}}, "suppression.categories"),
        ({"suppression": {"soft_bounce": {"count": -1}}}, "suppression.soft_bounce.count"),
        ({"suppression": {"soft_bounce": {"days": 0}}}, "suppression.soft_bounce.days"),
        ({"suppression": {"soft_bounce": {"nope": 1}}}, "suppression.soft_bounce.nope"),
        ({"unsubscribe": {"listen": "127.0.0.1:8025"}}, "unsubscribe.url_base"),
        ({"unsubscribe": {"url_base": "http://u.example.com"}}, "unsubscribe.url_base"),
        ({"unsubscribe": {"url_base": "https://u.test", "mailto": "x"}}, "unsubscribe.mailto"),
        ({"unsubscribe": {"url_base": "https://u.test", "listen": "nope"}}, "unsubscribe.listen"),
        ({"unsubscribe": {"url_base": "https://u.test", "tls_cert": "/c"}}, "unsubscribe.tls_cert"),
    ],
)
def test_bad_values_name_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as e:
        from_dict(data)
    assert key in str(e.value)
