"""ServerProtocol: one SMTP server session without I/O (bytes in, replies and events out).

Responsible for: the server side of RFC 5321 as a submission relay speaks it — command
parsing and sequencing, ESMTP keywords (PIPELINING, SIZE, 8BITMIME, SMTPUTF8,
ENHANCEDSTATUSCODES, STARTTLS, AUTH PLAIN LOGIN), the envelope from MAIL FROM / RCPT TO
(addresses checked with engine.drop.address, the check intake applies to drops, which ends
in the encoder's own), the relay decision per recipient (engine.smtpd.relay), reading
message text, and the limits attackers probe:
  * a command line is at most 512 octets with its CRLF (RFC 5321 §4.5.3.1.4), an AUTH
    exchange line 12 288 (RFC 4954 §4); longer: 500 and the session ends;
  * only <CRLF>.<CRLF> ends DATA; a bare CR or LF anywhere in the text (which covers
    `\\n.\\n`, `\\n.\\r\\n` and `\\r\\n.\\n`) gets 550 5.5.2, as Postfix's
    `smtpd_forbid_bare_newline = reject` does: SMTP smuggling (CVE-2023-51764 class)
    needs a receiver and a next hop that disagree on where a message ends, and a message
    that has only CRLF line ends and one terminator leaves nothing to disagree on;
  * text beyond max_message_size is dropped as it arrives (memory stays bounded) and
    the message gets 552 once its terminator comes;
  * error replies and unknown commands are counted; past the limits: 421 and close;
  * after STARTTLS, whatever the client sent behind the command in plaintext is thrown
    away (RFC 3207 §4.2; Postfix CVE-2011-0411), and EHLO and AUTH start afresh.
Not responsible for: sockets, TLS handshakes, timers, checking passwords, or making a
message durable: it hands those out as events and waits (`finish_auth`,
`finish_message`, `tls_started`); the I/O adapter is engine.smtpd.server.

Driving it:

    p = ServerProtocol(policy, peer)
    write(p.greeting())
    for chunk in socket: for event in p.feed(chunk): ...   # Send, StartTls, Authenticate,
                                                          # MessageReceived, Refused, Close
    after an Authenticate:   events = p.finish_auth(AuthResult.OK)
    after a MessageReceived: events = p.finish_message(reply, accepted=True)

Message text is kept in DATA wire form (CRLF line ends, still dot-stuffed), the form the
spool stores (engine.smtp.encode.wire_body): it goes to the spool without a copy or an
unstuffing pass, and reaches the next hop byte for byte as the client sent it.

Cost: the end of DATA is one `find` per chunk (plus 4 bytes of overlap), then two regex
passes for bare CR and bare LF whose literal first character the regex engine scans for
in C (~3 + ~6 µs on a 5 KB message, measured the same way as engine.smtp.encode's).
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from dataclasses import dataclass, field

from engine.drop.address import domain_of, validate_address
from engine.smtpd import replies as R
from engine.smtpd.relay import Verdict, decide, must_authenticate
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
    "ServerProtocol",
    "StartTls",
    "State",
]

COMMAND_LINE_MAX = 512  # octets with the CRLF (RFC 5321 §4.5.3.1.4)
AUTH_LINE_MAX = 12_288  # RFC 4954 §4

_MAIL = re.compile(r"FROM: ?<([^<>]*)>((?: +\S+)*) *", re.IGNORECASE)
_RCPT = re.compile(r"TO: ?<([^<>]*)>((?: +\S+)*) *", re.IGNORECASE)
# Source route (RFC 5321 §4.1.2 "A-d-l"), to be ignored: "@a.example,@b.example:".
_ROUTE = re.compile(r"@[^:,]+(?:,@[^:,]+)*:")
# The EHLO/HELO argument goes into Received:: a domain or an address literal.
_HELO = re.compile(rb"[A-Za-z0-9._\-:\[\]]{1,255}")
_BARE_CR = re.compile(rb"\r(?!\n)")
_BARE_LF = re.compile(rb"\n(?<!\r\n)")


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


@dataclass(slots=True)
class _Txn:
    sender: str
    smtputf8: bool
    recipients: list[str] = field(default_factory=list)
    local: list[str] = field(default_factory=list)
    seen: set[tuple[str, str]] = field(default_factory=set)
    tried: bool = False  # a RCPT was given, accepted or not


class ServerProtocol:
    """One session; see the module docstring."""

    def __init__(self, policy: ServerPolicy, peer: Peer) -> None:
        self.policy = policy
        self.peer = peer
        self.state = State.COMMAND
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._events: list[Event] = []
        self._tls = peer.tls
        self._helo: str | None = None
        self._esmtp = False
        self.user: str | None = None  # the authenticated user
        self._txn: _Txn | None = None
        self._errors = 0
        self._unknown = 0
        self._auth_step = ""  # "plain", "login_user", "login_pass"
        self._auth_name = ""
        self._pending_user = ""
        self._data_fresh = True  # nothing of this message's text looked at yet
        self._scan = 0  # where the search for the terminator resumes
        self._oversize = False
        self._commands = {
            b"EHLO": self._ehlo,
            b"HELO": self._helo_cmd,
            b"MAIL": self._mail,
            b"RCPT": self._rcpt,
            b"DATA": self._data_cmd,
            b"RSET": self._rset,
            b"NOOP": self._noop,
            b"QUIT": self._quit,
            b"VRFY": self._vrfy,
            b"HELP": self._help,
            b"STARTTLS": self._starttls,
            b"AUTH": self._auth,
            b"EXPN": self._expn,
            b"BDAT": self._bdat,
        }

    # -- the adapter's side ----------------------------------------------------------------
    def greeting(self) -> bytes:
        return R.greeting(self.policy.hostname)

    @property
    def tls(self) -> bool:
        return self._tls

    @property
    def buffered(self) -> int:
        """Input bytes read but not handled yet."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Event]:
        """Bytes from the client; the events they cause, in order."""
        if self.state is State.CLOSED or self.state is State.TLS:
            return []
        self._buf += data
        return self._run()

    def finish_auth(self, result: AuthResult) -> list[Event]:
        """The verdict on the last Authenticate; then the input read meanwhile is handled."""
        self._expect_wait()
        self.state = State.COMMAND
        if result is AuthResult.OK:
            self.user = self._pending_user
            self._out.append(R.AUTH_OK)
        elif result is AuthResult.BAD:
            self._error(R.AUTH_FAILED, Refusal.AUTH_FAILED)
        elif result is AuthResult.LIMITED:
            self._error(R.AUTH_LIMITED, Refusal.AUTH_LIMITED)
        else:
            self._error(R.AUTH_TEMPORARY, Refusal.LOCAL_ERROR)
        self._pending_user = ""
        return self._run()

    def finish_message(self, reply: bytes, *, accepted: bool) -> list[Event]:
        """The reply to the last MessageReceived (250 once it is durable, else 4xx);
        then the input read meanwhile (the next pipelined transaction) is handled."""
        self._expect_wait()
        self.state = State.COMMAND
        self._txn = None
        self._out.append(reply)
        if accepted:
            self._errors = 0  # Postfix: errors count "without delivering mail"
        else:
            self._errors += 1
            self._check_errors()
        return self._run()

    def tls_started(self) -> None:
        """The handshake after STARTTLS succeeded: a fresh session over TLS (RFC 3207
        §4.2: the client must EHLO again; nothing from before counts)."""
        if self.state is not State.TLS:
            raise RuntimeError(f"tls_started in state {self.state}")
        self._tls = True
        self._helo = None
        self._txn = None
        self.user = None
        self.state = State.COMMAND

    def timed_out(self) -> list[Event]:
        return self._closing(
            R.hostname_line("421", self.policy.hostname, "4.4.2 Error: timeout exceeded"),
            Refusal.TIMEOUT,
        )

    def shutting_down(self) -> list[Event]:
        return self._closing(
            R.hostname_line("421", self.policy.hostname, "4.3.2 Service shutting down"), None
        )

    # -- the loop --------------------------------------------------------------------------
    def _run(self) -> list[Event]:
        while True:
            state = self.state
            if state is State.COMMAND or state is State.AUTH:
                if not self._line():
                    break
            elif state is State.DATA:
                if not self._text():
                    break
            else:
                break
        events = self._events
        if self._out:
            events.append(Send(b"".join(self._out)))
            self._out = []
        self._events = []
        return events

    def _emit(self, event: Event) -> None:
        if self._out:
            self._events.append(Send(b"".join(self._out)))
            self._out = []
        self._events.append(event)

    def _expect_wait(self) -> None:
        if self.state is not State.WAIT:
            raise RuntimeError(f"no answer is awaited in state {self.state}")

    def _closing(self, reply: bytes, reason: Refusal | None) -> list[Event]:
        if self.state is State.CLOSED:
            return []
        self._out.append(reply)
        if reason is not None:
            self._emit(Refused(reason))
        self._emit(Close())
        self.state = State.CLOSED
        self._buf.clear()
        return self._run()

    def _close_with(self, reply: bytes, reason: Refusal) -> None:
        self._out.append(reply)
        self._emit(Refused(reason))
        self._emit(Close())
        self.state = State.CLOSED
        self._buf.clear()

    def _error(self, reply: bytes, reason: Refusal) -> None:
        self._out.append(reply)
        self._events.append(Refused(reason))
        self._errors += 1
        self._check_errors()

    def _check_errors(self) -> None:
        if self._errors >= self.policy.max_errors and self.state is not State.CLOSED:
            text = "4.7.0 Error: too many errors"
            self._close_with(
                R.hostname_line("421", self.policy.hostname, text), Refusal.TOO_MANY_ERRORS
            )

    def _line(self) -> bool:
        """Handle one command or AUTH line if a whole one is buffered."""
        buf = self._buf
        limit = AUTH_LINE_MAX if self.state is State.AUTH else COMMAND_LINE_MAX
        nl = buf.find(b"\n", 0, limit)
        if nl < 0:
            if len(buf) >= limit:
                if self.state is State.AUTH:
                    self._close_with(R.AUTH_LINE_TOO_LONG, Refusal.LINE_TOO_LONG)
                else:
                    self._close_with(R.LINE_TOO_LONG, Refusal.LINE_TOO_LONG)
            return False
        if nl == 0 or buf[nl - 1] != 13:
            del buf[: nl + 1]
            self.state = State.COMMAND
            self._error(R.BARE_LF_COMMAND, Refusal.BARE_NEWLINE)
            return True
        line = bytes(buf[: nl - 1])
        del buf[: nl + 1]
        if b"\r" in line:
            self.state = State.COMMAND
            self._error(R.BARE_LF_COMMAND, Refusal.BARE_NEWLINE)
            return True
        if self.state is State.AUTH:
            self._auth_line(line)
            return True
        word, _, arg = line.partition(b" ")
        handler = self._commands.get(word.upper())
        if handler is None:
            self._unknown += 1
            self._error(R.UNKNOWN, Refusal.UNKNOWN_COMMAND)
            if self._unknown >= self.policy.max_unknown_commands and self.state is not State.CLOSED:
                text = "4.7.0 Error: too many unrecognized commands"
                self._close_with(
                    R.hostname_line("421", self.policy.hostname, text), Refusal.TOO_MANY_ERRORS
                )
        else:
            handler(arg)
        return True

    # -- commands --------------------------------------------------------------------------
    def _ehlo(self, arg: bytes) -> None:
        self._greet(arg, esmtp=True)

    def _helo_cmd(self, arg: bytes) -> None:
        self._greet(arg, esmtp=False)

    def _greet(self, arg: bytes, *, esmtp: bool) -> None:
        name = arg.strip(b" ")
        if _HELO.fullmatch(name) is None:
            self._error(R.SYNTAX_EHLO if esmtp else R.SYNTAX_HELO, Refusal.SYNTAX)
            return
        self._helo = name.decode("ascii")
        self._esmtp = esmtp
        self._txn = None
        host = self.policy.hostname
        if not esmtp:
            self._out.append(f"250 {host}\r\n".encode("ascii"))
            return
        p = self.policy
        lines = [
            host,
            "PIPELINING",
            f"SIZE {p.max_message_size}",
            "8BITMIME",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES",
        ]
        if p.starttls and not self._tls:
            lines.append("STARTTLS")
        if self._auth_offered():
            lines.append("AUTH PLAIN LOGIN")
        last = len(lines) - 1
        self._out.append(
            "".join(f"250{' ' if i == last else '-'}{t}\r\n" for i, t in enumerate(lines)).encode(
                "ascii"
            )
        )

    def _auth_offered(self) -> bool:
        return self.policy.auth_enabled and (self._tls or self.peer.loopback)

    def _mail(self, arg: bytes) -> None:
        if self._helo is None:
            self._error(R.NEED_EHLO, Refusal.BAD_SEQUENCE)
            return
        if self._txn is not None:
            self._error(R.NESTED_MAIL, Refusal.BAD_SEQUENCE)
            return
        text = self._text_arg(arg)
        m = _MAIL.fullmatch(text) if text is not None else None
        if m is None:
            if text is not None:
                self._error(R.SYNTAX_MAIL, Refusal.SYNTAX)
            return
        smtputf8 = False
        for param in m[2].split():
            key, _, value = param.partition("=")
            key = key.upper()
            if key == "SIZE" and value.isdigit():
                if int(value) > self.policy.max_message_size:
                    self._error(R.TOO_BIG, Refusal.TOO_BIG)
                    return
            elif key == "BODY" and value.upper() in ("7BIT", "8BITMIME"):
                pass
            elif key == "SMTPUTF8" and not value:
                smtputf8 = True
            elif key == "AUTH" and value:
                pass  # RFC 4954 §5: the original submitter; not trusted, not kept
            else:
                self._error(
                    f"555 5.5.4 Unsupported option: {key[:40]}\r\n".encode("ascii", "replace"),
                    Refusal.SYNTAX,
                )
                return
        sender = _ROUTE.sub("", m[1], count=1)
        if sender:
            why = self._address_problem(sender, smtputf8, Refusal.BAD_SENDER)
            if why is not None:
                if why:
                    self._error(
                        f"553 5.1.7 Bad sender address syntax: {why}\r\n".encode(),
                        Refusal.BAD_SENDER,
                    )
                return
        if must_authenticate(
            trusted=self.peer.trusted,
            authenticated=self.user is not None,
            bounce_domains=self.policy.bounce_domains,
        ):
            self._error(R.AUTH_REQUIRED, Refusal.AUTH_REQUIRED)
            return
        self._txn = _Txn(sender, smtputf8)
        self._out.append(R.MAIL_OK)

    def _rcpt(self, arg: bytes) -> None:
        txn = self._txn
        if txn is None:
            self._error(R.NEED_MAIL, Refusal.BAD_SEQUENCE)
            return
        text = self._text_arg(arg)
        m = _RCPT.fullmatch(text) if text is not None else None
        if m is None:
            if text is not None:
                self._error(R.SYNTAX_RCPT, Refusal.SYNTAX)
            return
        txn.tried = True
        if m[2].strip():
            key = m[2].split()[0].partition("=")[0].upper()
            self._error(
                f"555 5.5.4 Unsupported option: {key[:40]}\r\n".encode("ascii", "replace"),
                Refusal.SYNTAX,
            )
            return
        addr = _ROUTE.sub("", m[1], count=1)
        why = self._address_problem(addr, txn.smtputf8, Refusal.BAD_RECIPIENT)
        if why is not None:
            if why:
                self._error(
                    f"553 5.1.3 Bad recipient address syntax: {why}\r\n".encode(),
                    Refusal.BAD_RECIPIENT,
                )
            return
        domain = domain_of(addr)
        verdict = decide(
            domain,
            trusted=self.peer.trusted,
            authenticated=self.user is not None,
            bounce_domains=self.policy.bounce_domains,
        )
        if verdict is Verdict.DENIED:
            self._error(R.RELAY_DENIED, Refusal.RELAY_DENIED)
            return
        if len(txn.recipients) + len(txn.local) >= self.policy.max_recipients:
            # Not an error: the client sends the rest in another transaction (RFC 5321
            # §4.5.3.1.10); Postfix does not count these either (recipient overshoot).
            self._out.append(R.TOO_MANY_RECIPIENTS)
            self._events.append(Refused(Refusal.TOO_MANY_RECIPIENTS))
            return
        key = (addr[: addr.rfind("@")], domain)  # the local part is case-sensitive
        if key not in txn.seen:
            txn.seen.add(key)
            (txn.local if verdict is Verdict.LOCAL else txn.recipients).append(addr)
        self._out.append(R.RCPT_OK)

    def _data_cmd(self, arg: bytes) -> None:
        txn = self._txn
        if txn is None:
            self._error(R.NEED_MAIL, Refusal.BAD_SEQUENCE)
        elif not txn.recipients and not txn.local:
            if txn.tried:
                self._error(R.NO_VALID_RCPT, Refusal.BAD_SEQUENCE)
            else:
                self._error(R.NEED_RCPT, Refusal.BAD_SEQUENCE)
        elif arg.strip():
            self._error(R.SYNTAX_NO_ARGS, Refusal.SYNTAX)
        else:
            self._out.append(R.GO_AHEAD)
            self.state = State.DATA
            self._data_fresh = True
            self._scan = 0
            self._oversize = False

    def _rset(self, arg: bytes) -> None:
        self._txn = None
        self._out.append(R.OK)

    def _noop(self, arg: bytes) -> None:
        self._out.append(R.OK)

    def _quit(self, arg: bytes) -> None:
        self._out.append(R.BYE)
        self._emit(Close())
        self.state = State.CLOSED
        self._buf.clear()

    def _vrfy(self, arg: bytes) -> None:
        self._out.append(R.VRFY)

    def _help(self, arg: bytes) -> None:
        self._out.append(R.HELP)

    def _expn(self, arg: bytes) -> None:
        self._error(R.EXPN, Refusal.UNKNOWN_COMMAND)

    def _bdat(self, arg: bytes) -> None:
        # Not advertised; its chunk would be read as commands: end the session instead.
        self._close_with(R.BDAT, Refusal.UNKNOWN_COMMAND)

    def _starttls(self, arg: bytes) -> None:
        if self._tls:
            self._error(R.TLS_ACTIVE, Refusal.BAD_SEQUENCE)
        elif not self.policy.starttls:
            self._error(R.TLS_UNAVAILABLE, Refusal.BAD_SEQUENCE)
        elif arg.strip():
            self._error(R.SYNTAX_NO_ARGS, Refusal.SYNTAX)
        else:
            self._out.append(R.READY_TLS)
            self._buf.clear()  # plaintext sent behind STARTTLS must not count as TLS input
            self.state = State.TLS
            self._emit(StartTls())

    def _auth(self, arg: bytes) -> None:
        if not self.policy.auth_enabled:
            self._error(R.AUTH_NOT_ENABLED, Refusal.BAD_SEQUENCE)
        elif self._helo is None:
            self._error(R.NEED_EHLO, Refusal.BAD_SEQUENCE)
        elif self.user is not None:
            self._error(R.AUTH_DONE, Refusal.BAD_SEQUENCE)
        elif self._txn is not None:
            self._error(R.AUTH_IN_TXN, Refusal.BAD_SEQUENCE)
        elif not self._auth_offered():
            self._error(R.TLS_REQUIRED, Refusal.TLS_REQUIRED)
        else:
            mech, _, initial = arg.strip(b" ").partition(b" ")
            mech = mech.upper()
            if mech == b"PLAIN":
                self._auth_name = "PLAIN"
                if initial:
                    self._auth_plain(initial)
                else:
                    self._auth_step = "plain"
                    self.state = State.AUTH
                    self._out.append(R.AUTH_EMPTY_CHALLENGE)
            elif mech == b"LOGIN":
                self._auth_name = "LOGIN"
                if initial:
                    self._auth_line_login_user(initial)
                else:
                    self._auth_step = "login_user"
                    self.state = State.AUTH
                    self._out.append(R.AUTH_USERNAME)
            elif not mech:
                self._error(R.SYNTAX_AUTH, Refusal.SYNTAX)
            else:
                self._error(R.AUTH_MECHANISM, Refusal.SYNTAX)

    def _auth_line(self, line: bytes) -> None:
        self.state = State.COMMAND
        if line == b"*":
            self._error(R.AUTH_ABORTED, Refusal.AUTH_FAILED)
        elif self._auth_step == "plain":
            self._auth_plain(line)
        elif self._auth_step == "login_user":
            self._auth_line_login_user(line)
        else:
            password = _b64(line)
            if password is None:
                self._error(R.AUTH_DECODE, Refusal.SYNTAX)
            else:
                self._authenticate(self._pending_user, password)

    def _auth_plain(self, response: bytes) -> None:
        raw = b"" if response == b"=" else _b64(response)
        parts = raw.split(b"\0") if raw is not None else []
        if len(parts) != 3:
            self._error(R.AUTH_DECODE, Refusal.SYNTAX)
            return
        authzid, authcid, password = parts
        user = _utf8(authcid)
        if user is None or (authzid and authzid != authcid):
            # Acting for another identity (authzid) is not supported: a failure.
            self._error(R.AUTH_FAILED, Refusal.AUTH_FAILED)
            return
        self._authenticate(user, password)

    def _auth_line_login_user(self, response: bytes) -> None:
        raw = _b64(response)
        user = _utf8(raw) if raw is not None else None
        if user is None:
            self._error(R.AUTH_DECODE, Refusal.SYNTAX)
            return
        self._pending_user = user
        self._auth_step = "login_pass"
        self.state = State.AUTH
        self._out.append(R.AUTH_PASSWORD)

    def _authenticate(self, user: str, password: bytes) -> None:
        self._pending_user = user
        self.state = State.WAIT
        self._emit(Authenticate(self._auth_name, user, password))

    def _text_arg(self, arg: bytes) -> str | None:
        try:
            return arg.decode("utf-8")
        except UnicodeDecodeError:
            self._error(R.NOT_UTF8, Refusal.SYNTAX)
            return None

    def _address_problem(self, addr: str, smtputf8: bool, reason: Refusal) -> str | None:
        """None if `addr` is usable; "" when a reply was already sent; else the reason."""
        if not smtputf8 and not addr.isascii():
            self._error(R.NEED_SMTPUTF8, reason)
            return ""
        return validate_address(addr)

    # -- message text ----------------------------------------------------------------------
    def _text(self) -> bool:
        """Handle the message if its terminator is buffered; False: more input needed."""
        buf = self._buf
        if self._data_fresh:
            if len(buf) < 3:
                return False
            self._data_fresh = False
            if buf.startswith(b".\r\n"):  # an empty message: the terminator's CRLF is DATA's
                del buf[:3]
                self._message(b"")
                return True
        end = buf.find(b"\r\n.\r\n", self._scan)
        if end < 0:
            keep = 4  # a terminator may straddle this chunk and the next
            if len(buf) > self.policy.max_message_size + keep:
                # Over the limit: drop the text as it comes, keep looking for the end.
                self._oversize = True
                del buf[: len(buf) - keep]
            self._scan = max(0, len(buf) - keep)
            return False
        data = bytes(buf[: end + 2])
        del buf[: end + 5]
        self._message(data)
        return True

    def _message(self, data: bytes) -> None:
        txn = self._txn
        assert txn is not None
        self.state = State.COMMAND
        if self._oversize or len(data) > self.policy.max_message_size:
            self._txn = None
            self._error(R.TOO_BIG, Refusal.TOO_BIG)
        elif b"\0" in data:
            self._txn = None
            self._error(R.NUL, Refusal.NUL)
        elif _BARE_CR.search(data) is not None or _BARE_LF.search(data) is not None:
            self._txn = None
            self._error(R.BARE_NEWLINE, Refusal.BARE_NEWLINE)
        else:
            assert self._helo is not None
            env = Envelope(
                sender=txn.sender,
                recipients=tuple(txn.recipients),
                local_recipients=tuple(txn.local),
                smtputf8=txn.smtputf8,
                helo=self._helo,
                esmtp=self._esmtp,
                tls=self._tls,
                auth_user=self.user,
                client=self.peer.address,
            )
            self.state = State.WAIT
            self._emit(MessageReceived(env, data))


def _b64(data: bytes) -> bytes | None:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


def _utf8(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text and text.isprintable() else None
