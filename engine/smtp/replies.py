"""SMTP replies as values (RFC 5321 §4.2, enhanced codes RFC 3463).

Responsible for: the `Reply` value type and assembling multi-line replies from bytes
(`ReplyParser`).
Not responsible for: deciding what a reply means for a message (engine.sched.classify),
nor which command a reply answers (engine.smtp.protocol).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn

from engine.smtp.errors import RemoteProtocolError

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s|$)")
_ENHANCED_CACHE: dict[tuple[int, str], str | None] = {}
_ENHANCED_CACHE_MAX = 4096


def _parse_enhanced(code: int, line: str) -> str | None:
    """The enhanced code at the start of `line` if its class is `code`'s (uncached)."""
    m = _ENHANCED.match(line)
    if m is None or m.group(1) != str(code)[0]:
        return None
    return f"{m.group(1)}.{m.group(2)}.{m.group(3)}"


@dataclass(frozen=True, slots=True)
class Reply:
    """One complete SMTP reply: a three-digit code and its text lines.

    `lines` holds the text after the code and separator of every line, in order.
    """

    code: int
    lines: tuple[str, ...] = ("",)

    @property
    def text(self) -> str:
        """All text lines joined by a single space (for logs and DSNs)."""
        return " ".join(line for line in self.lines if line)

    @property
    def enhanced(self) -> str | None:
        r"""The RFC 3463 enhanced status code of the first line, if it carries one
        whose class matches the basic code's class (e.g. "4.2.0" on a 450).

        Cached on (code, first 10 characters): the classifier and the metrics ask for it
        several times per delivered message, and the regex + format was ~3 µs a message.
        Exact by construction: `_ENHANCED` reads at most the first 10 characters of the
        first line (9 for the longest code plus its delimiter). A line whose second
        character is not "." cannot match and is not cached (its text is often unique,
        e.g. a queue id)."""
        line = self.lines[0] if self.lines else ""
        if line[1:2] != ".":
            return None
        key = (self.code, line[:10])
        try:
            return _ENHANCED_CACHE[key]
        except KeyError:
            pass
        if len(_ENHANCED_CACHE) >= _ENHANCED_CACHE_MAX:
            _ENHANCED_CACHE.clear()  # a server varying its codes endlessly: stay bounded
        enhanced = _ENHANCED_CACHE[key] = _parse_enhanced(self.code, line)
        return enhanced

    def __str__(self) -> str:
        return f"{self.code} {self.text}".rstrip()


# RFC 5321 §4.5.3.1.5 limits a reply line to 512 octets including CRLF, but real servers
# exceed it (long EHLO AUTH lists, verbose policy rejections of 600-900 bytes are common),
# so we accept 4x that.  The limit only exists so a hostile peer cannot make us buffer an
# endless line: 2,048 bytes per line is generous for SMTP and small for memory.
MAX_REPLY_LINE = 2048

_DIGIT1 = frozenset(b"2345")  # RFC 5321 §4.2: Reply-code = %x32-35 %x30-35 %x30-39
_DIGIT2 = frozenset(b"012345")
_DIGIT3 = frozenset(b"0123456789")


class ReplyParser:
    """Assembles complete (possibly multi-line) replies from arbitrary byte chunks.

    Lines end in CRLF; a bare LF is tolerated (Postfix and aiosmtplib do too).  A reply
    is `NNN-text` lines followed by one `NNN text` (or bare `NNN`) line, all with the same
    code (RFC 5321 §4.2.1).  Any violation raises `RemoteProtocolError`, after which the
    parser stays broken: the byte stream can no longer be trusted.
    """

    __slots__ = ("_broken", "_code", "_lines", "_partial")

    def __init__(self) -> None:
        self._partial = b""  # bytes after the last LF seen
        self._code: int | None = None  # code of a multi-line reply in progress
        self._lines: list[str] = []  # its text lines so far
        self._broken = False

    @property
    def buffered(self) -> bool:
        """True when bytes of an incomplete reply are held (a partial line or the first
        lines of a multi-line reply)."""
        return bool(self._partial) or self._code is not None

    def feed(self, data: bytes) -> list[Reply]:
        """Add bytes received from the server; return the replies they completed.

        Raises:
            RemoteProtocolError: a malformed line (bad code, mixed codes within one
                reply, missing separator) or a line longer than MAX_REPLY_LINE bytes.
        """
        if self._broken:
            raise RemoteProtocolError("reply stream already broken by an earlier error")
        if self._partial:
            data = self._partial + data
        if b"\n" not in data:
            # +1: the CR of a CRLF whose LF has not arrived yet.
            if len(data) > MAX_REPLY_LINE + 1:
                self._fail(f"reply line longer than {MAX_REPLY_LINE} bytes")
            self._partial = data
            return []
        lines = data.split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > MAX_REPLY_LINE + 1:
            self._fail(f"reply line longer than {MAX_REPLY_LINE} bytes")
        replies: list[Reply] = []
        for raw in lines:
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            reply = self._line(raw)
            if reply is not None:
                replies.append(reply)
        return replies

    def _line(self, raw: bytes) -> Reply | None:
        """Parse one line without its terminator; return the reply it completes."""
        if len(raw) > MAX_REPLY_LINE:
            self._fail(f"reply line longer than {MAX_REPLY_LINE} bytes")
        if len(raw) < 3 or raw[0] not in _DIGIT1 or raw[1] not in _DIGIT2 or raw[2] not in _DIGIT3:
            self._fail(f"malformed reply code in {raw[:40]!r}")
        code = int(raw[:3])
        if self._code is not None and code != self._code:
            self._fail(f"reply code changed from {self._code} to {code} within one reply")
        sep = raw[3:4]
        text = raw[4:].decode("utf-8", "replace")
        if sep == b"-":
            self._code = code
            self._lines.append(text)
            return None
        if sep not in (b" ", b""):
            self._fail(f"missing separator after reply code in {raw[:40]!r}")
        if self._code is None:
            return Reply(code, (text,))
        self._lines.append(text)
        reply = Reply(code, tuple(self._lines))
        self._code = None
        self._lines = []
        return reply

    def _fail(self, why: str) -> NoReturn:
        self._broken = True
        raise RemoteProtocolError(why)
