"""DKIM signing settings: `[dkim."example.com"]`, one table per signing domain.

Responsible for: the names, types and validation of the tables (selector, key,
headers, over_sign, also_sign), so a bad value is one line naming the key.
Not responsible for: reading the key files (engine.auth.dkim.check_keys does, at start
and on reload, so a missing key is a configuration error too) or signing.

```toml
[dkim."example.com"]        # mail whose From domain is example.com or a subdomain of it
selector = "s2026"
key = "/etc/volley/dkim/example.com.s2026.pem"   # RSA (>= 1024 bits) or Ed25519
headers = ["from", "to", "subject"]              # optional: replaces the default list
over_sign = ["from"]                              # optional: listed once more than present
also_sign = [{ selector = "ed2026", key = "/etc/volley/dkim/example.com.ed2026.pem" }]
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config.values import ConfigError, Table

__all__ = ["DkimDomain", "dkim_dict", "read_dkim"]

_SELECTOR = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62})")
_HEADER = re.compile(r"[!-9;-~]+")  # RFC 5322 §3.6.8 field name: printable, no ":"


@dataclass(frozen=True, slots=True)
class DkimDomain:
    domain: str
    selector: str
    key: Path
    headers: tuple[str, ...] | None = None  # None: engine.auth.dkim.DEFAULT_HEADERS
    over_sign: tuple[str, ...] | None = None  # None: engine.auth.dkim.DEFAULT_OVER_SIGN
    also_sign: tuple[tuple[str, Path], ...] = ()  # (selector, key): e.g. RSA + Ed25519


def _selector(t: Table, name: str, value: object) -> str:
    if not isinstance(value, str) or _SELECTOR.fullmatch(value) is None:
        raise ConfigError(f"{t.key(name)}: expected a selector like s2026, got {value!r}")
    return value


def _key(t: Table, name: str, value: object) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{t.key(name)}: expected the path of a private key file")
    return Path(value)


def _names(t: Table, name: str) -> tuple[str, ...] | None:
    raw = t.get(name)
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(
        isinstance(v, str) and _HEADER.fullmatch(v) for v in raw
    ):
        raise ConfigError(f"{t.key(name)}: expected a list of header field names")
    return tuple(v.lower() for v in raw)


def read_dkim(t: Table) -> tuple[DkimDomain, ...]:
    out = []
    for domain in t.data:
        d = t.table(domain)
        name = domain.lower().rstrip(".")
        if not name or "." not in name:
            raise ConfigError(f"{d.prefix}: expected a domain name like example.com")
        selector = _selector(d, "selector", d.get("selector"))
        key = _key(d, "key", d.get("key"))
        headers = _names(d, "headers")
        if headers is not None and "from" not in headers:
            raise ConfigError(f"{d.key('headers')}: must include from (RFC 6376 §5.4)")
        over_sign = _names(d, "over_sign")
        also_raw = d.get("also_sign") or []
        if not isinstance(also_raw, list) or not all(isinstance(a, dict) for a in also_raw):
            raise ConfigError(f"{d.key('also_sign')}: expected a list of {{selector, key}}")
        also = []
        for i, entry in enumerate(also_raw):
            a = Table(entry, f"{d.key('also_sign')}[{i}]")
            also.append((_selector(a, "selector", a.get("selector")), _key(a, "key", a.get("key"))))
            a.finish()
        d.finish()
        out.append(DkimDomain(name, selector, key, headers, over_sign, tuple(also)))
    t.finish()
    return tuple(out)


def dkim_dict(domains: tuple[DkimDomain, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d in domains:
        table: dict[str, Any] = {"selector": d.selector, "key": str(d.key)}
        if d.headers is not None:
            table["headers"] = list(d.headers)
        if d.over_sign is not None:
            table["over_sign"] = list(d.over_sign)
        if d.also_sign:
            table["also_sign"] = [{"selector": s, "key": str(k)} for s, k in d.also_sign]
        out[d.domain] = table
    return out
