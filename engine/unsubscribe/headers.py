"""The header fields one-click unsubscribe reads and adds (pure, on wire-form bytes).

Responsible for: `read_fields` - one pass over a message's header section (DATA wire
form: CRLF, folded lines joined) for what suppression and unsubscribe need: the From
domain (the sender domain of engine.suppress.model), whether List-Unsubscribe is already
there, and the list or campaign id (`List-Id`'s <id> (RFC 2919), else `X-Campaign-ID`) -
and `add_unsubscribe`, which appends `List-Unsubscribe: <https://.../u/TOKEN>,
<mailto:...?subject=unsubscribe%20TOKEN>` and `List-Unsubscribe-Post:
List-Unsubscribe=One-Click` (RFC 8058 §3.1) to the header section.
Not responsible for: when to add them (engine.runtime.intake: only to an entry with one
recipient, and before DKIM signing, which covers both fields: RFC 8058 §4) or tokens
(engine.unsubscribe.token).

Appended at the end of the header section like intake's Date and Message-ID
(engine.drop.cleanup), so the rest stays byte-identical; a header line never starts with
".", so the wire form needs no stuffing for them.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.auth.dkim import from_domain
from engine.suppress.model import BadEntry, domain_key

__all__ = ["MessageFields", "add_unsubscribe", "read_fields", "unsubscribe_url"]

MAX_LIST_ID = 200  # characters kept of a list or campaign id (it rides in every token)
ONE_CLICK = b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"


@dataclass(frozen=True, slots=True)
class MessageFields:
    from_domain: str | None
    has_list_unsubscribe: bool
    list_id: str  # "" when the message names none


def _headers(wire: bytes) -> list[tuple[bytes, bytes]]:
    end = wire.find(b"\r\n\r\n")
    head = wire if end < 0 else wire[: end + 2]
    out: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and out:
            name, value = out[-1]
            out[-1] = (name, value + b" " + line.strip())
            continue
        name, colon, value = line.partition(b":")
        if colon:
            out.append((name.strip().lower(), value.strip()))
    return out


def _list_id(value: bytes) -> str:
    text = value.decode("utf-8", "replace")
    start, end = text.rfind("<"), text.rfind(">")
    if 0 <= start < end:
        text = text[start + 1 : end]
    return " ".join(text.split())[:MAX_LIST_ID].replace("\0", "")


def _normal(domain: str | None) -> str | None:
    """The A-label form scopes are kept in (engine.suppress.model); None if unusable."""
    if domain is None or domain.isascii():
        return domain
    try:
        return domain_key(domain)
    except BadEntry:
        return None


def read_fields(wire: bytes) -> MessageFields:
    domain: str | None = None
    seen_from = has_lu = False
    list_id = campaign = ""
    for name, value in _headers(wire):
        if name == b"from" and not seen_from:
            seen_from = True
            domain = _normal(from_domain(value))
        elif name == b"list-unsubscribe":
            has_lu = True
        elif name == b"list-id" and not list_id:
            list_id = _list_id(value)
        elif name == b"x-campaign-id" and not campaign:
            campaign = _list_id(value)
    return MessageFields(domain, has_lu, list_id or campaign)


def unsubscribe_url(url_base: str, token: str) -> str:
    return f"{url_base}/u/{token}"


def add_unsubscribe(wire: bytes, url: str, mailto: str | None, token: str) -> bytes:
    """`wire` with the two fields appended to its header section."""
    uris = f"<{url}>"
    if mailto:
        uris += f", <mailto:{mailto}?subject=unsubscribe%20{token}>"
    # Folded after the comma: a token makes the line ~150 characters, and RFC 5322 §2.1.1
    # asks for at most 78 where it can be done.
    fields = b"List-Unsubscribe: " + uris.replace(", ", ",\r\n ").encode("ascii") + b"\r\n"
    fields += ONE_CLICK
    end = wire.find(b"\r\n\r\n")
    if end < 0:
        return wire + fields
    return wire[: end + 2] + fields + wire[end + 2 :]
