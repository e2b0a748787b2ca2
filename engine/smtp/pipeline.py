"""The client's mail transactions on one connection, pipelined across transactions (RFC 2920).

Responsible for: beginning transactions (encoding MAIL/RCPT/DATA first, so a bad address
never leaves a half-sent one), the queue of transactions begun and not finished, writing
the next one's MAIL, RCPTs and DATA right behind the previous one's "." (DATA ends a group,
and the content may open the next one: RFC 2920 §3.1), recording each reply in the
transaction it answers, and the cleanup rules (a lone "." after a 354 with no accepted
RCPT; RSET in front of the next MAIL after a transaction that ended before its ".").
Not responsible for: the session's other commands, matching replies to commands, or the
reply and extension limits (engine.smtp.protocol, whose `ClientProtocol` this mixin is
part of), nor how many transactions a caller keeps in flight (`smtp.pipeline_depth`,
engine.runtime.delivery).

Theory of operation.  Transactions leave in order; replies come back in order, so every
reply belongs to the oldest transaction not finished (`_txns[0]`), and a transaction's
commands are contiguous in the outstanding queue (`Txn.pending` of them).  A transaction
is *written* when its commands join the outstanding queue (its bytes go out with the next
`data_to_send`), else *staged*: it waits while the newest written one's DATA is
unanswered, since nothing may follow a DATA before its 354 (the content must come next).
The 354 puts the content and "." out, and the staged transaction's envelope right behind
them: one write, and one round trip per message on a busy connection, where lock-step
transactions take two.  A DATA refused instead (503 or 554 after every RCPT failed, a 4xx)
sends no content; the staged transaction then goes out behind a RSET.  A 421, a close or a
protocol error ends every transaction at once: those written keep the replies they got
and name the command they were cut at, those staged report that nothing of them was sent.
Without PIPELINING there is no queue: one transaction at a time, in lock-step.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from engine.smtp import encode
from engine.smtp.errors import LocalProtocolError
from engine.smtp.replies import Reply
from engine.smtp.state import Command, State
from engine.smtp.transaction import TransactionReplies, Txn

__all__ = ["Transactions"]

# Where a next transaction may be begun while others are in flight (PIPELINING only): the
# sender's state after MAIL/RCPT/DATA or a "." were written.
_BUSY = frozenset({State.IN_TRANSACTION, State.AWAIT_DATA_DONE, State.AWAIT_RSET})


def _ok(reply: Reply) -> bool:
    return 200 <= reply.code < 300


class Transactions:
    """Mixin of engine.smtp.protocol.ClientProtocol: its mail transactions."""

    # Owned by ClientProtocol (declared here for the type checker).
    _state: State
    _outstanding: deque[Command]
    _out: list[bytes]
    _extensions: dict[str, str]

    def _send(self, command: Command) -> None: ...

    def _init_transactions(self) -> None:
        self._txns: deque[Txn] = deque()  # written, not finished; [0] gets the next reply
        self._staged: deque[Txn] = deque()  # begun, waiting to be written
        self._last_txn: TransactionReplies | None = None
        self._rset_owed = False
        self._halted = False  # a RSET was refused: start nothing more on this connection

    @property
    def rset_owed(self) -> bool:
        """The last transaction was aborted before end of data; the next one starts
        with RSET."""
        return self._rset_owed

    @property
    def in_flight(self) -> int:
        """Transactions begun and not finished (written or staged)."""
        return len(self._txns) + len(self._staged)

    def can_begin(self) -> bool:
        """Whether `start_transaction` is legal now: the session is READY and idle, or
        (PIPELINING) a transaction is in flight and the connection is sound."""
        state = self._state
        if state is State.READY and not self._outstanding:
            return True
        return (
            state in _BUSY
            and "PIPELINING" in self._extensions
            and not self._halted
            and bool(self._txns)
        )

    def transaction(self) -> TransactionReplies | None:
        """Replies of the oldest transaction in progress, else of the last one finished
        (None before any)."""
        if self._txns:
            return self._txns[0].snapshot(complete=False)
        return self._last_txn

    # ---------------------------------------------------------------- beginning

    def begin_transaction(
        self,
        sender: str,
        recipients: Sequence[str],
        body: bytes,
        *,
        body_8bit: bool = False,
        smtputf8: bool = False,
    ) -> bytes:
        """`start_transaction`, then the bytes to write now (b"" when it is staged)."""
        self.start_transaction(sender, recipients, body, body_8bit=body_8bit, smtputf8=smtputf8)
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def start_transaction(
        self,
        sender: str,
        recipients: Sequence[str],
        body: bytes,
        *,
        body_8bit: bool = False,
        smtputf8: bool = False,
    ) -> Txn:
        """Begin a mail transaction; its bytes are due (`data_to_send`) or staged.

        READY: with PIPELINING the whole group, [RSET] MAIL, every RCPT, DATA (RFC 2920
        §3.1: DATA may end a group); without it only the first command, the rest one
        reply at a time.  While other transactions are in flight (PIPELINING only,
        `can_begin()`): right behind the newest one's "." once its 354 has come, or at
        once when it has.  The content follows its own 354.  SIZE=len(body) is added when
        the server offers SIZE, and BODY=8BITMIME when `body_8bit` and it offers 8BITMIME.

        Args:
            sender: reverse-path; "" for the null sender <>.
            recipients: forward-paths, at least one.
            body: content in wire form (engine.smtp.encode.wire_body): CRLF line ends,
                dot-stuffed, ending in CRLF, without the final ".\\r\\n".
            body_8bit: the content has bytes > 127.
            smtputf8: an address is non-ASCII; the server must offer SMTPUTF8.

        Returns:
            The transaction's record, whose `done` and `result` say when and how it ended.

        Raises:
            LocalProtocolError: not `can_begin()`, no recipients, an address that cannot
                be sent, a body not ending in CRLF, or SMTPUTF8 needed but not offered.
                Nothing was produced and the state is unchanged.
        """
        if not self.can_begin():
            raise LocalProtocolError(f"cannot start a transaction in state {self._state.value}")
        if not recipients:
            raise LocalProtocolError("a transaction needs at least one recipient")
        if body and body[-2:] != b"\r\n":
            # Without the CRLF the "." would not start a line: the server would wait
            # for end of data until our data_done timeout.
            raise LocalProtocolError("body is not in wire form (must end with CRLF)")
        extensions = self._extensions
        if smtputf8 and "SMTPUTF8" not in extensions:
            raise LocalProtocolError("non-ASCII addresses need SMTPUTF8, not offered")
        # Encode everything first: a bad address must not leave a half-sent transaction
        # (aiosmtplib's UnicodeEncodeError after MAIL, dependency-facts §1.2).
        mail = _mail_line(
            sender,
            len(body) if "SIZE" in extensions else None,
            body_8bit and "8BITMIME" in extensions,
            smtputf8,
        )
        rcpts = [encode.rcpt_to(r, smtputf8=smtputf8) for r in recipients]
        txn = Txn(len(recipients), body)
        if "PIPELINING" not in extensions:
            self._txns.append(txn)
            self._write_lockstep(txn, mail, rcpts)
            return txn
        txn.envelope = b"".join((mail, *rcpts, _DATA))
        self._staged.append(txn)
        self._release()
        return txn

    def _release(self) -> None:
        """Write the oldest staged transaction if nothing it must wait for is unanswered:
        READY and idle, or the newest written transaction's "." is out.  One at a time:
        the one written is then waiting for its own 354."""
        state = self._state
        if not self._staged or self._halted:
            return
        if not (state is State.AWAIT_DATA_DONE or (state is State.READY and not self._outstanding)):
            return
        txn = self._staged.popleft()
        self._txns.append(txn)
        txn.written = True
        send = self._send
        if self._rset_owed:
            self._rset_owed = False
            txn.rset_sent = True
            send(Command.RSET)
            self._out.append(_RSET)
        send(Command.MAIL)
        for _ in txn.rcpts:
            send(Command.RCPT)
        send(Command.DATA)
        txn.pending = len(txn.rcpts) + 2 + txn.rset_sent
        self._out.append(txn.envelope)

    def _write_lockstep(self, txn: Txn, mail: bytes, rcpts: list[bytes]) -> None:
        """Without PIPELINING: the first command now, the rest one per reply."""
        txn.written = True
        queue = txn.queue
        if self._rset_owed:
            self._rset_owed = False
            txn.rset_sent = True
            queue.append((Command.RSET, _RSET))
        queue.append((Command.MAIL, mail))
        queue.extend((Command.RCPT, line) for line in rcpts)
        queue.append((Command.DATA, _DATA))
        command, line = queue.popleft()
        self._send(command)
        txn.pending = 1
        self._out.append(line)

    # ---------------------------------------------------------------- replies

    def _txn_reply(self, txn: Txn, command: Command, reply: Reply) -> bool:
        """Record a reply of `txn` (the oldest in flight) and react to it (RFC 2920
        rules); finish `txn` when it was its last.  Returns False when the server's
        state is unknown (a RSET sent ahead of it was refused)."""
        txn.pending -= 1
        if command is Command.MAIL:
            txn.mail = reply
            txn.mail_ok = _ok(reply)
        elif command is Command.RCPT:
            index = txn.rcpt_seen
            txn.rcpt_seen += 1
            if txn.mail_ok:
                txn.rcpts[index] = reply
                if _ok(reply):
                    txn.accepted += 1
        elif command is Command.DATA:
            if txn.accepted:
                txn.data = reply
            if reply.code == 354:
                # RFC 2920 §3.1: after a 354 the client must send content or at least
                # the ".", even when no RCPT was accepted.
                txn.eod_sent = True
                if txn.accepted:
                    txn.content_sent = True
                    self._out.append(txn.body + encode.END_OF_DATA)
                else:
                    self._out.append(encode.END_OF_DATA)
                self._send(Command.END_OF_DATA)
                txn.pending += 1
        elif command is Command.END_OF_DATA:
            if txn.content_sent:
                txn.final = reply
        elif command is Command.RSET:
            txn.rset = reply
            if not _ok(reply):
                txn.rset_refused = True
                self._halted = True
                txn.queue.clear()  # lock-step: never start MAIL on an unknown state
        clean = not txn.rset_refused
        if txn.pending or reply.code == 421:
            return clean  # more replies due (a 421 ends everything: ClientProtocol)
        if txn.queue:
            self._lockstep_next(txn)
            if txn.pending:
                return clean
        self._txns.popleft()
        self._finish_txn(txn, clean=clean)
        return clean

    def _lockstep_next(self, txn: Txn) -> None:
        """Without PIPELINING: write the next queued command if the transaction can
        still succeed, else drop the rest."""
        command, line = txn.queue[0]
        if (
            txn.rset_refused
            or (txn.mail is not None and not txn.mail_ok)
            or (command is Command.DATA and not txn.accepted)
        ):
            txn.queue.clear()
            return
        txn.queue.popleft()
        self._send(command)
        txn.pending = 1
        self._out.append(line)

    # ---------------------------------------------------------------- ending

    def _finish_txn(self, txn: Txn, *, clean: bool) -> None:
        """Close the transaction record; owe a RSET if it ended before end of data."""
        result = txn.result = txn.snapshot(complete=clean and not txn.queue)
        txn.done = True
        self._last_txn = result
        if txn.written and not txn.eod_sent:
            self._rset_owed = True

    def _finish_all(self) -> None:
        """The connection ends (421, close, failure): finish every transaction in flight.
        Each written one names the first of its commands left unanswered; its commands
        are contiguous in the outstanding queue, `pending` of them."""
        outstanding = self._outstanding
        at = 0
        for txn in self._txns:
            if txn.pending and at < len(outstanding):
                txn.cut_at = outstanding[at]
            at += txn.pending
            self._finish_txn(txn, clean=False)
        for txn in self._staged:
            self._finish_txn(txn, clean=False)
        self._txns.clear()
        self._staged.clear()


_RSET = encode.rset()
_DATA = encode.data()
_MAIL_LINES: dict[tuple[str, int | None, bool, bool], bytes] = {}
_MAIL_LINES_MAX = 4096


def _mail_line(sender: str, size: int | None, body_8bit: bool, smtputf8: bool) -> bytes:
    """encode.mail_from, cached: bulk mail repeats one sender (sizes vary over a few
    dozen values), and validating the address is ~1.5 µs of regex per message.  Only
    lines that encoded are cached; a bad sender raises every time."""
    key = (sender, size, body_8bit, smtputf8)
    line = _MAIL_LINES.get(key)
    if line is None:
        line = encode.mail_from(sender, size=size, body_8bit=body_8bit, smtputf8=smtputf8)
        if len(_MAIL_LINES) >= _MAIL_LINES_MAX:
            _MAIL_LINES.clear()
        _MAIL_LINES[key] = line
    return line
