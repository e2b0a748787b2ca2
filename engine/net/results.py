"""A finished transaction's record as the value delivery classifies: `TxnResult`.

Responsible for: `txn_result`, the replies a transaction got plus, when it ended early,
the failure worded for it: the connection's failure in the phase of its own first
unanswered command (with transactions pipelined, RFC 2920, the connection's phase is the
oldest one's), "before this transaction was sent" for one that waited behind another, or
the server's 421 / a refused RSET when the transport itself is fine.  So the reply slots
left empty are deferred, never bounced, and a message whose content never left is never
said to be "maybe delivered".
Not responsible for: running transactions (engine.net.session) or what the replies mean
(engine.sched.classify).
"""

from __future__ import annotations

from engine.model import FailureKind, Phase, TransportFailure, TxnResult
from engine.net.wire import XFER
from engine.smtp import ClientProtocol, TransactionReplies

__all__ = ["txn_result"]


def txn_result(
    replies: TransactionReplies, failure: TransportFailure | None, proto: ClientProtocol
) -> TxnResult:
    """`replies` with the failure that explains the slots left empty (None: complete, or
    delivered).  `failure` is the connection's own, if the transport failed."""
    if failure is not None:
        failure = _cut(replies, failure)
    elif not replies.complete and not replies.delivered:
        failure = _incomplete(proto, replies)
    return TxnResult(replies.mail, replies.rcpts, replies.data, replies.final, failure)


def _cut(replies: TransactionReplies, failure: TransportFailure) -> TransportFailure:
    """The connection's failure as one transaction of the pipeline saw it: in the phase of
    its first unanswered command (the connection's own phase is the oldest one's), or,
    for one still waiting behind another, before any byte of it was sent."""
    if not replies.sent:
        detail = f"{failure.detail} (before this transaction was sent)"
        return TransportFailure(Phase.MAIL, failure.kind, detail)
    if replies.cut_at is None:
        return failure
    return TransportFailure(XFER[replies.cut_at][0], failure.kind, failure.detail)


def _incomplete(proto: ClientProtocol, replies: TransactionReplies) -> TransportFailure:
    """Why a transaction ended early although the transport is fine, as a failure, so
    that the reply slots left empty are deferred, never bounced."""
    rset = replies.rset
    if rset is not None and rset.code // 100 != 2 and rset.code != 421:
        # The RSET owed by the previous transaction was refused: later replies may
        # describe a server state we did not intend (a "503 nested MAIL").
        return TransportFailure(Phase.RSET, FailureKind.PROTOCOL, f"RSET refused: {rset}")
    if not replies.sent:
        why = f"server closing: {proto.closing_reply}" if proto.closing_reply else "session ended"
        detail = f"{why} (before this transaction was sent)"
        return TransportFailure(Phase.MAIL, FailureKind.CLOSED, detail)
    command = replies.cut_at or proto.closing_command
    phase = XFER[command][0] if command is not None else Phase.MAIL
    return TransportFailure(phase, FailureKind.CLOSED, f"server closing: {proto.closing_reply}")
