"""What a worker reports to the suppression rules: delivery outcomes and DSNs that came back.

Responsible for: picking, among one attempt's outcomes (engine.runtime.outcome calls
`observe` once per attempt), the results the rules can use - a permanent failure of a
configured category, a failure of the soft-bounce category, and a delivery to an
address that has a soft-bounce history (which clears it) - and handing them to the
supervisor (engine.suppress.client); the same for the failed recipients of an
asynchronous bounce (`observe_report`, from worker 0's feedback processor).
Not responsible for: deciding (engine.suppress.rules, in the supervisor) or the
category itself (engine.suppress.rules.category_of: the classifier's when present).

Cost on the delivery path: a delivery is one set lookup (~0.1 µs) - the addresses with a
soft-bounce history are re-read from the list every `SOFT_REFRESH` seconds, plus those
this worker reported meanwhile; a delivery to one that another worker reported in the
last 10 s does not clear its history (the count stays a little stricter, never looser).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.config import Settings
from engine.drop.address import domain_of
from engine.model import Disposition, RecipientOutcome
from engine.suppress.client import SuppressClient
from engine.suppress.model import BadEntry, address_key
from engine.suppress.rules import category_of, fallback_category
from engine.suppress.store import StoreError, SuppressionReader

__all__ = ["SOFT_REFRESH", "BounceFeed"]

SOFT_REFRESH = 10.0  # seconds between re-reads of the addresses with a soft-bounce history


def _key(address: str) -> str | None:
    try:
        return address_key(address)
    except BadEntry:
        return None


def _domain(sender: str) -> str | None:
    try:
        return domain_of(sender) if sender else None
    except ValueError:
        return None


class BounceFeed:
    def __init__(
        self, settings: Settings, client: SuppressClient, reader: SuppressionReader
    ) -> None:
        self.s = settings
        self._client = client
        self._reader = reader
        self._soft: set[str] = set()
        self._read_at = float("-inf")

    def reconfigure(self, settings: Settings) -> None:
        self.s = settings

    def _wanted(self) -> tuple[frozenset[str], str | None]:
        s = self.s.suppression
        return frozenset(s.categories), (s.soft_bounce.category if s.soft_bounce.enabled else None)

    def observe(
        self, meta: dict[str, Any], outcomes: Sequence[RecipientOutcome], now: float
    ) -> None:
        """One attempt's outcomes of the entry whose spool meta is `meta`."""
        hard, soft = self._wanted()
        if not hard and soft is None:
            return
        if soft is not None and now - self._read_at >= SOFT_REFRESH:
            self._refresh(now)
        message = str(meta.get("msg") or meta.get("msgid") or "")
        sender_domain: str | None = None
        for o in outcomes:
            d = o.disposition
            if d is Disposition.DELIVERED:
                if self._soft:
                    k = _key(o.recipient)
                    if k is not None and k in self._soft:
                        self._soft.discard(k)
                        self._client.event(None, k, None, False, message, "", now)
                continue
            category = category_of(o)
            permanent = d in (Disposition.BOUNCED, Disposition.EXPIRED)
            if not (
                (permanent and category in hard) or (category is not None and category == soft)
            ):
                continue
            k = _key(o.recipient)
            if k is None:
                continue
            if sender_domain is None:
                sender_domain = _domain(str(meta.get("sender") or "")) or ""
            text = f"{o.code} {o.enhanced} {o.text}".strip()
            self._client.event(category, k, sender_domain or None, permanent, message, text, now)
            if category == soft:
                self._soft.add(k)

    def observe_report(
        self, failed: Sequence[tuple[str, str, str]], message: str, now: float
    ) -> None:
        """An asynchronous bounce's failed recipients: (address, status, diagnostic)."""
        hard, soft = self._wanted()
        for address, status, diagnostic in failed:
            category = fallback_category(status)
            if category is None or (category not in hard and category != soft):
                continue
            k = _key(address)
            if k is not None:
                text = f"{status} {diagnostic}".strip()
                self._client.event(category, k, None, True, message, text, now)

    def _refresh(self, now: float) -> None:
        self._read_at = now
        try:
            self._soft = set(self._reader.soft_addresses())
        except StoreError:
            pass  # keep what we had; the next refresh tries again
