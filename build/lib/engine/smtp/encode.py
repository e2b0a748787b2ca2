"""Bytes on the wire for the client side of SMTP: command lines and message content.

Responsible for: serialising commands (RFC 5321 §4.1) with their ESMTP parameters,
refusing arguments that would corrupt a command line (CR/LF/NUL injection, over-long
paths, non-ASCII without SMTPUTF8), and turning a message into DATA wire form
(`wire_body`: CRLF line endings and dot-stuffing, RFC 5321 §4.5.2).
Not responsible for: deciding which parameters a server allows (engine.smtp.protocol
looks at the EHLO keywords), message syntax (RFC 5322 headers, the 998-octet line limit
and 8-bit content are the message producer's business), or any I/O.
"""

from __future__ import annotations

import re

from engine.smtp.errors import LocalProtocolError

__all__ = [
    "MAX_DOMAIN",
    "MAX_LOCAL_PART",
    "MAX_PATH",
    "check_address",
    "check_helo_name",
    "data",
    "ehlo",
    "helo",
    "mail_from",
    "needs_smtputf8",
    "quit",
    "rcpt_to",
    "rset",
    "starttls",
    "wire_body",
]

# RFC 5321 §4.5.3.1.1-3 size limits, in octets (after UTF-8 encoding).
MAX_LOCAL_PART = 64
MAX_DOMAIN = 255
MAX_PATH = 256  # includes the angle brackets

END_OF_DATA = b".\r\n"

# Anything that could end or split a command line, or close the <path> early:
# C0 controls (CR, LF, NUL, TAB...), DEL, SP and the angle brackets.  SP is legal only
# inside a quoted local part ("john doe"@example.com), which `check_address` handles.
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f<>]")
_FORBIDDEN_QUOTED = re.compile(r"[\x00-\x1f\x7f<>]")
# C1 controls (U+0080-U+009F) are as invisible as C0 ones; no mailbox needs them.
_C1 = re.compile(r"[\x80-\x9f]")
# EHLO/HELO argument: a domain or an address literal such as [192.0.2.1] / [IPv6:...].
_HELO_NAME = re.compile(r"[A-Za-z0-9.\-:\[\]]+")
_BARE_CR = re.compile(rb"\r(?!\n)")
_LF_DOT = re.compile(rb"\n\.")
# A bare LF, or a line that starts with ".": what keeps CRLF input from being sent as is.
_BARE_LF_OR_LF_DOT = re.compile(rb"\n(?:(?<!\r\n)|\.)")


def wire_body(message: bytes) -> bytes:
    """Return `message` in DATA wire form, without the terminating ".\\r\\n".

    Every line ending (CRLF, bare LF, bare CR) becomes CRLF, every line starting with "."
    gets one more "." (dot-stuffing, RFC 5321 §4.5.2), and the result ends with CRLF.
    An empty message stays empty (DATA then carries just ".\\r\\n").

    Runs once per message at spool time, so it is a handful of whole-buffer C passes and
    no per-line Python.  Measured on a 5 KB, 80-line message (timeit, best of 5, this
    2-core VM): 12-14 µs from CRLF input, 5-9 µs from LF input.  A per-line loop
    (split, stuff, join) took 30 µs, and a chain of `bytes.replace` calls 22-28 µs:
    CPython's `replace` of a two-byte pattern pays ~100 ns per match, so for CRLF input
    we delete the CRs with one `translate` pass once a regex has shown that every CR is
    followed by LF.
    Most drops are CRLF throughout with no line starting with "." (the bench workload,
    .NET and IIS pickup files): those are already in wire form, and two regex passes
    that prove it (no bare CR; no bare LF and no "\n.") replace the translate, the
    stuffing pass and the LF -> CRLF copy, and the message is returned without a copy.
    Bench workload (1,000 5 KB CRLF messages, CPU per message, the median of 8 runs of
    9 interleaved passes each): 17 -> 11 µs (best runs 13.4 -> 8.6 µs).  The two
    passes cost ~3.5 and ~6.5 µs; a check by `bytes.count` (CR, LF and CRLF counts
    equal) took ~12 µs, and one regex for bare CR, bare LF and "\n." ~40 µs (an
    alternation at the start defeats the regex engine's literal-prefix scan).
    """
    if not message:
        return b""
    if b"\r" in message:
        if _BARE_CR.search(message) is None:
            if _BARE_LF_OR_LF_DOT.search(message) is None:
                # Every line ends in CRLF and none but the first can start with ".".
                if message[:1] == b".":
                    message = b"." + message
                if message[-1:] != b"\n":
                    message += b"\r\n"
                return message
            message = message.translate(None, b"\r")
        else:
            # CRLF first, so that "\r\n" does not become two line endings.
            message = message.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    # Stuff while every line ends in a single byte; the first line has no "\n" before it.
    message = _LF_DOT.sub(b"\n..", message)
    if message[:1] == b".":
        message = b"." + message
    if message[-1:] != b"\n":
        message += b"\n"
    return message.replace(b"\n", b"\r\n")


def needs_smtputf8(address: str) -> bool:
    """Whether sending `address` needs SMTPUTF8 (RFC 6531 §3.2): only a non-ASCII local
    part does.  A non-ASCII domain goes out as its A-label (RFC 5890/5891) to a server
    without SMTPUTF8: `bob@bücher.example` is sent as `bob@xn--bcher-kva.example`, the
    name Volley routes on anyway (issue #14, finding 7: such mail was bounced 5.6.7)."""
    if address.isascii():
        return False
    return not address[: address.rfind("@")].isascii() if "@" in address else True


def check_address(address: str, smtputf8: bool) -> bytes:
    """Validate a mailbox for use inside <...>; return its wire bytes.

    Without `smtputf8`, a non-ASCII domain is sent as its A-label when the local part is
    ASCII (see needs_smtputf8).  engine.drop.address calls this too, so every address
    intake accepts is one this function can send (issue #14, finding 3).

    Raises:
        LocalProtocolError: when the address cannot be sent safely; the message says why
            and never quotes the address (callers name it as they see fit).
    """
    if not address:
        raise LocalProtocolError("empty address")
    at = address.rfind("@")
    if not smtputf8 and at > 0 and not address.isascii() and address[:at].isascii():
        address = address[: at + 1] + _a_label(address[at + 1 :])
    local = address[:at] if at >= 0 else address
    if len(local) >= 2 and local[0] == '"' and local[-1] == '"':
        bad = _FORBIDDEN_QUOTED.search(local) or _FORBIDDEN.search(address, at if at >= 0 else 0)
    else:
        bad = _FORBIDDEN.search(address)
    if bad is not None:
        raise LocalProtocolError(f"forbidden character {bad.group()!r} in address")
    if at < 0:
        # RFC 5321 §4.1.1.3: <Postmaster> without a domain is the one legal bare local part.
        if address.lower() != "postmaster":
            raise LocalProtocolError("address without domain")
    elif at == 0 or at == len(address) - 1:
        raise LocalProtocolError("empty local part or domain")
    if address.isascii():
        encoded = address.encode("ascii")
        local_len = at if at >= 0 else len(encoded)
    else:
        if not smtputf8:
            raise LocalProtocolError("non-ASCII local part needs SMTPUTF8")
        c1 = _C1.search(address)
        if c1 is not None:
            raise LocalProtocolError(f"control character {c1.group()!r} in address")
        encoded = address.encode("utf-8")
        local_len = len(local.encode("utf-8"))
    if local_len > MAX_LOCAL_PART:
        raise LocalProtocolError(f"local part longer than {MAX_LOCAL_PART} octets")
    if at >= 0 and len(encoded) - local_len - 1 > MAX_DOMAIN:
        raise LocalProtocolError(f"domain longer than {MAX_DOMAIN} octets")
    if len(encoded) + 2 > MAX_PATH:
        raise LocalProtocolError(f"path longer than {MAX_PATH} octets")
    return encoded


def mail_from(sender: str, *, size: int | None, body_8bit: bool, smtputf8: bool) -> bytes:
    """`MAIL FROM:<sender>` with the ESMTP parameters asked for.

    The flags say which parameters to *emit*; whether the server offers them is the
    caller's check.  `sender == ""` is the null reverse-path `<>` (bounces, RFC 5321 §4.5.5).

    Args:
        size: add `SIZE=n` (RFC 1870) when not None.
        body_8bit: add `BODY=8BITMIME` (RFC 6152).
        smtputf8: add `SMTPUTF8` (RFC 6531) and allow a non-ASCII sender.
    """
    path = check_address(sender, smtputf8) if sender else b""
    line = b"MAIL FROM:<" + path + b">"
    if size is not None:
        if size < 0:
            raise LocalProtocolError(f"negative SIZE {size}")
        line += b" SIZE=%d" % size
    if body_8bit:
        line += b" BODY=8BITMIME"
    if smtputf8:
        line += b" SMTPUTF8"
    return line + b"\r\n"


def rcpt_to(address: str, *, smtputf8: bool = False) -> bytes:
    """`RCPT TO:<address>`; a non-ASCII address needs `smtputf8=True` (the transaction's
    MAIL carried SMTPUTF8)."""
    return b"RCPT TO:<" + check_address(address, smtputf8) + b">\r\n"


def _a_label(domain: str) -> str:
    """The ASCII form of an internationalised domain: the stdlib codec (IDNA 2003), the
    one engine.drop.address routes with.  Intake refuses the deviation characters that
    IDNA 2003 and 2008 encode differently, so for every address it accepts the two agree."""
    try:
        return domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise LocalProtocolError("domain cannot be IDNA-encoded") from None


def check_helo_name(name: str) -> bytes:
    """The EHLO/HELO argument's bytes; refuses what cannot go on the command line.

    Raises:
        LocalProtocolError: characters outside letters, digits, ".", "-", ":", "[", "]",
            or longer than MAX_DOMAIN.
    """
    if _HELO_NAME.fullmatch(name) is None or len(name) > MAX_DOMAIN:
        raise LocalProtocolError(f"invalid EHLO/HELO name {name!r}")
    return name.encode("ascii")


def ehlo(name: str) -> bytes:
    """`EHLO name`: our host name (a domain or an address literal like `[192.0.2.1]`)."""
    return b"EHLO " + check_helo_name(name) + b"\r\n"


def helo(name: str) -> bytes:
    """`HELO name`, the RFC 821 fallback when EHLO is refused."""
    return b"HELO " + check_helo_name(name) + b"\r\n"


def data() -> bytes:
    return b"DATA\r\n"


def rset() -> bytes:
    return b"RSET\r\n"


def quit() -> bytes:
    return b"QUIT\r\n"


def starttls() -> bytes:
    return b"STARTTLS\r\n"
