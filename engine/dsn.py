"""Delivery status notifications: the bounce message (RFC 3464, RFC 6522).

Responsibilities:
  * `build_dsn`: the complete bytes (CRLF line endings) of a `multipart/report;
    report-type=delivery-status` message telling `original_sender` which recipients
    failed and why: (1) a text/plain explanation (with each failure's bounce category,
    KumoMTA's names), (2) message/delivery-status with the
    per-message and per-recipient fields, (3) text/rfc822-headers with the original
    header section, never the body;
  * keeping text that came from outside (remote replies, addresses, original headers)
    from injecting header lines or fields: control characters become spaces, values are
    length-bounded, and the report fields stay 7-bit ASCII.

Not responsible for:
  * deciding that a DSN is due, or for which recipients (engine.sched.classify);
  * queueing it: the caller queues the bytes to `original_sender` with the null
    reverse-path "" (RFC 5321 §4.5.5: a DSN is never bounced), and computes `smtputf8` /
    `body_8bit` from them as for any message;
  * DSN extension parameters (NOTIFY, RET=FULL, ORCPT): not supported in v1, so every
    report carries headers only, as RET=HDRS would.

Encoding choices:
  * non-ASCII recipients appear in Final-Recipient as `utf-8; ...` in the 7-bit
    utf-8-addr-xtext form of RFC 6533 §3 (`\\x{E9}` for "é"), as Postfix's
    `uxtext_quote()` writes them, so the report part stays ASCII;
  * a non-ASCII `original_sender` needs SMTPUTF8 anyway, so the To field is then raw UTF-8
    (RFC 6532) rather than an encoded word, which an addr-spec may not contain;
  * text parts with non-ASCII are quoted-printable: the DSN is 7-bit unless the To field
    is non-ASCII.  XXX: RFC 6533 §6.3 also defines message/global-headers for UTF-8 header
    sections; we use text/rfc822-headers with charset=utf-8 instead, which every reader
    can display.

Time is passed in (`arrival_date`, `now`); nothing here reads the clock.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import Message, MIMEPart
from email.utils import format_datetime

from engine.drop.address import validate_address

__all__ = ["ACTIONS", "FailedRecipient", "build_dsn"]

# RFC 3464 §2.3.3 action-value.
ACTIONS = frozenset({"failed", "delayed", "delivered", "relayed", "expanded"})
# RFC 3463 status-code (class.subject.detail), as RFC 3464 §2.3.4 requires.
_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
# RFC 3464 §2.3.6 diagnostic-type ";" text.  Without a type we label the text as ours.
_TYPED = re.compile(r"[A-Za-z][A-Za-z0-9-]*;")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_BYTES_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_HEADER_END = re.compile(rb"\n\r?\n")
# Bounds that keep every generated line under RFC 5322's 998: a field name (<= 20) plus
# a value of at most 900.  Remote replies are rarely over 200 characters; RFC 3461 §4.4
# caps ENVID at 100.
MAX_DIAGNOSTIC = 900
MAX_HOSTNAME = 255
MAX_ENVID = 100
# Generation policy: fold nothing under 998.  A delivery-status field holding one long
# word (an escaped address) would otherwise be folded into RFC 2047 encoded words, which
# RFC 3464 fields must not contain (measured: the default 78 did exactly that).
_GEN_LIMIT = 998


@dataclass(frozen=True, slots=True)
class FailedRecipient:
    """One recipient to report on."""

    recipient: str
    status: str  # RFC 3463 enhanced code, e.g. "5.1.1"
    diagnostic: str | None  # e.g. "smtp; 550 5.1.1 no such user" (RFC 3464 §2.3.6)
    remote_mta: str | None  # MX host name that gave the diagnostic, if any
    action: str = "failed"  # RFC 3464 §2.3.3; Volley reports failures only (no delay warnings)
    category: str | None = None  # bounce category (engine.policy), told in the human part


def build_dsn(
    *,
    reporting_mta: str,
    original_sender: str,
    original_message: bytes,
    failed: Sequence[FailedRecipient],
    arrival_date: float,
    now: float,
    envelope_id: str | None = None,
    message_id: str,
) -> bytes:
    """Build a DSN reporting `failed` to `original_sender`.

    Args:
        reporting_mta: our host name (Reporting-MTA, MAILER-DAEMON@ domain).
        original_sender: the original message's reverse-path; must not be "".
        original_message: the message as queued (not dot-stuffed); only its header
            section is included.
        failed: the recipients to report, at least one.
        arrival_date: when we accepted the message (Unix time).
        now: the time of the report and the last attempt (Unix time).
        envelope_id: RFC 3461 ENVID of the original transaction, if it had one.
        message_id: the Message-ID of the DSN itself, e.g. "<...@reporting_mta>".

    Returns:
        The DSN as bytes with CRLF line endings.

    Raises:
        ValueError: a null or invalid `original_sender` (a DSN to <> is forbidden,
            RFC 5321 §4.5.5), no recipients, or an invalid status or action: bugs in
            the caller, never caused by remote input.
    """
    if not original_sender:
        raise ValueError("no DSN for a message with the null reverse-path (RFC 5321 §4.5.5)")
    why = validate_address(original_sender)
    if why is not None:
        raise ValueError(f"invalid original_sender: {why}")
    if not failed:
        raise ValueError("a DSN needs at least one recipient")
    for rcpt in failed:
        if rcpt.action not in ACTIONS:
            raise ValueError(f"invalid DSN action {rcpt.action!r}")
        if _STATUS.fullmatch(rcpt.status) is None:
            raise ValueError(f"invalid DSN status {rcpt.status!r}")

    mta = _hostname(reporting_mta) or "localhost"
    # Parts are encoded with the usual 78-column policy; the whole is generated with one
    # that never folds (see _GEN_LIMIT).  SMTPUTF8 only when the To address needs it.
    base = policy.SMTPUTF8 if not original_sender.isascii() else policy.SMTP
    part_policy = base
    gen_policy = base.clone(max_line_length=_GEN_LIMIT)

    msg = MIMEPart(policy=part_policy)  # EmailMessage only adds MIME-Version; we set it
    msg["From"] = f"Mail Delivery System <MAILER-DAEMON@{mta}>"
    msg["To"] = original_sender
    msg["Subject"] = "Undelivered Mail Returned to Sender"
    msg["Date"] = _date(now)
    msg["Message-ID"] = _clean(message_id, MAX_HOSTNAME)
    msg["Auto-Submitted"] = "auto-replied"  # RFC 3834 §5
    msg["MIME-Version"] = "1.0"
    msg.add_header("Content-Type", "multipart/report", report_type="delivery-status")

    msg.attach(_human_part(mta, failed, part_policy))
    msg.attach(_status_part(mta, failed, arrival_date, now, envelope_id, part_policy))
    msg.attach(_headers_part(original_message, part_policy))
    return msg.as_bytes(policy=gen_policy)


def _human_part(mta: str, failed: Sequence[FailedRecipient], pol: policy.Policy) -> MIMEPart:
    summary = (
        "Your message could not be delivered to one or more recipients.\n"
        "The reasons are given below; the message headers are attached.\n"
    )
    lines = [f"This is the mail system at host {mta}.", "", summary]
    for rcpt in failed:
        address = _clean(rcpt.recipient, MAX_DIAGNOSTIC)
        reason = _clean(rcpt.diagnostic or "", MAX_DIAGNOSTIC) or f"status {rcpt.status}"
        host = _hostname(rcpt.remote_mta)
        via = f" (host {host} said)" if host else ""
        lines.append(f"<{address}>{via}: {reason}")
        category = _ascii(_clean(rcpt.category or "", 64))
        if category:
            lines.append(f"    Category: {category}")
    text = "\n".join(lines) + "\n"
    part = MIMEPart(policy=pol)
    if text.isascii():
        part.set_content(text, charset="us-ascii", cte="7bit")
    else:
        part.set_content(text, charset="utf-8", cte="quoted-printable")
    part["Content-Description"] = "Notification"
    return part


def _status_part(
    mta: str,
    failed: Sequence[FailedRecipient],
    arrival_date: float,
    now: float,
    envelope_id: str | None,
    pol: policy.Policy,
) -> MIMEPart:
    blocks: list[Message | str] = []
    per_message = Message(policy=pol)
    if envelope_id:
        per_message["Original-Envelope-Id"] = _ascii(_clean(envelope_id, MAX_ENVID))
    per_message["Reporting-MTA"] = f"dns; {mta}"
    per_message["Arrival-Date"] = _date(arrival_date)
    blocks.append(per_message)
    for rcpt in failed:
        block = Message(policy=pol)
        block["Final-Recipient"] = _typed_address(rcpt.recipient)
        block["Action"] = rcpt.action
        block["Status"] = rcpt.status
        host = _hostname(rcpt.remote_mta)
        if host:
            block["Remote-MTA"] = f"dns; {host}"
        if rcpt.diagnostic:
            diagnostic = _ascii(_clean(rcpt.diagnostic, MAX_DIAGNOSTIC))
            if diagnostic:
                if _TYPED.match(diagnostic) is None:
                    diagnostic = f"X-Volley; {diagnostic}"
                block["Diagnostic-Code"] = diagnostic
        block["Last-Attempt-Date"] = _date(now)
        blocks.append(block)
    part = MIMEPart(policy=pol)
    part["Content-Type"] = "message/delivery-status"
    part["Content-Description"] = "Delivery report"
    part.set_payload(blocks)
    return part


def _headers_part(original_message: bytes, pol: policy.Policy) -> MIMEPart:
    m = _HEADER_END.search(original_message)
    head = original_message[: m.start() + 1] if m is not None else original_message
    head = _BYTES_CONTROL.sub(b" ", head)
    text = head.decode("utf-8", "replace")
    part = MIMEPart(policy=pol)
    if text.isascii():
        part.set_content(text, "rfc822-headers", charset="us-ascii", cte="7bit")
    else:
        part.set_content(text, "rfc822-headers", charset="utf-8", cte="quoted-printable")
    part["Content-Description"] = "Undelivered Message Headers"
    return part


def _typed_address(address: str) -> str:
    """RFC 3464 address-type; address, with RFC 6533 utf-8-addr-xtext when non-ASCII."""
    clean = _clean(address, MAX_DIAGNOSTIC)
    if clean.isascii():
        return f"rfc822; {clean}"
    # QCHAR = %x21-2a / %x2c-3c / %x3e-5b / %x5d-7e: everything else as \x{HEX}.
    out = []
    for ch in clean:
        if "!" <= ch <= "~" and ch not in "+=\\":
            out.append(ch)
        else:
            out.append(f"\\x{{{ord(ch):X}}}")
    return "utf-8; " + "".join(out)[:MAX_DIAGNOSTIC]


def _clean(text: str, limit: int) -> str:
    """One line of at most `limit` characters: controls out, whitespace runs collapsed.

    `str.split()` also splits on Unicode line separators (U+2028, U+0085, ...), so
    nothing that any reader could take as a line break survives.
    """
    text = " ".join(_CONTROL.sub(" ", text).split())
    return text[:limit].rstrip()


def _hostname(name: str | None) -> str:
    """A host name for Remote-MTA: one ASCII token (a name with a space is not one)."""
    words = _clean(name or "", MAX_HOSTNAME).split()
    return _ascii(words[0]) if words else ""


def _ascii(text: str) -> str:
    """Non-ASCII as backslash escapes: report fields are 7-bit (RFC 3464 §2.1.2)."""
    return text.encode("ascii", "backslashreplace").decode("ascii")


def _date(timestamp: float) -> str:
    return format_datetime(datetime.fromtimestamp(timestamp, UTC))
