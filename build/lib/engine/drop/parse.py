"""Turning a drop file's bytes into an envelope and the message to send (engine.drop.parse).

Responsibilities:
  * decide the envelope (sender, recipients) of a dropped RFC 5322 message, from
    - a leading block of `X-Sender:` / `X-Receiver:` lines (the pickup-directory format
      written by .NET's SmtpClient and IIS/Exchange: one X-Sender, one X-Receiver per
      recipient, before the real header fields; names case-insensitive), which is then
      stripped from the message; or else
    - the header fields, like `sendmail -t`: sender = Return-Path, else Sender, else the
      first From address ("Return-Path: <>" is the null sender); recipients = every To, Cc
      and Bcc address, group syntax included;
  * remove every Bcc field (with its continuation lines) from the message in both cases,
    without re-serialising anything else: the message stays byte-identical otherwise;
  * refuse, with a reason naming the problem, anything we must not or cannot send.
    `parse_drop` never raises: hostile input gets a DropRejection.

Not responsible for: reading the file (engine.drop.read), address syntax
(engine.drop.address), line-ending normalisation and dot-stuffing (engine.smtp.encode),
the body (only NUL bytes are refused there: RFC 5321 §4.5.2 and RFC 6152 forbid them),
splitting recipients by domain (the spool).

Invariants of an accepted DropEnvelope:
  * sender is "" or passes validate_address; every recipient passes it, so none contains
    CR, LF, NUL or any other control character; 1 <= len(recipients) <= max_recipients;
  * recipients are unique on (local part, domain_of(address)), first spelling kept;
  * the header section of `message` has no Bcc field and no X-Sender/X-Receiver prefix,
    every header line is <= 998 octets, valid UTF-8, without control bytes or bare CR.

Why a hand-written line scanner next to `email`: `email` cannot drop a field without
re-serialising the others (its generator refolds and re-encodes headers), and it would
spend its time on a 1 MB header line before we could refuse it; the scanner refuses that
line in ~2.5 ms and removes Bcc lines by slicing.  It runs before `email` sees the header
section and must agree with the `email` parser on where each field starts (both use
"name:" or a leading SP/HT), so any line the parser would treat differently (a bare CR,
which it takes as a line break; a line that is neither a field nor a continuation, which
it takes as the start of the body) is refused, and a Bcc the parser sees is always a Bcc
we remove.

Fast path (engine.drop.fastparse): once the scanner has accepted the header section,
`parse_drop` reads the fields it needs with one regex pass (`HeaderFields`: the very
strings compat32's HeaderParser would return) and takes address lists in plain syntax
(`a@b`, `<a@b>`, `Name <a@b>`, `"Name" <a@b>`, comma lists of those: `simple_addresses`)
without `email`.  A value in any other syntax (comments, groups, quoted local parts,
non-ASCII, ...) goes to `_addresses` (`getaddresses` and the CVE-2023-27043 checks), one
header value at a time: the fields are exact for every header section that gets this far,
so only the address syntax ever needs a fallback.  Everything else (the byte checks, the
line scan, Bcc removal, validation, de-duplication, the limits, every rejection text) is
one code path for both.  `_parse_with_email` runs the reference path, `email` for every
field and address list; property tests check that `parse_drop` returns exactly what it
returns, on generated simple and hostile header mixes.

Cost, CPU per message for the bench workload (bench.workload: 1,000 5 KB newsletters,
7 header fields, From "Name <addr>" and one To; the median of 8 runs, each the median of
9 interleaved before/after passes; this VM is shared and noisy): `parse_drop` ~99 ->
~22 us (run medians 89-154 -> 21-38 us).
The `email` path (`_parse_with_email`, the whole of `parse_drop` before) spends ~20 us in
HeaderParser (compat32) and ~10 us in `getaddresses` per address header; what the fast
path has left is the byte checks (~2 us), the line scan (~3 us), the field regex (~2 us),
the address regex (~0.7 us per header) and `validate_address` (~1.4 us per address).
22 us is ~45,000 messages/s per core (the ~5,000 msg/s target: ~0.11 core, was ~0.5).
`email.policy.default` with its structured address headers took ~340 us per message
(~120 us for one To field), hence compat32 + `getaddresses` for the reference path.
No cap on the number of addresses the fast path takes: it is linear (10,000 addresses in
one To field: ~9 ms, against ~160 ms in `getaddresses`), and max_recipients is checked
after either path.

See also: engine.drop.fastparse; RFC 5322 §2.1.1 (998), §3.6.3 (Bcc); RFC 6532 (UTF-8
headers); RFC 6531 (SMTPUTF8); CVE-2023-27043 / CPython gh-102988 (the address-count
check below).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from email import policy
from email.parser import HeaderParser
from email.utils import getaddresses
from typing import Any, Protocol

from engine.drop.address import domain_of, validate_address
from engine.drop.fastparse import HeaderFields, simple_addresses
from engine.drop.read import DropRejection
from engine.smtp.encode import needs_smtputf8

__all__ = ["MAX_LINE_OCTETS", "DropEnvelope", "DropRejection", "header_envelope", "parse_drop"]

_log = logging.getLogger(__name__)

# RFC 5322 §2.1.1: "Each line of characters MUST be no more than 998 characters".
MAX_LINE_OCTETS = 998
# How much of a hostile value goes into a rejection reason (the reason is logged and
# written next to the rejected file).
QUOTE_LIMIT = 200

# The first blank line ends the header section (LF or CRLF line endings, or a mix).
_HEADER_END = re.compile(rb"\n\r?\n")
_BARE_CR = re.compile(rb"\r(?!\n)")
# C0 controls other than HT, LF, CR; and DEL.  None belongs in a header section.
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# RFC 5322 §2.2 field name (printable ASCII except ":") immediately followed by ":".
# The obsolete "Name :" form is refused: the `email` parser would call that field "Name ".
_FIELD = re.compile(rb"[!-9;-~]+:")
_ENVELOPE_FIELD = re.compile(rb"x-(?:sender|receiver):", re.IGNORECASE)
_CONTINUATION = (b" ", b"\t")
_PARSER = HeaderParser(policy=policy.compat32)


@dataclass(frozen=True, slots=True)
class DropEnvelope:
    """An accepted drop: who it is from, who it goes to, and the bytes to send."""

    sender: str  # "" means the null reverse-path <>
    recipients: tuple[str, ...]  # de-duplicated (case-insensitive on domain), original order
    message: bytes  # envelope lines / Bcc removed, otherwise byte-identical to the file
    message_id: str | None  # Message-ID header value, for logs
    has_date: bool  # the message has a Date field (intake adds one if not)
    smtputf8: bool  # the sender or a recipient has a non-ASCII local part (RFC 6531 §3.2)
    body_8bit: bool  # message has any byte > 127


def parse_drop(data: bytes, *, max_recipients: int) -> DropEnvelope | DropRejection:
    """Parse a dropped message.  Never raises.

    Args:
        data: the file's bytes.
        max_recipients: the most unique recipients one drop may have.

    Returns:
        The envelope and message, or a DropRejection whose reason names the problem
        (hostile values are quoted with repr() and cut to QUOTE_LIMIT characters).
    """
    try:
        return _parse(data, max_recipients, fast=True)
    except Exception:
        # Only a bug in this module (or in `email`) can get here.  The intake must go on,
        # and the file must not be lost: reject it, and log the traceback for us.
        _log.exception("parse_drop failed on a %d-byte message", len(data))
        return DropRejection("internal error while parsing the message (see the engine log)")


def header_envelope(
    data: bytes, *, recipients: bool
) -> tuple[str, tuple[str, ...]] | DropRejection:
    """What `sendmail -t` reads from a message (engine.sendmail): (sender, recipients).

    The sender is Return-Path, else Sender, else From, and with `recipients` every To, Cc
    and Bcc address, by exactly parse_drop's rules and checks - except that a message
    without recipients is not refused here (the sendmail command's arguments may add
    some), and without `recipients` To, Cc and Bcc are not read at all.  A message that
    begins with X-Sender/X-Receiver lines has those as its envelope.  Never raises.
    """
    try:
        env = _parse(data, sys.maxsize, fast=True, header_recipients=recipients)
    except Exception:
        _log.exception("header_envelope failed on a %d-byte message", len(data))
        return DropRejection("internal error while parsing the message (see the engine log)")
    if isinstance(env, DropRejection):
        return env
    return env.sender, env.recipients


def _parse_with_email(data: bytes, max_recipients: int) -> DropEnvelope | DropRejection:
    """The reference path: `email` reads every header field and every address list.

    `parse_drop` must return exactly this, for every input (tests/unit/drop/test_parse.py
    compares the two on generated messages).  Raises what `_parse` raises.
    """
    return _parse(data, max_recipients, fast=False)


def _parse(
    data: bytes, max_recipients: int, *, fast: bool, header_recipients: bool | None = None
) -> DropEnvelope | DropRejection:
    """parse_drop's work; `fast` reads the fields with engine.drop.fastparse, else `email`.
    `header_recipients` is for header_envelope: None (parse_drop) reads To/Cc/Bcc and
    requires a recipient, True reads them without requiring one, False skips them.

    Everything but reading the header fields and address lists is the same code on both
    paths, so every rejection comes from the same line whichever path runs.
    """
    if not data:
        return DropRejection("empty message")
    nul = data.find(b"\0")
    if nul >= 0:
        return DropRejection(f"NUL byte at offset {nul}: not a text message")
    if data.startswith((b"\n", b"\r\n")):
        return DropRejection("no header section: the message starts with a blank line")

    m = _HEADER_END.search(data)
    head_end = m.start() + 1 if m is not None else len(data)  # just after the last "\n"
    head = data[:head_end]
    problem = _check_header_bytes(head)
    if problem is not None:
        return DropRejection(problem)

    lines = head.splitlines(keepends=True)  # only "\r\n" and "\n" remain as line ends
    n_env = 0
    while n_env < len(lines) and _ENVELOPE_FIELD.match(lines[n_env]) is not None:
        n_env += 1
    if n_env == len(lines):
        where = " after the X-Sender/X-Receiver lines" if n_env else ""
        return DropRejection(f"no header section{where}")
    if n_env and lines[n_env].startswith(_CONTINUATION):
        return DropRejection(f"header line {n_env + 1}: a folded X-Sender/X-Receiver line")
    field_lines = lines[n_env:]
    scanned = _scan_fields(field_lines, first_line_no=n_env + 1)
    if isinstance(scanned, DropRejection):
        return scanned
    bcc_lines = scanned

    fields_start = sum(len(line) for line in lines[:n_env])
    if len(bcc_lines) == len(field_lines):
        return DropRejection("no header fields left once the Bcc field is removed")
    if bcc_lines:
        kept = [line for i, line in enumerate(field_lines) if i not in bcc_lines]
        if _ENVELOPE_FIELD.match(kept[0]) is not None:
            # The message would now start like a pickup file: reading it again (a retry,
            # a re-drop) would take that field for the envelope.
            return DropRejection(
                "an X-Sender/X-Receiver field would start the message once Bcc is removed"
            )
        message = b"".join(kept) + data[head_end:]
    else:
        message = data[fields_start:] if fields_start else data

    headers: _Headers
    if fast:
        headers = HeaderFields(head, fields_start)
        addresses = _fast_addresses
    else:
        headers = _PARSER.parsestr(head[fields_start:].decode("utf-8"), headersonly=True)
        addresses = _addresses
    if n_env:
        envelope = _envelope_from_lines(lines[:n_env])
    else:
        envelope = _envelope_from_headers(headers, addresses, header_recipients is not False)
    if isinstance(envelope, DropRejection):
        return envelope
    sender, candidates = envelope

    if sender:
        why = validate_address(sender)
        if why is not None:
            return DropRejection(f"invalid sender address {_quote(sender)}: {why}")
    recipients: list[str] = []
    seen: set[tuple[str, str]] = set()
    for addr, where in candidates:
        why = validate_address(addr)
        if why is not None:
            return DropRejection(f"invalid recipient address {_quote(addr)} ({where}): {why}")
        key = (addr.rpartition("@")[0], domain_of(addr))  # the local part is case-sensitive
        if key not in seen:
            seen.add(key)
            recipients.append(addr)
    if not recipients and header_recipients is None:
        if n_env:
            return DropRejection("no recipients: no X-Receiver line")
        return DropRejection("no recipients: no address in To, Cc or Bcc")
    if len(recipients) > max_recipients:
        return DropRejection(
            f"too many recipients: {len(recipients)}, the limit is {max_recipients} per message"
        )

    ids = headers.get_all("Message-ID")
    message_id = " ".join(str(ids[0]).split()) if ids else ""
    return DropEnvelope(
        sender=sender,
        recipients=tuple(recipients),
        message=message,
        message_id=message_id or None,
        has_date=bool(headers.get_all("Date")),
        smtputf8=needs_smtputf8(sender) or any(map(needs_smtputf8, recipients)),
        body_8bit=not message.isascii(),
    )


def _check_header_bytes(head: bytes) -> str | None:
    """Byte-level checks of the header section, cheapest first; a reason or None.

    The line-length check comes first and runs in C (`split`, `max`), so a 1 MB header
    line is refused in ~2.5 ms (measured), before any Python-level work on it.
    """
    if len(head) > MAX_LINE_OCTETS:
        split = head.split(b"\n")
        if max(map(len, split)) > MAX_LINE_OCTETS:
            for no, line in enumerate(split, 1):
                size = len(line) - line.endswith(b"\r")
                if size > MAX_LINE_OCTETS:
                    return (
                        f"header line {no} is {size} octets long; "
                        f"RFC 5322 §2.1.1 allows {MAX_LINE_OCTETS}"
                    )
    ctl = _CONTROL.search(head)
    if ctl is not None:
        pos = ctl.start()
        return (
            f"binary data in the header section: control byte 0x{head[pos]:02x} "
            f"in header line {_line_no(head, pos)}"
        )
    cr = _BARE_CR.search(head)
    if cr is not None:
        return f"bare CR (not followed by LF) in header line {_line_no(head, cr.start())}"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (
            f"header section is not valid UTF-8 (byte 0x{head[exc.start]:02x} in header "
            f"line {_line_no(head, exc.start)}); RFC 6532 allows UTF-8 only"
        )
    return None


def _scan_fields(lines: list[bytes], *, first_line_no: int) -> set[int] | DropRejection:
    """Check that every line starts a field or continues one; return the Bcc line indexes."""
    if _FIELD.match(lines[0]) is None:
        return DropRejection(
            f"no header section: line {first_line_no} is not a 'Name: value' header field: "
            f"{_quote_line(lines[0])}"
        )
    bcc: set[int] = set()
    in_bcc = False
    for i, line in enumerate(lines):
        if line.startswith(_CONTINUATION):
            if in_bcc:
                bcc.add(i)
            continue
        m = _FIELD.match(line)
        if m is None:
            return DropRejection(
                f"malformed header line {first_line_no + i}: {_quote_line(line)} is neither "
                "a 'Name: value' field nor a continuation line"
            )
        in_bcc = m.end() == 4 and line[:3].lower() == b"bcc"
        if in_bcc:
            bcc.add(i)
    return bcc


_Candidates = list[tuple[str, str]]  # (address, where it came from) in order
# (field name, value) -> its addresses, or why the value is refused.
_AddressParser = Callable[[str, str], list[str] | DropRejection]


class _Headers(Protocol):
    """What the envelope needs of a parsed header section: `email`'s `Message` (the
    reference path) or fastparse's `HeaderFields`; values are str under compat32."""

    def get_all(self, name: str) -> list[Any] | None: ...


def _envelope_from_lines(lines: list[bytes]) -> tuple[str, _Candidates] | DropRejection:
    """The envelope from the leading X-Sender / X-Receiver lines."""
    senders: list[str] = []
    candidates: _Candidates = []
    for no, line in enumerate(lines, 1):
        name, _, value = line.decode("utf-8").partition(":")
        value = value.strip(" \t\r\n")
        if value.startswith("<") and value.endswith(">"):
            value = value[1:-1]
        if name.lower() == "x-sender":
            senders.append(value)
        elif not value:
            return DropRejection(f"empty X-Receiver on line {no}")
        else:
            candidates.append((value, f"X-Receiver line {no}"))
    if len(senders) != 1:
        return DropRejection(f"{len(senders)} X-Sender lines; the pickup format needs exactly 1")
    return senders[0], candidates


def _envelope_from_headers(
    headers: _Headers, addresses: _AddressParser, recipients: bool = True
) -> tuple[str, _Candidates] | DropRejection:
    """The envelope from Return-Path/Sender/From and To/Cc/Bcc, like `sendmail -t`."""
    get_all = headers.get_all
    sender: str | None = None
    for name in ("Return-Path", "Sender", "From"):
        values = get_all(name)
        if not values:
            continue
        value = str(values[0])
        if name == "Return-Path" and value.strip() == "<>":
            sender = ""
            break
        addrs = addresses(name, value)
        if isinstance(addrs, DropRejection):
            return addrs
        if not addrs:
            return DropRejection(f"no sender: the {name} header holds no address")
        if name != "From" and len(addrs) > 1:
            return DropRejection(f"the {name} header holds {len(addrs)} addresses; 1 expected")
        sender = addrs[0]
        break
    if sender is None:
        return DropRejection("no sender: no Return-Path, Sender or From header")

    candidates: _Candidates = []
    for name in ("To", "Cc", "Bcc") if recipients else ():
        for value in get_all(name) or ():
            addrs = addresses(name, str(value))
            if isinstance(addrs, DropRejection):
                return addrs
            candidates.extend((addr, f"{name} header") for addr in addrs)
    return sender, candidates


def _fast_addresses(name: str, value: str) -> list[str] | DropRejection:
    """`_addresses`, through fastparse's `simple_addresses` when the syntax is plain."""
    simple = simple_addresses(value)
    return simple if simple is not None else _addresses(name, value)


def _addresses(name: str, value: str) -> list[str] | DropRejection:
    """The addr-specs of one address-list header value (groups flattened, empties dropped).

    Python 3.11.7's `getaddresses` predates the CVE-2023-27043 fix: for input such as
    "alice@example.org)<bob@example.org>" or "a@b.example <c@d.example>" it silently
    returns addresses the author did not mean.  We apply the check CPython added in
    gh-102988 (3.13, backported to later 3.11 releases): parentheses outside quoted strings
    must balance, and the number of results must be one more than the number of commas
    outside quoted strings.  Anything else is refused rather than guessed.
    """
    if not value.strip():
        return []
    balanced, commas = _list_shape(value)
    if not balanced:
        return DropRejection(f"unbalanced parentheses in the {name} header: {_quote(value)}")
    try:
        pairs = getaddresses([value])
    except RecursionError:  # deeply nested comments or groups ("((((...", ":::...")
        return DropRejection(f"the {name} header is nested too deeply to parse")
    if len(pairs) != commas + 1:
        return DropRejection(f"ambiguous address list in the {name} header: {_quote(value)}")
    return [addr for _display, addr in pairs if addr]


def _list_shape(value: str) -> tuple[bool, int]:
    """(parentheses balance, number of commas), both outside quoted strings.

    Mirrors CPython's `_strip_quoted_realnames` / `_check_parenthesis` (gh-102988): a
    backslash escapes the next character; an unterminated quoted string is kept.
    """
    if '"' not in value and "\\" not in value:
        if "(" not in value and ")" not in value:
            return True, value.count(",")
    outside: list[str] = []
    start = 0
    open_at: int | None = None
    escaped = False
    for pos, ch in enumerate(value):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            if open_at is None:
                open_at = pos
            else:
                outside.append(value[start:open_at])
                start, open_at = pos + 1, None
    outside.append(value[start:])
    rest = "".join(outside)
    depth = 0
    escaped = False
    for ch in rest:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return False, 0
    return depth == 0, rest.count(",")


def _line_no(head: bytes, pos: int) -> int:
    return head.count(b"\n", 0, pos) + 1


def _quote(text: str) -> str:
    """repr() of at most QUOTE_LIMIT characters: control characters come out escaped."""
    if len(text) > QUOTE_LIMIT:
        return repr(text[:QUOTE_LIMIT]) + "..."
    return repr(text)


def _quote_line(line: bytes) -> str:
    return _quote(line.rstrip(b"\r\n").decode("utf-8", "backslashreplace"))
