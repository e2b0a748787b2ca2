"""The listener's reply lines and the reasons it counts refusals under.

Responsible for: every fixed reply the SMTP server sends (bytes, CRLF-terminated, with
RFC 3463 enhanced status codes: the listener advertises ENHANCEDSTATUSCODES), and
`Refusal`, the bounded set of reasons behind refusals (the `reason` label of
volley_smtpd_rejected_total).
Not responsible for: when each is sent (engine.smtpd.protocol).
"""

from __future__ import annotations

import enum

__all__ = ["Refusal", "ehlo", "greeting", "helo", "hostname_line"]


class Refusal(enum.Enum):
    """Why the listener refused a command, a message or a connection."""

    AUTH_REQUIRED = "auth_required"  # 530 at MAIL: may not relay, no bounce domain
    RELAY_DENIED = "relay_denied"  # 554 5.7.1 for a recipient
    BAD_SENDER = "bad_sender"  # 553 5.1.7
    BAD_RECIPIENT = "bad_recipient"  # 553 5.1.3
    TOO_MANY_RECIPIENTS = "too_many_recipients"  # 452 4.5.3
    TOO_BIG = "too_big"  # 552 5.3.4 (SIZE= or the data itself)
    BARE_NEWLINE = "bare_newline"  # 550 5.5.2 / 500 5.5.2: bare CR or LF (smuggling)
    NUL = "nul"  # 554 5.6.0
    LINE_TOO_LONG = "line_too_long"  # 500 5.5.2 (command, 512) / 500 5.5.6 (AUTH, 12 288)
    SYNTAX = "syntax"  # 501 / 555 / 504
    BAD_SEQUENCE = "bad_sequence"  # 503
    UNKNOWN_COMMAND = "unknown_command"  # 500 5.5.2
    TOO_MANY_ERRORS = "too_many_errors"  # 421 4.7.0, connection closed
    TIMEOUT = "timeout"  # 421 4.4.2, connection closed
    TLS_REQUIRED = "tls_required"  # 538 5.7.11
    AUTH_FAILED = "auth_failed"  # 535 5.7.8
    AUTH_LIMITED = "auth_limited"  # 454 4.7.0 after too many failures
    CONNECTION_LIMIT = "connection_limit"  # 421 4.7.0 at connect
    SPOOL_FULL = "spool_full"  # 452 4.3.1
    LOCAL_ERROR = "local_error"  # 451 4.3.0


def greeting(hostname: str) -> bytes:
    return f"220 {hostname} ESMTP Volley\r\n".encode("ascii")


# Always offered; engine.smtpd.protocol adds SIZE, STARTTLS and AUTH as they apply.
EHLO_KEYWORDS = ("PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES")


def ehlo(hostname: str, keywords: list[str]) -> bytes:
    """The multi-line EHLO reply: the host, then one keyword a line."""
    lines = [hostname, *EHLO_KEYWORDS, *keywords]
    last = len(lines) - 1
    text = "".join(f"250{' ' if i == last else '-'}{t}\r\n" for i, t in enumerate(lines))
    return text.encode("ascii")


def helo(hostname: str) -> bytes:
    return f"250 {hostname}\r\n".encode("ascii")


def hostname_line(code: str, hostname: str, text: str) -> bytes:
    """A reply naming the server, as RFC 5321 §4.2 asks of 220 and 421: `421 4.4.2 mx
    Error: timeout exceeded`."""
    return f"{code} {hostname} {text}\r\n".encode("ascii")


OK = b"250 2.0.0 Ok\r\n"
MAIL_OK = b"250 2.1.0 Ok\r\n"
RCPT_OK = b"250 2.1.5 Ok\r\n"
GO_AHEAD = b"354 End data with <CR><LF>.<CR><LF>\r\n"
BYE = b"221 2.0.0 Bye\r\n"
VRFY = b"252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery\r\n"
HELP = b"214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY STARTTLS AUTH\r\n"
READY_TLS = b"220 2.0.0 Ready to start TLS\r\n"
AUTH_OK = b"235 2.7.0 Authentication successful\r\n"
AUTH_USERNAME = b"334 VXNlcm5hbWU6\r\n"  # base64 "Username:"
AUTH_PASSWORD = b"334 UGFzc3dvcmQ6\r\n"  # base64 "Password:"
AUTH_EMPTY_CHALLENGE = b"334 \r\n"

UNKNOWN = b"500 5.5.2 Error: command not recognized\r\n"
LINE_TOO_LONG = b"500 5.5.2 Error: line too long (512 octets at most)\r\n"
AUTH_LINE_TOO_LONG = b"500 5.5.6 Authentication exchange line is too long\r\n"
BARE_LF_COMMAND = b"500 5.5.2 Error: bare <CR> or <LF> received in a command line\r\n"
NOT_UTF8 = b"500 5.5.2 Error: command line is not valid UTF-8\r\n"
SYNTAX_EHLO = b"501 5.5.4 Syntax: EHLO hostname\r\n"
SYNTAX_HELO = b"501 5.5.4 Syntax: HELO hostname\r\n"
SYNTAX_MAIL = b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
SYNTAX_RCPT = b"501 5.5.4 Syntax: RCPT TO:<address>\r\n"
SYNTAX_NO_ARGS = b"501 5.5.4 Syntax: no parameters allowed\r\n"
SYNTAX_AUTH = b"501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n"
AUTH_DECODE = b"501 5.5.2 Cannot decode the authentication response\r\n"
AUTH_ABORTED = b"501 5.7.0 Authentication aborted\r\n"
NEED_EHLO = b"503 5.5.1 Error: send HELO/EHLO first\r\n"
NESTED_MAIL = b"503 5.5.1 Error: nested MAIL command\r\n"
NEED_MAIL = b"503 5.5.1 Error: need MAIL command\r\n"
NEED_RCPT = b"503 5.5.1 Error: need RCPT command\r\n"
NO_VALID_RCPT = b"554 5.5.1 Error: no valid recipients\r\n"
TLS_ACTIVE = b"503 5.5.1 Error: TLS already active\r\n"
AUTH_DONE = b"503 5.5.1 Error: already authenticated\r\n"
AUTH_IN_TXN = b"503 5.5.1 Error: MAIL transaction in progress\r\n"
AUTH_NOT_ENABLED = b"503 5.5.1 Error: authentication not enabled\r\n"
AUTH_MECHANISM = b"504 5.5.4 Unrecognized authentication type\r\n"
BDAT = b"502 5.5.1 Error: BDAT without CHUNKING\r\n"
EXPN = b"502 5.5.1 Error: EXPN not supported\r\n"
TLS_UNAVAILABLE = b"454 4.7.0 TLS not available\r\n"
TLS_REQUIRED = b"538 5.7.11 Encryption required for requested authentication mechanism\r\n"
AUTH_FAILED = b"535 5.7.8 Authentication credentials invalid\r\n"
AUTH_TEMPORARY = b"454 4.7.0 Temporary authentication failure\r\n"
AUTH_LIMITED = b"454 4.7.0 Too many failed authentication attempts; try again later\r\n"
AUTH_REQUIRED = b"530 5.7.0 Authentication required\r\n"
RELAY_DENIED = b"554 5.7.1 Relay access denied\r\n"
TOO_MANY_RECIPIENTS = b"452 4.5.3 Error: too many recipients\r\n"
TOO_BIG = b"552 5.3.4 Message size exceeds fixed limit\r\n"
BARE_NEWLINE = b"550 5.5.2 Error: bare <CR> or <LF> in message text (SMTP smuggling)\r\n"
NUL = b"554 5.6.0 Error: NUL byte in message text\r\n"
NEED_SMTPUTF8 = b"553 5.6.7 Must declare SMTPUTF8 to send a non-ASCII address\r\n"
SPOOL_FULL = b"452 4.3.1 Insufficient system storage\r\n"
LOCAL_ERROR = b"451 4.3.0 Error: queue file write error\r\n"
SUPPRESSION_UNAVAILABLE = b"451 4.3.0 Error: cannot check recipients, try again later\r\n"
