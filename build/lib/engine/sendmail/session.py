"""`volley-sendmail -bs`: an SMTP server dialogue on stdin/stdout (RFC 5321).

Responsible for: the server side of one local SMTP session, as sendmail -bs offers it
to clients that prefer SMTP to a command line (some mail user agents, `git send-email`
with smtpserver=/usr/sbin/sendmail -bs): greeting, EHLO/HELO, MAIL, RCPT, DATA (ended
by <CRLF>.<CRLF>, dot-unstuffed), RSET, NOOP, VRFY, HELP, QUIT, with RFC 3463 enhanced
codes; each accepted message is handed to `deliver` (one drop) before its 250.
`SmtpSession` is sans-IO: lines in, reply bytes out; `run` drives it over two streams.
Not responsible for: building or writing the drop (the `deliver` callback does:
engine.sendmail.main), AUTH and STARTTLS (the session is local, on a pipe, under the
user's own permissions: there is nothing to authenticate or encrypt), or network SMTP
(engine.smtpd is the listener).

Lines: CRLF or LF ends one (scripts often send LF); a command line is limited to 512
octets (RFC 5321 §4.5.3.1.4), longer ones get 500.  Data lines are kept with CRLF.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from typing import BinaryIO

from engine.drop.address import validate_address
from engine.sendmail.exits import Exit, Failure

__all__ = ["Deliver", "SmtpSession", "run"]

# (message bytes as received, dot-unstuffed, CRLF; sender; recipients) -> drop name.
Deliver = Callable[[bytes, str, tuple[str, ...]], str]

MAX_COMMAND_LINE = 512  # octets with CRLF, RFC 5321 §4.5.3.1.4
# After the verb: "FROM:<path> params" / "TO:<path> params" (a space after the colon and
# a path without brackets are tolerated, as Postfix does by default).
_PATH = re.compile(r"(?i)(FROM|TO):[ \t]*(<[^<>]*>|[^\s<>]+)((?:[ \t]+\S+)*)[ \t]*")
_PARAM = re.compile(r"([A-Za-z0-9][A-Za-z0-9-]*)(?:=(\S+))?")


class State(enum.Enum):
    COMMAND = "command"  # between transactions
    MAIL = "mail"  # MAIL accepted: RCPT, RSET or DATA next
    DATA = "data"  # reading the message
    CLOSED = "closed"  # QUIT answered


class SmtpSession:
    """One local SMTP session (sans-IO)."""

    def __init__(
        self, hostname: str, *, max_size: int, max_recipients: int, deliver: Deliver
    ) -> None:
        self.hostname = hostname
        self.max_size = max_size
        self.max_recipients = max_recipients
        self.deliver = deliver
        self.state = State.COMMAND
        self.accepted = 0  # messages handed to `deliver`
        self._sender = ""
        self._rcpts: list[str] = []
        self._data: list[bytes] = []
        self._size = 0

    @property
    def in_transaction(self) -> bool:
        """MAIL was accepted and the message not finished (EOF now loses it)."""
        return self.state in (State.MAIL, State.DATA)

    def greeting(self) -> bytes:
        return _reply(220, f"{self.hostname} ESMTP Volley (sendmail -bs)")

    def feed(self, line: bytes) -> bytes:
        """One input line (with its line ending); the reply bytes (b"" when none)."""
        if self.state is State.DATA:
            return self._data_line(line)
        if self.state is State.CLOSED:
            return b""
        if len(line) > MAX_COMMAND_LINE:
            return _reply(500, "5.5.2 Error: command line too long")
        try:
            text = line.rstrip(b"\r\n").decode("utf-8")
        except UnicodeDecodeError:
            return _reply(500, "5.5.2 Error: command is not valid UTF-8")
        verb, _, arg = text.partition(" ")
        handler = _COMMANDS.get(verb.upper())
        if handler is None:
            return _reply(500, "5.5.2 Error: command not recognized")
        return handler(self, arg.strip())

    # -- commands -----------------------------------------------------------------------
    def _ehlo(self, arg: str) -> bytes:
        if not arg:
            return _reply(501, "5.5.4 Syntax: EHLO hostname")
        self._reset()
        lines = [
            self.hostname,
            "PIPELINING",
            f"SIZE {self.max_size}",
            "8BITMIME",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES",
        ]
        return _multi(250, lines)

    def _helo(self, arg: str) -> bytes:
        if not arg:
            return _reply(501, "5.5.4 Syntax: HELO hostname")
        self._reset()
        return _reply(250, self.hostname)

    def _mail(self, arg: str) -> bytes:
        if self.state is not State.COMMAND:
            return _reply(503, "5.5.1 Error: nested MAIL command")
        path = _path("FROM", arg)
        if path is None:
            return _reply(501, "5.5.4 Syntax: MAIL FROM:<address>")
        sender, params = path
        for name, value in params:
            if name == "SIZE":
                if value is None or not value.isdigit():
                    return _reply(501, "5.5.4 Bad SIZE parameter")
                if int(value) > self.max_size:
                    return _reply(552, "5.3.4 Message size exceeds fixed limit")
            elif name == "BODY":
                if (value or "").upper() not in ("7BIT", "8BITMIME"):
                    return _reply(501, "5.5.4 Bad BODY parameter")
            elif name != "SMTPUTF8" or value is not None:
                return _reply(555, f"5.5.4 Unsupported parameter {name}")
        if sender:
            why = validate_address(sender)
            if why is not None:
                return _reply(553, f"5.1.7 Bad sender address: {why}")
        self._sender = sender
        self.state = State.MAIL
        return _reply(250, "2.1.0 Ok")

    def _rcpt(self, arg: str) -> bytes:
        if self.state is not State.MAIL:
            return _reply(503, "5.5.1 Error: need MAIL command")
        path = _path("TO", arg)
        if path is None:
            return _reply(501, "5.5.4 Syntax: RCPT TO:<address>")
        rcpt, params = path
        if params:
            return _reply(555, f"5.5.4 Unsupported parameter {params[0][0]}")
        why = "empty address" if not rcpt else validate_address(rcpt)
        if why is not None:
            return _reply(553, f"5.1.3 Bad recipient address: {why}")
        if len(self._rcpts) >= self.max_recipients:
            return _reply(452, "4.5.3 Error: too many recipients")
        self._rcpts.append(rcpt)
        return _reply(250, "2.1.5 Ok")

    def _data_command(self, arg: str) -> bytes:
        if arg:
            return _reply(501, "5.5.4 Syntax: DATA")
        if self.state is not State.MAIL:
            return _reply(503, "5.5.1 Error: need MAIL command")
        if not self._rcpts:
            return _reply(554, "5.5.1 Error: no valid recipients")
        self.state = State.DATA
        self._data, self._size = [], 0
        return _reply(354, "End data with <CR><LF>.<CR><LF>")

    def _data_line(self, line: bytes) -> bytes:
        if line in (b".\r\n", b".\n"):  # "." alone on a complete line (not cut by EOF)
            return self._finish()
        body = line.rstrip(b"\r\n")
        if body.startswith(b"."):
            body = body[1:]  # RFC 5321 §4.5.2 transparency
        self._size += len(body) + 2
        if self._size <= self.max_size:
            self._data.append(body + b"\r\n")
        return b""

    def _finish(self) -> bytes:
        sender, rcpts = self._sender, tuple(self._rcpts)
        data, size = b"".join(self._data), self._size
        self._reset()
        if size > self.max_size:
            return _reply(552, "5.3.4 Message size exceeds fixed limit")
        try:
            name = self.deliver(data, sender, rcpts)
        except Failure as f:
            if f.code is Exit.DATAERR:
                return _reply(554, f"5.6.0 {_one_line(f.message)}")
            return _reply(451, f"4.3.0 {_one_line(f.message)}")
        self.accepted += 1
        return _reply(250, f"2.0.0 Ok: queued as {name}")

    def _rset(self, arg: str) -> bytes:
        self._reset()
        return _reply(250, "2.0.0 Ok")

    def _noop(self, arg: str) -> bytes:
        return _reply(250, "2.0.0 Ok")

    def _vrfy(self, arg: str) -> bytes:
        return _reply(252, "2.5.2 Cannot VRFY user; send some mail and it will be tried")

    def _help(self, arg: str) -> bytes:
        return _reply(214, "2.0.0 EHLO HELO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT")

    def _quit(self, arg: str) -> bytes:
        self._reset()
        self.state = State.CLOSED
        return _reply(221, "2.0.0 Bye")

    def _reset(self) -> None:
        self.state = State.COMMAND
        self._sender, self._rcpts, self._data, self._size = "", [], [], 0


_COMMANDS: dict[str, Callable[[SmtpSession, str], bytes]] = {
    "EHLO": SmtpSession._ehlo,
    "HELO": SmtpSession._helo,
    "MAIL": SmtpSession._mail,
    "RCPT": SmtpSession._rcpt,
    "DATA": SmtpSession._data_command,
    "RSET": SmtpSession._rset,
    "NOOP": SmtpSession._noop,
    "VRFY": SmtpSession._vrfy,
    "HELP": SmtpSession._help,
    "QUIT": SmtpSession._quit,
}


def _path(keyword: str, arg: str) -> tuple[str, list[tuple[str, str | None]]] | None:
    """(address, [(PARAM, value)]) of `FROM:<addr> params` / `TO:<addr> params`."""
    m = _PATH.fullmatch(arg)
    if m is None or m.group(1).upper() != keyword:
        return None
    raw = m.group(2)
    addr = raw[1:-1] if raw.startswith("<") else raw
    params: list[tuple[str, str | None]] = []
    for token in m.group(3).split():
        p = _PARAM.fullmatch(token)
        if p is None:
            return None
        params.append((p.group(1).upper(), p.group(2)))
    return addr, params


def _reply(code: int, text: str) -> bytes:
    return f"{code} {text}\r\n".encode()


def _multi(code: int, lines: list[str]) -> bytes:
    out = [f"{code}-{line}\r\n" for line in lines[:-1]] + [f"{code} {lines[-1]}\r\n"]
    return "".join(out).encode()


def _one_line(text: str) -> str:
    return " ".join(text.split())[:400]


def run(session: SmtpSession, stdin: BinaryIO, stdout: BinaryIO) -> Exit:
    """Serve `session` until QUIT or EOF; 75 if EOF cut a transaction short, else 0."""
    stdout.write(session.greeting())
    stdout.flush()
    while session.state is not State.CLOSED:
        # Bounded: a line longer than the size limit makes the message too big anyway.
        line = stdin.readline(session.max_size + 3)
        if not line:
            return Exit.TEMPFAIL if session.in_transaction else Exit.OK
        reply = session.feed(line)
        if reply:
            stdout.write(reply)
            stdout.flush()
    return Exit.OK
