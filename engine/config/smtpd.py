"""The SMTP submission listener's settings: `[smtpd]`.

Responsible for: the names, types, defaults and validation of `[smtpd]` (issue #13's
contract: listen, relay_networks, users_file, tls_cert, tls_key, implicit_tls_listen,
max_message_size, max_recipients, bounce_domains; and the abuse limits beside them:
max_connections_per_client, idle_timeout, max_errors, max_unknown_commands,
max_auth_failures, auth_failure_window, received_auth_user), so a bad value is one line
naming the key at start and on reload.
Not responsible for: serving SMTP (engine.smtpd does).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config.values import ConfigError, Table, parse_address

__all__ = ["SmtpdSettings", "read_smtpd", "smtpd_dict"]


@dataclass(frozen=True, slots=True)
class SmtpdSettings:
    # Loopback only by default ("Secure by default"); [] turns the listener off.
    listen: tuple[str, ...] = ("127.0.0.1:2525",)
    relay_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    users_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    implicit_tls_listen: tuple[str, ...] = ()
    max_message_size: int = 52_428_800
    max_recipients: int = 1000
    bounce_domains: tuple[str, ...] = ()
    # Concurrent sessions from one client address outside relay_networks (Postfix's
    # smtpd_client_connection_count_limit, 50; $mynetworks exempt there as here).
    max_connections_per_client: int = 50
    # No command (or no data while reading a message) for this long: 421 and close
    # (RFC 5321 §4.5.3.2.7: a server SHOULD wait at least 5 minutes).
    idle_timeout: float = 300.0
    # Error replies (4xx/5xx) in a session without a message accepted in between, then
    # 421 and close (Postfix's smtpd_hard_error_limit, 20).
    max_errors: int = 20
    # Unrecognised commands in a session, then 421 and close: someone speaking another
    # protocol (HTTP at port 25: the cross-protocol attack class), not a mail client.
    max_unknown_commands: int = 10
    # Failed AUTH attempts per client address within auth_failure_window, after which
    # AUTH is refused (454) without checking the password: 5 guesses per 10 min.
    max_auth_failures: int = 5
    auth_failure_window: float = 600.0
    # Postfix's smtpd_sasl_authenticated_header: whether Received: names the AUTH user.
    received_auth_user: bool = False

    @property
    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(n, strict=False) for n in self.relay_networks)


def _addresses(t: Table, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = t.get(name)
    if raw is None:
        return default
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise ConfigError(f'{t.key(name)}: expected a list of "ip:port" strings')
    for v in raw:
        try:
            parse_address(v, names=frozenset({"localhost"}), min_port=0)
        except ValueError as e:
            raise ConfigError(f"{t.key(name)}: {e}") from None
    return tuple(raw)


def read_smtpd(t: Table) -> SmtpdSettings:
    d = SmtpdSettings()
    domains_raw = t.get("bounce_domains")
    bounce_domains = d.bounce_domains
    if domains_raw is not None:
        if not isinstance(domains_raw, list) or not all(
            isinstance(v, str) and v.strip(".") for v in domains_raw
        ):
            raise ConfigError(f"{t.key('bounce_domains')}: expected a list of domain names")
        bounce_domains = tuple(v.lower().rstrip(".") for v in domains_raw)
    s = SmtpdSettings(
        listen=_addresses(t, "listen", d.listen),
        relay_networks=t.networks("relay_networks", d.relay_networks),
        users_file=t.path("users_file"),
        tls_cert=t.path("tls_cert"),
        tls_key=t.path("tls_key"),
        implicit_tls_listen=_addresses(t, "implicit_tls_listen", d.implicit_tls_listen),
        max_message_size=t.integer("max_message_size", d.max_message_size, 1),
        max_recipients=t.integer("max_recipients", d.max_recipients, 1),
        bounce_domains=bounce_domains,
        max_connections_per_client=t.integer(
            "max_connections_per_client", d.max_connections_per_client, 1
        ),
        idle_timeout=t.duration("idle_timeout", d.idle_timeout),
        max_errors=t.integer("max_errors", d.max_errors, 1),
        max_unknown_commands=t.integer("max_unknown_commands", d.max_unknown_commands, 1),
        max_auth_failures=t.integer("max_auth_failures", d.max_auth_failures, 1),
        auth_failure_window=t.duration("auth_failure_window", d.auth_failure_window),
        received_auth_user=t.boolean("received_auth_user", d.received_auth_user),
    )
    seen: set[tuple[str, int]] = set()
    for key, addrs in (("listen", s.listen), ("implicit_tls_listen", s.implicit_tls_listen)):
        for a in addrs:
            ip_port = parse_address(a, names=frozenset({"localhost"}), min_port=0)
            if ip_port[1] and ip_port in seen:
                raise ConfigError(f"smtpd.{key}: {a} is listed twice")
            seen.add(ip_port)
    if s.idle_timeout <= 0:
        raise ConfigError("smtpd.idle_timeout: must be above 0")
    if (s.tls_cert is None) != (s.tls_key is None):
        raise ConfigError("smtpd.tls_cert: tls_cert and tls_key must be set together")
    if s.implicit_tls_listen and s.tls_cert is None:
        raise ConfigError("smtpd.implicit_tls_listen: needs smtpd.tls_cert and smtpd.tls_key")
    t.finish()
    return s


def smtpd_dict(s: SmtpdSettings) -> dict[str, Any]:
    return {
        "listen": list(s.listen),
        "relay_networks": list(s.relay_networks),
        "users_file": "" if s.users_file is None else str(s.users_file),
        "tls_cert": "" if s.tls_cert is None else str(s.tls_cert),
        "tls_key": "" if s.tls_key is None else str(s.tls_key),
        "implicit_tls_listen": list(s.implicit_tls_listen),
        "max_message_size": s.max_message_size,
        "max_recipients": s.max_recipients,
        "bounce_domains": list(s.bounce_domains),
        "max_connections_per_client": s.max_connections_per_client,
        "idle_timeout": s.idle_timeout,
        "max_errors": s.max_errors,
        "max_unknown_commands": s.max_unknown_commands,
        "max_auth_failures": s.max_auth_failures,
        "auth_failure_window": s.auth_failure_window,
        "received_auth_user": s.received_auth_user,
    }
