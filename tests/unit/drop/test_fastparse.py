"""Tests for engine.drop.fastparse: the same answers as `email`, or no answer at all."""

from __future__ import annotations

import time
from email import policy
from email.parser import HeaderParser
from email.utils import getaddresses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine.drop.parse as parse_module
from engine.drop.fastparse import ENVELOPE_FIELDS, HeaderFields, simple_addresses

_PARSER = HeaderParser(policy=policy.compat32)


def _email_get_all(section: bytes, name: str) -> list[str] | None:
    """The reference: what parse.py's `email` path reads for `name`."""
    values = _PARSER.parsestr(section.decode("utf-8"), headersonly=True).get_all(name)
    return None if values is None else [str(v) for v in values]


def _email_addresses(value: str) -> list[str]:
    """The reference: getaddresses, empties dropped (parse.py's `_addresses`)."""
    return [addr for _name, addr in getaddresses([value]) if addr]


# --- HeaderFields ----------------------------------------------------------------------


def test_values_are_unfolded_like_compat32() -> None:
    head = (
        b"From: Store <s@example.com>\r\n"
        b"To: a@example.org,\r\n"
        b"  b@example.org,\r\n"
        b"\tc@example.org\r\n"
        b"Subject: not read\r\n"
        b"Cc:\r\n"
        b" d@example.org\r\n"
        b"Message-ID:   <id@example.com>   \r\n"
    )
    fields = HeaderFields(head)
    assert fields.get_all("From") == ["Store <s@example.com>"]
    # compat32 keeps the folding (CRLF and the leading whitespace) inside the value.
    assert fields.get_all("To") == ["a@example.org,\r\n  b@example.org,\r\n\tc@example.org"]
    assert fields.get_all("Cc") == ["\r\n d@example.org"]
    assert fields.get_all("Message-ID") == ["<id@example.com>   "]
    assert fields.get_all("Subject") is None  # not an envelope field: never read
    assert fields.get_all("Bcc") is None
    for name in ("From", "To", "Cc", "Message-ID"):
        assert fields.get_all(name) == _email_get_all(head, name)


def test_names_are_case_insensitive_and_repeated_fields_keep_their_order() -> None:
    head = b"to: a@example.org\nTO: b@example.org\nX-To: no@example.org\nTo: c@example.org\n"
    fields = HeaderFields(head)
    assert fields.get_all("To") == ["a@example.org", "b@example.org", "c@example.org"]
    assert fields.get_all("to") == fields.get_all("To") == _email_get_all(head, "To")


def test_first_line_last_line_without_eol_and_empty_values() -> None:
    head = b"To:\nCc:   \nBcc: x@example.org"
    fields = HeaderFields(head)
    assert fields.get_all("To") == [""]
    assert fields.get_all("Cc") == [""]
    assert fields.get_all("Bcc") == ["x@example.org"]
    for name in ("To", "Cc", "Bcc"):
        assert fields.get_all(name) == _email_get_all(head, name)


def test_fields_after_an_envelope_prefix_only() -> None:
    head = b"X-Sender: s@example.com\nX-Receiver: r@example.org\nFrom: f@example.com\n"
    start = head.index(b"From")
    assert HeaderFields(head, start).get_all("From") == ["f@example.com"]
    assert HeaderFields(head, start).get_all("Sender") is None  # "X-Sender" is not "Sender"


def test_unicode_line_separators_are_not_line_ends() -> None:
    # email's line splitter breaks at CR, LF and CRLF only, like bytes.splitlines.
    head = "Subject: a\u2028To: x@example.org\nTo: b\u0085c@example.org\n".encode()
    assert HeaderFields(head).get_all("To") == ["b\u0085c@example.org"]
    assert HeaderFields(head).get_all("To") == _email_get_all(head, "To")


_NAMES = st.sampled_from(
    [*ENVELOPE_FIELDS, "FROM", "To", "cC", "Message-Id", "Subject", "X-To", "Tox", "Received"]
)
_VALUE_PARTS = st.sampled_from(
    ["a@example.org", " ", "\t", "", ",", "<x@y.example>", "é", "\u2028", "\u0085", ":", "x"]
)
_VALUES = st.lists(_VALUE_PARTS, max_size=5).map("".join)
_FOLDS = st.lists(st.tuples(st.sampled_from([" ", "\t", "  "]), _VALUES).map("".join), max_size=2)
_FIELDS = st.tuples(_NAMES, _VALUES, _FOLDS)


def _section(fields: list[tuple[str, str, list[str]]], eols: list[str], last_eol: bool) -> bytes:
    lines: list[str] = []
    for name, value, folds in fields:
        lines.append(f"{name}:{value}")
        lines.extend(folds)
    text = "".join(line + eols[i % len(eols)] for i, line in enumerate(lines))
    if not last_eol:
        text = text.rstrip("\r\n")
    return text.encode()


_PROPERTY_SETTINGS = settings(
    max_examples=400,
    deadline=None,  # the machine is shared and noisy
    database=None,  # no .hypothesis directory in the tree
    suppress_health_check=[HealthCheck.too_slow],
)


@_PROPERTY_SETTINGS
@given(
    st.lists(_FIELDS, min_size=1, max_size=6),
    st.lists(st.sampled_from(["\r\n", "\n"]), min_size=1, max_size=3),
    st.booleans(),
)
def test_property_header_fields_equal_email(
    fields: list[tuple[str, str, list[str]]], eols: list[str], last_eol: bool
) -> None:
    head = _section(fields, eols, last_eol)
    lines = head.splitlines(keepends=True)
    if parse_module._check_header_bytes(head) is not None or isinstance(
        parse_module._scan_fields(lines, first_line_no=1), parse_module.DropRejection
    ):
        return  # parse.py refuses it before reading any field
    fast = HeaderFields(head)
    for name in ENVELOPE_FIELDS:
        assert fast.get_all(name) == _email_get_all(head, name), name


# --- simple_addresses ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "addresses"),
    [
        ("a@example.org", ["a@example.org"]),
        ("<a@example.org>", ["a@example.org"]),
        ("Name <n@example.org>", ["n@example.org"]),
        ('"Doe, J" <j@example.org>', ["j@example.org"]),
        ('"" <e@example.org>', ["e@example.org"]),
        ("J. R. Smith<j@example.org>", ["j@example.org"]),
        ("=?utf-8?q?J=C3=B6rg?= <j@example.org>", ["j@example.org"]),  # not decoded by either
        ("first.last+tag=x@sub.example.org", ["first.last+tag=x@sub.example.org"]),
        ("o'brien@example.org, {x}|~@example.org", ["o'brien@example.org", "{x}|~@example.org"]),
        (
            ' a@example.org ,\r\n B <b@example.org>,\n\t"C" <c@example.org>  ',
            ["a@example.org", "b@example.org", "c@example.org"],
        ),
        ("a@example.org, a@example.org", ["a@example.org", "a@example.org"]),  # parse dedups
        ("not-an-address@x", ["not-an-address@x"]),  # syntax only; validate_address judges
    ],
)
def test_simple_lists(value: str, addresses: list[str]) -> None:
    assert simple_addresses(value) == addresses
    assert _email_addresses(value) == addresses
    assert parse_module._addresses("To", value) == addresses


@pytest.mark.parametrize(
    "value",
    [
        "",  # parse.py answers [] before asking
        "   ",
        "a@example.org (comment)",
        "(c) a@example.org",
        "Team: a@example.org, b@example.org;",
        "undisclosed-recipients:;",
        '"quoted local"@example.org',
        '"a\\"b" <x@example.org>',
        "a\\b@example.org",
        "<@route.example:a@example.org>",
        "jörg@bücher.example",
        "Jörg <j@example.org>",
        "a @example.org",
        "a@ example.org",
        "a@example .org",
        "< a@example.org>",
        "<a@example.org >",
        "a@example.org <b@example.org>",  # CVE-2023-27043
        "alice@example.org)<bob@example.org>",  # CVE-2023-27043
        "a@example.org,",
        ",a@example.org",
        "a@example.org,,b@example.org",
        "a@example.org b@example.org",
        "Smith, John <j@example.org>",
        "a..b@example.org",
        ".a@example.org",
        "a@example.org.",
        "a@[192.0.2.1]",
        "Name",
        "<a@example.org",
        '"unterminated <a@example.org>',
        '"folded\r\n name" <a@example.org>',
        "a@b@example.org",
        "<a@example.org> trailing",
    ],
)
def test_anything_not_plain_is_declined(value: str) -> None:
    assert simple_addresses(value) is None


def test_declining_a_long_hostile_value_takes_linear_time() -> None:
    # Without possessive quantifiers, a run of atext split between adjacent phrase words
    # backtracks exponentially; 100,000 characters would never finish.
    value = "a" * 50_000 + " b" * 25_000
    started = time.perf_counter()
    assert simple_addresses(value + ";") is None
    assert simple_addresses(value + "<x@example.org>;") is None
    assert simple_addresses(value + '"' + "c" * 50_000) is None
    assert time.perf_counter() - started < 1.0


def test_ten_thousand_addresses() -> None:
    value = ",\r\n ".join(f"user{i}@example.org" for i in range(10_000))
    assert simple_addresses(value) == [f"user{i}@example.org" for i in range(10_000)]


_SIMPLE_ELEMENTS = [
    "a@example.org",
    "B.c-d+e@Sub.Example.ORG",
    "<x@example.org>",
    "Name <n@example.org>",
    "J. Doe <j@example.org>",
    '"Doe, J" <j@example.org>',
    '"" <e@example.org>',
    "=?utf-8?b?SsO2cmc=?= <j@example.org>",
    "o'b{|}~@example.org",
]
_NASTY_ELEMENTS = [
    "",
    " ",
    "(comment)",
    "(",
    ")",
    '"',
    '"q l"@example.org',
    "\\",
    "grp:",
    ";",
    ":",
    "<",
    ">",
    "@",
    ".",
    "..",
    "<@r.example:a@example.org>",
    "[192.0.2.1]",
    "jörg@bücher.example",
    "é",
    "a@b",
    "x",
    "\r\n ",
]
_SEPARATORS = st.sampled_from([",", ", ", " ,", ",\r\n ", ",\n\t", " ", "", ",,"])
_ELEMENTS = st.one_of(
    st.sampled_from(_SIMPLE_ELEMENTS),
    st.lists(st.sampled_from(_SIMPLE_ELEMENTS + _NASTY_ELEMENTS), max_size=3).map("".join),
)


@st.composite
def _address_lists(draw: st.DrawFn) -> str:
    elements = draw(st.lists(_ELEMENTS, min_size=1, max_size=5))
    out = draw(st.sampled_from(["", " ", "\r\n "]))
    for i, element in enumerate(elements):
        if i:
            out += draw(_SEPARATORS)
        out += element
    return out + draw(st.sampled_from(["", " ", "\t"]))


@_PROPERTY_SETTINGS
@given(_address_lists())
def test_property_simple_addresses_equal_email_or_decline(value: str) -> None:
    fast = simple_addresses(value)
    if fast is not None:
        assert fast == _email_addresses(value)
        # and the CVE-2023-27043 checks in parse.py pass: same answer with them
        assert parse_module._addresses("To", value) == fast


@_PROPERTY_SETTINGS
@given(st.lists(st.sampled_from(_SIMPLE_ELEMENTS), min_size=1, max_size=5), _SEPARATORS)
def test_property_plain_lists_are_taken(elements: list[str], separator: str) -> None:
    value = ", ".join(elements)
    assert simple_addresses(value) == _email_addresses(value)
    if "," in separator and ",," not in separator:
        value = separator.join(elements)
        assert simple_addresses(value) == _email_addresses(value)


_ADDRESS_ALPHABET = st.sampled_from(
    [*'ab@.<>", \t():;\\[]=?!', "\r\n ", "x@y", "<a@b>", '"q"', "é"]
)


@_PROPERTY_SETTINGS
@given(st.lists(_ADDRESS_ALPHABET, min_size=1, max_size=14).map("".join))
def test_property_character_soup_equals_email_or_declines(value: str) -> None:
    fast = simple_addresses(value)
    if fast is not None:
        assert fast == _email_addresses(value)
        assert parse_module._addresses("To", value) == fast
