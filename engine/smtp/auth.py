"""Client side of SMTP AUTH (RFC 4954): which mechanism, and the lines it sends.

Responsible for: choosing a mechanism from the EHLO `AUTH` keyword (PLAIN, RFC 4616,
with its initial response: one round trip; else LOGIN, the draft mechanism every relay
still offers), the AUTH command line, and the line to send after each `334` challenge —
or "*" (cancel, RFC 4954 §4) when the server asks for more than the mechanism has.
Not responsible for: when to authenticate (engine.net.relay: only over TLS unless the
route allows otherwise), matching replies to commands (engine.smtp.protocol), or what
a refusal means for the mail (engine.sched.classify).

Pure; stdlib only.  The password lives in an `AuthExchange` only until the server has
answered: nothing here formats it into an error or a repr.
"""

from __future__ import annotations

import base64
import enum
from collections import deque
from collections.abc import Mapping

from engine.smtp.errors import LocalProtocolError

__all__ = ["CANCEL", "AuthExchange", "Mechanism", "choose_mechanism", "offered_mechanisms"]

CANCEL = b"*\r\n"


class Mechanism(enum.Enum):
    PLAIN = "PLAIN"
    LOGIN = "LOGIN"


# Preference order.  PLAIN first: one round trip with the initial response, and a
# standard (RFC 4616); LOGIN only for servers without it.  CRAM-MD5 and friends are not
# offered: they need the password in clear on our side anyway, and TLS is what protects
# it on the wire (RFC 8314 §5.1 advises PLAIN over TLS).
PREFERENCE = (Mechanism.PLAIN, Mechanism.LOGIN)


def offered_mechanisms(extensions: Mapping[str, str]) -> tuple[str, ...]:
    """The mechanisms an EHLO reply names: "AUTH LOGIN PLAIN", and the "AUTH=LOGIN PLAIN"
    form some servers still send for clients of Outlook Express's era."""
    names: list[str] = []
    params = extensions.get("AUTH")
    if params is not None:
        names += params.split()
    for keyword, rest in extensions.items():
        if keyword.startswith("AUTH="):
            names += [keyword[5:], *rest.split()]
    return tuple(dict.fromkeys(n.upper() for n in names if n))


def choose_mechanism(extensions: Mapping[str, str]) -> Mechanism | None:
    """The mechanism to use with a server whose EHLO keywords are `extensions`, or None
    when it offers none we speak (or no AUTH at all)."""
    offered = offered_mechanisms(extensions)
    for mechanism in PREFERENCE:
        if mechanism.value in offered:
            return mechanism
    return None


def _b64(text: str) -> bytes:
    return base64.b64encode(text.encode("utf-8"))


class AuthExchange:
    """One AUTH exchange from the client's side: `start()` gives the command line,
    `answer()` the line for each 334 that follows."""

    __slots__ = ("_pending", "mechanism", "user")

    def __init__(self, mechanism: Mechanism, user: str, password: str) -> None:
        """Raises:
        LocalProtocolError: a NUL in the user or password (RFC 4616 §2 forbids it in
            PLAIN, and it is no character of a real name or password anywhere else).
        """
        if "\0" in user or "\0" in password:
            raise LocalProtocolError("AUTH user and password must not contain NUL")
        self.mechanism = mechanism
        self.user = user
        self._pending: deque[bytes] = deque()
        if mechanism is Mechanism.LOGIN:
            # Sent in order: the challenges are "Username:" and "Password:" in base64 by
            # convention only (the mechanism has no standard), so they are not read.
            self._pending.extend((_b64(user) + b"\r\n", _b64(password) + b"\r\n"))
        else:
            # RFC 4616 §2: [authzid] NUL authcid NUL passwd; no authzid: act as ourselves.
            self._pending.append(_b64(f"\0{user}\0{password}"))

    def start(self) -> bytes:
        """The AUTH command: PLAIN carries its response (RFC 4954 §4 initial response)."""
        if self.mechanism is Mechanism.PLAIN:
            return b"AUTH PLAIN " + self._pending.popleft() + b"\r\n"
        return b"AUTH LOGIN\r\n"

    def answer(self) -> bytes:
        """The line after a 334: the next response, or "*" when none is left (the server
        asked for a step the mechanism does not have: cancel, it answers 501)."""
        return self._pending.popleft() if self._pending else CANCEL

    def forget(self) -> None:
        """The exchange is over: drop the responses still held (they hold the password)."""
        self._pending.clear()
