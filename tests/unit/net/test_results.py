"""engine.net.results: a transaction's failure worded for that transaction — in the phase
it was cut at, before it was sent, or the server's refusal when the transport is fine."""

from __future__ import annotations

from engine.model import FailureKind, Phase, Reply, TransportFailure
from engine.net.results import txn_result
from engine.smtp import ClientProtocol, Command, TransactionReplies

OK = Reply(250, ("ok",))
LOST = TransportFailure(Phase.BODY, FailureKind.CLOSED, "connection lost")


def replies(**kw: object) -> TransactionReplies:
    fields: dict[str, object] = {"mail": None, "rcpts": (None,), "data": None, "final": None}
    fields.update(kw)
    return TransactionReplies(**fields)  # type: ignore[arg-type]


def test_the_connections_failure_in_the_phase_each_transaction_was_cut_at() -> None:
    proto = ClientProtocol()
    oldest = txn_result(replies(mail=OK, rcpts=(OK,), cut_at=Command.END_OF_DATA), LOST, proto)
    assert oldest.failure == TransportFailure(Phase.BODY, FailureKind.CLOSED, "connection lost")
    behind = txn_result(replies(cut_at=Command.MAIL), LOST, proto)
    assert behind.failure is not None and behind.failure.phase is Phase.MAIL
    unsent = txn_result(replies(sent=False), LOST, proto)
    assert unsent.failure is not None and unsent.failure.phase is Phase.MAIL
    assert "before this transaction was sent" in unsent.failure.detail


def test_complete_or_delivered_needs_no_failure_and_a_refused_rset_is_one() -> None:
    proto = ClientProtocol()
    done = replies(mail=OK, rcpts=(OK,), data=Reply(354, ("go",)), final=OK, complete=True)
    assert txn_result(done, None, proto).failure is None
    refused = txn_result(replies(rset=Reply(500, ("what",))), None, proto)
    assert refused.failure == TransportFailure(
        Phase.RSET, FailureKind.PROTOCOL, "RSET refused: 500 what"
    )
    unsent = txn_result(replies(sent=False), None, proto)
    assert unsent.failure is not None and "session ended (before" in unsent.failure.detail
