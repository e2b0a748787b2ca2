"""The suppression check every path into the queue calls: which recipients not to queue.

Responsible for: `SuppressionCheck.split` - one message's recipients, its sender domain
and the time -> the recipients to queue and, for each suppressed one, the entry that
suppresses it (`Hit`) - with one query per message (every recipient's address and domain
key in one `IN (...)`), and the `suppressed` log record of a hit (`record_fields`).
Callers: drop intake (engine.runtime.intake, for drops and so volley-sendmail) and the
SMTP listener (the lead wires `split` into its group commit: the RCPT was accepted, so a
client cannot probe the list; the message goes to the others).
Not responsible for: deciding the sender domain (the caller passes the From domain:
engine.unsubscribe.headers.read_fields), writing the log, or keeping entries
(engine.suppress.store).

Cost: 8.5 µs per single-recipient message that misses a 1 000 000-entry list, 3.4 µs
per recipient of a 10-recipient one (bench/suppress_check.py, bench/README.md): 2.6 %
of a core at ~3 000 msg/s per worker.  No cache: a cache would have to be told of every
addition (an unsubscribe must apply at once), and the lookup is already two B-tree
probes; the list's size hardly shows (8.0 µs when empty).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.suppress.model import BadEntry, Entry, address_key, scopes_of, winner
from engine.suppress.store import SuppressionReader

__all__ = ["Hit", "SuppressionCheck", "record_fields"]


@dataclass(frozen=True, slots=True)
class Hit:
    """Recipient `recipient` is not queued because of `entry`."""

    recipient: str
    entry: Entry


class SuppressionCheck:
    def __init__(self, reader: SuppressionReader) -> None:
        self.reader = reader

    def split(
        self, sender_domain: str | None, recipients: Sequence[str], now: float
    ) -> tuple[list[str], list[Hit]]:
        """(recipients to queue, in order; the suppressed ones with their entries).
        Raises engine.suppress.store.StoreError when the list cannot be read: the caller
        must then not queue the message (keep it for a later try), never send it
        unchecked."""
        keys: dict[str, str] = {}  # recipient -> its address key
        wanted: list[str] = []
        for r in recipients:
            try:
                k = address_key(r)
            except BadEntry:
                continue  # intake validated it; an unkeyable address cannot be listed
            keys[r] = k
            wanted.append(k)
            wanted.append(k.rpartition("@")[2])
        found = self.reader.lookup(list(dict.fromkeys(wanted)))
        if not found:
            return list(recipients), []
        by_key: dict[str, list[Entry]] = {}
        for f in found:
            by_key.setdefault(f.key, []).append(f)
        scopes = scopes_of(sender_domain)
        keep: list[str] = []
        hits: list[Hit] = []
        for r in recipients:
            key = keys.get(r)
            if key is None:
                keep.append(r)
                continue
            candidates = by_key.get(key, []) + by_key.get(key.rpartition("@")[2], [])
            e = winner(candidates, scopes, now) if candidates else None
            if e is None:
                keep.append(r)
            else:
                hits.append(Hit(r, e))
        return keep, hits


def record_fields(hit: Hit, sender: str, sender_domain: str | None) -> dict[str, Any]:
    """The fields of a `suppressed` log record (beside msgid, drop or client, which the
    caller knows): the recipient and the entry that caused it."""
    e = hit.entry
    return {
        "rcpt": hit.recipient,
        "sender": sender,
        "sender_domain": sender_domain,
        "entry": e.key,
        "scope": e.scope,
        "source": e.source.value,
        "reason": e.reason,
        "since": e.created,
        "expires": e.expires,
    }
