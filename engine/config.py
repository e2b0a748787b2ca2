"""Typed configuration: TOML file + command-line overrides -> frozen `Settings`.

Responsible for: every setting's name, type and default; rejecting unknown keys with
the key's dotted name; per-destination policy lookup (`Settings.policy(domain)`).
Not responsible for: acting on settings (the runtime does), or reading any file but
the one TOML file it is given.

Every key has a default, so `volley run` works with no file at all.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from engine.model import SmtpTimeouts, TlsPolicy
from engine.smtp.encode import check_helo_name
from engine.smtp.errors import LocalProtocolError

__all__ = [
    "ConfigError",
    "DomainPolicy",
    "Settings",
    "helo_name_error",
    "helo_name_warning",
    "load_settings",
    "parse_address",
    "parse_duration",
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


@dataclass(frozen=True, slots=True)
class DomainPolicy:
    """Limits and retry policy for one destination domain (`[domains.<name>]`)."""

    max_connections: int = 10
    max_messages_per_connection: int = 100
    max_recipients_per_transaction: int = 100
    # In the spirit of RFC 5321 §4.5.4.1 (retry at least every 30 min, give up after
    # 4-5 days) with Postfix's faster first retries: 5, 10, 20, 40 min, then hourly.
    retry_schedule: tuple[float, ...] = (300.0, 600.0, 1200.0, 2400.0, 3600.0)
    # +-20 %: a recovered domain's backlog comes back spread over a window, not at once.
    retry_jitter: float = 0.2
    max_age: float = 5 * 86400.0
    tls: TlsPolicy = TlsPolicy.OPPORTUNISTIC


@dataclass(frozen=True, slots=True)
class Settings:
    spool_path: Path = Path("var/spool")
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    max_message_size: int = 50 * 1024 * 1024
    max_recipients: int = 1000
    intake_interval: float = 0.05  # seconds between scans of incoming/ when it was empty
    intake_batch: int = 256  # drops taken per group commit
    dns_nameservers: tuple[str, ...] | None = None  # None: the system resolver
    dns_timeout: float = 5.0
    dns_negative_ttl: float = 300.0
    smtp_port: int = 25
    helo_name: str = field(default_factory=socket.getfqdn)
    source_address: str | None = None
    smtp_timeouts: SmtpTimeouts = field(default_factory=SmtpTimeouts)
    idle_timeout: float = 5.0  # an unused pooled connection is closed after this long
    metrics_listen: str = "127.0.0.1:9108"
    # Per-destination series only for the N busiest domains; the rest are summed under
    # domain="other" so /metrics stays bounded with 100 000 destinations.
    metrics_top_domains: int = 50
    log_path: Path = Path("var/log/delivery.jsonl")
    # The admin API (engine.admin); "" turns it off.  Loopback: see README before widening.
    admin_listen: str = "127.0.0.1:9109"
    admin_token_file: Path | None = None  # None: <spool>/admin.token
    dsn_enabled: bool = True
    # A message's bounce report waits this long for the failures of its other destination
    # domains (one entry each), so the sender gets one report listing every failed
    # recipient; siblings usually fail within seconds of each other (engine.runtime.outcome).
    dsn_hold: float = 30.0
    drain_timeout: float = 30.0
    default_policy: DomainPolicy = field(default_factory=DomainPolicy)
    domain_policies: Mapping[str, DomainPolicy] = field(default_factory=dict)

    def policy(self, domain: str) -> DomainPolicy:
        return self.domain_policies.get(domain, self.default_policy)

    @property
    def admin_token_path(self) -> Path:
        return self.admin_token_file or self.spool_path / "admin.token"

    def to_dict(self) -> dict[str, Any]:
        """A plain TOML-shaped dict that `from_dict` reads back (sent to workers)."""
        out: dict[str, Any] = {
            "spool": {
                "path": str(self.spool_path),
                "max_message_size": self.max_message_size,
                "max_recipients": self.max_recipients,
            },
            "workers": self.workers,
            "intake": {"interval": self.intake_interval, "batch": self.intake_batch},
            "dns": {"timeout": self.dns_timeout, "negative_ttl": self.dns_negative_ttl},
            "smtp": {
                "port": self.smtp_port,
                "helo_name": self.helo_name,
                "idle_timeout": self.idle_timeout,
                "timeouts": {
                    f.name: getattr(self.smtp_timeouts, f.name) for f in fields(SmtpTimeouts)
                },
            },
            "metrics": {"listen": self.metrics_listen, "top_domains": self.metrics_top_domains},
            "log": {"path": str(self.log_path)},
            "admin": {"listen": self.admin_listen},
            "dsn": {"enabled": self.dsn_enabled, "hold": self.dsn_hold},
            "shutdown": {"drain_timeout": self.drain_timeout},
            "domains": {"default": _policy_dict(self.default_policy)}
            | {name: _policy_dict(p) for name, p in self.domain_policies.items()},
        }
        if self.dns_nameservers is not None:
            out["dns"]["nameservers"] = list(self.dns_nameservers)
        if self.source_address is not None:
            out["smtp"]["source_address"] = self.source_address
        if self.admin_token_file is not None:
            out["admin"]["token_file"] = str(self.admin_token_file)
        return out


def _policy_dict(p: DomainPolicy) -> dict[str, Any]:
    return {
        "max_connections": p.max_connections,
        "max_messages_per_connection": p.max_messages_per_connection,
        "max_recipients_per_transaction": p.max_recipients_per_transaction,
        "retry_schedule": list(p.retry_schedule),
        "retry_jitter": p.retry_jitter,
        "max_age": p.max_age,
        "tls": p.tls.value,
    }


class _Table:
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

    def table(self, name: str) -> _Table:
        self.used.add(name)
        return _Table(self.data.get(name, {}), self.key(name))

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

    def boolean(self, name: str, default: bool) -> bool:
        v = self.get(name)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise ConfigError(f"{self.key(name)}: expected true or false, got {v!r}")
        return v

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(f"unknown configuration key: {self.key(unknown[0])}")


_LDH_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def helo_name_error(name: str) -> str | None:
    """Why `name` cannot be our EHLO/HELO name (RFC 5321 §4.1.1.1: a domain, or an address
    literal such as [192.0.2.1]), or None.  Checked at start and on reload, as Postfix
    refuses to start on a bad myhostname: "mail_out.example.com" once passed and every
    connection then failed at EHLO, to every destination (issue #14, finding 8)."""
    if name.startswith("["):
        try:
            check_helo_name(name)
        except LocalProtocolError:
            return "is not a valid address literal like [192.0.2.1] or [IPv6:2001:db8::1]"
        inner = name[1:-1] if name.endswith("]") else ""
        address = inner[5:] if inner[:5].lower() == "ipv6:" else inner
        try:
            ipaddress.ip_address(address)
        except ValueError:
            return "is not a valid address literal like [192.0.2.1] or [IPv6:2001:db8::1]"
        return None
    if len(name) > 253:
        return "is longer than 253 characters"
    labels = name.split(".")
    if any(_LDH_LABEL.fullmatch(label) is None for label in labels):
        return (
            "is not a host name: labels of letters, digits and '-' (no '_', no empty label),"
            " separated by '.'"
        )
    return None


def helo_name_warning(name: str) -> str | None:
    """A valid name that receivers will still distrust: `localhost`, or a name that is
    not fully qualified (Gmail and Microsoft score both as spam signs; RFC 5321 §4.1.1.1
    asks for the client's fully qualified domain name)."""
    if name.startswith("["):
        return None  # an address literal: valid, if unusual
    lower = name.lower()
    if lower == "localhost" or lower.startswith("localhost."):
        return f"smtp.helo_name is {name!r}: receivers expect this host's fully qualified name"
    if "." not in name:
        return f"smtp.helo_name {name!r} is not a fully qualified domain name (no dot)"
    return None


def _read_policy(t: _Table, base: DomainPolicy) -> DomainPolicy:
    sched = t.get("retry_schedule")
    schedule = base.retry_schedule
    if sched is not None:
        if not isinstance(sched, list) or not sched:
            raise ConfigError(f"{t.key('retry_schedule')}: expected a non-empty list of durations")
        schedule = tuple(parse_duration(v, t.key("retry_schedule")) for v in sched)
    tls_raw = t.string("tls", base.tls.value)
    try:
        tls = TlsPolicy(tls_raw)
    except ValueError:
        choices = ", ".join(p.value for p in TlsPolicy)
        raise ConfigError(f"{t.key('tls')}: expected one of {choices}; got {tls_raw!r}") from None
    jitter = t.number("retry_jitter", base.retry_jitter)
    if jitter >= 1:
        raise ConfigError(f"{t.key('retry_jitter')}: must be below 1")
    policy = replace(
        base,
        max_connections=t.integer("max_connections", base.max_connections, 1),
        max_messages_per_connection=t.integer(
            "max_messages_per_connection", base.max_messages_per_connection, 1
        ),
        max_recipients_per_transaction=t.integer(
            "max_recipients_per_transaction", base.max_recipients_per_transaction, 1
        ),
        retry_schedule=schedule,
        retry_jitter=jitter,
        max_age=t.duration("max_age", base.max_age),
        tls=tls,
    )
    t.finish()
    return policy


def from_dict(data: Mapping[str, Any]) -> Settings:
    """Build Settings from a TOML-shaped dict; unknown keys raise ConfigError."""
    d = Settings()
    root = _Table(data, "")
    sp = root.table("spool")
    spool_path = Path(sp.string("path", str(d.spool_path)) or d.spool_path)
    max_size = sp.integer("max_message_size", d.max_message_size, 1)
    max_rcpts = sp.integer("max_recipients", d.max_recipients, 1)
    sp.finish()
    workers = root.integer("workers", d.workers, 1)
    it = root.table("intake")
    intake_interval = it.duration("interval", d.intake_interval)
    intake_batch = it.integer("batch", d.intake_batch, 1)
    it.finish()
    dn = root.table("dns")
    ns_raw = dn.get("nameservers")
    nameservers: tuple[str, ...] | None = None
    if ns_raw is not None:
        if not isinstance(ns_raw, list) or not all(isinstance(s, str) and s for s in ns_raw):
            raise ConfigError('dns.nameservers: expected a list of "ip" or "ip:port" strings')
        for entry in ns_raw:
            try:
                parse_address(entry, default_port=53)
            except ValueError as e:
                raise ConfigError(f"dns.nameservers: {e}") from None
        nameservers = tuple(ns_raw) or None
    dns_timeout = dn.duration("timeout", d.dns_timeout)
    negative_ttl = dn.duration("negative_ttl", d.dns_negative_ttl)
    dn.finish()
    sm = root.table("smtp")
    port = sm.integer("port", d.smtp_port, 1)
    if port > 65535:
        raise ConfigError("smtp.port: must be at most 65535")
    helo = sm.string("helo_name", None) or d.helo_name
    why = helo_name_error(helo)
    if why is not None:
        raise ConfigError(f"smtp.helo_name: {helo!r} {why}")
    source = sm.string("source_address", None)
    idle = sm.duration("idle_timeout", d.idle_timeout)
    tt = sm.table("timeouts")
    timeouts = SmtpTimeouts(
        **{
            f.name: tt.duration(f.name, getattr(d.smtp_timeouts, f.name))
            for f in fields(SmtpTimeouts)
        }
    )
    tt.finish()
    sm.finish()
    me = root.table("metrics")
    listen = _listen("metrics.listen", me.get("listen"), d.metrics_listen, may_be_off=False)
    top_domains = me.integer("top_domains", d.metrics_top_domains, 1)
    me.finish()
    lg = root.table("log")
    log_path = Path(lg.string("path", str(d.log_path)) or d.log_path)
    lg.finish()
    ad = root.table("admin")
    admin_listen = _listen("admin.listen", ad.get("listen"), d.admin_listen, may_be_off=True)
    token_raw = ad.string("token_file", None)
    ad.finish()
    ds = root.table("dsn")
    dsn_enabled = ds.boolean("enabled", d.dsn_enabled)
    dsn_hold = ds.duration("hold", d.dsn_hold)
    ds.finish()
    sh = root.table("shutdown")
    drain = sh.duration("drain_timeout", d.drain_timeout)
    sh.finish()
    domains = root.table("domains")
    default_policy = _read_policy(domains.table("default"), DomainPolicy())
    per_domain: dict[str, DomainPolicy] = {}
    for name in domains.data:
        if name == "default":
            continue
        per_domain[name.lower().rstrip(".")] = _read_policy(domains.table(name), default_policy)
    domains.finish()
    root.finish()
    return Settings(
        spool_path=spool_path,
        workers=workers,
        max_message_size=max_size,
        max_recipients=max_rcpts,
        intake_interval=intake_interval,
        intake_batch=intake_batch,
        dns_nameservers=nameservers,
        dns_timeout=dns_timeout,
        dns_negative_ttl=negative_ttl,
        smtp_port=port,
        helo_name=helo,
        source_address=source,
        smtp_timeouts=timeouts,
        idle_timeout=idle,
        metrics_listen=listen,
        metrics_top_domains=top_domains,
        log_path=log_path,
        admin_listen=admin_listen,
        admin_token_file=None if token_raw is None else Path(token_raw),
        dsn_enabled=dsn_enabled,
        dsn_hold=dsn_hold,
        drain_timeout=drain,
        default_policy=default_policy,
        domain_policies=per_domain,
    )


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


def _listen(key: str, value: object, default: str, *, may_be_off: bool) -> str:
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


def load_settings(
    path: str | os.PathLike[str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Read the TOML file (if any), apply command-line overrides, validate.

    `overrides` uses dotted keys as on the command line, e.g. {"spool.path": "/x"}.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path}: {e}") from None
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return from_dict(data)
