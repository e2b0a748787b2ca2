"""The fast path of engine.drop.parse: header fields and plain address lists, without `email`.

Responsibilities:
  * `HeaderFields`: the values of the fields the envelope needs (Return-Path, Sender,
    From, To, Cc, Bcc, Message-ID), each exactly the string `email`'s compat32
    HeaderParser would return for it, found with one regex pass over the header section;
  * `simple_addresses(value)`: the addr-specs of an address list written in plain syntax,
    exactly as `email.utils.getaddresses` would return them; None when the value is not
    plainly simple, and the caller must use `getaddresses` (engine.drop.parse does).

Not responsible for: any check of the header section (`HeaderFields` trusts that
engine.drop.parse has refused everything but "Name:" lines and SP/HT continuation lines,
valid UTF-8, no control byte, no bare CR), validating addresses, the CVE-2023-27043 check
(a value `simple_addresses` accepts cannot trip it: see below), building the envelope.

Why not `email`: on a 5 KB newsletter, compat32 HeaderParser took ~20 us and
`getaddresses` ~10 us per address header, 40-60 us of the ~99 us `parse_drop` cost
(timeit, this VM; a py-spy profile of the intake for issue #5 put `parse_drop` at 15 % of
all samples).  Both are general parsers written in Python; what a bulk-mail drop needs
from them is a handful of fields and `Name <addr>` lists, which one C regex pass each
answers: `parse_drop` went from ~99 to ~22 us (engine.drop.parse, "Cost").

Why the results are identical, not just close:
  * Header values.  compat32 takes a field's value as the rest of its first line with
    leading SP/HT removed, plus its continuation lines verbatim, minus trailing CR/LF
    (`Compat32.header_source_parse`); its line splitter (StringIO, newline='') breaks only
    at CRLF, CR and LF, as `bytes.splitlines` does in parse.py (U+2028 and U+0085 are not
    line ends there: measured).  Names compare case-insensitively; they are ASCII.  So
    `_FIELD_VALUE` below, which wants a name right after a "\n" (a continuation line
    starts with SP/HT, never with a name), finds the same fields with the same values,
    in the same order.
  * Addresses.  `simple_addresses` accepts only this grammar, ASCII only:
        list    = element *("," element)
        element = FWS (addr-spec / *(word FWS) "<" addr-spec ">") FWS
        addr-spec = dot-atom "@" dot-atom         (RFC 5322 atext, no whitespace inside)
        word    = 1*(atext / ".") / DQUOTE *(any but DQUOTE, "\\", CR, LF) DQUOTE
    where FWS is any run of SP, HT, CR, LF (`getaddresses` skips exactly those).  For each
    element `email._parseaddr` returns one pair whose address is the addr-spec verbatim
    (`getphraselist`, then `getaddrspec` or `getrouteaddr`), and the commas outside quoted
    strings are exactly the separators, so the CVE-2023-27043 count check in parse.py
    holds and no parenthesis exists to unbalance.  Everything else - comments, groups,
    quoted local parts, backslashes, obsolete routes ("<@a:b@c>"), whitespace inside an
    addr-spec, empty list elements, non-ASCII - returns None.
    Encoded words (RFC 2047) in a display name are accepted when they are made of
    atext: `getaddresses` does not decode them either, it sees an atom like any other.
  The property tests in tests/unit/drop/test_fastparse.py and test_parse.py compare both
  functions, and `parse_drop` as a whole, with the `email` path on generated input.

See also: engine.drop.parse (the caller and the fallback), CPython Lib/email/_parseaddr.py
(`AddrlistClass`), Lib/email/_policybase.py (`Compat32.header_source_parse`).
"""

from __future__ import annotations

import re

__all__ = ["ENVELOPE_FIELDS", "HeaderFields", "simple_addresses"]

# The fields engine.drop.parse reads (lower case).
ENVELOPE_FIELDS = ("return-path", "sender", "from", "to", "cc", "bcc", "message-id", "date")

# One field with its continuation lines, after the "\n" that ends the line before it:
# group 1 the name, group 2 the raw value (the rest of the first line and every following
# SP/HT line, without the last line end, which the next field's match needs).  The
# leading "\n" is a literal the regex engine scans for in C: 1.3 us per 5 KB newsletter
# header, against 2.2 us for the same pattern anchored with "^" and re.MULTILINE.
_NAMES = b"|".join(name.encode("ascii") for name in ENVELOPE_FIELDS)
_FIELD_VALUE = re.compile(rb"\n(" + _NAMES + rb"):([^\n]*+(?:\n[ \t][^\n]*+)*+)", re.IGNORECASE)

# Possessive quantifiers (Python 3.11+) everywhere: a folded value can be as long as the
# header section (up to spool.max_message_size), and with backtracking a run of atext
# split between two adjacent phrase words would be tried in exponentially many ways
# before failing.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = rf"{_ATEXT}++(?:\.{_ATEXT}++)*+"
_ADDR_SPEC = rf"{_DOT_ATOM}@{_DOT_ATOM}"
_FWS = r"[ \t\r\n]*+"
_WORD = r"""(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]++|"[^"\\\r\n]*+")"""
# One list element and its separator: group 1 a bare addr-spec, group 2 the addr-spec of
# a "phrase <addr-spec>" element, group 3 the "," when another element must follow.
_ELEMENT = re.compile(
    rf"{_FWS}(?:({_ADDR_SPEC})|(?:{_WORD}{_FWS})*+<({_ADDR_SPEC})>){_FWS}(?:(,)|\Z)"
)


class HeaderFields:
    """The envelope fields of a checked header section, as compat32 would return them.

    Only `get_all` of engine.drop.parse's `_Headers` protocol; names outside
    ENVELOPE_FIELDS are never found (the caller asks for no other).
    """

    __slots__ = ("_values",)

    def __init__(self, head: bytes, start: int = 0) -> None:
        """Read the envelope fields of `head[start:]`.

        Args:
            head: the header section, every line already checked by engine.drop.parse.
            start: where the fields begin (after an X-Sender/X-Receiver prefix): 0, or
                just after a "\\n".
        """
        values: dict[str, list[str]] = {}
        # The "\n" before the first field: the one that ends the prefix, else our own.
        found = (
            _FIELD_VALUE.findall(head, start - 1) if start else _FIELD_VALUE.findall(b"\n" + head)
        )
        for name, raw in found:
            # Slicing at ":" and at line ends keeps the UTF-8 the caller checked valid.
            value = raw.lstrip(b" \t").rstrip(b"\r\n").decode("utf-8")
            values.setdefault(name.decode("ascii").lower(), []).append(value)
        self._values = values

    def get_all(self, name: str) -> list[str] | None:
        """Every value of field `name` in order, or None (as `Message.get_all`)."""
        return self._values.get(name.lower())


def simple_addresses(value: str) -> list[str] | None:
    """The addr-specs of `value` if it is a plain address list, else None.

    Args:
        value: an address header value as compat32 returns it (folding kept).

    Returns:
        The addresses in order, exactly `[a for _, a in getaddresses([value]) if a]`; or
        None when `value` uses any syntax beyond the grammar in the module docstring.
    """
    if not value.isascii():
        return None
    addresses: list[str] = []
    match = _ELEMENT.match
    pos = 0
    while True:
        m = match(value, pos)
        if m is None:
            return None
        addresses.append(m[1] or m[2])
        if m[3] is None:  # the element ended the value
            return addresses
        pos = m.end()
