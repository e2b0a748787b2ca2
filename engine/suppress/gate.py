"""What every path into the queue asks before a message's entries are written.

Responsible for: `IntakeGate.screen` - one message (wire form, after the headers intake
adds), its envelope sender and recipients -> the recipients to queue and the suppressed
ones with the entry that caused each (engine.suppress.check), the sender domain (the
From domain, else the envelope sender's) and the fields one-click unsubscribe needs -
and `IntakeGate.stamp`, which adds `List-Unsubscribe` and `List-Unsubscribe-Post` with
the recipient's own token to one entry's copy of the message when `[unsubscribe]` is
configured, the message has no List-Unsubscribe of its own, and the entry has exactly
one recipient.
Callers: drop intake (engine.runtime.intake: drops and volley-sendmail); the SMTP
listener's group commit calls the same two methods (the lead wires it).
Not responsible for: logging (the caller writes `suppressed` records: check.record_fields),
DKIM (the caller signs each entry's copy after `stamp`: RFC 8058 §4 wants both fields
signed) or the formats (engine.unsubscribe.headers, .token).

Why one recipient only: a token names its recipient, and every recipient of an entry is
sent the same bytes in one transaction; giving each their own header would mean one
entry (and one transaction) per recipient.  Bulk senders send one message per recipient
anyway; an entry with several recipients gets no header, and the result says so
("several_recipients", counted in volley_unsubscribe_headers_total and logged).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.config import Settings, UnsubscribeSettings
from engine.drop.address import domain_of
from engine.suppress.check import Hit, SuppressionCheck
from engine.suppress.model import BadEntry, address_key
from engine.suppress.store import SqliteSuppressionReader, db_path
from engine.unsubscribe.headers import MessageFields, add_unsubscribe, read_fields, unsubscribe_url
from engine.unsubscribe.token import Keyring, load_keyring, make_token

__all__ = ["HEADER_RESULTS", "IntakeGate", "Screened"]

# volley_unsubscribe_headers_total{result}: added; present (the sender set its own);
# several_recipients (an entry with more than one: no header); unusable (no From domain
# nor envelope sender to name in the token, or a field a token cannot carry).
HEADER_RESULTS = ("added", "present", "several_recipients", "unusable")


@dataclass(frozen=True, slots=True)
class Screened:
    keep: list[str]  # recipients to queue, in order
    hits: list[Hit]  # the suppressed ones
    sender_domain: str | None
    fields: MessageFields


class IntakeGate:
    def __init__(
        self,
        check: SuppressionCheck | None,
        unsubscribe: UnsubscribeSettings | None = None,
        ring: Keyring | None = None,
    ) -> None:
        self.check = check
        self._unsub = unsubscribe if ring is not None else None
        self._ring = ring

    @classmethod
    def for_settings(cls, settings: Settings, *, check: bool = True) -> IntakeGate:
        """A worker's gate: the list read-only from `<spool>/suppression.db` (which the
        supervisor made before starting workers) and, with `[unsubscribe]`, the keys
        of `secret_file` (raises OSError / ValueError when they cannot be read)."""
        reader = SqliteSuppressionReader(db_path(settings.spool_path)) if check else None
        ring = None
        if settings.unsubscribe is not None:
            ring = load_keyring(Path(settings.unsubscribe_secret_path))
        return cls(
            SuppressionCheck(reader) if reader is not None else None, settings.unsubscribe, ring
        )

    @property
    def ring(self) -> Keyring | None:
        """The `[unsubscribe]` keys (None when not configured): the mailto route
        verifies its tokens with them too."""
        return self._ring

    @property
    def mailto(self) -> str | None:
        return self._unsub.mailto if self._unsub is not None else None

    def close(self) -> None:
        if self.check is not None:
            self.check.reader.close()

    def screen(self, wire: bytes, sender: str, recipients: Sequence[str], now: float) -> Screened:
        """Raises engine.suppress.store.StoreError when the list cannot be read: the
        message must then wait (never be queued unchecked)."""
        fields = read_fields(wire)
        domain = fields.from_domain or _domain(sender)
        if self.check is None:
            return Screened(list(recipients), [], domain, fields)
        keep, hits = self.check.split(domain, recipients, now)
        return Screened(keep, hits, domain, fields)

    def stamp(self, wire: bytes, rcpts: Sequence[str], screened: Screened) -> tuple[bytes, str]:
        """One entry's copy of the message, and what was done (HEADER_RESULTS; "" when
        `[unsubscribe]` is not configured)."""
        u, ring = self._unsub, self._ring
        if u is None or ring is None:
            return wire, ""
        if screened.fields.has_list_unsubscribe:
            return wire, "present"
        if len(rcpts) != 1:
            return wire, "several_recipients"
        if not screened.sender_domain:
            return wire, "unusable"
        try:
            key = address_key(rcpts[0])
            token = make_token(ring, key, screened.sender_domain, screened.fields.list_id)
        except (BadEntry, ValueError):
            return wire, "unusable"
        return add_unsubscribe(wire, unsubscribe_url(u.url_base, token), u.mailto, token), "added"


def _domain(sender: str) -> str | None:
    if not sender:
        return None
    try:
        return domain_of(sender)
    except ValueError:
        return None
