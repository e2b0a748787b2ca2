"""MAIL FROM / RCPT TO arguments: the path and the ESMTP parameters (RFC 5321 §4.1.2).

Responsible for: the syntax of the two commands' arguments, the parameters the listener
takes (SIZE checked against max_message_size, BODY=7BIT/8BITMIME, SMTPUTF8, AUTH=),
refusing any other (555: DSN is not offered), and dropping a source route
("@a.example,@b.example:"), which RFC 5321 §4.1.2 says to accept and ignore.
Not responsible for: the address itself (engine.drop.address checks it) or the relay
decision (engine.smtpd.relay).

A path cannot hold "<" or ">" here: the encoder refuses them in any address
(engine.smtp.encode.check_address), so a path that has them is refused as syntax.

Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.smtpd import replies as R
from engine.smtpd.replies import Refusal

__all__ = ["ArgumentError", "MailArgs", "parse_mail", "parse_rcpt"]

_MAIL = re.compile(r"FROM: ?<([^<>]*)>((?: +\S+)*) *", re.IGNORECASE)
_RCPT = re.compile(r"TO: ?<([^<>]*)>((?: +\S+)*) *", re.IGNORECASE)
_ROUTE = re.compile(r"@[^:,]+(?:,@[^:,]+)*:")


@dataclass(frozen=True, slots=True)
class MailArgs:
    sender: str  # "" is the null reverse-path
    smtputf8: bool


@dataclass(frozen=True, slots=True)
class ArgumentError:
    reply: bytes
    reason: Refusal


def _unsupported(key: str) -> ArgumentError:
    text = f"555 5.5.4 Unsupported option: {key[:40]}\r\n"
    return ArgumentError(text.encode("ascii", "replace"), Refusal.SYNTAX)


def parse_mail(text: str, max_size: int) -> MailArgs | ArgumentError:
    m = _MAIL.fullmatch(text)
    if m is None:
        return ArgumentError(R.SYNTAX_MAIL, Refusal.SYNTAX)
    smtputf8 = False
    for param in m[2].split():
        key, _, value = param.partition("=")
        key = key.upper()
        if key == "SIZE" and value.isdigit():
            if int(value) > max_size:
                return ArgumentError(R.TOO_BIG, Refusal.TOO_BIG)
        elif key == "BODY" and value.upper() in ("7BIT", "8BITMIME"):
            pass
        elif key == "SMTPUTF8" and not value:
            smtputf8 = True
        elif key == "AUTH" and value:
            pass  # RFC 4954 §5: the original submitter; not trusted, not kept
        else:
            return _unsupported(key)
    return MailArgs(_ROUTE.sub("", m[1], count=1), smtputf8)


def parse_rcpt(text: str) -> str | ArgumentError:
    m = _RCPT.fullmatch(text)
    if m is None:
        return ArgumentError(R.SYNTAX_RCPT, Refusal.SYNTAX)
    if m[2].strip():
        return _unsupported(m[2].split()[0].partition("=")[0].upper())
    return _ROUTE.sub("", m[1], count=1)
