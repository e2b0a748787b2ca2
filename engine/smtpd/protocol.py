"""ServerProtocol: one SMTP server session without I/O (bytes in, replies and events out).

Responsible for: the server side of RFC 5321 as a submission relay speaks it — command
parsing and sequencing, ESMTP keywords (PIPELINING, SIZE, 8BITMIME, SMTPUTF8,
ENHANCEDSTATUSCODES, STARTTLS, AUTH PLAIN LOGIN), the envelope from MAIL FROM / RCPT TO
(addresses checked with engine.drop.address, the check intake applies to drops, which ends
in the encoder's own), the relay decision per recipient (engine.smtpd.relay), and the
limits attackers probe:
  * a command line is at most 512 octets with its CRLF (RFC 5321 §4.5.3.1.4), an AUTH
    exchange line 12 288 (RFC 4954 §4); longer: 500 and the session ends;
  * only <CRLF>.<CRLF> ends DATA, and a bare CR or LF in the text is refused (550 5.5.2:
    SMTP smuggling; engine.smtpd.text reads and judges the text);
  * error replies and unknown commands are counted; past the limits: 421 and close;
  * after STARTTLS, whatever the client sent behind the command in plaintext is thrown
    away (RFC 3207 §4.2; Postfix CVE-2011-0411), and EHLO and AUTH start afresh.
Not responsible for: sockets, TLS handshakes, timers, checking passwords, or making a
message durable: it hands those out as events (engine.smtpd.events) and waits
(`finish_auth`, `finish_message`, `tls_started`); the adapter is engine.smtpd.server.

Driving it:

    p = ServerProtocol(policy, peer)
    write(p.greeting())
    for chunk in socket: for event in p.feed(chunk): ...   # Send, StartTls, Authenticate,
                                                          # MessageReceived, Refused, Close
    after an Authenticate:   events = p.finish_auth(AuthResult.OK)
    after a MessageReceived: events = p.finish_message(reply, accepted=True)

Message text stays in DATA wire form (CRLF, dot-stuffed), the form the spool stores: it
is queued without an unstuffing pass and reaches the next hop as the client sent it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from engine.drop.address import domain_of, validate_address
from engine.smtpd import replies as R
from engine.smtpd.arguments import ArgumentError, parse_mail, parse_rcpt
from engine.smtpd.events import (
    Authenticate,
    AuthResult,
    Close,
    Envelope,
    Event,
    MessageReceived,
    Peer,
    Refused,
    Send,
    ServerPolicy,
    StartTls,
    State,
)
from engine.smtpd.relay import Verdict, decide, must_authenticate
from engine.smtpd.replies import Refusal
from engine.smtpd.sasl import Challenge, Credentials, Exchange, SaslError
from engine.smtpd.text import MessageText, TextProblem

__all__ = ["COMMANDS", "ServerProtocol"]

_TEXT_REPLIES = {
    TextProblem.TOO_BIG: (R.TOO_BIG, Refusal.TOO_BIG),
    TextProblem.NUL: (R.NUL, Refusal.NUL),
    TextProblem.BARE_NEWLINE: (R.BARE_NEWLINE, Refusal.BARE_NEWLINE),
}
COMMAND_LINE_MAX = 512  # octets with the CRLF (RFC 5321 §4.5.3.1.4)
AUTH_LINE_MAX = 12_288  # RFC 4954 §4
COMMANDS = "EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS AUTH EXPN BDAT".split()

# The EHLO/HELO argument goes into Received:: a domain or an address literal.
_HELO = re.compile(rb"[A-Za-z0-9._\-:\[\]]{1,255}")


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
        self._helo_name: str | None = None
        self._esmtp = False
        self.user: str | None = None  # the authenticated user
        self._txn: _Txn | None = None
        self._errors = 0
        self._unknown = 0
        self._sasl: Exchange | None = None  # the AUTH exchange under way
        self._pending_user = ""
        self._text_reader = MessageText(policy.max_message_size)
        self._commands = {c.encode(): getattr(self, f"_cmd_{c.lower()}") for c in COMMANDS}

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
        self._helo_name = None
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
        self._close_with(reply, reason)
        return self._run()

    def _close_with(self, reply: bytes, reason: Refusal | None) -> None:
        self._out.append(reply)
        if reason is not None:
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
                reply = R.AUTH_LINE_TOO_LONG if self.state is State.AUTH else R.LINE_TOO_LONG
                self._close_with(reply, Refusal.LINE_TOO_LONG)
            return False
        line = bytes(buf[: nl - 1])
        bare = nl == 0 or buf[nl - 1] != 13 or b"\r" in line
        del buf[: nl + 1]
        if bare:
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
    def _cmd_ehlo(self, arg: bytes) -> None:
        self._greet(arg, esmtp=True)

    def _cmd_helo(self, arg: bytes) -> None:
        self._greet(arg, esmtp=False)

    def _greet(self, arg: bytes, *, esmtp: bool) -> None:
        name = arg.strip(b" ")
        if _HELO.fullmatch(name) is None:
            self._error(R.SYNTAX_EHLO if esmtp else R.SYNTAX_HELO, Refusal.SYNTAX)
            return
        self._helo_name = name.decode("ascii")
        self._esmtp = esmtp
        self._txn = None
        p = self.policy
        keywords = [f"SIZE {p.max_message_size}"] if esmtp else []
        if esmtp and p.starttls and not self._tls:
            keywords.append("STARTTLS")
        if esmtp and self._auth_offered():
            keywords.append("AUTH PLAIN LOGIN")
        self._out.append(R.ehlo(p.hostname, keywords) if esmtp else R.helo(p.hostname))

    def _auth_offered(self) -> bool:
        return self.policy.auth_enabled and (self._tls or self.peer.loopback)

    def _cmd_mail(self, arg: bytes) -> None:
        if self._helo_name is None:
            self._error(R.NEED_EHLO, Refusal.BAD_SEQUENCE)
            return
        if self._txn is not None:
            self._error(R.NESTED_MAIL, Refusal.BAD_SEQUENCE)
            return
        text = self._text_arg(arg)
        if text is None:
            return
        args = parse_mail(text, self.policy.max_message_size)
        if isinstance(args, ArgumentError):
            self._error(args.reply, args.reason)
            return
        bad = "553 5.1.7 Bad sender address syntax"
        if args.sender and self._bad_address(args.sender, args.smtputf8, bad, Refusal.BAD_SENDER):
            return
        if must_authenticate(
            trusted=self.peer.trusted,
            authenticated=self.user is not None,
            bounce_domains=self.policy.bounce_domains,
        ):
            self._error(R.AUTH_REQUIRED, Refusal.AUTH_REQUIRED)
            return
        self._txn = _Txn(args.sender, args.smtputf8)
        self._out.append(R.MAIL_OK)

    def _cmd_rcpt(self, arg: bytes) -> None:
        txn = self._txn
        if txn is None:
            self._error(R.NEED_MAIL, Refusal.BAD_SEQUENCE)
            return
        txn.tried = True
        text = self._text_arg(arg)
        if text is None:
            return
        addr = parse_rcpt(text)
        if isinstance(addr, ArgumentError):
            self._error(addr.reply, addr.reason)
            return
        bad = "553 5.1.3 Bad recipient address syntax"
        if self._bad_address(addr, txn.smtputf8, bad, Refusal.BAD_RECIPIENT):
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

    def _cmd_data(self, arg: bytes) -> None:
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
            self._text_reader = MessageText(self.policy.max_message_size)

    def _cmd_rset(self, arg: bytes) -> None:
        self._txn = None
        self._out.append(R.OK)

    def _cmd_noop(self, arg: bytes) -> None:
        self._out.append(R.OK)

    def _cmd_quit(self, arg: bytes) -> None:
        self._out.append(R.BYE)
        self._emit(Close())
        self.state = State.CLOSED
        self._buf.clear()

    def _cmd_vrfy(self, arg: bytes) -> None:
        self._out.append(R.VRFY)

    def _cmd_help(self, arg: bytes) -> None:
        self._out.append(R.HELP)

    def _cmd_expn(self, arg: bytes) -> None:
        self._error(R.EXPN, Refusal.UNKNOWN_COMMAND)

    def _cmd_bdat(self, arg: bytes) -> None:
        # Not advertised; its chunk would be read as commands: end the session instead.
        self._close_with(R.BDAT, Refusal.UNKNOWN_COMMAND)

    def _cmd_starttls(self, arg: bytes) -> None:
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

    def _cmd_auth(self, arg: bytes) -> None:
        if not self.policy.auth_enabled:
            self._error(R.AUTH_NOT_ENABLED, Refusal.BAD_SEQUENCE)
        elif self._helo_name is None:
            self._error(R.NEED_EHLO, Refusal.BAD_SEQUENCE)
        elif self.user is not None:
            self._error(R.AUTH_DONE, Refusal.BAD_SEQUENCE)
        elif self._txn is not None:
            self._error(R.AUTH_IN_TXN, Refusal.BAD_SEQUENCE)
        elif not self._auth_offered():
            self._error(R.TLS_REQUIRED, Refusal.TLS_REQUIRED)
        else:
            try:
                self._sasl = Exchange(arg)
                self._sasl_step(self._sasl.first())
            except SaslError as e:
                self._error(e.reply, e.reason)

    def _auth_line(self, line: bytes) -> None:
        self.state = State.COMMAND
        try:
            assert self._sasl is not None
            self._sasl_step(self._sasl.line(line))
        except SaslError as e:
            self._error(e.reply, e.reason)

    def _sasl_step(self, step: Challenge | Credentials) -> None:
        if isinstance(step, Challenge):
            self.state = State.AUTH
            self._out.append(step.reply)
        else:
            self._pending_user = step.user
            self.state = State.WAIT
            self._emit(Authenticate(step.mechanism, step.user, step.password))

    def _text_arg(self, arg: bytes) -> str | None:
        try:
            return arg.decode("utf-8")
        except UnicodeDecodeError:
            self._error(R.NOT_UTF8, Refusal.SYNTAX)
            return None

    def _bad_address(self, addr: str, smtputf8: bool, reply: str, reason: Refusal) -> bool:
        """Whether `addr` cannot be used (and the refusal went out): `reply` + the why."""
        if not smtputf8 and not addr.isascii():
            self._error(R.NEED_SMTPUTF8, reason)
            return True
        why = validate_address(addr)
        if why is not None:
            self._error(f"{reply}: {why}\r\n".encode(), reason)
        return why is not None

    # -- message text ----------------------------------------------------------------------
    def _text(self) -> bool:
        """Handle the message if its terminator is buffered; False: more input needed."""
        data = self._text_reader.take(self._buf)
        if data is None:
            return False
        self._message(data)
        return True

    def _message(self, data: bytes) -> None:
        txn = self._txn
        assert txn is not None
        self.state = State.COMMAND
        problem = self._text_reader.problem(data)
        if problem is not None:
            self._txn = None
            self._error(*_TEXT_REPLIES[problem])
        else:
            assert self._helo_name is not None
            env = Envelope(
                sender=txn.sender,
                recipients=tuple(txn.recipients),
                local_recipients=tuple(txn.local),
                smtputf8=txn.smtputf8,
                helo=self._helo_name,
                esmtp=self._esmtp,
                tls=self._tls,
                auth_user=self.user,
                client=self.peer.address,
            )
            self.state = State.WAIT
            self._emit(MessageReceived(env, data))
