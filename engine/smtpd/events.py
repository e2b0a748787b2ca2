"""The listener's session values: policy, peer, envelope, and the events of a session.

Responsible for: the types engine.smtpd.protocol takes and hands out (`ServerPolicy`,
`Peer`, `Envelope`; the events `Send`, `StartTls`, `Authenticate`, `MessageReceived`,
`Refused`, `Close`; the `State` of a session and the `AuthResult` the adapter answers).
Not responsible for: what produces them (engine.smtpd.protocol) or acts on them
(engine.smtpd.server).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from engine.smtpd.replies import Refusal

__all__ = [
    "AuthResult",
    "Authenticate",
    "Close",
    "Envelope",
    "Event",
    "MessageReceived",
    "Peer",
    "Refused",
    "Send",
    "ServerPolicy",
    "StartTls",
    "State",
]


class State(enum.Enum):
    COMMAND = "command"  # reading command lines
    AUTH = "auth"  # reading an AUTH exchange line (after a 334)
    DATA = "data"  # reading message text
    WAIT = "wait"  # an Authenticate or MessageReceived awaits its answer
    TLS = "tls"  # 220 to STARTTLS sent: the adapter upgrades, then tls_started()
    CLOSED = "closed"


class AuthResult(enum.Enum):
    OK = "ok"
    BAD = "bad"  # 535 5.7.8
    TEMPORARY = "temporary"  # 454 4.7.0: the users file cannot be read
    LIMITED = "limited"  # 454 4.7.0: too many failures from this client address


@dataclass(frozen=True, slots=True)
class ServerPolicy:
    """What the listener allows; the same for every session of one configuration."""

    hostname: str
    max_message_size: int
    max_recipients: int
    bounce_domains: frozenset[str] = frozenset()
    auth_enabled: bool = False  # a users file is configured
    starttls: bool = False  # a certificate is configured
    max_errors: int = 20
    max_unknown_commands: int = 10


@dataclass(frozen=True, slots=True)
class Peer:
    address: str  # the client's IP address
    trusted: bool  # in relay_networks
    loopback: bool  # AUTH may be offered without TLS
    tls: bool = False  # implicit TLS (port 465 style)


@dataclass(frozen=True, slots=True)
class Envelope:
    sender: str  # "" is the null reverse-path
    recipients: tuple[str, ...]  # to relay (queue for delivery)
    local_recipients: tuple[str, ...]  # in bounce domains: kept, never relayed
    smtputf8: bool  # MAIL had SMTPUTF8
    helo: str
    esmtp: bool  # EHLO (not HELO)
    tls: bool
    auth_user: str | None
    client: str  # the client's IP address


@dataclass(frozen=True, slots=True)
class Send:
    data: bytes


@dataclass(frozen=True, slots=True)
class StartTls:
    """Upgrade the connection now (the 220 went out in the Send before this)."""


@dataclass(frozen=True, slots=True)
class Authenticate:
    mechanism: str
    username: str
    password: bytes


@dataclass(frozen=True, slots=True)
class MessageReceived:
    envelope: Envelope
    data: bytes  # DATA wire form: CRLF line ends, dot-stuffed, ends with CRLF (or empty)


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Refusal


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection once the Sends before it are written."""


Event = Send | StartTls | Authenticate | MessageReceived | Refused | Close
