"""ClientProtocol: the SMTP client session without I/O (h11-style, bytes in, bytes out).

Responsible for: producing the bytes of each session command, matching every reply to
the command it answers (in order, also for pipelined groups and pipelined transactions,
RFC 2920), never taking a reply for a command not yet handed out, the reply and EHLO
limits, and the EHLO keywords.
Not responsible for: the mail transactions' own bookkeeping — beginning, pipelining,
recording their replies, the cleanup rules (engine.smtp.pipeline, mixed in) — nor
sockets, TLS, timers (engine.net.session drives this object and maps `awaiting()` to a
per-phase timeout), nor what a reply means for a message (engine.sched.classify).  Every
state change is looked up in engine.smtp.state.

Driving it (what engine.net.session does):

    p = ClientProtocol()                      # AWAIT_GREETING
    p.receive_data(bytes_from_socket)         # -> [ReplyEvent(GREETING, 220 ...)]
    write(p.send_ehlo("mx.example"))          # ... receive_data until awaiting() is None
    txn = p.start_transaction(sender, rcpts, body); write(p.data_to_send())
    [while p.can_begin(): start the next one; write(p.data_to_send())]  # PIPELINING
    loop: p.receive_data(chunk); write(p.data_to_send()) until txn.done
    txn.result -> TransactionReplies           # then p.is_reusable() once all are done
"""

from __future__ import annotations

from collections import deque

from engine.smtp import encode
from engine.smtp.auth import AuthExchange, choose_mechanism
from engine.smtp.errors import LocalProtocolError, RemoteProtocolError
from engine.smtp.pipeline import Transactions
from engine.smtp.replies import Reply, ReplyParser
from engine.smtp.state import ON_REPLY, SEND, Command, Signal, State, expected, on_signal
from engine.smtp.transaction import ReplyEvent

__all__ = ["ClientProtocol"]


def _ok(reply: Reply) -> bool:
    return 200 <= reply.code < 300


class ClientProtocol(Transactions):
    """One SMTP client connection's protocol state, fed with bytes by an I/O adapter.

    Methods named `send_*` and `begin_transaction` return the bytes to write and raise
    `LocalProtocolError` when illegal in the current state (nothing is changed then);
    `start_transaction` queues them for `data_to_send`.
    `receive_data` consumes server bytes, returns the replies with the commands they
    answer, and may queue more bytes to write (`data_to_send`): the next command in
    lock-step mode, or the content after a 354.  `awaiting()` names the command whose
    reply is due next; None means the exchange the adapter waits for is complete.
    """

    def __init__(self) -> None:
        self._state = State.AWAIT_GREETING
        self._parser = ReplyParser()
        self._outstanding: deque[Command] = deque((Command.GREETING,))
        self._out: list[bytes] = []
        self._init_transactions()
        self._extensions: dict[str, str] = {}
        self._size_limit: int | None = None  # derived from _extensions (see the setter)
        self._auth: AuthExchange | None = None  # the AUTH exchange in progress
        self.authenticated = False
        """A 235 answered our AUTH (RFC 4954)."""
        self.greeting: Reply | None = None
        self.last_reply: Reply | None = None
        """The most recent reply received (for the connect phase and logs)."""
        self.closing_reply: Reply | None = None
        """The 421 that made the server close the channel, if one came."""
        self.closing_command: Command | None = None
        """The command that 421 answered (None: it came unsolicited)."""
        self.broken_at: Command | None = None
        """The command whose reply broke the protocol (an unexpected reply code), if one did."""

    # ---------------------------------------------------------------- inspection

    @property
    def state(self) -> State:
        return self._state

    def awaiting(self) -> Command | None:
        """The command whose reply is due next, or None when nothing is outstanding."""
        return self._outstanding[0] if self._outstanding else None

    @property
    def extensions(self) -> dict[str, str]:
        """EHLO keywords (upper case) -> parameters, e.g. {"SIZE": "10240000"}."""
        return self._extensions

    @extensions.setter
    def extensions(self, value: dict[str, str]) -> None:
        self._extensions = value
        size = value.get("SIZE", "")
        # Parsed once per EHLO, not per message (the session asks before every send).
        # isascii: str.isdigit() is also true for "²" and other Unicode digits, which int()
        # refuses (a "250-SIZE ²" line once escaped as a ValueError, issue #14).  A SIZE
        # over 2**63 is no limit either way; the digit cap keeps int() cheap on hostile input.
        ok = size.isascii() and size.isdigit() and len(size) <= 19
        self._size_limit = int(size) if ok and int(size) > 0 else None

    def supports(self, keyword: str) -> bool:
        """Whether the last EHLO reply offered `keyword` (case-insensitive)."""
        return keyword.upper() in self._extensions

    @property
    def pipelining(self) -> bool:
        return "PIPELINING" in self._extensions

    @property
    def size_limit(self) -> int | None:
        """The SIZE limit announced in EHLO (RFC 1870); None when absent, 0 or bogus."""
        return self._size_limit

    def is_reusable(self) -> bool:
        """READY and nothing outstanding: idle, so QUIT or STARTTLS may be sent (and a
        transaction begun; with PIPELINING also earlier: `can_begin`)."""
        return self._state is State.READY and not self._outstanding

    # ---------------------------------------------------------------- commands

    def _send(self, command: Command) -> None:
        """Apply the SEND transition for `command`; raise if illegal."""
        try:
            self._state = SEND[(self._state, command)]
        except KeyError:
            raise LocalProtocolError(
                f"cannot send {command.value} in state {self._state.value}"
            ) from None
        self._outstanding.append(command)

    def send_ehlo(self, name: str) -> bytes:
        line = encode.ehlo(name)
        self._send(Command.EHLO)
        return line

    def send_helo(self, name: str) -> bytes:
        line = encode.helo(name)
        self._send(Command.HELO)
        return line

    def send_starttls(self) -> bytes:
        if not self.supports("STARTTLS"):
            raise LocalProtocolError("server did not offer STARTTLS")
        self._send(Command.STARTTLS)
        return encode.starttls()

    def tls_established(self) -> None:
        """The adapter completed the TLS handshake; EHLO must be sent again (RFC 3207)."""
        try:
            self._state = on_signal(self._state, Signal.TLS_ESTABLISHED)
        except KeyError:
            raise LocalProtocolError(f"no TLS handshake due in state {self._state.value}") from None
        self.extensions = {}

    def send_auth(self, user: str, password: str) -> bytes:
        """Start AUTH (engine.smtp.auth: PLAIN with its initial response, else LOGIN);
        each 334 is answered from `data_to_send()`; 235 sets `authenticated`.

        Raises:
            LocalProtocolError: not READY, or no mechanism we speak was offered.
        """
        mechanism = choose_mechanism(self._extensions)
        if mechanism is None:
            raise LocalProtocolError("server offers no AUTH mechanism we speak (PLAIN, LOGIN)")
        exchange = AuthExchange(mechanism, user, password)
        self._send(Command.AUTH)
        self._auth = exchange
        return exchange.start()

    def send_quit(self) -> bytes:
        self._send(Command.QUIT)
        return encode.quit()

    @property
    def has_output(self) -> bool:
        """Bytes are due (`data_to_send` would return some)."""
        return bool(self._out)

    def data_to_send(self) -> bytes:
        """Bytes that replies made due (next lock-step command, content, a lone ".")."""
        if not self._out:
            return b""
        out = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        return out

    # ---------------------------------------------------------------- input

    def receive_data(self, data: bytes) -> list[ReplyEvent]:
        """Feed bytes from the server; return the replies they completed, in order.

        Bytes arriving once CLOSED or BROKEN are ignored (the adapter is tearing the
        connection down).

        Raises:
            RemoteProtocolError: malformed reply, a reply nobody asked for, or bytes
                after a 220 to STARTTLS.  The state is then BROKEN.
        """
        events: list[ReplyEvent] = []
        self._receive(data, events)
        return events

    def feed(self, data: bytes) -> int:
        """`receive_data` without the events: the number of replies the bytes completed.

        The I/O adapter's path: it only needs to know whether anything happened, and a
        ReplyEvent per reply was ~1 µs of the ~4 replies a message gets.
        """
        return self._receive(data, None)

    def _receive(self, data: bytes, events: list[ReplyEvent] | None) -> int:
        if self._state is State.CLOSED or self._state is State.BROKEN:
            return 0
        n = 0
        try:
            # Every reply answers a command we sent, but for one unsolicited 421: more
            # in one chunk is a flood, refused before it becomes a list (issue #11).
            for reply in self._parser.feed(data, len(self._outstanding) + 1):
                command = self._on_reply(reply)
                n += 1
                if events is not None:
                    events.append(ReplyEvent(command, reply))
                if self.closing_reply is not None:
                    break  # 421: whatever follows is not for us
            if self._state is State.TLS_HANDSHAKE and self._parser.buffered:
                # Anything after the 220 came in plaintext and would be read as if it
                # came through TLS (STARTTLS response injection, CVE-2011-0411 class).
                raise RemoteProtocolError("data received after 220 to STARTTLS")
        except RemoteProtocolError:
            self._broken()
            raise
        return n

    def receive_eof(self) -> None:
        """The server closed its side: CLOSED when nothing was outstanding, else BROKEN."""
        self._finish_all()
        self._state = on_signal(self._state, Signal.EOF)
        self._outstanding.clear()

    def abort(self) -> None:
        """The adapter gave up on the connection (timeout, transport error,
        cancellation).  Nothing is legal afterwards."""
        self._broken()

    def _broken(self) -> None:
        self._finish_all()
        self._state = on_signal(self._state, Signal.FAILED)
        self._outstanding.clear()
        self._out.clear()

    def _on_reply(self, reply: Reply) -> Command | None:
        """Match `reply` to its command and apply it; returns that command (None: an
        unsolicited 421)."""
        self.last_reply = reply
        if not self._outstanding:
            if reply.code == 421:
                self._closing(reply, None)
                return None
            raise RemoteProtocolError(f"unsolicited reply: {reply}")
        command = self._outstanding[0]
        if self._out:
            # The bytes of `command` (the next lock-step command, or the content after a
            # 354) are still ours to write: this reply cannot be its answer.  Read as one,
            # a "354" and "250" in one chunk would mark a message delivered whose content
            # was never sent.  A 421 there is the server closing, answering nothing.
            if reply.code == 421:
                self._closing(reply, None)
                return None
            what = "the content" if command is Command.END_OF_DATA else command.value
            raise RemoteProtocolError(f"reply before {what} was sent: {reply}")
        if not expected(command, reply.code) and reply.code != 421:
            # RFC 5321 §4.3.2: e.g. MAIL succeeds only on 2xx, DATA needs 354.  The server
            # is in a state we cannot know: never read it as success, never reuse it.
            self.broken_at = command
            raise RemoteProtocolError(f"unexpected reply to {command.value}: {reply}")
        self._outstanding.popleft()
        if command is Command.GREETING:
            self.greeting = reply
        elif command is Command.EHLO and _ok(reply):
            self.extensions = _parse_ehlo(reply)
        elif command is Command.AUTH and self._auth is not None:
            if reply.code == 334:  # RFC 4954 §4: a challenge; our next response is due
                self._send(Command.AUTH)
                self._out.append(self._auth.answer())
            else:
                self.authenticated = reply.code == 235
                self._auth.forget()
                self._auth = None
        txns = self._txns
        # Transaction commands never interleave with others: while one is in flight,
        # every reply is the oldest transaction's.
        ok = self._txn_reply(txns[0], command, reply) if txns else _ok(reply)
        if reply.code == 421:
            self._closing(reply, command)
            return command
        if not self._outstanding:
            if command is Command.STARTTLS:
                ok = reply.code == 220
            self._state = ON_REPLY[(self._state, ok)]
            if self._state is State.BROKEN:
                self._finish_all()  # a refused RSET: what waited behind it never goes
        if self._staged:
            self._release()  # the newest transaction's "." is out, or READY and idle
        return command

    def _closing(self, reply: Reply, command: Command | None) -> None:
        """421: the server is closing the transmission channel (RFC 5321 §3.8)."""
        self.closing_reply = reply
        self.closing_command = command
        self._finish_all()
        self._state = on_signal(self._state, Signal.CLOSING)
        self._outstanding.clear()
        self._out.clear()


# EHLO keywords kept per session.  Real servers offer 6-14 (Gmail 8, Exchange Online 12,
# Postfix 3.7 10); a list longer than 64 is not a server we know how to talk to, and each
# keyword kept is memory for the session's whole life.
MAX_EHLO_EXTENSIONS = 64


def _parse_ehlo(reply: Reply) -> dict[str, str]:
    """EHLO reply lines after the first -> {KEYWORD: params} (RFC 5321 §4.1.1.1).

    Raises:
        RemoteProtocolError: more than MAX_EHLO_EXTENSIONS keyword lines.
    """
    if len(reply.lines) - 1 > MAX_EHLO_EXTENSIONS:
        raise RemoteProtocolError(
            f"EHLO offered {len(reply.lines) - 1} extensions, more than {MAX_EHLO_EXTENSIONS}"
        )
    extensions: dict[str, str] = {}
    for line in reply.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            extensions[keyword.upper()] = params.strip()
    return extensions
