"""engine.smtp.transaction: the per-transaction record (filled by the protocol, read by the
classifier); the protocol's tests drive it through whole exchanges."""

from __future__ import annotations

from engine.smtp.replies import Reply
from engine.smtp.transaction import TransactionReplies, Txn

OK = Reply(250, ("2.1.5 OK",))
NO = Reply(550, ("5.1.1 no such user",))


def test_accepted_counts_2xx_rcpt_replies_only() -> None:
    r = TransactionReplies(OK, (OK, NO, None, OK), Reply(354, ("go",)), None)
    assert r.accepted == 2
    assert not r.delivered and not r.complete


def test_delivered_means_a_2xx_to_end_of_data() -> None:
    assert TransactionReplies(OK, (OK,), Reply(354, ("go",)), OK, complete=True).delivered
    assert not TransactionReplies(OK, (OK,), Reply(354, ("go",)), NO).delivered


def test_a_snapshot_copies_what_arrived_so_far() -> None:
    txn = Txn(2, b"body\r\n")
    txn.written = True
    txn.mail = OK
    txn.rcpts[0] = OK
    snap = txn.snapshot(complete=False)
    txn.rcpts[1] = NO  # later replies do not change an earlier snapshot
    assert snap == TransactionReplies(OK, (OK, None), None, None, None, False)


def test_a_transaction_never_written_says_so_and_where_none_was_cut() -> None:
    snap = Txn(1, b"body\r\n").snapshot(complete=False)
    assert not snap.sent and snap.cut_at is None and snap.mail is None
