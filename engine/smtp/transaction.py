"""The record of one SMTP transaction: what the server said, and the bookkeeping behind it.

Responsible for: `TransactionReplies` (the value engine.sched.classify reads), `ReplyEvent`
(a reply and the command it answers) and the mutable per-transaction state that
engine.smtp.protocol.ClientProtocol fills in as replies arrive.
Not responsible for: matching replies to commands or deciding what to send (the protocol),
or what a reply means for a message (engine.sched.classify).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from engine.smtp.replies import Reply
from engine.smtp.state import Command

__all__ = ["ReplyEvent", "TransactionReplies", "Txn"]


@dataclass(frozen=True, slots=True)
class ReplyEvent:
    """A reply and the command it answers (None: unsolicited, e.g. an idle-time 421)."""

    command: Command | None
    reply: Reply


@dataclass(frozen=True, slots=True)
class TransactionReplies:
    """What the server said during one transaction.

    A slot is None when that reply was never received, and also when it only echoes an
    earlier refusal under PIPELINING: RCPT replies after a refused MAIL, and the DATA and
    end-of-data replies when no RCPT was accepted (typically "503 need RCPT").  Postfix
    (smtp_proto.c) ignores those replies too; the result is then the same with and
    without PIPELINING, and a classifier never bounces a message on a 503 we caused.
    """

    mail: Reply | None
    rcpts: tuple[Reply | None, ...]  # one slot per recipient, in order
    data: Reply | None  # reply to DATA (354 expected)
    final: Reply | None  # reply to end of data
    rset: Reply | None = None  # reply to a RSET sent ahead of this transaction
    complete: bool = False  # every reply the transaction needed has arrived
    # When it ended early: the first of its commands whose reply never came (None: none
    # was outstanding, or nothing was written), and whether any of its bytes were written
    # (False: it waited behind another transaction of the pipeline, RFC 2920, and the
    # connection ended first).  engine.net.session words the failure from these.
    cut_at: Command | None = None
    sent: bool = True

    @property
    def accepted(self) -> int:
        """Recipients the server accepted (2xx to RCPT)."""
        return sum(1 for r in self.rcpts if r is not None and 200 <= r.code < 300)

    @property
    def delivered(self) -> bool:
        """The server took responsibility for the message (2xx to end of data)."""
        return self.final is not None and 200 <= self.final.code < 300


class Txn:
    """Mutable bookkeeping of one transaction, from `start_transaction` to its last reply.

    Also the caller's handle: `done` turns True once, when `result` is set.
    """

    __slots__ = (
        "accepted",
        "body",
        "content_sent",
        "cut_at",
        "data",
        "done",
        "envelope",
        "eod_sent",
        "final",
        "mail",
        "mail_ok",
        "pending",
        "queue",
        "rcpt_seen",
        "rcpts",
        "result",
        "rset",
        "rset_refused",
        "rset_sent",
        "written",
    )

    def __init__(self, n_rcpts: int, body: bytes) -> None:
        self.body = body
        self.mail: Reply | None = None
        self.mail_ok = False
        self.rcpts: list[Reply | None] = [None] * n_rcpts
        self.rcpt_seen = 0
        self.accepted = 0
        self.data: Reply | None = None
        self.final: Reply | None = None
        self.rset: Reply | None = None
        self.rset_refused = False
        self.content_sent = False  # the content went out (not a lone ".")
        self.eod_sent = False  # a "." went out: the server's transaction is over
        # Lock-step only: commands not yet written, sent one per reply.
        self.queue: deque[tuple[Command, bytes]] = deque()
        self.envelope = b""  # MAIL, every RCPT and DATA, encoded (PIPELINING)
        self.pending = 0  # its commands written (or due to be) whose reply has not come
        self.written = False  # its first command went out (not waiting behind another)
        self.rset_sent = False  # a RSET went out in front of its MAIL
        self.cut_at: Command | None = None
        self.done = False
        self.result: TransactionReplies | None = None

    def snapshot(self, complete: bool) -> TransactionReplies:
        return TransactionReplies(
            self.mail,
            tuple(self.rcpts),
            self.data,
            self.final,
            self.rset,
            complete,
            self.cut_at,
            self.written,
        )
