"""What a worker reports about a site's replies, and which of them say "slow down".

Responsible for: `Stage` (where in a session a reply came), `ReplySample` (one non-2xx
reply as a worker reports it), its one-line form rules match (`reply_line`), and
`Throttling`: the classification of a reply as throttling or not, read from the
`[throttling]` table of engine/shaping/rules.toml (`shipped_throttling`).
Not responsible for: acting on throttling (engine.shaping.aimd), named replies
(engine.shaping.rules), or a failure's bounce category (engine.policy.classifier).

Why not the bounce categories: they answer "what is wrong with this recipient", and no
category means "the receiver wants us slower".  Throttling replies land in three of them
(PolicyRelated: "rate limit", "too many connections"; TransientFailure: "try again
later", which greylisting shares; SpamBlock: Microsoft's 4.7.650 "rate limited due to IP
reputation"), each of which also holds replies that are not throttling (a 5xx policy
block, a greylisted first attempt).  The test is simpler than a category: the code, the
enhanced code's class, and for 451/452 a few words.
"""

from __future__ import annotations

import enum
import functools
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from engine.policy.rules import MAX_TEXT
from engine.shaping.rules import compile_regex

__all__ = [
    "ReplySample",
    "Stage",
    "Throttling",
    "read_throttling",
    "reply_line",
    "shipped_throttling",
]


class Stage(enum.Enum):
    """Where a reply came: the greeting (or a refused connection), the session's
    set-up (EHLO, STARTTLS), or a transaction (MAIL, RCPT, DATA, end of data)."""

    CONNECT = "connect"
    SESSION = "session"
    TRANSACTION = "transaction"


@dataclass(frozen=True, slots=True)
class ReplySample:
    """One non-2xx reply from a site: `code` 421, `enhanced` "4.7.0" or None, the text
    after the codes."""

    code: int
    enhanced: str | None
    text: str
    stage: Stage


def reply_line(sample: ReplySample) -> str:
    """ "CODE ENHANCED text" (no enhanced code: "CODE text"), what rule regexes see; at
    most MAX_TEXT characters, as bounce rules (a reply can be 64 KiB)."""
    head = f"{sample.code} {sample.enhanced} " if sample.enhanced else f"{sample.code} "
    return (head + sample.text)[:MAX_TEXT]


@dataclass(frozen=True, slots=True)
class Throttling:
    """The classification's data: see the `[throttling]` table in rules.toml."""

    codes: frozenset[int] = frozenset()  # always throttling
    enhanced: tuple[str, ...] = ()  # a 4xx whose enhanced code starts so
    word_codes: frozenset[int] = frozenset()  # throttling when `words` match
    words: re.Pattern[str] | None = field(default=None, compare=False)
    never: re.Pattern[str] | None = field(default=None, compare=False)  # overrides all

    def is_throttling(self, sample: ReplySample) -> bool:
        code = sample.code
        if not 400 <= code <= 499:
            return False  # a 5xx is a verdict on the message, not a pace
        text = sample.text[:MAX_TEXT]
        if self.never is not None and self.never.search(text):
            return False
        if code in self.codes:
            return True
        if sample.enhanced and sample.enhanced.startswith(self.enhanced):
            return True
        return code in self.word_codes and self.words is not None and bool(self.words.search(text))


def read_throttling(table: Mapping[str, Any], key: str = "throttling") -> Throttling:
    """A Throttling from its TOML table; ValueError naming `key.field` when wrong."""
    known = {"codes", "enhanced", "word_codes", "words", "never"}
    for name in table:
        if name not in known:
            raise ValueError(f"{key}.{name}: unknown key (one of {', '.join(sorted(known))})")
    return Throttling(
        codes=_codes(table.get("codes", []), f"{key}.codes"),
        enhanced=tuple(_strings(table.get("enhanced", []), f"{key}.enhanced")),
        word_codes=_codes(table.get("word_codes", []), f"{key}.word_codes"),
        words=_regex(table.get("words"), f"{key}.words"),
        never=_regex(table.get("never"), f"{key}.never"),
    )


@functools.cache
def shipped_throttling() -> Throttling:
    """The `[throttling]` table of engine/shaping/rules.toml, read once per process."""
    text = resources.files("engine.shaping").joinpath("rules.toml").read_text("utf-8")
    return read_throttling(tomllib.loads(text).get("throttling", {}), "rules.toml:throttling")


def _codes(value: Any, key: str) -> frozenset[int]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and 400 <= v <= 499 for v in value
    ):
        raise ValueError(f"{key}: expected a list of 4xx reply codes, got {value!r}")
    return frozenset(value)


def _strings(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f'{key}: expected a list of strings like "4.7.", got {value!r}')
    return value


def _regex(value: Any, key: str) -> re.Pattern[str] | None:
    return None if value is None else compile_regex(value, key)
