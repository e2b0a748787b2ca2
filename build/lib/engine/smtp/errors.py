"""Exceptions of the sans-IO SMTP client, split by who is at fault (h11's split).

Responsible for: the two exception types engine.smtp raises.
Not responsible for: transport failures (timeouts, resets, TLS): those belong to the I/O
adapter (engine.net.session), which reports them as engine.model.TransportFailure values.
Delivery outcomes are never exceptions either: a 550 is a `Reply`, not an error.
"""

from __future__ import annotations

__all__ = ["LocalProtocolError", "RemoteProtocolError", "SmtpProtocolError"]


class SmtpProtocolError(Exception):
    """Base class: the SMTP exchange cannot continue as SMTP."""


class LocalProtocolError(SmtpProtocolError):
    """We (the caller) broke the protocol: an illegal call for the current state, or a
    command argument that would corrupt the command line (e.g. CR/LF in an address).

    Raised *before* any byte is produced, so the connection is still in a known state.
    """


class RemoteProtocolError(SmtpProtocolError):
    """The peer broke SMTP: a malformed or over-long reply line, a reply nobody asked
    for, or bytes sent after a 220 to STARTTLS (plaintext injection).

    After this the connection state is unknown; the protocol object is BROKEN.
    """
