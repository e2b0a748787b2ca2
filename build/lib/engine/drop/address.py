"""Envelope address validation and routing domains (RFC 5321 §4.1.2, RFC 6531).

Responsibilities:
  * `validate_address(addr)`: decide whether a string may be used as an SMTP reverse-path or
    forward-path mailbox, and say why not.
  * `domain_of(addr)`: the lower-case ASCII (IDNA A-label) domain used for routing, MX lookup
    and per-domain queues: "user@Bücher.example" -> "xn--bcher-kva.example".

Not responsible for:
  * extracting addresses from header fields (engine.drop.parse, via email.utils);
  * quoting an address for the wire, or deciding whether SMTPUTF8 is needed (the caller sees
    a non-ASCII character in the string);
  * DNS: a syntactically valid domain may still not exist.

Invariants (what a None from `validate_address` guarantees):
  * no control character (C0, DEL, C1), no line or paragraph separator and no format or
    surrogate character anywhere, so no byte of the address can end or inject an SMTP
    command line;
  * exactly one "@" outside a quoted local part, a non-empty local part and a domain;
  * local part <= 64 octets, domain <= 255 octets, the path "<addr>" <= 256 octets, all
    counted in UTF-8 (RFC 5321 §4.5.3.1.1-3);
  * `domain_of` succeeds and returns LDH labels of 1-63 octets, at most 253 octets in all.

Deliberate restrictions for v1 (stricter than RFC 5321, never looser):
  * no address literals (`user@[192.0.2.1]`, `user@[IPv6:...]`): a drop file must not be
    able to aim the engine at an arbitrary IP address;
  * no all-numeric top-level label (`user@1.2.3.4`): no TLD is numeric (RFC 3696 §2), and a
    resolver fallback could treat the name as an IP address;
  * no IDNA "deviation" characters (ß, ς, ZWJ, ZWNJ) in a domain.  The stdlib `idna` codec
    implements IDNA 2003, which maps "straße.de" to "strasse.de"; IDNA 2008 maps it to
    "xn--strae-oqa.de", a different, separately registered domain (UTS #46 §4.1 lists
    these four).  Routing such mail by the 2003 rules could deliver it to a stranger, so we
    refuse it; the A-label form ("xn--strae-oqa.de") is accepted as given.
  * no quoted local part that is empty (`""@example.com`).

See also: engine.drop.parse (callers), RFC 5321 §4.1.2 (Mailbox, Dot-string,
Quoted-string), RFC 6531 §3.3 (UTF-8 in atext and qtext).
"""

from __future__ import annotations

import functools
import re
import unicodedata

from engine.smtp.encode import check_address, needs_smtputf8
from engine.smtp.errors import LocalProtocolError

__all__ = ["domain_of", "validate_address"]

# RFC 5321 §4.5.3.1.1-3.  The path includes its "<" and ">", so the mailbox itself may
# have at most 254 octets.
MAX_LOCAL_PART_OCTETS = 64
MAX_DOMAIN_OCTETS = 255
MAX_PATH_OCTETS = 256
# A DNS name is at most 255 octets on the wire (RFC 1035 §2.3.4): 253 characters of text.
MAX_ASCII_DOMAIN = 253

# RFC 5321 atext, plus any non-ASCII character (RFC 6531 §3.3 extends atext with
# UTF8-non-ascii); non-ASCII characters are then screened by category below.
_ATEXT = "[A-Za-z0-9!#$%&'*+\\-/=?^_`{|}~\u0080-\U0010ffff]"
_DOT_STRING = re.compile(_ATEXT + "+(?:\\." + _ATEXT + "+)*")
# RFC 5321 Quoted-string followed by the "@": qtextSMTP (%d32-33 / %d35-91 / %d93-126, plus
# UTF8-non-ascii per RFC 6531) or quoted-pairSMTP (backslash + %d32-126).
_QUOTED_LOCAL = re.compile(r'"((?:[ !#-\[\]-~\u0080-\U0010ffff]|\\[ -~])*)"@')
# A hostname label after IDNA encoding (RFC 1123 §2.1 LDH rule).
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# Control characters (C0, DEL, C1): never allowed, quoted or not.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Non-ASCII categories refused anywhere: controls, format characters (bidi overrides,
# zero-width joiners), surrogates (cannot be encoded as UTF-8), private use, and every
# kind of separator (U+2028/U+2029 end lines in some software; U+00A0 etc. look like a
# space but are not one).
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp", "Zs"})
# UTS #46 §4.1 deviation characters: IDNA 2003 and IDNA 2008 encode them differently.
_DEVIATIONS = frozenset("\u00df\u03c2\u200c\u200d")
# Cache of domain -> (error, ascii).  Bulk mail repeats a few hundred domains; measured
# here, validating a non-ASCII address costs ~30 us uncached (the IDNA codec) and ~2 us
# cached; an ASCII one ~2.5 us and ~1.5 us.  Bounded, so hostile input can only evict.
_DOMAIN_CACHE_SIZE = 4096


def validate_address(addr: str) -> str | None:
    """Check that `addr` is a mailbox we may put in MAIL FROM or RCPT TO.

    Args:
        addr: the bare address (no angle brackets, no display name).  The null
            reverse-path is not an address: callers handle "" themselves.

    Returns:
        None if the address is acceptable, else a short human-readable reason (which never
        contains the address itself, so callers can quote it as they see fit).
    """
    if not addr:
        return "empty address"
    if _CONTROL.search(addr) is not None:
        return "control character (CR, LF, NUL, ...) in address"
    if not addr.isascii():
        for ch in addr:
            if ord(ch) > 0x7F and unicodedata.category(ch) in _REFUSED_CATEGORIES:
                return f"character U+{ord(ch):04X} ({unicodedata.category(ch)}) not allowed"
    octets = len(addr.encode("utf-8"))
    if octets + 2 > MAX_PATH_OCTETS:
        return f"address is {octets} octets; the path <...> may have {MAX_PATH_OCTETS}"

    if addr.startswith('"'):
        m = _QUOTED_LOCAL.match(addr)
        if m is None:
            return 'invalid quoted local part (unterminated, bad character, or no "@" after it)'
        if not m.group(1):
            return "empty quoted local part"
        local, domain = addr[: m.end() - 1], addr[m.end() :]
    else:
        count = addr.count("@")
        if count != 1:
            return f'address must contain exactly one "@" (found {count})'
        local, _, domain = addr.partition("@")
        if not local:
            return "empty local part"
        if _DOT_STRING.fullmatch(local) is None:
            return _dot_string_reason(local)

    local_octets = len(local.encode("utf-8"))
    if local_octets > MAX_LOCAL_PART_OCTETS:
        return f"local part is {local_octets} octets; at most {MAX_LOCAL_PART_OCTETS} allowed"
    error, _ascii = _domain(domain)
    if error is not None:
        return error
    # Last, the encoder's own check: what intake accepts, delivery can send.  RFC 5321
    # allows "<" and ">" in a quoted local part, but the encoder refuses them (many
    # servers' path parsers end the path there); accepting such an address here once made
    # every delivery attempt raise and reconnect, 7 409 times in 2 s (issue #14, finding 3).
    try:
        check_address(addr, needs_smtputf8(addr))
    except LocalProtocolError as e:
        return f"cannot be sent over SMTP: {e}"
    return None


def domain_of(addr: str) -> str:
    """The routing domain of a valid address: lower-case, IDNA-encoded ASCII.

    Args:
        addr: an address for which `validate_address` returned None.

    Returns:
        e.g. "xn--bcher-kva.example" for "user@Bücher.example".

    Raises:
        ValueError: the domain is not valid (call `validate_address` first).
    """
    # The domain never contains "@" (a quoted local part may), so the last "@" splits.
    error, ascii_domain = _domain(addr.rpartition("@")[2])
    if error is not None:
        raise ValueError(error)
    return ascii_domain


def _dot_string_reason(local: str) -> str:
    """Say what is wrong with an unquoted local part that failed `_DOT_STRING`."""
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return "local part has a leading, trailing or doubled dot"
    for ch in local:
        if _DOT_STRING.fullmatch(ch) is None and ch != ".":
            return f"character {ch!r} not allowed in an unquoted local part"
    return "invalid local part"  # pragma: no cover - the two checks above are exhaustive


@functools.lru_cache(maxsize=_DOMAIN_CACHE_SIZE)
def _domain(domain: str) -> tuple[str | None, str]:
    """(reason, "") if `domain` is unusable, else (None, its lower-case A-label form)."""
    if not domain:
        return "empty domain", ""
    if len(domain.encode("utf-8")) > MAX_DOMAIN_OCTETS:
        return f"domain is over {MAX_DOMAIN_OCTETS} octets", ""
    if domain.startswith("["):
        return "address literals ([...]) are not supported", ""
    if domain.isascii():
        ascii_domain = domain.lower()
    else:
        if any(ch in _DEVIATIONS for ch in domain):
            return "domain has a character IDNA 2003 and 2008 encode differently", ""
        try:
            # Stdlib codec (IDNA 2003, nameprep): casefolds non-ASCII labels, maps the
            # ideographic full stop U+3002 to ".", and refuses empty or long labels.
            ascii_domain = domain.encode("idna").decode("ascii").lower()
        except UnicodeError:
            return "domain cannot be IDNA-encoded", ""
    if len(ascii_domain) > MAX_ASCII_DOMAIN:
        return f"domain is over {MAX_ASCII_DOMAIN} characters once IDNA-encoded", ""
    labels = ascii_domain.split(".")
    for label in labels:
        if _LDH_LABEL.fullmatch(label) is None:
            if not label:
                return "domain has an empty label (leading, trailing or doubled dot)", ""
            return f"domain label {label[:63]!r} is not a valid host name label", ""
    if labels[-1].isdigit():
        return "domain has an all-numeric top-level label (IP addresses are not allowed)", ""
    return None, ascii_domain
