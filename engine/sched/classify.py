"""The one place that decides what a delivery attempt's facts mean (Postfix smtp_trouble.c).

Responsible for: turning route failures, connection failures, capability mismatches and
transaction results into one `RecipientOutcome` per recipient (delivered, deferred or
bounced, with the code and text that justify it), and expiring deferrals past max_age.
Not responsible for: any I/O, timing of retries (engine.sched.backoff), or applying the
verdict to the spool (engine.runtime.outcome).

Rules worth knowing:
- A temporary problem never bounces: DNS SERVFAIL/timeouts, 4xx, refused or dropped
  connections, timeouts, cancellations are all DEFERRED.  So is any refusal before the
  session is ready, 5xx greetings included (see classify_connect_failure).
- Only 2xx is success: a reply of a class the command cannot get (a 3xx to MAIL, a 250
  to DATA) never delivers; engine.smtp breaks the session on it and the recipients
  are deferred.
- 503 "bad sequence of commands" is never taken as a verdict on the message: it means
  the session went out of step (aiosmtplib's "503 nested MAIL" after a cancellation,
  dependency-facts §1.2); bouncing on it would bounce good mail.  It defers.
- A 5xx reply to a recipient is final for that recipient even if the connection broke
  afterwards; accepted recipients whose end-of-data reply never came are DEFERRED
  (the message may then be delivered twice: at-least-once).
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.model import (
    ConnectFailure,
    Disposition,
    FailureKind,
    Origin,
    Phase,
    RecipientOutcome,
    Reply,
    RouteFailure,
    RouteFailureKind,
    Transaction,
    TransportFailure,
    TxnResult,
)
from engine.smtp import LocalProtocolError, encode

__all__ = [
    "classify_connect_failure",
    "classify_route_failure",
    "classify_txn",
    "expire",
    "precheck",
    "refuse_unsendable",
]

_BAD_SEQUENCE = 503

# Synthesised replies for problems the remote server did not word itself.
_ROUTE: dict[RouteFailureKind, tuple[Disposition, int, str, str]] = {
    # RFC 7505 §4.2: a domain publishing a null MX accepts no mail -> 556 5.1.10.
    RouteFailureKind.NULL_MX: (
        Disposition.BOUNCED,
        556,
        "5.1.10",
        "domain does not accept mail (null MX)",
    ),
    RouteFailureKind.NO_SUCH_DOMAIN: (Disposition.BOUNCED, 550, "5.1.2", "domain not found"),
    RouteFailureKind.NO_ROUTE: (
        Disposition.BOUNCED,
        550,
        "5.4.4",
        "no mail exchanger has an address",
    ),
    # Postfix: "mail for X loops back to myself" (status 5.4.6, RFC 3463 "routing loop").
    RouteFailureKind.LOOP: (Disposition.BOUNCED, 554, "5.4.6", "mail loops back to myself"),
    RouteFailureKind.TEMPORARY: (
        Disposition.DEFERRED,
        451,
        "4.4.3",
        "DNS lookup failed temporarily",
    ),
    # RFC 8461 §5.1: "enforce" -> never deliver to an MX host the policy does not list;
    # deferred (the policy may be fixed: §5.1 wants a fresh policy checked before any
    # permanent failure).  X.7.5 as Postfix for TLS policy failures.
    RouteFailureKind.POLICY: (
        Disposition.DEFERRED,
        451,
        "4.7.5",
        "MTA-STS policy forbids every MX host",
    ),
}

_KIND_CODES: dict[FailureKind, tuple[str, str]] = {
    FailureKind.TIMEOUT: ("4.4.2", "timed out"),
    FailureKind.REFUSED: ("4.4.1", "connection refused or unreachable"),
    FailureKind.CLOSED: ("4.4.2", "connection lost"),
    FailureKind.PROTOCOL: ("4.5.0", "protocol error from remote"),
    FailureKind.TLS: ("4.7.5", "TLS failure"),
    # RFC 4954 §6: 535 5.7.8 is a wrong user or password, 454 4.7.0 a temporary failure.
    # Either way the relay's, not the message's: deferred, never bounced (a typo in a
    # password file must not bounce every message; the mail expires after max_age).
    FailureKind.AUTH: ("4.7.8", "authentication failed"),
    FailureKind.CANCELLED: ("4.3.0", "attempt interrupted locally"),
    FailureKind.LOCAL: ("4.3.0", "local error"),
}


def _outcomes(
    rcpts: Sequence[str],
    disp: Disposition,
    code: int,
    enhanced: str,
    text: str,
    origin: Origin,
    kind: str = "",
) -> list[RecipientOutcome]:
    return [RecipientOutcome(r, disp, code, enhanced, text, origin, kind) for r in rcpts]


def _from_reply(rcpt: str, reply: Reply) -> RecipientOutcome:
    """The verdict a reply gives by itself: 2xx delivered, 5xx (but 503) bounced, and
    everything else deferred — 4xx, and a reply of a class the command cannot get
    (RFC 5321 §4.3.2: a 3xx to MAIL or to end of data is not success)."""
    code = reply.code
    if 200 <= code < 300:
        disp = Disposition.DELIVERED
    elif 500 <= code < 600 and code != _BAD_SEQUENCE:
        disp = Disposition.BOUNCED
    else:
        disp = Disposition.DEFERRED
    enhanced = reply.enhanced or f"{str(reply.code)[0]}.0.0"
    if disp is Disposition.DEFERRED and enhanced.startswith("5"):
        enhanced = "4" + enhanced[1:]
    return RecipientOutcome(rcpt, disp, reply.code, enhanced, reply.text)


def _from_failure(rcpt: str, failure: TransportFailure) -> RecipientOutcome:
    enhanced, what = _KIND_CODES[failure.kind]
    text = f"{what} during {failure.phase.value}: {failure.detail}".rstrip(": ")
    if failure.phase is Phase.BODY:
        text += " (message may have been delivered; it will be sent again)"
    return RecipientOutcome(
        rcpt, Disposition.DEFERRED, 451, enhanced, text, Origin.CONNECTION, failure.kind.value
    )


def classify_route_failure(rcpts: Sequence[str], failure: RouteFailure) -> list[RecipientOutcome]:
    """MX resolution failed: bounce only for the permanent kinds, defer the rest."""
    disp, code, enhanced, text = _ROUTE[failure.kind]
    text = f"{text}: {failure.detail}".rstrip(": ")
    return _outcomes(rcpts, disp, code, enhanced, text, Origin.ROUTE, failure.kind.value)


def classify_connect_failure(rcpts: Sequence[str], last: ConnectFailure) -> list[RecipientOutcome]:
    """No MX host of the destination would take a session; `last` is the final host's
    failure.  Always a deferral, a 5xx greeting or EHLO/HELO refusal included: such
    refusals are about the sending IP and usually temporary ("554 ... blocked using
    zen.spamhaus.org"), not about the message (Postfix's default
    smtp_skip_5xx_greeting = yes; KumoMTA: connection-time failures are transient).
    Bouncing on them once bounced a whole domain's queue (issue #14, finding 5); the
    mail expires after max_age if the block never lifts."""
    if last.reply is not None:
        reply = last.reply
        enhanced = reply.enhanced or f"{str(reply.code)[0]}.0.0"
        if enhanced[0] != "4":
            enhanced = "4" + enhanced[1:] if enhanced[0] == "5" else "4.0.0"
        text = f"{last.host}[{last.address}] refused the session: {reply}"
        return [
            RecipientOutcome(r, Disposition.DEFERRED, reply.code, enhanced, text) for r in rcpts
        ]
    failure = last.failure or TransportFailure(Phase.CONNECT, FailureKind.REFUSED, "no address")
    detail = f"{last.host}[{last.address}]: {failure.detail}" if last.address else failure.detail
    return [_from_failure(r, TransportFailure(failure.phase, failure.kind, detail)) for r in rcpts]


def precheck(
    txn: Transaction,
    *,
    smtputf8: bool,
    size_limit: int | None,
    unconvertible: str | None = None,
) -> list[RecipientOutcome] | None:
    """Refuse before sending what the server has told us it cannot take.

    `unconvertible`: the server offers no 8BITMIME and the 8-bit message cannot be made
    7-bit (engine.smtp.downgrade says why).
    """
    if txn.smtputf8 and not smtputf8:
        # RFC 6531 §3.4 / RFC 6533: X.6.7 "non-ASCII addresses not permitted".
        return _outcomes(
            txn.recipients,
            Disposition.BOUNCED,
            553,
            "5.6.7",
            "address needs SMTPUTF8 (RFC 6531) but the receiving server does not offer it",
            Origin.LOCAL,
        )
    if unconvertible is not None:
        # RFC 6152 §3: 8-bit content never goes to a server without 8BITMIME; what cannot
        # be converted is returned to the sender.  RFC 3463 X.6.3: "conversion required
        # but not supported".  Permanent: the message will not change (a later MX host
        # with 8BITMIME is possible, but KumoMTA and Postfix do not wait for one either).
        return _outcomes(
            txn.recipients,
            Disposition.BOUNCED,
            554,
            "5.6.3",
            "conversion required but not supported: the receiving server does not offer"
            f" 8BITMIME (RFC 6152) and the message cannot be made 7-bit: {unconvertible}",
            Origin.LOCAL,
        )
    if size_limit and len(txn.body) > size_limit:
        return _outcomes(
            txn.recipients,
            Disposition.BOUNCED,
            552,
            "5.3.4",
            f"message size {len(txn.body)} exceeds the server's limit of {size_limit}",
            Origin.LOCAL,
        )
    return None


def refuse_unsendable(
    txn: Transaction,
) -> tuple[list[RecipientOutcome], tuple[str, ...]] | None:
    """The encoder refused `txn` (LocalProtocolError before any byte was sent): bounce the
    addresses it cannot put on the wire and return the recipients still sendable.  None
    when no address is to blame (the caller's bug then stays an error).

    A bad sender fails every recipient (5.1.7); a bad recipient only itself (5.1.3).
    Only this error path pays for checking every address again.
    """
    try:
        if txn.sender:
            encode.check_address(txn.sender, txn.smtputf8)
    except LocalProtocolError as e:
        text = f"sender address cannot be sent over SMTP: {e}"
        bounced = _outcomes(txn.recipients, Disposition.BOUNCED, 553, "5.1.7", text, Origin.LOCAL)
        return bounced, ()
    bad: list[RecipientOutcome] = []
    rest: list[str] = []
    for rcpt in txn.recipients:
        try:
            encode.check_address(rcpt, txn.smtputf8)
        except LocalProtocolError as e:
            text = f"recipient address cannot be sent over SMTP: {e}"
            bad.append(
                RecipientOutcome(rcpt, Disposition.BOUNCED, 553, "5.1.3", text, Origin.LOCAL)
            )
        else:
            rest.append(rcpt)
    return (bad, tuple(rest)) if bad else None


def classify_txn(txn: Transaction, result: TxnResult) -> list[RecipientOutcome]:
    """One outcome per recipient of `txn` from everything the server said."""
    rcpts = txn.recipients
    failure = result.failure
    final = result.final
    if (
        len(rcpts) == 1
        and failure is None
        and final is not None
        and result.mail is not None
        and 200 <= result.mail.code < 300
        and len(result.rcpts) == 1
        and (rcpt_reply := result.rcpts[0]) is not None
        and 200 <= rcpt_reply.code < 300
        and result.data is not None
        and result.data.code == 354
    ):
        # Fast path, the bulk case: one recipient, accepted, every reply in.  The same
        # verdict the general rules below give (the final reply decides).
        return [_from_reply(rcpts[0], final)]
    if result.mail is None:
        assert failure is not None, "no MAIL reply and no failure"
        return [_from_failure(r, failure) for r in rcpts]
    if not 200 <= result.mail.code < 300:
        return [_from_reply(r, result.mail) for r in rcpts]
    out: list[RecipientOutcome | None] = []
    accepted: list[int] = []
    for i, rcpt in enumerate(rcpts):
        reply = result.rcpts[i] if i < len(result.rcpts) else None
        if reply is None:
            out.append(_from_failure(rcpt, failure) if failure else None)
        elif 200 <= reply.code < 300:
            out.append(None)
            accepted.append(i)
        else:
            out.append(_from_reply(rcpt, reply))
    # The message-level reply decides for the recipients the server accepted: the reply to
    # DATA when it was not 354 (no content went out, so it can only refuse: a 2xx there
    # defers, never delivers), else the reply to end of data.
    message_reply = result.final
    data = result.data
    refused_data = data is not None and data.code != 354
    if refused_data:
        message_reply = data
    for i in accepted:
        if message_reply is not None:
            outcome = _from_reply(rcpts[i], message_reply)
            if refused_data and outcome.disposition is Disposition.DELIVERED:
                outcome = RecipientOutcome(
                    rcpts[i], Disposition.DEFERRED, message_reply.code, "4.5.0",
                    f"unexpected reply to DATA, no content sent: {message_reply.text}",
                )  # fmt: skip
            out[i] = outcome
        else:
            lost = failure or TransportFailure(
                Phase.BODY, FailureKind.CLOSED, "no reply to end of data"
            )
            out[i] = _from_failure(rcpts[i], lost)
    missing = [rcpts[i] for i, o in enumerate(out) if o is None]
    if missing:
        raise AssertionError(f"classify_txn: no verdict for {missing}")
    return [o for o in out if o is not None]


def expire(outcome: RecipientOutcome, max_age: float) -> RecipientOutcome:
    """A deferral past max_age becomes EXPIRED; the last error stays in the text."""
    days = max_age / 86400
    age = f"{days:g} days" if days >= 1 else f"{max_age:g} seconds"
    return RecipientOutcome(
        outcome.recipient,
        Disposition.EXPIRED,
        outcome.code,
        outcome.enhanced,
        f"delivery time expired after {age}; last error: {outcome.text}",
        outcome.origin,
        outcome.kind,
    )
