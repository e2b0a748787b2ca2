"""What the listener adds to a message it accepted, before it is queued.

Responsible for: the `Received:` field (RFC 5321 §4.4: every relay prepends one; the AUTH
identity is left out unless `smtpd.received_auth_user`, as Postfix's
`smtpd_sasl_authenticated_header = no`), and the `Date:` and `Message-ID:` fields a
message lacks (as intake adds them to drops: engine.drop.cleanup, whose values are used
here), and reading the Message-ID the message has, for the logs.
Not responsible for: the envelope (the client gave it with MAIL FROM / RCPT TO, and Bcc
fields are left as the client sent them, RFC 6409 §8 lets a submission server fix
headers but nothing asks it to), line endings or dot-stuffing (the text arrives in DATA
wire form, engine.smtpd.protocol checked it), or spool entries (engine.runtime.listener).

Pure: the date is passed in.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from engine.drop.cleanup import message_id_value
from engine.smtpd.events import Envelope

__all__ = ["Prepared", "prepare", "received_field"]

# One field and its continuation lines, after the "\n" ending the line before it (the
# literal "\n" first lets the regex engine scan in C; engine.drop.fastparse does the same).
_MESSAGE_ID = re.compile(rb"\nmessage-id:[ \t]*([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", re.IGNORECASE)
_DATE = re.compile(rb"\ndate:", re.IGNORECASE)
# What may appear inside the "(Authenticated sender: ...)" comment.
_COMMENT_UNSAFE = re.compile(r"[^!-'*-\[\]-~]")


@dataclass(frozen=True, slots=True)
class Prepared:
    body: bytes  # the message to queue, in wire form, Received: first
    message_id: str  # its Message-ID (its own, or the one added)
    body_8bit: bool


def _literal(ip: str) -> str:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return "[unknown]"
    return f"[IPv6:{addr.compressed}]" if addr.version == 6 else f"[{addr}]"


def received_field(
    env: Envelope, *, hostname: str, key: str, date: str, show_auth: bool = False
) -> bytes:
    """`Received: from HELO ([ip]) by HOST (Volley) with PROTO id KEY; DATE`, folded.

    PROTO per RFC 3848 / RFC 6531 §4.3: ESMTP, +S over TLS, +A authenticated; UTF8SMTP...
    when the client declared SMTPUTF8; SMTP after HELO.
    """
    if env.smtputf8:
        proto = "UTF8SMTP"
    elif env.esmtp:
        proto = "ESMTP"
    else:
        proto = "SMTP"
    if env.tls:
        proto += "S"
    if env.auth_user is not None:
        proto += "A"
    auth = ""
    if show_auth and env.auth_user is not None:
        auth = f"\r\n\t(Authenticated sender: {_COMMENT_UNSAFE.sub('?', env.auth_user)})"
    text = (
        f"Received: from {env.helo} ({_literal(env.client)})\r\n"
        f"\tby {hostname} (Volley) with {proto} id {key}{auth};\r\n"
        f"\t{date}\r\n"
    )
    return text.encode("ascii")


def prepare(
    env: Envelope, data: bytes, *, hostname: str, key: str, date: str, show_auth: bool = False
) -> Prepared:
    """The message to queue: Received: prepended, Date and Message-ID appended to the
    header section when missing (`key` names the message: the Message-ID's unique part;
    `date` is engine.drop.cleanup.date_value(now), made once per batch: ~8 µs)."""
    if data.startswith(b"\r\n") or not data:
        head_end = 0  # no header section: the fields go first
    else:
        end = data.find(b"\r\n\r\n")
        head_end = end + 2 if end >= 0 else len(data)
    head = b"\n" + data[:head_end]
    found = _MESSAGE_ID.search(head)
    message_id = ""
    if found is not None:
        message_id = " ".join(found[1].decode("utf-8", "replace").split())
    fields = b""
    if _DATE.search(head) is None:
        fields += b"Date: " + date.encode("ascii") + b"\r\n"
    if not message_id:
        message_id = message_id_value(key, hostname)
        fields += b"Message-ID: " + message_id.encode("ascii") + b"\r\n"
    received = received_field(env, hostname=hostname, key=key, date=date, show_auth=show_auth)
    if fields:
        body = b"".join((received, data[:head_end], fields, data[head_end:]))
    else:
        body = received + data
    return Prepared(body, message_id, not data.isascii())
