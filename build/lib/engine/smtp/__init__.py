"""Volley's sans-IO SMTP client (h11-style): bytes in, replies and bytes out.

Responsible for: the public names of the SMTP protocol core.  Standalone: stdlib only,
no asyncio/socket/ssl/time, nothing from the rest of `engine` (engine.net.session is
the I/O adapter that drives it).
Not responsible for: I/O, timeouts, or deciding what a reply means for a message.
"""

from __future__ import annotations

from engine.smtp.encode import wire_body
from engine.smtp.errors import LocalProtocolError, RemoteProtocolError, SmtpProtocolError
from engine.smtp.protocol import ClientProtocol
from engine.smtp.replies import Reply, ReplyParser
from engine.smtp.state import Command, State
from engine.smtp.transaction import ReplyEvent, TransactionReplies

__all__ = [
    "ClientProtocol",
    "Command",
    "LocalProtocolError",
    "RemoteProtocolError",
    "Reply",
    "ReplyEvent",
    "ReplyParser",
    "SmtpProtocolError",
    "State",
    "TransactionReplies",
    "wire_body",
]
