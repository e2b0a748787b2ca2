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

# One reply's lines and bytes (text of every line of a multi-line reply).  RFC 5321 sets no
# limit; real replies are far below these: EHLO lists run 8-15 lines (Gmail 9, Exchange
# Online 13, Postfix 3.7 11), policy rejections 1-6 lines, ASCII-art banners a few dozen
# lines of 80 columns.  200 lines and 64 KiB are 10x the largest of those, and bound what
# one connection can make us hold: without them an endless "220-" greeting grew a worker
# by 140 MB/s (issue #11).
MAX_REPLY_LINES = 200
MAX_REPLY_BYTES = 64 * 1024

_DIGIT1 = frozenset(b"2345")  # RFC 5321 §4.2: Reply-code = %x32-35 %x30-35 %x30-39
_DIGIT2 = frozenset(b"012345")
_DIGIT3 = frozenset(b"0123456789")


class ReplyParser:
    """Assembles complete (possibly multi-line) replies from arbitrary byte chunks.

    Lines end in CRLF; a bare LF is tolerated (Postfix and aiosmtplib do too).  A reply
    is `NNN-text` lines followed by one `NNN text` (or bare `NNN`) line, all with the same
    code (RFC 5321 §4.2.1).  Any violation raises `RemoteProtocolError`, after which the
    parser stays broken: the byte stream can no longer be trusted.

    Memory is bounded whatever the peer sends: a partial line holds at most
    MAX_REPLY_LINE bytes, a reply in progress MAX_REPLY_LINES lines and MAX_REPLY_BYTES
    bytes of text, and one `feed` returns at most `max_replies` replies (the caller knows
    how many it asked for: more is a flood, not an answer).
    """

    __slots__ = ("_broken", "_code", "_lines", "_partial", "_size")

    def __init__(self) -> None:
        self._partial = b""  # bytes after the last LF seen
        self._code: int | None = None  # code of a multi-line reply in progress
        self._lines: list[str] = []  # its text lines so far
        self._size = 0  # and their bytes
        self._broken = False

    @property
    def buffered(self) -> bool:
        """True when bytes of an incomplete reply are held (a partial line or the first
        lines of a multi-line reply)."""
        return bool(self._partial) or self._code is not None

    @property
    def held(self) -> int:
        """Bytes held for the reply in progress (its lines so far and the partial line)."""
        return self._size + len(self._partial)

    def feed(self, data: bytes, max_replies: int = MAX_REPLY_LINES) -> list[Reply]:
        """Add bytes received from the server; return the replies they completed.

        Lines are taken one at a time (not `split`), so a chunk full of lines stops at
        the first one that breaks a limit instead of becoming a list of them first.

        Raises:
            RemoteProtocolError: a malformed line (bad code, mixed codes within one
                reply, missing separator), a line longer than MAX_REPLY_LINE bytes, a
                reply over MAX_REPLY_LINES lines or MAX_REPLY_BYTES bytes, or more than
                `max_replies` replies in this chunk.
        """
        if self._broken:
            raise RemoteProtocolError("reply stream already broken by an earlier error")
        if self._partial:
            data = self._partial + data
        replies: list[Reply] = []
        start = 0
        find = data.find
        end = find(b"\n")
        while end >= 0:
            stop = end - 1 if end > start and data[end - 1] == 13 else end  # 13: CR
            reply = self._line(data[start:stop])
            start = end + 1
            if reply is not None:
                replies.append(reply)
                if len(replies) > max_replies:
                    self._fail(f"more than {max_replies} replies at once: not asked for")
            end = find(b"\n", start)
        rest = data[start:] if start else data
        # +1: the CR of a CRLF whose LF has not arrived yet.
        if len(rest) > MAX_REPLY_LINE + 1:
            self._fail(f"reply line longer than {MAX_REPLY_LINE} bytes")
        self._partial = rest
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
            self._size += len(raw)
            if len(self._lines) >= MAX_REPLY_LINES:
                self._fail(f"reply longer than {MAX_REPLY_LINES} lines")
            if self._size > MAX_REPLY_BYTES:
                self._fail(f"reply longer than {MAX_REPLY_BYTES} bytes")
            return None
        if sep not in (b" ", b""):
            self._fail(f"missing separator after reply code in {raw[:40]!r}")
        if self._code is None:
            return Reply(code, (text,))
        self._lines.append(text)
        reply = Reply(code, tuple(self._lines))
        self._code = None
        self._lines = []
        self._size = 0
        return reply

    def _fail(self, why: str) -> NoReturn:
        self._broken = True
        self._lines = []  # release what a hostile peer made us hold
        self._partial = b""
        self._size = 0
        raise RemoteProtocolError(why)
