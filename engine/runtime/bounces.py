"""Bounce reports: one DSN per failed message, listing every recipient that failed.

Responsible for: turning a message's failed (bounced or expired) recipients into an RFC
3464 report to its sender, queued as a spool entry of its own (null sender, `dsn` in its
meta), and gathering into that one report the failures of the message's other entries
(Volley queues a message as one entry per destination domain) that come within
`dsn.hold` seconds: the report waits that long before it is sent, and each sibling's
failure rewrites it (durably, before the failed entry is removed) with the longer list.
Not responsible for: deciding who failed (engine.sched.classify), the report's bytes
(engine.dsn), or when the failed entry leaves the queue (engine.runtime.outcome).

Before, each destination domain of a message sent its own report: a newsletter to three
dead domains gave the sender three bounces for one message (issue #9).  The gathering is
a convenience, not a promise: siblings that fail after the hold, or after a restart (what
is gathered lives in this worker's memory; the report itself is durable), get a report of
their own, as Postfix sends one per delivery round.

A report stops gathering once it is taken for delivery (`seal`): what was sent is what
the spool holds.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.config import Settings
from engine.drop import domain_of
from engine.dsn import FailedRecipient, build_dsn
from engine.model import Disposition, RecipientOutcome
from engine.sched.queue import WorkQueue
from engine.smtp.encode import needs_smtputf8, wire_body
from engine.telemetry.eventlog import EventLog
from engine.telemetry.metrics import Tally
from spool import EntryRef, NewEntry, ShardQueue, entry_id, random_salt

__all__ = ["BounceReports", "diagnostic_code"]


@dataclass(slots=True)
class _Gathering:
    """A queued report still waiting for its message's other failures."""

    ref: EntryRef  # the report's spool entry
    meta: dict[str, Any]
    failed: list[FailedRecipient]
    headers: bytes  # the original message's header section
    arrival: float  # when the original message was queued
    until: float  # when the report is due; it gathers until then


class BounceReports:
    def __init__(
        self,
        settings: Settings,
        shard: ShardQueue,
        queue: WorkQueue,
        log: EventLog,
        tally: Tally,
    ) -> None:
        self._settings = settings
        self._shard = shard
        self._queue = queue
        self._log = log
        self._tally = tally
        self._gathering: OrderedDict[str, _Gathering] = OrderedDict()  # message key -> report
        self._keys: dict[str, str] = {}  # report entry name -> message key

    def reconfigure(self, settings: Settings) -> None:
        self._settings = settings

    def report(
        self,
        ref: EntryRef,
        meta: dict[str, Any],
        body: bytes,
        failed: Sequence[RecipientOutcome],
        mx: str | None,
        now: float,
    ) -> None:
        """Report `failed` recipients of entry `ref` to its sender: added to the message's
        report still gathering, else in a new one.  Durable on return.  The caller has
        checked that a report is due (a sender, not itself a report, DSNs enabled)."""
        sender = str(meta["sender"])
        try:
            domain = domain_of(sender)
        except ValueError:
            # Cannot happen for drops (engine.drop validates senders); never crash on it.
            self._log.add("dsn_skipped", now, id=ref.id, rcpt=sender, reason="invalid sender")
            return
        self._forget_due(now)
        items = [_failed(o, mx) for o in failed]
        key = str(meta.get("msg") or ref.id)  # entries queued before "msg" existed: alone
        gathering = self._gathering.get(key)
        if gathering is not None:
            gathering.failed.extend(items)
            body = self._build(gathering, now)
            self._shard.rewrite(gathering.ref, gathering.meta, body, gathering.until)
            self._log.add("dsn_merged", now, id=gathering.ref.id, about=ref.id, rcpts=len(items))
            return
        helo = self._settings.helo_name
        eid = entry_id(int(now * 1e9), random_salt())
        end = body.find(b"\r\n\r\n")
        gathering = _Gathering(
            ref=EntryRef("", domain, now),  # set below, once the entry exists
            meta={
                "v": 1,
                "sender": "",
                "rcpts": [sender],
                "domain": domain,
                "created": now,
                "attempts": 0,
                "msgid": f"<{eid}@{helo}>",
                "smtputf8": needs_smtputf8(sender),
                "8bit": False,
                "dsn": True,
                "drop": None,
                "about": ref.id,
            },
            failed=items,
            headers=body[: end + 2] if end >= 0 else body,
            arrival=float(meta["created"]),
            until=now + self._settings.dsn_hold,
        )
        item = NewEntry(eid, domain, gathering.meta, self._build(gathering, now), gathering.until)
        (gathering.ref,) = self._shard.add([item])
        self._queue.add(gathering.ref, gathering.until, now)
        if self._settings.dsn_hold > 0:
            self._gathering[key] = gathering
            self._keys[gathering.ref.name] = key
        self._tally.inc("volley_dsns")
        self._log.add(
            "dsn",
            now,
            id=eid,
            about=ref.id,
            rcpt=sender,
            domain=domain,
            msgid=gathering.meta["msgid"],
        )

    def seal(self, name: str) -> None:
        """Entry `name` is being delivered (or otherwise acted on): if it is a report,
        it gathers nothing more."""
        key = self._keys.pop(name, None)
        if key is not None:
            self._gathering.pop(key, None)

    def _forget_due(self, now: float) -> None:
        """Reports due by now gather no more (oldest first: `until` grows with insertion)."""
        gathering = self._gathering
        while gathering:
            key, first = next(iter(gathering.items()))
            if first.until > now:
                return
            del gathering[key]
            self._keys.pop(first.ref.name, None)

    def _build(self, g: _Gathering, now: float) -> bytes:
        helo = self._settings.helo_name
        return wire_body(
            build_dsn(
                reporting_mta=helo,
                original_sender=g.meta["rcpts"][0],
                original_message=g.headers,
                failed=g.failed,
                arrival_date=g.arrival,
                now=now,
                message_id=g.meta["msgid"],
            )
        )


def diagnostic_code(o: RecipientOutcome) -> str:
    """RFC 3464 §2.3.6 Diagnostic-Code for an outcome: `smtp; <code> <text>` for what a
    server said (its text already starts with the enhanced code, which is not repeated),
    `X-Volley; <text>` for what Volley decided itself (DNS failures, addresses it cannot
    send, expiry)."""
    if not o.remote:
        return f"X-Volley; {o.text}"
    text = o.text if o.text.startswith(o.enhanced) else f"{o.enhanced} {o.text}"
    return f"smtp; {o.code} {text}".rstrip()


def _failed(o: RecipientOutcome, mx: str | None) -> FailedRecipient:
    expired = o.disposition is Disposition.EXPIRED
    return FailedRecipient(
        recipient=o.recipient,
        status="5.4.7" if expired else _permanent(o.enhanced),
        diagnostic=diagnostic_code(o),
        remote_mta=mx if o.remote else None,
        category=o.classification.category.value if o.classification else None,
    )


def _permanent(enhanced: str) -> str:
    """A DSN with Action: failed carries a 5.x.x status (RFC 3464 §2.3.4)."""
    return "5" + enhanced[1:] if enhanced[:1] in ("4", "5") else "5.0.0"
