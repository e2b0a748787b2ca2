"""The AUTH exchange's payloads (RFC 4954, RFC 4616 PLAIN, the LOGIN mechanism).

Responsible for: one exchange (`Exchange`): the mechanism named in AUTH, its initial
response if any, each line after a 334, and what the client sent decoded: base64, the
PLAIN message `authzid NUL authcid NUL passwd`, the LOGIN user name then password; and
refusing what cannot be used (not base64, not UTF-8, a control character in a name, acting
for another identity, "*": the client gave up).
Not responsible for: when AUTH is allowed (engine.smtpd.protocol), or checking the
password (engine.smtpd.auth).

Pure.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from engine.smtpd import replies as R
from engine.smtpd.replies import Refusal

__all__ = [
    "Challenge",
    "Credentials",
    "Exchange",
    "SaslError",
    "decode_b64",
    "decode_login",
    "decode_plain",
]


class SaslError(Exception):
    """The response cannot be used: `reply` says so to the client."""

    def __init__(self, reply: bytes, reason: Refusal) -> None:
        super().__init__(reply.decode("ascii", "replace").strip())
        self.reply = reply
        self.reason = reason


def decode_b64(data: bytes) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise SaslError(R.AUTH_DECODE, Refusal.SYNTAX) from None


def _name(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslError(R.AUTH_DECODE, Refusal.SYNTAX) from None
    if not text or not text.isprintable():
        raise SaslError(R.AUTH_DECODE, Refusal.SYNTAX)
    return text


def decode_plain(response: bytes) -> tuple[str, bytes]:
    """(user, password) from a PLAIN response ("=" is an empty one)."""
    parts = (b"" if response == b"=" else decode_b64(response)).split(b"\0")
    if len(parts) != 3:
        raise SaslError(R.AUTH_DECODE, Refusal.SYNTAX)
    authzid, authcid, password = parts
    if authzid and authzid != authcid:
        # Acting for another identity (authzid) is not supported: a failure.
        raise SaslError(R.AUTH_FAILED, Refusal.AUTH_FAILED)
    return _name(authcid), password


def decode_login(response: bytes) -> str:
    """The user name of a LOGIN exchange."""
    return _name(decode_b64(response))


@dataclass(frozen=True, slots=True)
class Challenge:
    """Send this 334 and read the client's next line."""

    reply: bytes


@dataclass(frozen=True, slots=True)
class Credentials:
    """The exchange is complete: check these."""

    mechanism: str
    user: str
    password: bytes


class Exchange:
    """One AUTH exchange: `Exchange(argument)`, `first()`, then `line()` after each 334.
    Raises SaslError for anything that cannot be used (the exchange is over then)."""

    def __init__(self, argument: bytes) -> None:
        mech, _, self._initial = argument.strip(b" ").partition(b" ")
        self.mechanism = mech.upper().decode("ascii", "replace")
        if not mech:
            raise SaslError(R.SYNTAX_AUTH, Refusal.SYNTAX)
        if self.mechanism not in ("PLAIN", "LOGIN"):
            raise SaslError(R.AUTH_MECHANISM, Refusal.SYNTAX)
        self._user: str | None = None

    def first(self) -> Challenge | Credentials:
        if self._initial:
            return self.line(self._initial)
        return Challenge(R.AUTH_EMPTY_CHALLENGE if self.mechanism == "PLAIN" else R.AUTH_USERNAME)

    def line(self, line: bytes) -> Challenge | Credentials:
        if line == b"*":
            raise SaslError(R.AUTH_ABORTED, Refusal.AUTH_FAILED)
        if self.mechanism == "PLAIN":
            return Credentials("PLAIN", *decode_plain(line))
        if self._user is None:
            self._user = decode_login(line)
            return Challenge(R.AUTH_PASSWORD)
        return Credentials("LOGIN", self._user, decode_b64(line))
