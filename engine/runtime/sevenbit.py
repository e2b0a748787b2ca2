"""The 7-bit copy of an entry for a server that does not offer 8BITMIME (RFC 6152 §3).

Responsible for: `seven_bit_copy` — the stored message (DATA wire form) with its 8-bit
parts made quoted-printable (engine.smtp.downgrade), and, when it carries DKIM
signatures of Volley's own keys, those removed and the message signed again with the
same keys (the conversion changed the body and a Content-Transfer-Encoding field, so
the old signatures would fail); or the reason no 7-bit copy can be made.
Not responsible for: when to ask (engine.runtime.delivery: an entry marked "8bit", a
session without 8BITMIME), the bounce for an unconvertible message (engine.sched.classify
`precheck`, 5.6.3), or the stored entry (it keeps its 8-bit form: the next attempt may
reach a server with 8BITMIME).

Signatures that are not Volley's (the producer's own, or ours after their key left the
configuration) cannot be renewed: they stay in the copy and no longer verify — as
with Postfix's conversion.  Every large provider offers 8BITMIME, so this path is rare
and its cost (a MIME walk and a signature per transaction) does not matter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dkim.util

from engine.auth.dkim import DkimKey, Signer, signer_for, unstuff
from engine.config import DkimDomain
from engine.smtp.downgrade import Unconvertible, split_fields, to_7bit
from engine.smtp.encode import wire_body

__all__ = ["body_for", "seven_bit_copy", "strip_signatures"]

_DKIM_SIGNATURE = b"dkim-signature"


def body_for(
    body: bytes, meta: Mapping[str, Any], eightbitmime: bool, dkim: tuple[DkimDomain, ...]
) -> tuple[bytes, bool, str | None]:
    """What a transaction sends of an entry (`meta`, `body` in DATA wire form) to a
    server that does (`eightbitmime`) or does not offer 8BITMIME — never 8-bit to a
    server without it (RFC 6152 §3): (body, whether it is 8-bit, why no 7-bit copy
    could be made — the classifier then bounces).  The
    worker's signer for `dkim` (the one intake signs with) signs a converted copy
    again."""
    body_8bit = bool(meta.get("8bit"))
    if not body_8bit or eightbitmime:
        return body, body_8bit, None
    copy, unconvertible = seven_bit_copy(body, signer_for(dkim))
    return copy, False, unconvertible


def seven_bit_copy(wire: bytes, signer: Signer | None) -> tuple[bytes, str | None]:
    """(the 7-bit copy of `wire`, None), or (`wire`, why it cannot be made 7-bit).

    Raises:
        engine.auth.dkim.DkimError: signing the copy failed (intake signed the same
            header fields, so this is not expected).
    """
    message = unstuff(wire)
    try:
        converted = to_7bit(message)
    except Unconvertible as e:
        return wire, str(e)
    if converted is message:
        return wire, None  # nothing was 8-bit after all
    if signer is not None:
        stripped, removed = strip_signatures(converted, signer.keys)
        if removed:
            return signer.sign(wire_body(stripped)), None
    return wire_body(converted), None


def strip_signatures(message: bytes, keys: list[DkimKey]) -> tuple[bytes, int]:
    """`message` without the DKIM-Signature fields made by one of `keys` (their d= and
    s= tags), and how many were removed."""
    ours = {(k.domain.encode(), k.selector.encode()) for k in keys}
    end = message.find(b"\r\n\r\n")
    head, rest = (message[: end + 2], message[end + 2 :]) if end >= 0 else (message, b"")
    kept: list[bytes] = []
    removed = 0
    for field in split_fields(head):
        name, colon, value = field.partition(b":")
        if colon and name.strip().lower() == _DKIM_SIGNATURE and _signed_by(value, ours):
            removed += 1
        else:
            kept.append(field)
    return b"".join(kept) + rest, removed


def _signed_by(value: bytes, ours: set[tuple[bytes, bytes]]) -> bool:
    try:
        tags = dkim.util.parse_tag_value(value)
    except dkim.util.InvalidTagValueList:
        return False
    return (tags.get(b"d", b"").lower(), tags.get(b"s", b"")) in ours
