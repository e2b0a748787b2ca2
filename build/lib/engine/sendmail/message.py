"""The message and envelope volley-sendmail drops: stdin -> the bytes of one drop file.

Responsible for:
  * reading the message from stdin: up to a line holding only "." unless -i / -oi
    (sendmail's rule; no dot-unstuffing outside SMTP), never more than the spool's
    size limit;
  * the repairs every sendmail makes to what applications pipe in: LF line endings
    become CRLF (PHP and cron write LF), a leading mbox "From " line is dropped, a line
    that cannot be a header field ends the header section (so `echo hi | sendmail u@x`
    works), and a missing From field is added (`-F` name, envelope sender);
  * the envelope: sender = -f / -r, else the message's Return-Path / Sender / From (as
    for any drop), else login@smtp.helo_name; recipients = the arguments, plus with -t
    every To, Cc and Bcc address (added, as Postfix does; Exim subtracts instead);
  * the drop: `X-Sender:` / `X-Receiver:` lines (README "Sending") before the message,
    checked with engine.drop.parse.parse_drop - intake's own parser - so that whatever
    intake would reject is refused here with exit 65 and intake's reason.
Not responsible for: removing Bcc (intake removes every Bcc field of every drop, -t or
not), adding Date / Message-ID (intake does: engine.drop.cleanup), writing the file
(engine.sendmail.maildrop), the -bs dialogue (engine.sendmail.session reads the DATA).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import formataddr
from typing import BinaryIO

from engine.drop.address import validate_address
from engine.drop.fastparse import simple_addresses
from engine.drop.parse import DropRejection, header_envelope, parse_drop
from engine.sendmail.exits import Exit, Failure

__all__ = ["Drop", "build_drop", "read_message", "repair"]

_LONE_LF = re.compile(rb"(?<!\r)\n")
# A header field's first line, as engine.drop.parse reads one (RFC 5322 §2.2 name + ":").
_FIELD = re.compile(rb"[!-9;-~]+:")
_PINNED = re.compile(rb"x-(?:sender|receiver):", re.IGNORECASE)
_BCC = re.compile(rb"bcc:", re.IGNORECASE)
_FROM = re.compile(rb"from:", re.IGNORECASE)
_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class Drop:
    """What goes into incoming/: the file's bytes and the envelope they pin."""

    data: bytes
    sender: str  # "" is the null sender <>
    recipients: tuple[str, ...]


def read_message(stream: BinaryIO, *, ignore_dots: bool, max_size: int) -> bytes:
    """The message from `stream`: to EOF, or without `ignore_dots` to the first line
    that holds only "." (that line not included).

    Raises:
        Failure(Exit.DATAERR): over `max_size` bytes (spool.max_message_size).
    """
    parts: list[bytes] = []
    size = 0
    if ignore_dots:
        while chunk := stream.read(_CHUNK):
            parts.append(chunk)
            size += len(chunk)
            _check_size(size, max_size)
    else:
        # Line by line: a person typing (or a program that waits for us to exit before
        # closing the pipe) ends the message with "." and never sends EOF.
        while line := stream.readline():
            if line in (b".\n", b".\r\n", b"."):
                break
            parts.append(line)
            size += len(line)
            _check_size(size, max_size)
    return b"".join(parts)


def _check_size(size: int, max_size: int) -> None:
    if size > max_size:
        raise Failure(
            Exit.DATAERR, f"message over spool.max_message_size ({max_size} bytes): not sent"
        )


def repair(message: bytes) -> bytes:
    """CRLF line endings, no mbox "From " line, and a header section that ends where
    its first line that is neither a field nor a continuation is (see the module
    docstring).  X-Sender / X-Receiver fields at the top move below the first other
    field, so they cannot be read as the drop's envelope (some PHP scripts add one)."""
    message = _LONE_LF.sub(b"\r\n", message)
    if message.startswith(b"From ") and not message.startswith(b"From :"):
        message = message.partition(b"\r\n")[2]
    # Only the header section is split into lines: the body (up to 50 MB) is copied once.
    blank = message.find(b"\r\n\r\n")
    head_part, tail = (message, b"") if blank < 0 else (message[:blank], message[blank:])
    lines = head_part.split(b"\r\n")
    end = 0
    while end < len(lines) and lines[end]:
        line = lines[end]
        continuation = end > 0 and line[:1] in (b" ", b"\t")
        if not continuation and _FIELD.match(line) is None:
            lines.insert(end, b"")  # this line starts the body
            break
        end += 1
    return b"\r\n".join(_unpin(lines[:end]) + lines[end:]) + tail


def _unpin(head: list[bytes]) -> list[bytes]:
    """Move leading X-Sender / X-Receiver fields (and any Bcc before them, which intake
    removes) below the first other field; unchanged when there is none."""
    fields: list[list[bytes]] = []
    for line in head:
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1].append(line)
        else:
            fields.append([line])
    lead = 0
    while lead < len(fields) and (
        _PINNED.match(fields[lead][0]) is not None or _BCC.match(fields[lead][0]) is not None
    ):
        lead += 1
    if lead == 0 or lead == len(fields):
        return head  # nothing pinned at the top, or only such fields (From comes first)
    order = [fields[lead], *fields[:lead], *fields[lead + 1 :]]
    return [line for field in order for line in field]


def build_drop(
    message: bytes,
    *,
    sender: str | None,
    recipients: Sequence[str],
    extract: bool,
    full_name: str | None,
    default_sender: str,
    max_recipients: int,
    max_size: int,
) -> Drop:
    """The drop for `message` (as read; `repair` is applied here).

    Args:
        sender: -f / -r ("" = null sender), or None to take it from the message.
        recipients: the command's arguments (each an address or an address list).
        extract: -t: add every To, Cc and Bcc address.
        full_name: -F, used only in a From field added here.
        default_sender: login@smtp.helo_name, when neither -f nor the message has one.

    Raises:
        Failure(Exit.DATAERR): a bad address, no recipient at all, a message intake
            would reject (intake's reason), or a drop over `max_size`.
    """
    if sender:
        _check_address(sender, "sender (-f)")
    message = repair(message)
    if not _has_from(message):
        author = sender or default_sender
        _check_address(author, "sender")
        line = "From: " + formataddr((full_name or "", author)) + "\r\n"
        message = line.encode("utf-8") + message
    header_sender: str | None = None
    header_rcpts: tuple[str, ...] = ()
    if extract or sender is None:
        got = header_envelope(message, recipients=extract)
        if isinstance(got, DropRejection):
            raise Failure(Exit.DATAERR, f"message refused: {got.reason}")
        header_sender, header_rcpts = got
    envelope_sender = sender if sender is not None else header_sender or default_sender
    rcpts = [*_arguments(recipients), *header_rcpts]
    if not rcpts:
        raise Failure(Exit.DATAERR, "no recipients: -t found no address in To, Cc or Bcc")
    lines = [f"X-Sender: {envelope_sender or '<>'}\r\n"]
    lines += [f"X-Receiver: {r}\r\n" for r in rcpts]
    data = "".join(lines).encode("utf-8") + message
    # Intake's own verdict on exactly these bytes: what it would reject fails here.
    env = parse_drop(data, max_recipients=max_recipients)
    if isinstance(env, DropRejection):
        raise Failure(Exit.DATAERR, f"message refused: {env.reason}")
    _check_size(len(data), max_size)
    return Drop(data=data, sender=env.sender, recipients=env.recipients)


def _has_from(message: bytes) -> bool:
    for line in message.split(b"\r\n"):
        if not line:
            return False  # the end of the header section
        if _FROM.match(line) is not None:
            return True
    return False


def _arguments(values: Sequence[str]) -> list[str]:
    """The addresses of the recipient arguments: `a@b`, `<a@b>`, `Name <a@b>` and comma
    lists of those (engine.drop.fastparse's plain syntax), else one bare address."""
    out: list[str] = []
    for value in values:
        addrs = simple_addresses(value)
        if addrs is None:
            bare = value.strip()
            addrs = [bare[1:-1] if bare.startswith("<") and bare.endswith(">") else bare]
        for addr in addrs:
            _check_address(addr, "recipient")
            out.append(addr)
    return out


def _check_address(addr: str, what: str) -> None:
    why = validate_address(addr)
    if why is not None:
        raise Failure(Exit.DATAERR, f"invalid {what} address {addr[:200]!r}: {why}")
