"""Reading report fields out of a parsed MIME tree (engine.feedback's shared helpers).

Responsible for: the field blocks of a machine-readable report part however the stdlib
`email` parser represented it; field values as bounded, single-line, printable text;
RFC 3464 typed values ("rfc822; a@b", "smtp; 550 ...", "dns; mx.example") split into
type and value, with RFC 6533 utf-8-addr-xtext ("\\x{E9}") decoded; the original
Message-ID of the message or headers a report returns.
Not responsible for: deciding what a report is (engine.feedback.dsn, .arf), or raising:
every function here returns something for any input the parser produced.

Why both shapes of a report part: CPython's feedparser splits message/delivery-status
into one sub-message per field block, parses other message/* parts (feedback-report,
global-delivery-status) as one nested message whose first block is its "header" and the
rest its "body", and keeps text/* parts as strings; a part with a Content-Transfer-
Encoding is kept encoded.  `blocks` turns every one of those back into field blocks.
"""

from __future__ import annotations

import re
from email import policy
from email.message import Message
from email.parser import HeaderParser

__all__ = ["MAX_VALUE", "blocks", "message_id", "returned_message_id", "text", "typed"]

MAX_VALUE = 1000  # characters kept of one field value (a log line, not an archive)
_PARSER = HeaderParser(policy=policy.compat32)
_BLANK_LINE = re.compile(r"\r?\n[ \t]*\r?\n")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_XTEXT = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")
_MSGID = re.compile(r"<[^<>\s]+>")
_RETURNED = frozenset(
    {
        "message/rfc822",
        "message/global",
        "text/rfc822-headers",
        "message/rfc822-headers",  # not registered, but sent
        "message/global-headers",
    }
)


def text(value: object) -> str:
    """A header value as one printable line: unfolded, controls removed, whitespace
    collapsed, undecodable bytes replaced, at most MAX_VALUE characters."""
    s = str(value)
    s = s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return " ".join(_CONTROL.sub(" ", s).split())[:MAX_VALUE]


def typed(value: object) -> tuple[str | None, str]:
    """("rfc822", "a@b.example") from "rfc822; a@b.example"; (None, value) untyped.  An
    address in <...> loses its brackets; a utf-8 address its xtext escapes."""
    s = text(value)
    kind, sep, rest = s.partition(";")
    if not sep or not kind.strip() or " " in kind.strip():
        return None, _unbracket(s)
    kind = kind.strip().lower()
    rest = rest.strip()
    if kind == "utf-8":
        rest = _XTEXT.sub(_xtext_char, rest)
    return kind, _unbracket(rest)


def _xtext_char(m: re.Match[str]) -> str:
    code = int(m.group(1), 16)
    return chr(code) if 0x20 <= code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "?"


def _unbracket(s: str) -> str:
    return s[1:-1].strip() if s.startswith("<") and s.endswith(">") else s


def message_id(value: object) -> str | None:
    """A Message-ID as intake logs it ("<id@host>"): the first <...> token, else the
    bare value in brackets; None when empty."""
    s = text(value)
    m = _MSGID.search(s)
    if m is not None:
        return m.group(0)
    bare = s.strip()
    return f"<{bare}>" if bare and " " not in bare else None


def blocks(part: Message) -> list[Message]:
    """The field blocks of a report part (module docstring), each a header-only Message."""
    payload = part.get_payload()
    if isinstance(payload, list) and part.get_content_type() == "message/delivery-status":
        # Blank lines at the end of the part make an empty last block: not a block.
        return [p for p in payload if isinstance(p, Message) and p.keys()]
    if isinstance(payload, list):
        raw = "".join(p.as_string() for p in payload if isinstance(p, Message))
    else:
        data = part.get_payload(decode=True)
        raw = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(payload)
    return [_PARSER.parsestr(chunk) for chunk in _BLANK_LINE.split(raw.strip()) if chunk.strip()]


def returned_message_id(report: Message) -> tuple[str | None, str | None]:
    """(Message-ID, To) of the message or header section the report returns, from its
    first message/rfc822, text/rfc822-headers (or global) part; (None, None) without."""
    for part in report.walk():
        if part.get_content_type() not in _RETURNED:
            continue
        headers = _returned_headers(part)
        if headers is None:
            continue
        mid = headers.get("Message-ID")
        to = headers.get("To")
        return (
            message_id(mid) if mid is not None else None,
            text(to) if to is not None else None,
        )
    return None, None


def _returned_headers(part: Message) -> Message | None:
    payload = part.get_payload()
    if isinstance(payload, list):
        first = payload[0] if payload else None
        return first if isinstance(first, Message) else None
    data = part.get_payload(decode=True)
    raw = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(payload)
    return _PARSER.parsestr(raw, headersonly=True)
