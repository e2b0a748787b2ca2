"""Smarthost routes: `[routes.default]` and `[routes."example.com"]`.

Responsible for: the names, types and validation of the route tables — which next hop
(`relay`: a host name or an IP literal with its port; "mx" for MX delivery), the TLS mode
towards it (`tls`) and the AUTH credentials (`auth`: a user and a password file, read
here, at start and on reload) — so a bad value is one line naming the key; and which
route applies to a destination domain (`Routes.relay_for`: a domain's table beats the
default one).
Not responsible for: resolving the relay's address or connecting (engine.net.relay,
engine.net.session), or connection limits (the destination's, as for MX delivery).

```toml
[routes.default]                  # all mail (absent: MX delivery)
relay = "email-smtp.eu-west-1.amazonaws.com:587"  # or "[192.0.2.1]:25", "[2001:db8::1]:25"
auth = { user = "AKIAEXAMPLE", password_file = "/etc/volley/ses.password" }
tls = "required"                  # | "verify" | "implicit" | "opportunistic" | "disabled"
[routes."example.org"]
relay = "mx"                      # this domain goes by MX again
```

Invariants:
  * The password never leaves this module as text except through `Secret.reveal()`:
    `repr`/`str` print `***`, and `routes_dict` writes the file's path, not its content
    (the dict is what workers receive and reload compares).
  * A domain's table is the whole route: nothing is inherited from `[routes.default]`,
    so the default relay's password is never sent to a domain's other relay.
  * AUTH never goes over an unencrypted connection unless `tls = "disabled"` is
    written in the same table (engine.net.relay.authenticate enforces it).
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config.smtpd import SmtpdSettings
from engine.config.values import ConfigError, Table, parse_address
from engine.model import TlsPolicy

__all__ = ["Relay", "RelayAuth", "RelayTls", "Routes", "Secret", "read_routes", "routes_dict"]

MX = "mx"  # `relay = "mx"`: deliver by MX lookup
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# A character that would end or split an AUTH line: base64 hides them on the wire, but a
# password file with a second line is a mistake we say, not a password we send.
_CONTROL = re.compile(r"[\x00\r\n]")


class RelayTls(enum.Enum):
    """How the connection to a relay is encrypted (`routes.*.tls`)."""

    REQUIRED = "required"  # STARTTLS, or no session (never in clear)
    VERIFY = "verify"  # REQUIRED, and the certificate verified for the relay's name
    IMPLICIT = "implicit"  # TLS from the first byte (RFC 8314 §3, port 465)
    OPPORTUNISTIC = "opportunistic"  # STARTTLS when offered (AUTH still never in clear)
    DISABLED = "disabled"  # never STARTTLS; the only mode that sends AUTH in clear

    @property
    def starttls(self) -> TlsPolicy:
        """The STARTTLS policy of a session in this mode (implicit TLS sends none)."""
        return _STARTTLS[self]


_STARTTLS = {
    RelayTls.REQUIRED: TlsPolicy.REQUIRED,
    RelayTls.VERIFY: TlsPolicy.VERIFY,  # engine.runtime.tlsguard: CA store or smtp.tls_ca_file
    RelayTls.IMPLICIT: TlsPolicy.DISABLED,
    RelayTls.OPPORTUNISTIC: TlsPolicy.OPPORTUNISTIC,
    RelayTls.DISABLED: TlsPolicy.DISABLED,
}


class Secret:
    """A password in memory: compared by value, never printed (`repr` and `str` are
    `***`, so a Settings in a traceback or a log line cannot show it)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The password itself: only for the AUTH exchange (engine.smtp.auth)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class RelayAuth:
    user: str
    password: Secret
    password_file: Path  # where the password was read (what dumps show)


@dataclass(frozen=True, slots=True)
class Relay:
    """One smarthost: where to connect, how to encrypt, how to log in."""

    host: str  # a lower-case host name, or an IP address when `literal`
    port: int
    literal: bool  # written as an IP address: no DNS lookup
    tls: RelayTls
    auth: RelayAuth | None
    table: str  # the setting it came from ("routes.default"), for messages

    @property
    def address(self) -> str:
        """`relay` as it reads back: "host:port", "[192.0.2.1]:25", "[::1]:25"."""
        return f"[{self.host}]:{self.port}" if self.literal else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Routes:
    default: Relay | None = None  # None: MX delivery
    domains: Mapping[str, Relay | None] = field(default_factory=dict)  # None: relay = "mx"

    def relay_for(self, domain: str) -> Relay | None:
        """The relay mail for `domain` goes through; None: MX delivery."""
        domains = self.domains
        if domains and domain in domains:
            return domains[domain]
        return self.default


def read_routes(t: Table, smtpd: SmtpdSettings | None = None) -> Routes:
    """`[routes]`; a relay written as an address where `smtpd` listens is refused (the
    mail would come straight back: a loop)."""
    default: Relay | None = None
    domains: dict[str, Relay | None] = {}
    for name in t.data:
        if name == "default":
            default = _read_route(t.table(name))
            continue
        t.used.add(name)
        table = Table(t.data[name], f'{t.prefix}."{name}"')  # routes."example.com".relay
        domain = name.lower().rstrip(".")
        if not domain or "." not in domain:
            raise ConfigError(f"{table.prefix}: expected a domain name like example.com")
        domains[domain] = _read_route(table)
    t.finish()
    if smtpd is not None:
        for relay in (default, *domains.values()):
            if relay is not None and _is_own_listener(relay, smtpd):
                raise ConfigError(
                    f"{relay.table}.relay: {relay.address} is Volley's own listener"
                    " (smtpd.listen): the mail would loop"
                )
    return Routes(default, domains)


def _is_own_listener(relay: Relay, smtpd: SmtpdSettings) -> bool:
    """A relay written as an address one of our listeners is bound to (a listener on
    0.0.0.0 or :: takes loopback too).  Relays by name are checked per connection
    (engine.net.targets)."""
    if not relay.literal:
        return False
    loopback = ipaddress.ip_address(relay.host).is_loopback
    for text in (*smtpd.listen, *smtpd.implicit_tls_listen):
        host, port = parse_address(text, names=frozenset({"localhost"}), min_port=0)
        host = "127.0.0.1" if host == "localhost" else host
        if port == relay.port and (host == relay.host or (loopback and host in ("0.0.0.0", "::"))):
            return True
    return False


def _read_route(t: Table) -> Relay | None:
    raw = t.get("relay")
    if raw == MX:
        for key in ("auth", "tls"):
            if key in t.data:
                raise ConfigError(f'{t.key(key)}: not with relay = "mx" (MX delivery)')
        t.finish()
        return None
    if not isinstance(raw, str) or not raw:
        raise ConfigError(f'{t.key("relay")}: expected "host:port", "[ip]:port" or "mx"')
    host, port, literal = _parse_relay(raw, t.key("relay"))
    auth = _read_auth(t)
    tls_raw = t.string("tls", None)
    if tls_raw is None:
        # A password deserves encryption by default; without one, take what is offered.
        tls = RelayTls.REQUIRED if auth is not None else RelayTls.OPPORTUNISTIC
    else:
        try:
            tls = RelayTls(tls_raw)
        except ValueError:
            choices = ", ".join(m.value for m in RelayTls)
            raise ConfigError(
                f"{t.key('tls')}: expected one of {choices}; got {tls_raw!r}"
            ) from None
    t.finish()
    return Relay(host, port, literal, tls, auth, t.prefix)


def _parse_relay(text: str, key: str) -> tuple[str, int, bool]:
    """(host, port, literal) from "host:port", "ip:port", "[ip]:port"; the port is
    required: 25, 587 and 465 are all common for relays, and a guess would be wrong."""
    usage = f'{key}: expected "host:port" or "[ip]:port", got {text!r}'
    if text.startswith("["):
        inner, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ConfigError(usage)
        host, port_text, literal = inner, rest[1:], True
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise ConfigError(usage)  # no port, or a bare IPv6 address
        literal = False  # an IPv4 address without brackets is one all the same
    if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{key}: the port must be 1..65535, got {text!r}")
    try:
        return str(ipaddress.ip_address(host)), int(port_text), True
    except ValueError:
        pass
    if literal:
        raise ConfigError(f"{key}: {host!r} in brackets is not an IP address")
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        # Looked up in DNS, not /etc/hosts: say what works instead.
        raise ConfigError(f"{key}: write the address, e.g. [127.0.0.1]:{port_text}")
    if len(host) > 253 or any(_LABEL.fullmatch(label) is None for label in host.split(".")):
        raise ConfigError(f"{key}: {host!r} is not a host name")
    return host, int(port_text), False


def _read_auth(t: Table) -> RelayAuth | None:
    raw = t.get("auth")
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{t.key('auth')}: expected {{ user = ..., password_file = ... }}")
    a = Table(raw, t.key("auth"))
    user = a.string("user", None)
    if user is None or _CONTROL.search(user):
        raise ConfigError(f"{a.key('user')}: expected the user name to log in as")
    path_text = a.string("password_file", None)
    if path_text is None:
        raise ConfigError(f"{a.key('password_file')}: expected the path of the password file")
    a.finish()
    path = Path(path_text)
    return RelayAuth(user, Secret(_read_password(path, a.key("password_file"))), path)


def _read_password(path: Path, key: str) -> str:
    """The file's one line, without its line ending.  Errors name the key and the path,
    never a byte of the content."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{key}: cannot read {path}: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{key}: {path} is not UTF-8 text") from None
    if text.endswith("\n"):
        text = text[:-2] if text.endswith("\r\n") else text[:-1]
    if not text:
        raise ConfigError(f"{key}: {path} is empty")
    if _CONTROL.search(text):
        raise ConfigError(f"{key}: {path} must hold the password on one line")
    return text


def routes_dict(routes: Routes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if routes.default is not None:
        out["default"] = _relay_dict(routes.default)
    for domain, relay in routes.domains.items():
        out[domain] = {"relay": MX} if relay is None else _relay_dict(relay)
    return out


def _relay_dict(relay: Relay) -> dict[str, Any]:
    out: dict[str, Any] = {"relay": relay.address, "tls": relay.tls.value}
    if relay.auth is not None:
        out["auth"] = {"user": relay.auth.user, "password_file": str(relay.auth.password_file)}
    return out
