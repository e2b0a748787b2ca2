"""What intake adds to a message before it is queued (the job of Postfix's cleanup(8)).

Responsible for: the header fields a message must carry when it leaves Volley, added
when the drop lacks them — `Date` (RFC 5322 §3.6: mandatory) and `Message-ID` (§3.6.4:
SHOULD; Gmail and Microsoft refuse or junk bulk mail without one) — at the end of the
header section of the message in wire form, so that the rest of the message stays
byte-identical.  The DKIM signature will be added here too, after these (it must cover
every header Volley adds).
Not responsible for: parsing the drop (engine.drop.parse says whether the fields are
there), choosing the Message-ID's unique part or the host name (the caller passes them),
or line endings and dot-stuffing (engine.smtp.encode.wire_body made the input).

Pure: the time is passed in.
"""

from __future__ import annotations

from datetime import datetime

__all__ = ["add_missing_headers", "date_value", "message_id_value"]


def date_value(now: float) -> str:
    """An RFC 5322 date-time for `now` in the host's time zone, as Postfix writes it."""
    return datetime.fromtimestamp(now).astimezone().strftime("%a, %d %b %Y %H:%M:%S %z")


def message_id_value(unique: str, host: str) -> str:
    """`<unique@host>`: `unique` must be unique per message (an entry id is)."""
    return f"<{unique}@{host}>"


def add_missing_headers(
    wire: bytes, *, date: str | None = None, message_id: str | None = None
) -> bytes:
    """`wire` (a message in DATA wire form: CRLF, dot-stuffed) with a `Date` and/or a
    `Message-ID` field appended to its header section; None adds nothing.

    Appended, not prepended: the header section keeps its order (Return-Path, Received
    first) and a field added last is plainly the relay's addition.  A field line never
    starts with ".", so the wire form needs no stuffing for it.
    """
    fields = b""
    if date is not None:
        fields += b"Date: " + date.encode("ascii") + b"\r\n"
    if message_id is not None:
        fields += b"Message-ID: " + message_id.encode("ascii") + b"\r\n"
    if not fields:
        return wire
    end = wire.find(b"\r\n\r\n")
    if end < 0:  # no body: every line is a header line (wire form ends with CRLF)
        return wire + fields
    return wire[: end + 2] + fields + wire[end + 2 :]
