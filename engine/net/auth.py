"""Logging in to a relay (SMTP AUTH, RFC 4954) on a session that reached READY.

Responsible for: the rule that AUTH never goes over an unencrypted connection unless the
route says `tls = "disabled"`, refusing relays that offer no mechanism we speak, running
the exchange through the sans-IO protocol (engine.smtp.auth picks PLAIN or LOGIN) and
reporting a refusal as a `TransportFailure` of kind AUTH (or TLS) whose text names the
relay's reply, the user and the setting to check — never the password.
Not responsible for: opening, encrypting or closing the connection (engine.net.session
calls this after EHLO — after the second EHLO when STARTTLS ran — and QUITs on a
refusal), or what a refusal means for the mail (engine.sched.classify defers it).
"""

from __future__ import annotations

from engine.config.routes import Relay, RelayTls
from engine.model import FailureKind, Phase, TransportFailure
from engine.net.wire import Wire
from engine.smtp.auth import choose_mechanism, offered_mechanisms

__all__ = ["authenticate"]


async def authenticate(wire: Wire, relay: Relay, *, encrypted: bool) -> TransportFailure | None:
    """Log in to `relay` over `wire` (READY).  None: authenticated, or a transport
    failure or a 421 ended the exchange (the caller reads `wire`); else why not, with
    the session still READY for a QUIT.

    Args:
        encrypted: TLS protects the connection (STARTTLS ran, or implicit TLS).
    """
    auth = relay.auth
    assert auth is not None, "authenticate() needs a relay with auth"
    proto = wire.proto
    if not encrypted and relay.tls is not RelayTls.DISABLED:
        return TransportFailure(
            Phase.AUTH,
            FailureKind.TLS,
            "no TLS on this connection, and AUTH is never sent over an unencrypted one"
            f' (only {relay.table}.tls = "disabled" allows it)',
        )
    mechanism = choose_mechanism(proto.extensions)
    if mechanism is None:
        offered = " ".join(offered_mechanisms(proto.extensions))
        what = f"offers AUTH {offered}" if offered else "offers no AUTH"
        return TransportFailure(
            Phase.AUTH,
            FailureKind.AUTH,
            f"the relay {what}; Volley logs in with PLAIN or LOGIN",
        )
    wire.write(proto.send_auth(auth.user, auth.password.reveal()))
    await wire.wait()
    if proto.authenticated or wire.failure is not None or proto.closing_reply is not None:
        return None
    return TransportFailure(
        Phase.AUTH,
        FailureKind.AUTH,
        f"AUTH {mechanism.value} as {auth.user!r} refused: {proto.last_reply}",
    )
