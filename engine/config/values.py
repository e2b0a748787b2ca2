"""Reading setting values: durations, addresses, and TOML tables whose leftovers are errors.

Responsible for: the error type every bad setting raises (one line, naming the key), and
the small parsers every section shares.
Not responsible for: which settings exist (engine.config.settings and the section
modules say that).
"""

from __future__ import annotations

import ipaddress
import re
import ssl
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError",
    "Table",
    "check_ca_file",
    "check_listen",
    "parse_address",
    "parse_duration",
    "read_toml_file",
]


class ConfigError(ValueError):
    """The configuration is wrong; the message names the offending key."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: object, key: str) -> float:
    """Seconds from a number or a string like "250ms", "30s", "10m", "2h", "5d"."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a duration, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ConfigError(f"{key}: must not be negative")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNIT[m.group(2) or "s"]
    raise ConfigError(f"{key}: expected a duration like 30s, 10m, 5d; got {value!r}")


class Table:
    """Reads one TOML table, remembering which keys were used so leftovers are errors."""

    def __init__(self, data: Mapping[str, Any], prefix: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{prefix or 'config'}: expected a table")
        self.data = data
        self.prefix = prefix
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def get(self, name: str) -> Any:
        self.used.add(name)
        return self.data.get(name)

    def table(self, name: str) -> Table:
        self.used.add(name)
        return Table(self.data.get(name, {}), self.key(name))

    def integer(self, name: str, default: int, minimum: int = 0) -> int:
        v = self.get(name)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ConfigError(f"{self.key(name)}: expected an integer >= {minimum}, got {v!r}")
        return v

    def number(self, name: str, default: float) -> float:
        v = self.get(name)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
            raise ConfigError(f"{self.key(name)}: expected a number >= 0, got {v!r}")
        return float(v)

    def duration(self, name: str, default: float) -> float:
        v = self.get(name)
        return default if v is None else parse_duration(v, self.key(name))

    def string(self, name: str, default: str | None) -> str | None:
        v = self.get(name)
        if v is None:
            return default
        if not isinstance(v, str) or not v:
            raise ConfigError(f"{self.key(name)}: expected a non-empty string, got {v!r}")
        return v

    def path(self, name: str) -> Path | None:
        """A file path; None when absent or "" (the feature's default applies)."""
        v = self.get(name)
        if v is None or v == "":
            return None
        if not isinstance(v, str):
            raise ConfigError(f"{self.key(name)}: expected a file path, got {v!r}")
        return Path(v)

    def boolean(self, name: str, default: bool) -> bool:
        v = self.get(name)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise ConfigError(f"{self.key(name)}: expected true or false, got {v!r}")
        return v

    def networks(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """A list of networks like "127.0.0.0/8" (a bare address is its /32 or /128)."""
        raw = self.get(name)
        if raw is None:
            return default
        if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
            raise ConfigError(f'{self.key(name)}: expected a list of networks like "10.0.0.0/8"')
        for v in raw:
            try:
                ipaddress.ip_network(v, strict=False)
            except ValueError:
                raise ConfigError(
                    f"{self.key(name)}: {v!r} is not a network like 10.0.0.0/8"
                ) from None
        return tuple(raw)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(f"unknown configuration key: {self.key(unknown[0])}")


def parse_address(
    text: str,
    *,
    default_port: int | None = None,
    names: frozenset[str] = frozenset(),
    min_port: int = 1,
) -> tuple[str, int]:
    """("ip", port) from "ip", "ip:port", "[v6]" or "[v6]:port" (bare IPv6 too when no
    port can follow); `names` are host names allowed besides IP literals ("localhost").
    The one parser of every address setting: dns.nameservers (port 53 by default),
    metrics.listen and admin.listen (port required).  `min_port=0` lets a bind ask the
    kernel for a free port (tests do).

    Raises:
        ValueError: the reason, e.g. "'dns.example' is not an IP address".
    """
    stripped = text.strip()
    host, port_text = stripped, None
    if stripped.startswith("["):
        host, sep, rest = stripped[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r}: expected [ipv6] or [ipv6]:port")
        port_text = rest[1:] if rest else None
        bracketed = True
    else:
        bracketed = False
        if stripped.count(":") == 1:  # more than one colon: a bare IPv6 address
            host, port_text = stripped.split(":")
    if host not in names:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IP address") from None
        if ip.version == 6 and not bracketed and default_port is None:
            raise ValueError(f"write an IPv6 address in brackets with its port: [{host}]:port")
        host = str(ip)
    if port_text is None:
        if default_port is None:
            raise ValueError(f"{text!r}: expected ip:port")
        return host, default_port
    if not port_text.isdigit() or not min_port <= int(port_text) < 65536:
        raise ValueError(f"{text!r}: the port must be {min_port}..65535")
    return host, int(port_text)


_LISTEN_NAMES = frozenset({"localhost"})


def check_listen(key: str, value: object, default: str, *, may_be_off: bool) -> str:
    """metrics.listen / admin.listen: "ip:port", "[ipv6]:port", "localhost:port"; "" turns
    the listener off where that is allowed.  Checked before any worker starts."""
    if value is None:
        return default
    if value == "" and may_be_off:
        return ""
    if not isinstance(value, str):
        off = ' or "" (off)' if may_be_off else ""
        raise ConfigError(f'{key}: expected "ip:port"{off}, got {value!r}')
    try:
        parse_address(value, names=_LISTEN_NAMES)
    except ValueError as e:
        raise ConfigError(f"{key}: {e}") from None
    return value


def check_ca_file(key: str, value: Path | None) -> Path | None:
    """A PEM file of trusted CA certificates (None: the system store; read it with
    `Table.path`).  Loaded once here so a missing, unreadable or non-PEM file is one line
    naming the key before any worker starts, not a failed handshake per connection later."""
    if value is None:
        return None
    try:
        ssl.create_default_context(cafile=value)
    except ssl.SSLError as e:  # before OSError: SSLError is one
        why = e.reason or e
        raise ConfigError(f"{key}: {value} holds no usable PEM certificate ({why})") from None
    except OSError as e:
        raise ConfigError(f"{key}: cannot read {value}: {e.strerror or e}") from None
    return value


def read_toml_file(path: Path, key: str) -> dict[str, Any]:
    """The document in the TOML file a setting names (`bounce.rules_file`,
    `shaping.rules_file`); ConfigError "<key>: cannot read <path>: <why>" or
    "<key>: <path>: <TOML error>"."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as e:
        raise ConfigError(f"{key}: cannot read {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{key}: {path}: {e}") from None
