"""Validation of admin API requests: pure functions from JSON values to typed requests.

Responsible for: what a well-formed request is — a destination domain (normalised to the
lower-case A-label form the spool uses), an entry id, a sender, a selector that names
exactly one of them, a suspension duration, a reason text, a list limit — and one clear
message (`BadRequest`, HTTP 400) for anything else.  Also `Selector.matches`, the one
rule deciding which queued entries a bounce or delete takes.
Not responsible for: doing anything (engine.admin.service, engine.runtime.control).

Why destructive actions need a selector: a `bounce` without one would be "bounce the
whole queue", which KumoMTA's kcli does when given no criteria (capability-anchors §10:
a pitfall users hit).  Volley takes exactly one selector, and "everything" must be said
(`all: true`, `--all`), as Postfix makes `postsuper -d ALL` upper case on purpose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.config import ConfigError, parse_duration
from engine.drop.address import domain_of
from spool import is_entry_id

__all__ = [
    "MAX_LIMIT",
    "MAX_REASON",
    "MAX_SUSPENSION",
    "BadRequest",
    "Selector",
    "parse_domain",
    "parse_duration_value",
    "parse_entry_id",
    "parse_limit",
    "parse_reason",
    "parse_selector",
]

# A suspension is an operator's pause, not configuration: it must end by itself.  A year
# covers "until the blocklisting is sorted out" with room to spare.
MAX_SUSPENSION = 366 * 86400.0
DEFAULT_SUSPENSION = 3600.0  # `volley suspend DOMAIN` without --duration: 1 h (the issue's)
# Reasons go into log lines (and the bounce text): long enough for a ticket reference
# and a sentence, short enough that a pasted document does not.
MAX_REASON = 500
DEFAULT_LIMIT = 1000  # `volley queue --list`: entries shown unless --limit says otherwise
MAX_LIMIT = 100_000  # every listed entry's record is read: bound the work of one call


class BadRequest(ValueError):
    """The request is malformed; the message says what to fix (HTTP 400)."""


def parse_domain(value: Any, what: str = "domain") -> str:
    """A destination domain as the spool names it: "Bücher.Example." -> "xn--bcher-kva.example"."""
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{what}: expected a domain name")
    text = value.strip().rstrip(".")
    try:
        # domain_of takes an address: the local part is irrelevant to the domain rules.
        return domain_of(f"postmaster@{text}")
    except ValueError as e:
        raise BadRequest(f"{what}: {text!r}: {e}") from None


def parse_entry_id(value: Any) -> str:
    """A message id as the delivery log and `volley queue --list` show it (29 hex digits)."""
    text = value.strip().lower() if isinstance(value, str) else ""
    if not is_entry_id(text):
        raise BadRequest(f"id: expected a message id (29 hex digits, as in the log), got {value!r}")
    return text


def parse_sender(value: Any) -> str:
    """An envelope sender to match; "<>" (or "") is the null sender of bounce reports.
    Compared case-insensitively (`Selector.matches`)."""
    if not isinstance(value, str):
        raise BadRequest("sender: expected an address or <>")
    text = value.strip()
    if text in ("<>", ""):
        return ""
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    if "@" not in text or any(c.isspace() for c in text):
        raise BadRequest(f"sender: expected an address like news@example.com or <>, got {value!r}")
    return text.casefold()


def parse_reason(value: Any, default: str = "") -> str:
    """Free text for the log: one line, at most MAX_REASON characters."""
    if value is None:
        return default
    if not isinstance(value, str):
        raise BadRequest("reason: expected text")
    text = " ".join(value.split())  # no line breaks or tabs in a log field or a DSN
    if len(text) > MAX_REASON:
        raise BadRequest(f"reason: at most {MAX_REASON} characters")
    return text or default


def parse_duration_value(value: Any) -> float:
    """Seconds from 3600 or "1h" / "30m" / "2d"; more than 0, at most MAX_SUSPENSION."""
    if value is None:
        return DEFAULT_SUSPENSION
    try:
        seconds = parse_duration(value, "duration")
    except ConfigError as e:
        raise BadRequest(str(e)) from None
    if not 0 < seconds <= MAX_SUSPENSION:
        raise BadRequest(f"duration: must be more than 0 and at most {MAX_SUSPENSION / 86400:g}d")
    return seconds


def parse_limit(value: Any) -> int:
    if value is None:
        return DEFAULT_LIMIT
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"limit: expected a whole number, got {value!r}") from None
    if not 1 <= n <= MAX_LIMIT:
        raise BadRequest(f"limit: must be 1..{MAX_LIMIT}")
    return n


@dataclass(frozen=True, slots=True)
class Selector:
    """Which queued entries a bounce or delete takes: exactly one criterion is set
    (`everything` is the explicit "all of them")."""

    domain: str | None = None
    id: str | None = None
    sender: str | None = None  # casefolded; "" is the null sender
    everything: bool = False

    @property
    def needs_meta(self) -> bool:
        """True if matching needs each entry's sender (a record read per entry)."""
        return self.sender is not None

    def matches_name(self, name: str) -> bool:
        """Whether entry `name` ("<id>@<domain>") can match; for a sender selector every
        name can (the sender decides: `matches`)."""
        if self.domain is not None:
            return name.endswith("@" + self.domain)  # neither half of a name holds "@"
        if self.id is not None:
            return name.startswith(self.id + "@")
        return True

    def matches(self, name: str, sender: str | None) -> bool:
        """The rule: `sender` is the entry's envelope sender (needed for a sender selector)."""
        if not self.matches_name(name):
            return False
        if self.sender is not None:
            return sender is not None and sender.casefold() == self.sender
        return True

    def to_dict(self) -> dict[str, Any]:
        """The selector as it travels (API replies, directives to workers)."""
        if self.everything:
            return {"all": True}
        for key in ("domain", "id", "sender"):
            value = getattr(self, key)
            if value is not None:
                return {key: value}
        raise AssertionError("a Selector always has one criterion")

    def describe(self) -> str:
        if self.everything:
            return "every queued message"
        if self.domain is not None:
            return f"domain {self.domain}"
        if self.id is not None:
            return f"id {self.id}"
        return f"sender {self.sender or '<>'}"


def parse_selector(body: Mapping[str, Any]) -> Selector:
    """Exactly one of "domain", "id", "sender", or "all": true; anything else is refused."""
    given = [k for k in ("domain", "id", "sender", "all") if body.get(k) not in (None, False)]
    if "sender" in body and body["sender"] == "" and "sender" not in given:
        given.append("sender")  # "" is the null sender, a real criterion
    if not given:
        raise BadRequest(
            "a selector is required: domain, id or sender (or all: true for everything)"
        )
    if len(given) > 1:
        raise BadRequest(f"give one selector, not {' and '.join(given)}")
    key = given[0]
    if key == "all":
        if body["all"] is not True:
            raise BadRequest("all: expected true")
        return Selector(everything=True)
    if key == "domain":
        return Selector(domain=parse_domain(body["domain"]))
    if key == "id":
        return Selector(id=parse_entry_id(body["id"]))
    return Selector(sender=parse_sender(body["sender"]))
