"""Tests for engine.drop.parse: envelope and message from a dropped file's bytes."""

from __future__ import annotations

import re
import time
from email.utils import getaddresses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine.drop.parse as parse_module
from engine.drop.address import validate_address
from engine.drop.parse import DropEnvelope, parse_drop
from engine.drop.read import DropRejection

BODY = b"Hello,\r\n\r\nthis is the body. \xc3\xa9\r\n.\r\n..dots\r\nFrom me\r\n"


def _accept(data: bytes, max_recipients: int = 100) -> DropEnvelope:
    result = parse_drop(data, max_recipients=max_recipients)
    assert isinstance(result, DropEnvelope), result
    return result


def _reject(data: bytes, max_recipients: int = 100) -> str:
    result = parse_drop(data, max_recipients=max_recipients)
    assert isinstance(result, DropRejection), result
    return result.reason


# --- X-Sender / X-Receiver envelope -------------------------------------------------


def test_pickup_envelope_lines_are_the_envelope_and_are_stripped() -> None:
    rest = (
        b"From: News <news@example.com>\r\n"
        b"To: someone-else@example.net\r\n"
        b"Subject: hi\r\n"
        b"\r\n" + BODY
    )
    data = (
        b"X-Sender: bounce@example.com\r\n"
        b"X-Receiver: a@example.org\r\n"
        b"X-Receiver: b@example.org\r\n" + rest
    )
    env = _accept(data)
    assert env.sender == "bounce@example.com"
    assert env.recipients == ("a@example.org", "b@example.org")  # not To
    assert env.message == rest  # byte-identical after the envelope lines
    assert env.smtputf8 is False
    assert env.body_8bit is True  # the "é" in BODY


def test_pickup_envelope_names_are_case_insensitive_and_brackets_optional() -> None:
    data = b"x-sender: <s@example.com>\nX-RECEIVER:<r@example.org>\nFrom: s@example.com\n\nb"
    env = _accept(data)
    assert env.sender == "s@example.com"
    assert env.recipients == ("r@example.org",)
    assert env.message == b"From: s@example.com\n\nb"


def test_pickup_null_sender() -> None:
    env = _accept(b"X-Sender: <>\nX-Receiver: r@example.org\nSubject: x\n\nb")
    assert env.sender == ""


def test_pickup_envelope_ignores_header_recipients_but_still_removes_bcc() -> None:
    data = (
        b"X-Sender: s@example.com\r\nX-Receiver: r@example.org\r\n"
        b"From: s@example.com\r\nBcc: hidden@example.net\r\nSubject: x\r\n\r\nbody\r\n"
    )
    env = _accept(data)
    assert env.recipients == ("r@example.org",)
    assert env.message == b"From: s@example.com\r\nSubject: x\r\n\r\nbody\r\n"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"X-Receiver: r@example.org\nFrom: a@b.example\n\nb", "0 X-Sender lines"),
        (
            b"X-Sender: a@example.com\nX-Sender: b@example.com\nX-Receiver: r@example.org\n"
            b"From: a@example.com\n\nb",
            "2 X-Sender lines",
        ),
        (b"X-Sender: s@example.com\nFrom: s@example.com\n\nb", "no recipients: no X-Receiver"),
        (
            b"X-Sender: s@example.com\nX-Receiver:\nFrom: s@example.com\n\nb",
            "empty X-Receiver on line 2",
        ),
        (
            b"X-Sender: s@example.com\nX-Receiver: r@example.org\n\nbody",
            "no header section after the X-Sender/X-Receiver lines",
        ),
        (
            b"X-Sender: s@example.com\nX-Receiver: r@example.org\n  r2@example.org\n"
            b"From: s@example.com\n\nb",
            "header line 3: a folded X-Sender/X-Receiver line",
        ),
    ],
)
def test_pickup_envelope_errors(data: bytes, reason: str) -> None:
    assert reason in _reject(data)


def test_cr_inside_an_x_receiver_line_is_rejected() -> None:
    data = (
        b"X-Sender: s@example.com\r\n"
        b"X-Receiver: a@example.org\rRCPT TO:<evil@example.net>\r\n"
        b"From: s@example.com\r\n\r\nb"
    )
    assert _reject(data) == "bare CR (not followed by LF) in header line 2"


def test_lf_inside_an_x_receiver_line_is_rejected() -> None:
    data = (
        b"X-Sender: s@example.com\n"
        b"X-Receiver: a@example.org\nRCPT TO:<evil@example.net>\n"
        b"From: s@example.com\n\nb"
    )
    assert _reject(data) == (
        "no header section: line 3 is not a 'Name: value' header field: "
        "'RCPT TO:<evil@example.net>'"
    )


def test_invalid_x_receiver_is_named_in_the_reason() -> None:
    data = b"X-Sender: s@example.com\nX-Receiver: not an address\nFrom: s@example.com\n\nb"
    assert _reject(data) == (
        "invalid recipient address 'not an address' (X-Receiver line 2): "
        'address must contain exactly one "@" (found 0)'
    )


# --- envelope from the header fields -----------------------------------------------


def test_sender_precedence_return_path_then_sender_then_from() -> None:
    base = b"To: r@example.org\r\nSubject: x\r\n\r\nb"
    env = _accept(
        b"From: f@example.com\r\nSender: s@example.com\r\nReturn-Path: <rp@example.com>\r\n" + base
    )
    assert env.sender == "rp@example.com"
    env = _accept(b"From: f@example.com\r\nSender: s@example.com\r\n" + base)
    assert env.sender == "s@example.com"
    env = _accept(b"From: F <f@example.com>, g@example.com\r\n" + base)
    assert env.sender == "f@example.com"  # the first From address


def test_return_path_null_sender() -> None:
    env = _accept(b"Return-Path: <>\nFrom: f@example.com\nTo: r@example.org\n\nb")
    assert env.sender == ""
    assert env.recipients == ("r@example.org",)


def test_to_cc_bcc_are_recipients_in_order_and_bcc_is_removed() -> None:
    head_kept = (
        b"From: f@example.com\r\n"
        b"To: A <a@example.org>, b@example.org\r\n"
        b"Cc: c@example.org\r\n"
        b"Subject: x\r\n"
    )
    data = (
        b"From: f@example.com\r\n"
        b"To: A <a@example.org>, b@example.org\r\n"
        b"Bcc: secret1@example.net\r\n"
        b"Cc: c@example.org\r\n"
        b"bcc: secret2@example.net\r\n"
        b"Subject: x\r\n"
        b"\r\n" + BODY
    )
    env = _accept(data)
    assert env.recipients == (
        "a@example.org",
        "b@example.org",
        "c@example.org",
        "secret1@example.net",
        "secret2@example.net",
    )
    assert env.message == head_kept + b"\r\n" + BODY
    assert b"secret" not in env.message


def test_folded_bcc_is_removed_with_its_continuation_lines() -> None:
    data = (
        b"From: f@example.com\n"
        b"Bcc: one@example.net,\n"
        b"  two@example.net,\n"
        b"\tthree@example.net\n"
        b"To: r@example.org\n"
        b"Subject: folded\n"
        b"  subject continues\n"
        b"\n"
        b"Bcc: this is body text, not a header\n"
    )
    env = _accept(data)
    assert env.recipients == (
        "r@example.org",
        "one@example.net",
        "two@example.net",
        "three@example.net",
    )
    assert env.message == (
        b"From: f@example.com\n"
        b"To: r@example.org\n"
        b"Subject: folded\n"
        b"  subject continues\n"
        b"\n"
        b"Bcc: this is body text, not a header\n"
    )


def test_bcc_as_the_last_line_of_a_message_without_body() -> None:
    env = _accept(b"From: f@example.com\nTo: r@example.org\nBcc: s@example.net")
    assert env.message == b"From: f@example.com\nTo: r@example.org\n"
    assert env.recipients == ("r@example.org", "s@example.net")


def test_message_of_only_bcc_fields_is_rejected() -> None:
    data = b"X-Sender: s@example.com\r\nX-Receiver: r@example.org\r\nBcc: a@example.org\r\n"
    assert _reject(data) == "no header fields left once the Bcc field is removed"


def test_bcc_removal_never_leaves_a_pickup_envelope_at_the_start() -> None:
    data = (
        b"Bcc: b@example.org\nX-Sender: x@example.com\nFrom: f@example.com\nTo: r@example.org\n\nb"
    )
    assert _reject(data) == (
        "an X-Sender/X-Receiver field would start the message once Bcc is removed"
    )


def test_message_without_bcc_is_returned_unchanged() -> None:
    data = b"From: f@example.com\r\nTo: r@example.org\r\n\r\n" + BODY
    env = _accept(data)
    assert env.message == data


def test_group_syntax() -> None:
    env = _accept(
        b"From: f@example.com\n"
        b"To: undisclosed-recipients:;\n"
        b'Cc: Team: a@example.org, "B, b" <b@example.org>;, c@example.org\n\nb'
    )
    assert env.recipients == ("a@example.org", "b@example.org", "c@example.org")


def test_only_an_empty_group_means_no_recipients() -> None:
    reason = _reject(b"From: f@example.com\nTo: undisclosed-recipients:;\n\nb")
    assert reason == "no recipients: no address in To, Cc or Bcc"


def test_duplicates_are_removed_case_insensitively_on_the_domain_only() -> None:
    env = _accept(
        b"From: f@example.com\n"
        b"To: a@example.org, a@EXAMPLE.ORG, A@example.org\n"
        b"Cc: a@Example.Org\n"
        b"Bcc: jorg@b\xc3\xbccher.example, jorg@xn--bcher-kva.example\n\nb"
    )
    # The local part is case-sensitive (RFC 5321 §2.4): "A" is another mailbox.
    assert env.recipients == ("a@example.org", "A@example.org", "jorg@bücher.example")


def test_message_id_is_returned_unfolded() -> None:
    env = _accept(b"From: f@example.com\nTo: r@example.org\nMessage-ID:\n <abc@example.com>\n\nb")
    assert env.message_id == "<abc@example.com>"
    env = _accept(b"From: f@example.com\nTo: r@example.org\n\nb")
    assert env.message_id is None


def test_utf8_addresses_set_smtputf8() -> None:
    env = _accept("From: jörg@bücher.example\nTo: r@example.org\n\nascii body".encode())
    assert env.sender == "jörg@bücher.example"
    assert env.smtputf8 is True
    assert env.body_8bit is True  # the header bytes count: the message has bytes > 127
    env = _accept("From: f@example.com\nTo: r@example.org\nSubject: é\n\nb".encode())
    assert env.smtputf8 is False
    assert env.body_8bit is True
    env = _accept(b"From: f@example.com\nTo: r@example.org\n\nb")
    assert (env.smtputf8, env.body_8bit) == (False, False)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (b"To: r@example.org\n", "no sender: no Return-Path, Sender or From header"),
        (b"From: undisclosed:;\nTo: r@example.org\n", "no sender: the From header holds no"),
        (
            b"Return-Path: <a@example.com>, <b@example.com>\nTo: r@example.org\n",
            "the Return-Path header holds 2 addresses; 1 expected",
        ),
        (
            b"From: not-an-address\nTo: r@example.org\n",
            "invalid sender address 'not-an-address'",
        ),
        (b"From: f@example.com\nSubject: x\n", "no recipients: no address in To, Cc or Bcc"),
        (
            b"From: f@example.com\nTo: a@example.org <b@example.org>\n",
            "ambiguous address list in the To header: 'a@example.org <b@example.org>'",
        ),
        (
            b"From: f@example.com\nTo: alice@example.org)<bob@example.org>\n",
            "unbalanced parentheses in the To header",
        ),
        (
            b"From: f@example.com\nTo: r@[192.0.2.1]\n",
            "invalid recipient address 'r@[192.0.2.1]' (To header): address literals",
        ),
        (
            b"From: f@example.com\nCc: Smith, John <j@example.org>\n",
            "invalid recipient address 'Smith' (Cc header)",
        ),
    ],
)
def test_header_envelope_errors(headers: bytes, reason: str) -> None:
    assert reason in _reject(headers + b"\nbody")


def test_crlf_inside_a_quoted_header_address_is_never_a_recipient() -> None:
    # A quoted local part folded across lines: the CRLF must not reach RCPT TO.
    data = b'From: f@example.com\r\nTo: "a\r\n b"@example.org\r\n\r\nb'
    reason = _reject(data)
    assert reason.startswith("invalid recipient address")


def test_deeply_nested_comments_are_rejected_not_raised() -> None:
    opening = b"\r\n ".join([b"(" * 500] * 4)  # 2,000 nested "(" over short lines
    closing = b"\r\n ".join([b")" * 500] * 4)
    data = b"From: f@example.com\r\nTo: " + opening + b"\r\n r@example.org\r\n " + closing
    reason = _reject(data + b"\r\n\r\nb")
    assert reason == "the To header is nested too deeply to parse"


def test_deeply_nested_groups_are_rejected_not_raised() -> None:
    folded = b"\r\n ".join([b":" * 500] * 4)
    reason = _reject(b"From: f@example.com\r\nTo: g" + folded + b"\r\n\r\nb")
    assert reason == "the To header is nested too deeply to parse"


# --- structural rejections ------------------------------------------------------------


def test_empty() -> None:
    assert _reject(b"") == "empty message"


def test_nul_bytes_anywhere() -> None:
    assert _reject(b"From: f@example.com\nTo: r@example.org\n\nbo\0dy") == (
        "NUL byte at offset 41: not a text message"
    )
    assert _reject(b"From: f@exa\0mple.com\n\nb").startswith("NUL byte at offset 11")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\r\nbody only", "no header section: the message starts with a blank line"),
        (b"\nbody only", "no header section: the message starts with a blank line"),
        (
            b"Dear customer,\nthis is not a header\n",
            "no header section: line 1 is not a 'Name: value' header field: 'Dear customer,'",
        ),
        (
            b"From sender@example.com Tue Nov 24 10:00:00 2026\nTo: r@example.org\n\nb",
            "no header section: line 1 is not a 'Name: value' header field",
        ),
        (b" continued: x\nTo: r@example.org\n\nb", "no header section: line 1"),
        (
            b"From: f@example.com\nTo: r@example.org\nthis line is junk\n\nb",
            "malformed header line 3: 'this line is junk' is neither a 'Name: value' field",
        ),
        (
            b"From: f@example.com\nTo : r@example.org\n\nb",
            "malformed header line 2: 'To : r@example.org'",
        ),
    ],
)
def test_no_or_malformed_header_section(data: bytes, reason: str) -> None:
    assert reason in _reject(data)


def test_header_line_over_998_octets() -> None:
    ok = b"Subject: " + b"x" * (998 - 9) + b"\r\n"
    assert len(ok) == 1000
    _accept(b"From: f@example.com\r\nTo: r@example.org\r\n" + ok + b"\r\nbody")
    too_long = b"Subject: " + b"x" * (999 - 9) + b"\r\n"
    assert _reject(b"From: f@example.com\r\nTo: r@example.org\r\n" + too_long + b"\r\nb") == (
        "header line 3 is 999 octets long; RFC 5322 §2.1.1 allows 998"
    )


def test_body_lines_over_998_octets_are_not_our_business() -> None:
    _accept(b"From: f@example.com\nTo: r@example.org\n\n" + b"x" * 5000 + b"\n")


def test_one_megabyte_header_line_is_rejected_quickly() -> None:
    data = b"From: f@example.com\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\nbody"
    started = time.perf_counter()
    reason = _reject(data)
    elapsed = time.perf_counter() - started
    assert reason == "header line 2 is 1000007 octets long; RFC 5322 §2.1.1 allows 998"
    print(f"1 MB header line rejected in {elapsed * 1e3:.2f} ms")


def test_invalid_utf8_in_the_header_section() -> None:
    data = b"From: f@example.com\nTo: r@example.org\nSubject: caf\xe9\n\nb"
    assert _reject(data) == (
        "header section is not valid UTF-8 (byte 0xe9 in header line 3); RFC 6532 allows UTF-8 only"
    )
    # Overlong encodings and UTF-16 surrogates are invalid UTF-8 too.
    assert "not valid UTF-8" in _reject(b"From: f@example.com\nSubject: \xc0\xaf\n\nb")
    assert "not valid UTF-8" in _reject(b"From: f@example.com\nSubject: \xed\xa0\x80\n\nb")


def test_invalid_utf8_in_the_body_is_fine() -> None:
    env = _accept(b"From: f@example.com\nTo: r@example.org\n\ncaf\xe9 \xff\xfe")
    assert env.body_8bit is True


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",  # a PNG (has NUL)
        b"\x1f\x8b\x08\x08\x9b\x8f\x1a\x65\x02\x03x.eml",  # gzip
        b"PK\x03\x04\x14\x00\x08\x00",  # zip
        bytes(range(1, 256)) * 4,
        b"From: f@example.com\nTo: r@example.org\nX-Esc: \x1b[31mred\n\nb",
    ],
)
def test_binary_garbage(data: bytes) -> None:
    reason = _reject(data)
    assert reason.startswith(("NUL byte", "binary data in the header section", "no header"))


def test_binary_control_byte_reason_names_the_byte_and_line() -> None:
    reason = _reject(b"From: f@example.com\nTo: r@example.org\nX-Esc: \x1b[31m\n\nb")
    assert reason == "binary data in the header section: control byte 0x1b in header line 3"


def test_too_many_recipients() -> None:
    receivers = b"".join(b"X-Receiver: user%d@example.org\r\n" % i for i in range(10_000))
    data = b"X-Sender: s@example.com\r\n" + receivers + b"From: s@example.com\r\n\r\nb"
    started = time.perf_counter()
    reason = _reject(data, max_recipients=1000)
    elapsed = time.perf_counter() - started
    assert reason == "too many recipients: 10000, the limit is 1000 per message"
    print(f"10,000 X-Receiver lines rejected in {elapsed * 1e3:.1f} ms")


def test_too_many_recipients_in_folded_to_header() -> None:
    to = b",\r\n ".join(b"user%d@example.org" % i for i in range(10_000))
    data = b"From: s@example.com\r\nTo: " + to + b"\r\n\r\nb"
    assert _reject(data, max_recipients=1000) == (
        "too many recipients: 10000, the limit is 1000 per message"
    )
    assert len(_accept(data, max_recipients=10_000).recipients) == 10_000


def test_duplicates_do_not_count_towards_the_limit() -> None:
    data = b"From: s@example.com\nTo: a@example.org, a@EXAMPLE.org\nCc: b@example.org\n\nb"
    assert _accept(data, max_recipients=2).recipients == ("a@example.org", "b@example.org")


@pytest.mark.parametrize(
    ("addr", "reason_part"),
    [
        (b"x" * 65 + b"@example.org", "local part is 65 octets; at most 64 allowed"),
        (
            b"u@" + b".".join([b"d" * 63] * 4),
            "address is 257 octets; the path <...> may have 256",
        ),
        (b"u@" + b"d" * 64 + b".example", "is not a valid host name label"),
    ],
)
def test_over_long_addresses(addr: bytes, reason_part: str) -> None:
    reason = _reject(b"From: s@example.com\nTo: " + addr + b"\n\nb")
    assert reason.startswith("invalid recipient address")
    assert reason_part in reason


def test_hostile_address_is_quoted_and_truncated_in_the_reason() -> None:
    evil = "x" * 300 + "\u2028" + "@example.org"
    reason = _reject(f"From: s@example.com\nTo: {evil}\n\nb".encode())
    assert "\u2028" not in reason
    assert "'" + "x" * 200 + "'..." in reason  # repr of the first 200 characters
    assert len(reason) < 400


def test_internal_error_is_a_rejection_not_an_exception(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import engine.drop.parse as parse_module

    def broken(*_args: object, **_kwargs: object) -> object:
        raise RuntimeError("boom")

    monkeypatch.setattr(parse_module, "_envelope_from_headers", broken)
    result = parse_drop(b"From: f@example.com\nTo: r@example.org\n\nb", max_recipients=10)
    assert result == DropRejection("internal error while parsing the message (see the engine log)")


# --- property tests -------------------------------------------------------------------

_FIELD_NAMES = st.sampled_from(
    [
        "From",
        "To",
        "Cc",
        "Bcc",
        "bcc",
        "Sender",
        "Return-Path",
        "Subject",
        "Message-ID",
        "X-Sender",
        "X-Receiver",
        "To ",
        "Received",
    ]
)
# Syntax that address parsers find interesting, but no byte we refuse outright.
_SAFE_ATOMS = [
    "a@example.org",
    "B@Example.ORG",
    "jörg@bücher.example",
    '"quoted local"@example.org',
    '"a@b"@example.org',
    "<x@example.org>",
    "Name <n@example.org>",
    '"Doe, J" <j@example.org>',
    "grp:",
    ";",
    ",",
    ", ",
    "<>",
    "(comment)",
    "(",
    ")",
    '"',
    "\\",
    "@",
    "[192.0.2.1]",
    " ",
    "\t",
    "\r\n ",  # folding
    "é",
    "\u2028",
    "x" * 70,
]
# Bytes and characters that must never reach an envelope address.
_HOSTILE_ATOMS = ["\r", "\n", "\r\n", "\x00", "\x0b", "\x1b", "\ud800", "x" * 1000]
_VALUES = st.lists(st.sampled_from(_SAFE_ATOMS), max_size=8).map("".join)
_HOSTILE_VALUES = st.lists(st.sampled_from(_SAFE_ATOMS + _HOSTILE_ATOMS), max_size=8).map("".join)
# A plausible start, so that many inputs get past the framing checks.
_PREFIXES = st.sampled_from(
    [
        [],
        ["From: f@example.com", "To: r@example.org"],
        ["Return-Path: <>", "To: r@example.org"],
        ["X-Sender: s@example.com", "X-Receiver: r@example.org"],
        ["X-Sender: <>", "x-receiver: <r@example.org>"],
    ]
)


_MAILBOXES = st.sampled_from(
    [
        "a@example.org",
        "A@EXAMPLE.org",
        "Name <n@example.org>",
        '"Doe, J" <j@example.org>',
        "jörg@bücher.example",
        '"quoted local"@example.org',
        "u@xn--bcher-kva.example",
        "grp: g1@example.org, g2@example.org;",
        "undisclosed-recipients:;",
        "c@example.org (comment)",
    ]
)
_ADDRESS_LISTS = st.lists(_MAILBOXES, min_size=1, max_size=4).map(", ".join)


def _lines(values: st.SearchStrategy[str], *, junk: bool) -> st.SearchStrategy[list[str]]:
    def field(v: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.tuples(_FIELD_NAMES, v).map(lambda nv: f"{nv[0]}: {nv[1]}")

    kinds = [field(_ADDRESS_LISTS), field(_ADDRESS_LISTS), field(values)]
    if junk:
        kinds.append(st.tuples(st.sampled_from([" ", "\t"]), values).map("".join))
        kinds.append(values)  # usually not a header line at all
    return st.lists(st.one_of(kinds), max_size=6)


def _message(prefix: list[str], lines: list[str], eols: list[str], body: bytes) -> bytes:
    text = "".join(line + eols[i % len(eols)] for i, line in enumerate(prefix + lines))
    return text.encode("utf-8", "surrogatepass") + body


_BODIES = st.sampled_from([b"", b"\r\n", b"\n", b"\r\nbody\r\n", b"\n\xff\xfe body"])
_STRUCTURED = st.one_of(
    # well-formed framing, interesting address syntax
    st.builds(
        _message,
        _PREFIXES,
        _lines(_VALUES, junk=False),
        st.sampled_from(["\r\n", "\n"]).map(lambda eol: [eol]),
        _BODIES,
    ),
    # anything goes: mixed line endings, control bytes, surrogates, long lines
    st.builds(
        _message,
        _PREFIXES,
        _lines(_HOSTILE_VALUES, junk=True),
        st.lists(st.sampled_from(["\r\n", "\n", "\r", ""]), min_size=1, max_size=3),
        _BODIES,
    ),
)


def _check_parse_result(data: bytes) -> None:
    result = parse_drop(data, max_recipients=5)
    assert isinstance(result, DropEnvelope | DropRejection)
    if isinstance(result, DropRejection):
        assert not result.reason.startswith("internal error"), result.reason
        assert "\n" not in result.reason and "\r" not in result.reason
        return
    for addr in (result.sender, *result.recipients):
        assert not any(c in addr for c in "\r\n\0"), addr
    for addr in result.recipients:
        assert validate_address(addr) is None
    assert 1 <= len(result.recipients) <= 5
    assert len(set(result.recipients)) == len(result.recipients)
    head = re.split(rb"\n\r?\n", result.message, maxsplit=1)[0]
    lines = head.splitlines()
    assert not lines[0].lower().startswith((b"x-sender:", b"x-receiver:"))
    for line in lines:
        assert not line.lower().startswith(b"bcc:")
        assert len(line) <= 998
    assert len(result.message) <= len(data)


_PROPERTY_SETTINGS = settings(
    max_examples=400,
    deadline=None,  # the machine is shared and noisy; speed is tested elsewhere
    database=None,  # no .hypothesis directory in the tree
    suppress_health_check=[HealthCheck.too_slow],
)


@_PROPERTY_SETTINGS
@given(st.binary(max_size=2000))
def test_property_arbitrary_bytes_never_raise(data: bytes) -> None:
    _check_parse_result(data)


@_PROPERTY_SETTINGS
@given(_STRUCTURED)
def test_property_header_like_input_never_raises_and_stays_safe(data: bytes) -> None:
    _check_parse_result(data)


@_PROPERTY_SETTINGS
@given(
    st.lists(st.one_of(_VALUES, _HOSTILE_VALUES), min_size=1, max_size=4),
    st.lists(st.one_of(_VALUES, _HOSTILE_VALUES), max_size=3),
    st.sampled_from([b"\r\n", b"\n"]),
)
def test_property_valid_frame_with_hostile_address_values(
    tos: list[str], bccs: list[str], eol: bytes
) -> None:
    lines = [b"From: f@example.com"]
    lines += [b"To: " + v.encode("utf-8", "surrogatepass") for v in tos]
    lines += [b"Bcc: " + v.encode("utf-8", "surrogatepass") for v in bccs]
    data = eol.join(lines) + eol + eol + b"body" + eol
    _check_parse_result(data)
    result = parse_drop(data, max_recipients=5)
    if isinstance(result, DropEnvelope):
        assert result.message.endswith(eol + b"body" + eol)
        assert result.message.startswith(b"From: f@example.com" + eol)


# --- the fast path (engine.drop.fastparse) and the email path agree ------------------------

NEWSLETTER = (
    b"From: Store News <news@sender.test>\r\n"
    b"To: grace.okafor.0@dom001.test\r\n"
    b"Subject: Grace, your weekly picks\r\n"
    b"Date: Thu, 26 Nov 2026 12:00:00 +0000\r\n"
    b"Message-ID: <b1.0@sender.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="=_b1_0"\r\n'
    b"\r\n--=_b1_0\r\nContent-Type: text/plain\r\n\r\nDear Grace,\r\n--=_b1_0--\r\n"
)


def test_a_plain_newsletter_never_reaches_email(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> object:
        raise AssertionError("the email package was used")

    monkeypatch.setattr(parse_module._PARSER, "parsestr", refuse)
    monkeypatch.setattr(parse_module, "getaddresses", refuse)
    assert parse_drop(NEWSLETTER, max_recipients=10) == DropEnvelope(
        sender="news@sender.test",
        recipients=("grace.okafor.0@dom001.test",),
        message=NEWSLETTER,
        message_id="<b1.0@sender.test>",
        has_date=True,
        smtputf8=False,
        body_8bit=False,
    )


def test_only_the_value_that_is_not_plain_goes_to_getaddresses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[list[str]] = []

    def spy(values: list[str]) -> list[tuple[str, str]]:
        seen.append(values)
        return getaddresses(values)

    monkeypatch.setattr(parse_module, "getaddresses", spy)
    data = (
        b"From: F <f@example.com>\nTo: a@example.org, B <b@example.org>\nCc: c@example.org (C)\n\nb"
    )
    env = _accept(data)
    assert env.recipients == ("a@example.org", "b@example.org", "c@example.org")
    assert seen == [["c@example.org (C)"]]
    assert env == parse_module._parse_with_email(data, 100)


_PLAIN_MAILBOXES = [
    "a@example.org",
    "A@Example.ORG",
    "<x@example.org>",
    "Name <n@example.org>",
    '"Doe, J" <j@example.org>',
    "=?utf-8?q?J=C3=B6rg?= <j@example.org>",
]
_ODD_MAILBOXES = [
    "c@example.org (comment)",
    "grp: g1@example.org, g2@example.org;",
    '"quoted local"@example.org',
    "a\\b@example.org",
    "<@route.example:r@example.org>",
    "jörg@bücher.example",
    "a@example.org <b@example.org>",
    "not-an-address",
    "u@[192.0.2.1]",
    "",
    "(",
    '"',
    "\u2028",
]
_MIXED_LISTS = st.tuples(
    st.lists(
        st.one_of(st.sampled_from(_PLAIN_MAILBOXES), st.sampled_from(_ODD_MAILBOXES)),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from([", ", ",", ",\r\n ", ",\n\t", " ", ",,"]),
).map(lambda parts: parts[1].join(parts[0]))
_ENVELOPE_NAMES = st.sampled_from(
    ["From", "FROM", "Sender", "Return-Path", "To", "to", "Cc", "Bcc", "BCC", "Message-ID"]
)
_OTHER_FIELDS = st.sampled_from(
    ["Subject: hi", "Subject: caf\u00e9 \u2028 x", "Date: today", "X-To: x@example.org"]
)
_MIXED_FIELDS = st.lists(
    st.one_of(
        st.tuples(_ENVELOPE_NAMES, _MIXED_LISTS).map(lambda nv: f"{nv[0]}: {nv[1]}"),
        st.sampled_from(["Return-Path: <>", "Message-ID:\r\n <id@example.com>"]),
        _OTHER_FIELDS,
    ),
    min_size=1,
    max_size=7,
)


@_PROPERTY_SETTINGS
@given(
    _PREFIXES,
    _MIXED_FIELDS,
    st.sampled_from([["\r\n"], ["\n"], ["\r\n", "\n"]]),
    _BODIES,
    st.sampled_from([1, 2, 5]),
)
def test_property_fast_path_equals_email_path_on_header_mixes(
    prefix: list[str], fields: list[str], eols: list[str], body: bytes, max_recipients: int
) -> None:
    data = _message(prefix, fields, eols, body)
    fast = parse_drop(data, max_recipients=max_recipients)
    assert fast == parse_module._parse_with_email(data, max_recipients)


@_PROPERTY_SETTINGS
@given(st.one_of(_STRUCTURED, st.binary(max_size=2000)))
def test_property_fast_path_equals_email_path_on_hostile_input(data: bytes) -> None:
    assert parse_drop(data, max_recipients=5) == parse_module._parse_with_email(data, 5)


def test_has_date_says_whether_a_date_field_is_there() -> None:
    no_date = NEWSLETTER.replace(b"Date: Thu, 26 Nov 2026 12:00:00 +0000\r\n", b"")
    got = parse_drop(no_date, max_recipients=10)
    assert isinstance(got, DropEnvelope) and not got.has_date
    folded = NEWSLETTER.replace(b"Date: Thu,", b"date:\r\n Thu,")
    got = parse_drop(folded, max_recipients=10)
    assert isinstance(got, DropEnvelope) and got.has_date
    assert got == parse_module._parse_with_email(folded, 10)


# --- header_envelope: what `sendmail -t` reads (engine.sendmail) ----------------------


def test_header_envelope_reads_sender_and_every_header_recipient() -> None:
    from engine.drop.parse import header_envelope

    data = b"From: News <news@example.com>\r\nTo: a@example.org\r\nCc: b@example.org\r\n"
    data += b"Bcc: c@example.org, a@example.org\r\n\r\nbody\r\n"
    assert header_envelope(data, recipients=True) == (
        "news@example.com",
        ("a@example.org", "b@example.org", "c@example.org"),
    )
    assert header_envelope(data, recipients=False) == ("news@example.com", ())


def test_header_envelope_allows_no_recipient_and_skips_bad_ones_when_not_asked() -> None:
    from engine.drop.parse import header_envelope

    assert header_envelope(b"From: s@example.com\r\n\r\nb", recipients=True) == (
        "s@example.com",
        (),
    )
    bad_to = b"From: s@example.com\r\nTo: Foo\r\n\r\nb"
    refused = header_envelope(bad_to, recipients=True)
    assert isinstance(refused, DropRejection) and "To header" in refused.reason
    assert header_envelope(bad_to, recipients=False) == ("s@example.com", ())
    # parse_drop itself is unchanged: no recipient is still a rejection.
    assert _reject(b"From: s@example.com\r\n\r\nb").startswith("no recipients")


def test_header_envelope_refuses_what_parse_drop_refuses() -> None:
    from engine.drop.parse import header_envelope

    for data in (b"", b"From: a@b.example\r\nTo: x@y.example\x00\r\n\r\n", b"no header\r\n"):
        got = header_envelope(data, recipients=True)
        assert isinstance(got, DropRejection)
        assert got.reason == _reject(data)
