"""The suppression list's and the one-click unsubscribe's settings: `[suppression]`,
`[unsubscribe]`.

Responsible for: the names, types, defaults and validation of both tables (issue #12's
contract for `[unsubscribe]`: listen, url_base, secret_file, mailto; ours for the rest),
so a bad value is one line naming the key at start and on reload.
Not responsible for: keeping the list (engine.suppress), the rule that feeds it
(engine.suppress.rules) or serving the endpoint (engine.unsubscribe).

```toml
[suppression]
# Permanent failures of these bounce categories suppress the address (globally):
categories = ["InvalidRecipient", "BadDomain", "InactiveMailbox"]
# `count` messages to one address failing with `category` within `days` days, with no
# delivery in between, suppress it for `expire_after`; count = 0 turns the rule off.
soft_bounce = { category = "QuotaIssues", count = 3, days = 7, expire_after = "30d" }

[unsubscribe]                      # absent: no List-Unsubscribe headers, no endpoint
listen = "127.0.0.1:8025"
url_base = "https://unsub.example.com"        # links are <url_base>/u/<token>
secret_file = "/etc/volley/unsubscribe.key"   # default <spool>/unsubscribe.key, made 0600
mailto = "unsubscribe@bounces.example.com"    # optional second URI of List-Unsubscribe
tls_cert = "/etc/volley/unsub.pem"            # optional: HTTPS in Volley (else a proxy)
tls_key = "/etc/volley/unsub.key"
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from engine.config.values import ConfigError, Table, check_listen
from engine.policy.categories import Category

__all__ = [
    "CATEGORIES",
    "SoftBounce",
    "SuppressionSettings",
    "UnsubscribeSettings",
    "read_suppression",
    "read_unsubscribe",
    "suppression_dict",
    "unsubscribe_dict",
]

# The bounce categories a rule may name (engine.policy.categories, KumoMTA's names): a
# misspelt category ("InvalidRecipients") would otherwise silently suppress nothing.
CATEGORIES = frozenset(c.value for c in Category)
DAY = 86400.0
_ADDRESS = re.compile(r"[^@\s<>]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+")


@dataclass(frozen=True, slots=True)
class SoftBounce:
    """`count` distinct messages failing with `category` in `days` -> suppressed for
    `expire_after` seconds (engine.suppress.rules.decide)."""

    category: str = "QuotaIssues"
    count: int = 3
    days: float = 7.0
    expire_after: float = 30 * DAY

    @property
    def enabled(self) -> bool:
        return self.count > 0


@dataclass(frozen=True, slots=True)
class SuppressionSettings:
    categories: tuple[str, ...] = ("InvalidRecipient", "BadDomain", "InactiveMailbox")
    soft_bounce: SoftBounce = field(default_factory=SoftBounce)


@dataclass(frozen=True, slots=True)
class UnsubscribeSettings:
    url_base: str  # "https://unsub.example.com" (no trailing slash)
    listen: str = "127.0.0.1:8025"
    secret_file: Path | None = None  # None: <spool>/unsubscribe.key
    mailto: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None


def _category(t: Table, name: str, value: object) -> str:
    if not isinstance(value, str) or value not in CATEGORIES:
        raise ConfigError(
            f"{t.key(name)}: {value!r} is not a bounce category (InvalidRecipient, BadDomain, "
            "InactiveMailbox, QuotaIssues, ...)"
        )
    return value


def read_suppression(t: Table) -> SuppressionSettings:
    d = SuppressionSettings()
    raw = t.get("categories")
    categories = d.categories
    if raw is not None:
        if not isinstance(raw, list):
            raise ConfigError(f"{t.key('categories')}: expected a list of bounce categories")
        categories = tuple(_category(t, "categories", c) for c in raw)
    sb = t.table("soft_bounce")
    ds = d.soft_bounce
    soft = SoftBounce(
        category=_category(sb, "category", sb.get("category") or ds.category),
        count=sb.integer("count", ds.count),
        days=sb.number("days", ds.days),
        expire_after=sb.duration("expire_after", ds.expire_after),
    )
    if soft.enabled and soft.days <= 0:
        raise ConfigError(f"{sb.key('days')}: must be above 0")
    if soft.enabled and soft.expire_after <= 0:
        raise ConfigError(f"{sb.key('expire_after')}: must be above 0")
    sb.finish()
    t.finish()
    return SuppressionSettings(categories, soft)


def suppression_dict(s: SuppressionSettings) -> dict[str, Any]:
    sb = s.soft_bounce
    return {
        "categories": list(s.categories),
        "soft_bounce": {
            "category": sb.category,
            "count": sb.count,
            "days": sb.days,
            "expire_after": sb.expire_after,
        },
    }


def read_unsubscribe(t: Table) -> UnsubscribeSettings | None:
    """None when the table is absent or empty: the feature is off."""
    if not t.data:
        t.finish()
        return None
    d = UnsubscribeSettings(url_base="https://x")
    base = t.get("url_base")
    if not isinstance(base, str) or not base:
        raise ConfigError(f'{t.key("url_base")}: required, e.g. "https://unsub.example.com"')
    parts = urlsplit(base)
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
        # RFC 8058 §3.1: the one-click URI must be HTTPS.
        raise ConfigError(
            f"{t.key('url_base')}: expected an https:// URL without query (RFC 8058), got {base!r}"
        )
    listen = check_listen(t.key("listen"), t.get("listen"), d.listen, may_be_off=False)
    mailto = t.string("mailto", None)
    if mailto is not None and _ADDRESS.fullmatch(mailto) is None:
        raise ConfigError(f"{t.key('mailto')}: expected an address like unsubscribe@example.com")
    s = UnsubscribeSettings(
        url_base=base.rstrip("/"),
        listen=listen,
        secret_file=t.path("secret_file"),
        mailto=mailto,
        tls_cert=t.path("tls_cert"),
        tls_key=t.path("tls_key"),
    )
    if (s.tls_cert is None) != (s.tls_key is None):
        raise ConfigError(f"{t.key('tls_cert')}: tls_cert and tls_key must be set together")
    t.finish()
    return s


def unsubscribe_dict(s: UnsubscribeSettings | None) -> dict[str, Any]:
    if s is None:
        return {}
    out: dict[str, Any] = {"url_base": s.url_base, "listen": s.listen}
    for name in ("secret_file", "tls_cert", "tls_key"):
        value = getattr(s, name)
        if value is not None:
            out[name] = str(value)
    if s.mailto is not None:
        out["mailto"] = s.mailto
    return out
