"""Value types shared by the pipeline stages.

Responsible for: the frozen data that travels between stages — a transaction to send,
the facts an SMTP exchange produced (`TxnResult`, `ConnectFailure`), and the per-recipient
verdict (`Disposition`, `RecipientOutcome`, with the `Origin` of its code and text) that
engine.sched.classify derives from them.
Not responsible for: any I/O or decision.  Network code reports *facts* in these types;
only engine.sched.classify turns facts into verdicts (Postfix smtp_trouble.c).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from engine.policy.categories import Classification
from engine.smtp.replies import Reply

__all__ = [
    "ConnectFailure",
    "Disposition",
    "FailureKind",
    "Origin",
    "Phase",
    "RecipientOutcome",
    "Reply",
    "RouteFailure",
    "RouteFailureKind",
    "TlsPolicy",
    "Transaction",
    "TransportFailure",
    "TxnResult",
]


class TlsPolicy(enum.Enum):
    """Per-destination STARTTLS policy (config `domains.*.tls`)."""

    OPPORTUNISTIC = "opportunistic"  # use STARTTLS when offered; on handshake failure retry plain
    REQUIRED = "required"  # no STARTTLS or a failed handshake -> defer, never send in clear
    VERIFY = "verify"  # as REQUIRED, and the certificate must verify for the MX host name
    DISABLED = "disabled"  # never send STARTTLS


class Phase(enum.Enum):
    """Where in a session something happened (Postfix smtp_proto.c SMTP_STATE_*)."""

    DNS = "dns"
    CONNECT = "connect"
    GREETING = "greeting"
    EHLO = "ehlo"
    STARTTLS = "starttls"
    AUTH = "auth"  # logging in to a relay (RFC 4954)
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"  # the DATA command itself (354 expected)
    BODY = "body"  # message content and the reply to end-of-data
    RSET = "rset"
    QUIT = "quit"


class FailureKind(enum.Enum):
    """How a transport-level exchange failed (httpcore's taxonomy, SMTP flavoured)."""

    TIMEOUT = "timeout"
    REFUSED = "refused"  # TCP connection refused / unreachable
    CLOSED = "closed"  # peer closed or reset the connection
    PROTOCOL = "protocol"  # peer sent something that is not SMTP
    TLS = "tls"  # STARTTLS handshake failed, or TLS required but not offered
    AUTH = "auth"  # a relay refused our AUTH, or offers no way to log in we may use
    CANCELLED = "cancelled"  # we cancelled the exchange (shutdown, deadline)
    LOCAL = "local"  # our own fault: a bug or a setting the protocol refuses (never remote)


@dataclass(frozen=True, slots=True)
class TransportFailure:
    """The exchange did not complete: which phase, what kind, human detail."""

    phase: Phase
    kind: FailureKind
    detail: str


@dataclass(frozen=True, slots=True)
class Transaction:
    """One SMTP mail transaction: one sender, up to max_recipients_per_transaction
    recipients of one destination domain, and the message in wire form.

    `body` is already in wire form: CRLF line endings, dot-stuffed, ending in CRLF,
    *without* the terminating ".\\r\\n" (engine.smtp.encode.wire_body produces it).
    """

    sender: str  # "" for the null reverse-path <>
    recipients: tuple[str, ...]
    body: bytes
    body_8bit: bool = False  # the content has bytes > 127 (send BODY=8BITMIME if offered)
    smtputf8: bool = False  # an address is non-ASCII (needs the SMTPUTF8 extension)


@dataclass(frozen=True, slots=True)
class TxnResult:
    """Everything the server said during one transaction, in order.

    A reply slot is None when the exchange never got that far. `failure` is set when the
    transport broke or timed out; replies received before the failure are kept.
    """

    mail: Reply | None
    rcpts: tuple[Reply | None, ...]  # one slot per Transaction.recipients, same order
    data: Reply | None  # reply to the DATA command (354 expected)
    final: Reply | None  # reply to end-of-data
    failure: TransportFailure | None = None


@dataclass(frozen=True, slots=True)
class ConnectFailure:
    """Opening a session to one MX address failed before any transaction.

    `reply` is the server's refusal (a 421/554 greeting, a failed EHLO+HELO) when there
    was one; otherwise `failure` says what the transport did.
    """

    host: str  # MX host name
    address: str  # IP tried
    reply: Reply | None = None
    failure: TransportFailure | None = None


class RouteFailureKind(enum.Enum):
    NULL_MX = "null_mx"  # "MX 0 ." (RFC 7505): the domain accepts no mail; bounce 5.1.10
    NO_SUCH_DOMAIN = "no_such_domain"  # NXDOMAIN for the domain; bounce
    NO_ROUTE = "no_route"  # authoritative answers, but no host with a usable address
    LOOP = "loop"  # the best MX host is this Volley's own listener; bounce 5.4.6
    POLICY = "policy"  # an MTA-STS policy in enforce mode lists none of the MX hosts; defer
    TEMPORARY = "temporary"  # DNS trouble; defer, never bounce


@dataclass(frozen=True, slots=True)
class RouteFailure:
    """MX resolution gave no usable route (decided in engine.net.mx, judged in classify)."""

    domain: str
    kind: RouteFailureKind
    detail: str  # human text for logs and DSN diagnostic fields


class Disposition(enum.Enum):
    """The verdict for one recipient after an attempt."""

    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    EXPIRED = "expired"


class Origin(enum.Enum):
    """Where a failure's code and text come from: what the bounce classifier
    (engine.policy.classifier) matches a rule's `origin` against."""

    REPLY = "reply"  # a remote server's reply to one of our commands (or its greeting)
    CONNECTION = "connection"  # the transport failed; `kind` is a FailureKind value
    ROUTE = "route"  # MX resolution gave no route; `kind` is a RouteFailureKind value
    LOCAL = "local"  # Volley refused before sending (a limit the server announced, an
    #                  address SMTP cannot carry) or failed itself (a bug)
    OPERATOR = "operator"  # `volley bounce`
    EXPIRY = "expiry"  # given up after max_age (only ever the classifier's input)
    DSN = "dsn"  # a delivery report that came back later (asynchronous bounce)


@dataclass(frozen=True, slots=True)
class RecipientOutcome:
    """Verdict for one recipient plus the reply that justified it (for log and DSN).

    `origin` and `kind` say where `code` and `text` come from (a reply, or which
    transport or route failure Volley described itself); `classification` is the bounce
    category, set on every failure by engine.runtime.outcome (None on deliveries).
    """

    recipient: str
    disposition: Disposition
    code: int  # SMTP basic code, or a synthesised one (e.g. 451 for a timeout)
    enhanced: str  # RFC 3463 code, e.g. "4.4.1"
    text: str
    origin: Origin = Origin.REPLY
    kind: str = ""  # the FailureKind / RouteFailureKind value for CONNECTION / ROUTE
    classification: Classification | None = field(default=None)

    @property
    def remote(self) -> bool:
        """True when the code and text came from the remote server."""
        return self.origin is Origin.REPLY


@dataclass(frozen=True, slots=True)
class SmtpTimeouts:
    """Per-phase client timeouts in seconds.

    Defaults are RFC 5321 §4.5.3.2's minimums: 5 min for the greeting, MAIL and RCPT,
    2 min for DATA, 3 min per data block, 10 min for the reply to end-of-data.  No timeout
    covers a whole DATA transfer: `data_block` bounds each stall in sending the content.
    """

    connect: float = 30.0
    greeting: float = 300.0
    ehlo: float = 300.0
    starttls: float = 120.0
    mail: float = 300.0
    rcpt: float = 300.0
    data: float = 120.0
    data_block: float = 180.0
    data_done: float = 600.0
    rset: float = 60.0
    quit: float = 60.0
