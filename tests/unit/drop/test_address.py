"""Tests for engine.drop.address: envelope address validation and routing domains."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.drop.address import domain_of, validate_address
from engine.smtp.encode import needs_smtputf8, rcpt_to


@pytest.mark.parametrize(
    "addr",
    [
        "user@example.com",
        "first.last+tag@sub.example.co.uk",
        "o'brien@example.com",
        "!#$%&'*+-/=?^_`{|}~@example.com",
        '"john doe"@example.com',
        '"a@b"@example.com',  # "@" inside a quoted local part
        '"quote\\"inside"@example.com',
        "jörg@bücher.example",  # RFC 6531 UTF-8 local part and IDN
        "user@xn--bcher-kva.example",
        "user@xn--strae-oqa.de",  # IDNA 2008 A-label: used exactly as given
        "user@localhost",
        "user@123.example",  # numeric labels are fine, except the last one
        "x" * 64 + "@example.com",
    ],
)
def test_valid_addresses(addr: str) -> None:
    assert validate_address(addr) is None


@pytest.mark.parametrize(
    ("addr", "reason_part"),
    [
        ("", "empty address"),
        ("userexample.com", 'exactly one "@" (found 0)'),
        ("a@b@example.com", 'exactly one "@" (found 2)'),
        ("@example.com", "empty local part"),
        ("user@", "empty domain"),
        ("a b@example.com", "character ' ' not allowed"),
        ("a<b@example.com", "character '<' not allowed"),
        ("a>b@example.com", "character '>' not allowed"),
        (".a@example.com", "leading, trailing or doubled dot"),
        ("a.@example.com", "leading, trailing or doubled dot"),
        ("a..b@example.com", "leading, trailing or doubled dot"),
        ('""@example.com', "empty quoted local part"),
        ('"unterminated@example.com', "invalid quoted local part"),
        ('"a"b@example.com', "invalid quoted local part"),
        ('"\\é"@example.com', "invalid quoted local part"),  # quoted-pair is ASCII only
        ("user@example..com", "empty label"),
        ("user@example.com.", "empty label"),
        ("user@.example.com", "empty label"),
        ("user@exa mple.com", "not a valid host name label"),
        ("user@under_score.com", "not a valid host name label"),
        ("user@-lead.com", "not a valid host name label"),
        ("user@trail-.com", "not a valid host name label"),
        ("user@<example.com>", "not a valid host name label"),
        ("user@[192.0.2.1]", "address literals"),
        ("user@[IPv6:2001:db8::1]", "address literals"),
        ("user@192.0.2.1", "all-numeric top-level label"),
        ("user@straße.de", "IDNA 2003 and 2008"),
        ("user@\u03c3\u03bf\u03c6\u03bf\u03c2.gr", "IDNA 2003 and 2008"),  # final sigma
    ],
)
def test_invalid_addresses(addr: str, reason_part: str) -> None:
    reason = validate_address(addr)
    assert reason is not None
    assert reason_part in reason


@pytest.mark.parametrize(
    "addr",
    [
        "a\r\n@example.com",
        "a@example.com\r\nRCPT TO:<evil@example.net>",
        "a\n@example.com",
        "a\r@example.com",
        "a\x00@example.com",
        "a@exam\x00ple.com",
        "a\t@example.com",
        '"a\r\nb"@example.com',  # not even inside quotes
        '"a\x00"@example.com',
        "a\x7f@example.com",
        "a\x85@example.com",  # C1 NEL
    ],
)
def test_control_characters_are_refused_everywhere(addr: str) -> None:
    assert validate_address(addr) == "control character (CR, LF, NUL, ...) in address"


@pytest.mark.parametrize(
    ("addr", "code"),
    [
        ("a\u2028b@example.com", "U+2028 (Zl)"),  # line separator
        ("a\u2029b@example.com", "U+2029 (Zp)"),
        ("a\u00a0b@example.com", "U+00A0 (Zs)"),  # no-break space
        ("a\u202eb@example.com", "U+202E (Cf)"),  # bidi override
        ("a\ud800@example.com", "U+D800 (Cs)"),  # lone surrogate: no UTF-8 form
        ('"a\u2028"@example.com', "U+2028 (Zl)"),
        ("a@ex\u200bample.com", "U+200B (Cf)"),
    ],
)
def test_unicode_separators_and_format_characters_are_refused(addr: str, code: str) -> None:
    reason = validate_address(addr)
    assert reason is not None
    assert code in reason


def test_local_part_limit_is_64_octets_counting_utf8() -> None:
    assert validate_address("x" * 64 + "@example.com") is None
    assert validate_address("x" * 65 + "@example.com") == (
        "local part is 65 octets; at most 64 allowed"
    )
    # 32 "é" are 32 characters but 64 octets; one more is over.
    assert validate_address("é" * 32 + "@example.com") is None
    assert validate_address("é" * 32 + "x@example.com") == (
        "local part is 65 octets; at most 64 allowed"
    )


def test_domain_limit_is_255_octets() -> None:
    # Through validate_address the path limit (256 with "<", ">" and the local part) is
    # always hit first; domain_of applies the domain's own limit.
    long_domain = ".".join(["é" * 30] * 5)  # 154 characters, 304 octets
    with pytest.raises(ValueError, match="domain is over 255 octets"):
        domain_of("u@" + long_domain)
    assert validate_address("u@" + long_domain) == (
        "address is 306 octets; the path <...> may have 256"
    )


def test_domain_over_253_characters_once_encoded_is_refused() -> None:
    # Punycode makes "a"*50 + "ü" longer (52 octets in UTF-8, 58 as an A-label).
    label = "a" * 50 + "ü"
    domain = ".".join([label] * 4) + "." + "b" * 40
    assert len(domain.encode()) == 252  # "u@" + domain: 254 octets, path 256: allowed
    assert len(domain.encode("idna")) == 276
    assert validate_address("u@" + domain) == "domain is over 253 characters once IDNA-encoded"


def test_path_limit_is_256_octets_including_angle_brackets() -> None:
    domain = ".".join(["a" * 61] * 3) + ".example"  # 193 characters
    ok = "x" * (254 - 1 - len(domain)) + "@" + domain  # 254 octets: <ok> is 256
    assert len(ok) == 254
    local_len = len(ok.partition("@")[0])
    assert local_len <= 64
    assert validate_address(ok) is None
    too_long = "x" + ok
    assert validate_address(too_long) == "address is 255 octets; the path <...> may have 256"


def test_domain_of_lowercases_and_idna_encodes() -> None:
    assert domain_of("user@Bücher.example") == "xn--bcher-kva.example"
    assert domain_of("user@EXAMPLE.Com") == "example.com"
    assert domain_of("jörg@bücher.example") == "xn--bcher-kva.example"
    assert domain_of('"a@b"@Example.ORG') == "example.org"
    assert domain_of("u@日本.jp") == "xn--wgv71a.jp"
    # IDNA maps the ideographic full stop and full-width letters.
    assert domain_of("u@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\u3002com") == "example.com"


def test_domain_of_raises_on_invalid_domain() -> None:
    with pytest.raises(ValueError, match="address literals"):
        domain_of("user@[192.0.2.1]")
    with pytest.raises(ValueError, match="empty label"):
        domain_of("user@a..b")


def test_local_part_case_is_kept_by_domain_of() -> None:
    # Only the domain is case-insensitive (RFC 5321 §2.4); domain_of never sees the
    # local part, so "User" and "user" stay different recipients.
    assert domain_of("User@Example.com") == domain_of("user@example.com")


# -- intake and the encoder agree (issue #14, finding 3) ------------------------------------


@pytest.mark.parametrize("addr", ['"a<b"@example.com', '"a>b"@example.com', '"<x>"@example.com'])
def test_angle_brackets_in_a_quoted_local_part_are_refused_at_intake(addr: str) -> None:
    """RFC 5321 qtextSMTP allows them, but the encoder will not put them inside <...>:
    intake must refuse what delivery cannot send, with a reason."""
    reason = validate_address(addr)
    assert reason is not None and "cannot be sent over SMTP" in reason


_ATOM = st.text(alphabet=st.sampled_from("abcXYZ09.!#$%&'*+-/=?^_`{|}~"), min_size=1, max_size=12)
_QTEXT = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126, blacklist_characters='"\\'),
    min_size=1,
    max_size=12,
)
_LOCAL = st.one_of(
    _ATOM,
    _QTEXT.map(lambda t: f'"{t}"'),
    st.text(alphabet=st.sampled_from('jörgüßé日本a.\\"<> '), min_size=1, max_size=8),
    st.text(min_size=1, max_size=10),
)
_DOMAIN = st.sampled_from(
    ["example.com", "bücher.example", "xn--bcher-kva.example", "日本.example", "x.y.z", "a-b.c"]
)


@given(_LOCAL, _DOMAIN)
@settings(max_examples=600, deadline=None)
def test_every_address_intake_accepts_can_be_encoded(local: str, domain: str) -> None:
    addr = f"{local}@{domain}"
    if validate_address(addr) is None:
        line = rcpt_to(addr, smtputf8=needs_smtputf8(addr))
        assert line.startswith(b"RCPT TO:<") and line.endswith(b">\r\n")
        if not needs_smtputf8(addr):
            assert line.isascii()  # a U-label domain goes out as its A-label


def test_an_ascii_local_part_at_an_idn_domain_needs_no_smtputf8() -> None:
    """Finding 7 of issue #14: bob@bücher.example is sent as bob@xn--bcher-kva.example to
    a server without SMTPUTF8 (RFC 5890/5891); only a non-ASCII local part needs it."""
    assert validate_address("bob@bücher.example") is None
    assert not needs_smtputf8("bob@bücher.example")
    assert rcpt_to("bob@bücher.example") == b"RCPT TO:<bob@xn--bcher-kva.example>\r\n"
    assert needs_smtputf8("jörg@example.com") and needs_smtputf8("jörg@bücher.example")
