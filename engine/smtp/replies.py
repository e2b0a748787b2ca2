"""SMTP replies as values (RFC 5321 §4.2, enhanced codes RFC 3463).

Responsible for: the `Reply` value type and assembling multi-line replies from bytes.
Not responsible for: deciding what a reply means for a message (engine.sched.classify).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s|$)")


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
        """The RFC 3463 enhanced status code of the first line, if it carries one
        whose class matches the basic code's class (e.g. "4.2.0" on a 450)."""
        m = _ENHANCED.match(self.lines[0] if self.lines else "")
        if m is None or m.group(1) != str(self.code)[0]:
            return None
        return f"{m.group(1)}.{m.group(2)}.{m.group(3)}"

    @property
    def is_positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return 500 <= self.code < 600

    def __str__(self) -> str:
        return f"{self.code} {self.text}".rstrip()
