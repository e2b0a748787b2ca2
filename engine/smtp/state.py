"""The client session state machine of engine.smtp: states, commands, and every transition.

Responsible for: the only definition of which command may be sent in which state and
where each reply or connection-level signal leads.  `engine.smtp.protocol` looks every
state change up here and never assigns a state on its own (h11 `_state.py`, Rule 1).
Not responsible for: transaction bookkeeping (which RCPT was accepted, whether to send the
content or a lone "."), which lives in engine.smtp.protocol, nor bytes or I/O.

Theory of operation.  A session moves through

    AWAIT_GREETING -> GREETED -> AWAIT_EHLO (or AWAIT_HELO) -> READY
    READY -> AWAIT_STARTTLS -> TLS_HANDSHAKE -> GREETED -> AWAIT_EHLO -> READY   (RFC 3207)
    READY -> AWAIT_AUTH [-> AWAIT_AUTH after each 334] -> READY                  (RFC 4954)
    READY -> [AWAIT_RSET ->] IN_TRANSACTION -> [AWAIT_DATA_DONE ->] READY
    AWAIT_DATA_DONE -> IN_TRANSACTION          (the next transaction behind the ".")
    READY | GREETED | REJECTED -> AWAIT_QUIT -> CLOSED

A state changes when a command is *sent* (`SEND`), when the reply to the *last*
outstanding command arrives and nothing follows it (`ON_REPLY`), or on a connection
signal (`on_signal`).  Replies in the middle of a pipelined group (RFC 2920) do not move
the state: IN_TRANSACTION covers MAIL, every RCPT and DATA, whether they were written in
one group or in lock-step.  With transactions pipelined (engine.smtp.pipeline) the state
is the *sender's*: where the server will be once it has read everything written, so the
next transaction's MAIL behind a "." moves AWAIT_DATA_DONE to IN_TRANSACTION while the
"."'s reply is still outstanding (Postfix's smtp_proto.c also keeps separate sender and
receiver states when pipelining).  READY with nothing outstanding is the only state in which a
connection may be reused (Postfix smtp_proto.c: "do not cache unless the receiver
reached the last state").
"""

from __future__ import annotations

import enum

__all__ = ["ON_REPLY", "SEND", "Command", "Signal", "State", "expected", "on_signal"]


class State(enum.Enum):
    """Where the client is in the session."""

    AWAIT_GREETING = "await-greeting"  # connected, the server's 220 is outstanding
    GREETED = "greeted"  # 2xx greeting (or TLS just established): EHLO/HELO is next
    AWAIT_EHLO = "await-ehlo"
    AWAIT_HELO = "await-helo"
    READY = "ready"  # between transactions: the only reusable state
    AWAIT_STARTTLS = "await-starttls"
    AWAIT_AUTH = "await-auth"  # AUTH or a response to its 334 outstanding
    TLS_HANDSHAKE = "tls-handshake"  # 220 to STARTTLS: the adapter must run the handshake
    AWAIT_RSET = "await-rset"  # RSET outstanding (alone, or in front of a pipelined MAIL)
    IN_TRANSACTION = "in-transaction"  # replies to MAIL/RCPT/DATA outstanding
    AWAIT_DATA_DONE = "await-data-done"  # content and "." sent; end-of-data reply outstanding
    AWAIT_QUIT = "await-quit"
    REJECTED = "rejected"  # non-2xx greeting, or EHLO and HELO refused: only QUIT is left
    CLOSED = "closed"  # QUIT answered, a 421 received, or the peer closed while idle
    BROKEN = "broken"  # transport failed, timed out or was cancelled, or the peer broke SMTP

    # Members are singletons, so identity hashing is exact.  Enum.__hash__ is Python code
    # (hash of the name); with ~10 table lookups per message it cost ~4 µs of the ~60.
    __hash__ = object.__hash__


class Command(enum.Enum):
    """What a reply answers.  GREETING is the connection itself; END_OF_DATA is the
    "." after the content (or alone, RFC 2920 §3.1)."""

    GREETING = "greeting"
    EHLO = "EHLO"
    HELO = "HELO"
    STARTTLS = "STARTTLS"
    AUTH = "AUTH"  # the AUTH command and each response line after a 334
    MAIL = "MAIL"
    RCPT = "RCPT"
    DATA = "DATA"
    END_OF_DATA = "."
    RSET = "RSET"
    QUIT = "QUIT"

    __hash__ = object.__hash__  # see State


class Signal(enum.Enum):
    """Connection-level events that move the state without a reply."""

    TLS_ESTABLISHED = "tls-established"  # the adapter finished the STARTTLS handshake
    CLOSING = "closing"  # the server sent 421: it is closing the channel (RFC 5321 §3.8)
    EOF = "eof"  # the peer closed its side
    FAILED = "failed"  # timeout, transport error, cancellation, or a RemoteProtocolError


_S = State
_C = Command

# Sending command C in state S: (S, C) -> state while the reply is outstanding.
# A missing key means "illegal here" (LocalProtocolError).
SEND: dict[tuple[State, Command], State] = {
    (_S.GREETED, _C.EHLO): _S.AWAIT_EHLO,
    (_S.GREETED, _C.HELO): _S.AWAIT_HELO,
    (_S.GREETED, _C.QUIT): _S.AWAIT_QUIT,
    (_S.READY, _C.STARTTLS): _S.AWAIT_STARTTLS,
    (_S.READY, _C.AUTH): _S.AWAIT_AUTH,
    (_S.AWAIT_AUTH, _C.AUTH): _S.AWAIT_AUTH,  # the response to a 334
    (_S.READY, _C.MAIL): _S.IN_TRANSACTION,
    (_S.READY, _C.RSET): _S.AWAIT_RSET,
    (_S.READY, _C.QUIT): _S.AWAIT_QUIT,
    # RFC 2920: RSET may be pipelined in front of the next transaction's MAIL.
    (_S.AWAIT_RSET, _C.MAIL): _S.IN_TRANSACTION,
    (_S.IN_TRANSACTION, _C.RCPT): _S.IN_TRANSACTION,
    (_S.IN_TRANSACTION, _C.DATA): _S.IN_TRANSACTION,
    (_S.IN_TRANSACTION, _C.END_OF_DATA): _S.AWAIT_DATA_DONE,
    # RFC 2920 §3.1: the content may open a group, so the next transaction's MAIL may
    # follow the "." before its reply (engine.smtp.pipeline).
    (_S.AWAIT_DATA_DONE, _C.MAIL): _S.IN_TRANSACTION,
    (_S.REJECTED, _C.QUIT): _S.AWAIT_QUIT,
}

# The reply to the last outstanding command arrived and nothing follows it:
# (S, ok) -> next state.  `ok` means a 2xx reply (220 for STARTTLS), except for the
# transaction states, where it means "the server is back in a clean state" (False only
# when a RSET sent ahead of the transaction was refused; engine.smtp.protocol computes it).
ON_REPLY: dict[tuple[State, bool], State] = {
    (_S.AWAIT_GREETING, True): _S.GREETED,
    (_S.AWAIT_GREETING, False): _S.REJECTED,  # 554 greeting: RFC 5321 §3.1, QUIT is next
    (_S.AWAIT_EHLO, True): _S.READY,
    (_S.AWAIT_EHLO, False): _S.GREETED,  # 5xx to EHLO: HELO may be tried (RFC 5321 §3.2)
    (_S.AWAIT_HELO, True): _S.READY,
    (_S.AWAIT_HELO, False): _S.REJECTED,
    (_S.AWAIT_STARTTLS, True): _S.TLS_HANDSHAKE,
    (_S.AWAIT_STARTTLS, False): _S.READY,  # 454: the session goes on in plaintext
    (_S.AWAIT_AUTH, True): _S.READY,  # 235: authenticated
    (_S.AWAIT_AUTH, False): _S.READY,  # refused: unchanged (RFC 4954 §4); the caller QUITs
    (_S.AWAIT_RSET, True): _S.READY,
    (_S.AWAIT_RSET, False): _S.BROKEN,  # server's transaction state unknown: never reuse
    (_S.IN_TRANSACTION, True): _S.READY,  # aborted before end of data; RSET is owed
    (_S.IN_TRANSACTION, False): _S.BROKEN,
    (_S.AWAIT_DATA_DONE, True): _S.READY,  # the server resets after end of data, any code
    (_S.AWAIT_DATA_DONE, False): _S.BROKEN,
    (_S.AWAIT_QUIT, True): _S.CLOSED,
    (_S.AWAIT_QUIT, False): _S.CLOSED,
}

# Which replies each command may get (RFC 5321 §4.3.2, RFC 3207 §4, RFC 2920): a reply
# outside its command's set is not an answer we can interpret, so the session is broken
# (Postfix smtp_proto.c treats any reply class it does not expect as a failure of the
# transaction).  Codes are matched on the first digit, except where one exact code is the
# only success: 354 for DATA, 220 for STARTTLS, 235 (or 334: go on) for AUTH.  4xx and 5xx
# are always legal: refusals.
# A 3xx to MAIL or a 250 to DATA once made Volley count mail as delivered that was never
# sent (issue #14, finding 4).
_REFUSALS = frozenset(range(400, 600))
_TWO = frozenset(range(200, 300))
_EXPECTED: dict[Command, frozenset[int]] = {
    Command.GREETING: _TWO | _REFUSALS,
    Command.EHLO: _TWO | _REFUSALS,
    Command.HELO: _TWO | _REFUSALS,
    Command.STARTTLS: frozenset({220}) | _REFUSALS,
    Command.AUTH: frozenset({235, 334}) | _REFUSALS,  # RFC 4954 §4, §6
    Command.MAIL: _TWO | _REFUSALS,
    Command.RCPT: _TWO | _REFUSALS,
    Command.DATA: frozenset({354}) | _REFUSALS,
    Command.END_OF_DATA: _TWO | _REFUSALS,
    Command.RSET: _TWO | _REFUSALS,
    Command.QUIT: _TWO | _REFUSALS,
}


def expected(command: Command, code: int) -> bool:
    """Whether `code` is a reply `command` may get (see _EXPECTED)."""
    return code in _EXPECTED[command]


# States in which nothing is outstanding, so a clean EOF is not a failure.
_IDLE = frozenset({_S.GREETED, _S.READY, _S.REJECTED, _S.AWAIT_QUIT, _S.CLOSED})


def on_signal(state: State, signal: Signal) -> State:
    """The state after a connection-level signal.

    Raises:
        KeyError: TLS_ESTABLISHED outside TLS_HANDSHAKE (the caller's bug).
    """
    if signal is Signal.TLS_ESTABLISHED:
        if state is not _S.TLS_HANDSHAKE:
            raise KeyError((state, signal))
        return _S.GREETED  # RFC 3207 §4.2: forget everything, EHLO again
    if state is _S.BROKEN or state is _S.CLOSED:
        return state  # nothing reopens or repairs a session
    if signal is Signal.CLOSING:
        return _S.CLOSED
    if signal is Signal.EOF:
        return _S.CLOSED if state in _IDLE else _S.BROKEN
    return _S.BROKEN
