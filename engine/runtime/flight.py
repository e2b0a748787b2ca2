"""One entry in flight on a connection: its transactions, started now, awaited later.

Responsible for: `Flight`, what delivery keeps for an entry between starting its
transaction and recording its outcome (with `smtp.pipeline_depth` above 1 the connection
carries several: the next entries' transactions leave behind this one's content, RFC
2920), splitting an entry's recipients into transactions, and starting one transaction on
a session: the Transaction value, the checks that refuse before sending (SIZE, SMTPUTF8,
an address the encoder refuses), and the verdicts for recipients that never went out.
Not responsible for: which entries a connection takes, waiting for results, or recording
outcomes (engine.runtime.delivery), what replies mean (engine.sched.classify), or the
protocol (engine.net.session, engine.smtp).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.config.dkim import DkimDomain
from engine.model import Disposition, Origin, RecipientOutcome, Transaction
from engine.net.session import SmtpSession
from engine.runtime.sevenbit import body_for
from engine.sched.classify import precheck, refuse_unsendable
from engine.smtp import LocalProtocolError
from engine.smtp.encode import needs_smtputf8
from engine.smtp.transaction import Txn
from spool import EntryRef

__all__ = ["Flight", "closed_before", "local_error", "recipient_batches", "start_batch"]

Pending = tuple[Transaction, Txn]  # a transaction on the wire and the session's handle


@dataclass(slots=True)
class Flight:
    """An entry taken by a connection, from its first transaction's start to its outcome.

    `pending` is the transaction on the wire (None: nothing to wait for), `rest` the
    recipient batches not yet started (an entry over max_recipients_per_transaction:
    started one after another, each once the previous one's result is in), `outcomes`
    every verdict so far.
    """

    ref: EntryRef
    meta: dict[str, Any]
    body: bytes
    rest: list[list[str]]
    outcomes: list[RecipientOutcome] = field(default_factory=list)
    pending: Pending | None = None
    started: float = 0.0  # perf_counter() when `pending` was started


def recipient_batches(rcpts: list[str], size: int) -> list[list[str]]:
    """An entry's recipients, `size` per transaction, in order."""
    if len(rcpts) <= size:
        return [rcpts]
    return [rcpts[i : i + size] for i in range(0, len(rcpts), size)]


def start_batch(
    session: SmtpSession,
    meta: dict[str, Any],
    body: bytes,
    rcpts: list[str],
    dkim: tuple[DkimDomain, ...] = (),
) -> tuple[list[RecipientOutcome], Pending | None]:
    """Start one transaction for `rcpts` on `session` (behind those in flight).

    Returns the verdicts known without sending (the server's SIZE or missing SMTPUTF8,
    addresses the encoder refuses, a session that can take nothing more) and the
    transaction started for the rest, if any.

    Raises:
        LocalProtocolError: refused with no address to blame (our bug).
    """
    sender: str = meta["sender"]
    # A server without 8BITMIME gets a 7-bit copy (re-signed), or a 5.6.3 when the
    # message cannot be converted (engine.runtime.sevenbit, RFC 6152 §3).
    sent, body_8bit, why = body_for(body, meta, session.supports("8BITMIME"), dkim)
    smtputf8 = bool(meta.get("smtputf8"))
    if smtputf8 and not session.supports("SMTPUTF8"):
        # Entries queued before needs_smtputf8 existed say "smtputf8" for a non-ASCII
        # domain too; only a non-ASCII local part really needs it (issue #14, #7).
        smtputf8 = needs_smtputf8(sender) or any(map(needs_smtputf8, rcpts))
    txn = Transaction(
        sender=sender,
        recipients=tuple(rcpts),
        body=sent,
        body_8bit=body_8bit,
        smtputf8=smtputf8,
    )
    refused = precheck(
        txn,
        smtputf8=session.supports("SMTPUTF8"),
        size_limit=session.size_limit,
        unconvertible=why,
    )
    if refused is not None:
        return refused, None
    if not session.can_start():
        return closed_before(rcpts), None
    try:
        return [], (txn, session.start(txn))
    except LocalProtocolError:
        # An address the encoder refuses (intake refuses those now: an entry from an
        # older version).  Nothing was sent; fail those addresses, send the rest.
        split = refuse_unsendable(txn)
        if split is None:
            raise
        bad, rest = split
        if not rest:
            return bad, None
        more, pending = start_batch(session, meta, body, list(rest), dkim)
        return bad + more, pending


def closed_before(rcpts: list[str]) -> list[RecipientOutcome]:
    """Deferrals for recipients whose transaction the connection could no longer take."""
    detail = "connection closed before this transaction"
    return [
        RecipientOutcome(r, Disposition.DEFERRED, 451, "4.4.2", detail, Origin.CONNECTION, "closed")
        for r in rcpts
    ]


def local_error(rcpts: list[str], exc: BaseException) -> list[RecipientOutcome]:
    """Deferrals for recipients whose transaction met a bug of ours."""
    detail = f"local error: {type(exc).__name__}: {exc}"
    return [
        RecipientOutcome(r, Disposition.DEFERRED, 451, "4.3.0", detail, Origin.LOCAL) for r in rcpts
    ]
