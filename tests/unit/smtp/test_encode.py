"""encode: DATA wire form (CRLF + dot-stuffing) and command lines that cannot be hijacked."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.smtp import encode
from engine.smtp.encode import mail_from, rcpt_to, wire_body
from engine.smtp.errors import LocalProtocolError


def aiosmtpd_unstuff(wire: bytes) -> bytes:
    """What aiosmtpd's smtp_DATA does with the lines before the final ".": drop one
    leading "." per line (RFC 5321 §4.5.2), keep the CRLFs."""
    assert wire == b"" or wire.endswith(b"\r\n")
    lines = wire.split(b"\r\n")[:-1] if wire else []
    assert b".\r\n" not in [line + b"\r\n" for line in lines]  # never an early end of data
    return b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines)


def crlf_normalised(message: bytes) -> bytes:
    """The reference: every CRLF, CR or LF -> CRLF, and a final CRLF added if missing."""
    if not message:
        return b""
    text = message.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if not text.endswith(b"\n"):
        text += b"\n"
    return text.replace(b"\n", b"\r\n")


@pytest.mark.parametrize(
    ("message", "wire"),
    [
        (b"", b""),
        (b"a", b"a\r\n"),
        (b"a\r\nb\r\n", b"a\r\nb\r\n"),
        (b"a\nb\n", b"a\r\nb\r\n"),  # bare LF
        (b"a\rb\r", b"a\r\nb\r\n"),  # bare CR
        (b"a\r\r\nb", b"a\r\n\r\nb\r\n"),  # CR then CRLF: two line ends
        (b"a\n\rb", b"a\r\n\r\nb\r\n"),  # LF then CR: two line ends
        (b".\r\n", b"..\r\n"),  # a lone "." line must not end the data early
        (b".hidden\nx\n.\n..two\n", b"..hidden\r\nx\r\n..\r\n...two\r\n"),
        (b"a.b\r\n.c", b"a.b\r\n..c\r\n"),  # only dots at line starts
        (b"\n\n", b"\r\n\r\n"),
    ],
)
def test_wire_body_examples(message: bytes, wire: bytes) -> None:
    assert wire_body(message) == wire


@given(
    st.binary(max_size=400)
    | st.lists(st.sampled_from([b"\r", b"\n", b".", b"a", b"\r\n"])).map(b"".join)
)
def test_stuffing_then_unstuffing_gives_the_crlf_normalised_original(message: bytes) -> None:
    wire = wire_body(message)
    assert aiosmtpd_unstuff(wire) == crlf_normalised(message)
    # No bare CR or LF survives, and no line starts with a single "." on the wire.
    assert wire.count(b"\r") == wire.count(b"\n") == wire.count(b"\r\n")
    assert not any(
        line.startswith(b".") and not line.startswith(b"..") for line in wire.split(b"\r\n")
    )


def per_line_wire_body(message: bytes) -> bytes:
    """A second reference, line by line: normalise, then stuff every line that starts
    with "." (what wire_body did in 30 µs before it became whole-buffer passes)."""
    if not message:
        return b""
    lines = crlf_normalised(message).split(b"\r\n")[:-1]
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)


@pytest.mark.parametrize(
    ("message", "wire"),
    [
        # CRLF throughout: sent as is, or with only the first line or the end fixed.
        (b"a\r\nb\r\n", b"a\r\nb\r\n"),
        (b"a\r\nb", b"a\r\nb\r\n"),
        (b".a\r\nb\r\n", b"..a\r\nb\r\n"),
        (b"\r\n", b"\r\n"),
        (b"\r\n\r\n.", b"\r\n\r\n..\r\n"),
        # Not quite: a later dot line, a bare LF first or last, a bare CR at the end.
        (b"a\r\n.b\r\n", b"a\r\n..b\r\n"),
        (b"\na\r\n", b"\r\na\r\n"),
        (b"a\r\nb\n", b"a\r\nb\r\n"),
        (b"a\r\nb\r", b"a\r\nb\r\n"),
        (b"a\r\n\n.b", b"a\r\n\r\n..b\r\n"),
    ],
)
def test_wire_body_crlf_input(message: bytes, wire: bytes) -> None:
    assert wire_body(message) == wire == per_line_wire_body(message)


def test_crlf_input_without_dot_lines_is_not_copied() -> None:
    message = b"From: a@example.org\r\n\r\nhello\r\nworld.\r\n"
    assert wire_body(message) is message


@given(
    st.lists(
        st.sampled_from([b"", b".", b"..", b".x", b"x.", b"a b", b"\r", b"\n", b"\r\n"]),
        max_size=12,
    ).map(b"\r\n".join)
    | st.binary(max_size=200)
)
def test_wire_body_equals_the_per_line_reference(message: bytes) -> None:
    assert wire_body(message) == per_line_wire_body(message)


def test_wire_body_is_idempotent_on_line_endings_only() -> None:
    # Stuffing is not idempotent (by design: each pass is one DATA transfer).
    assert wire_body(b"a\r\nb\r\n") == b"a\r\nb\r\n"
    assert wire_body(wire_body(b".x\n")) == b"...x\r\n"


# ---------------------------------------------------------------------------- commands


def test_mail_from_null_sender_and_parameters() -> None:
    assert mail_from("", size=None, body_8bit=False, smtputf8=False) == b"MAIL FROM:<>\r\n"
    assert (
        mail_from("a@b.example", size=5000, body_8bit=True, smtputf8=True)
        == b"MAIL FROM:<a@b.example> SIZE=5000 BODY=8BITMIME SMTPUTF8\r\n"
    )


def test_simple_commands() -> None:
    assert rcpt_to("x@y.example") == b"RCPT TO:<x@y.example>\r\n"
    assert encode.ehlo("mta.example") == b"EHLO mta.example\r\n"
    assert encode.helo("[192.0.2.1]") == b"HELO [192.0.2.1]\r\n"
    assert encode.data() == b"DATA\r\n"
    assert encode.rset() == b"RSET\r\n"
    assert encode.quit() == b"QUIT\r\n"
    assert encode.starttls() == b"STARTTLS\r\n"


def test_postmaster_without_domain_is_legal() -> None:
    assert rcpt_to("Postmaster") == b"RCPT TO:<Postmaster>\r\n"


def test_quoted_local_part_may_contain_a_space() -> None:
    assert rcpt_to('"john doe"@example.com') == b'RCPT TO:<"john doe"@example.com>\r\n'


@pytest.mark.parametrize(
    "address",
    [
        "a@b.c>\r\nRCPT TO:<x@y.z",  # command injection
        "a@b.c\r\nDATA",
        "a@b.c\nRSET",
        "a@b\rc",
        "a\x00@b.c",
        "a\t@b.c",
        "a\x7f@b.c",
        "a@b.c> SIZE=1",  # parameter injection
        "<a@b.c>",
        "a b@c.d",
        '"a\r\nb"@c.d',  # CR/LF are not allowed even quoted
        "",
        "nodomain",
        "@b.c",
        "a@",
    ],
)
def test_addresses_that_would_break_the_command_line_are_refused(address: str) -> None:
    with pytest.raises(LocalProtocolError):
        rcpt_to(address, smtputf8=True)
    if address:  # "" is the legal null reverse-path for MAIL
        with pytest.raises(LocalProtocolError):
            mail_from(address, size=None, body_8bit=False, smtputf8=True)


def test_length_limits_rfc5321() -> None:
    rcpt_to("a" * 64 + "@b.example")
    with pytest.raises(LocalProtocolError, match="local part"):
        rcpt_to("a" * 65 + "@b.example")
    domain = ".".join(["d" * 63] * 4)  # 255 octets
    assert len(domain) == 255
    with pytest.raises(LocalProtocolError, match="path"):
        rcpt_to("a" * 10 + "@" + domain)  # domain fits, path 1+10+1+255+2 > 256
    with pytest.raises(LocalProtocolError, match="domain"):
        rcpt_to("a@" + domain + "d")
    assert rcpt_to("a@" + "d" * 252)  # path exactly 256 with the brackets


def test_local_part_limit_counts_utf8_octets() -> None:
    rcpt_to("é" * 32 + "@b.example", smtputf8=True)  # 64 octets
    with pytest.raises(LocalProtocolError, match="local part"):
        rcpt_to("é" * 33 + "@b.example", smtputf8=True)


def test_non_ascii_needs_smtputf8_and_is_utf8_encoded() -> None:
    with pytest.raises(LocalProtocolError, match="SMTPUTF8"):
        rcpt_to("jürgen@example.de")
    with pytest.raises(LocalProtocolError, match="SMTPUTF8"):
        mail_from("jürgen@example.de", size=None, body_8bit=False, smtputf8=False)
    assert rcpt_to("jürgen@example.de", smtputf8=True) == "RCPT TO:<jürgen@example.de>\r\n".encode()
    assert mail_from("δ@例え.jp", size=None, body_8bit=False, smtputf8=True) == (
        "MAIL FROM:<δ@例え.jp> SMTPUTF8\r\n".encode()
    )


def test_c1_control_characters_are_refused_even_with_smtputf8() -> None:
    with pytest.raises(LocalProtocolError, match="control"):
        rcpt_to("a\x85b@example.com", smtputf8=True)


@pytest.mark.parametrize("name", ["", "a b", "mx\r\n.example", "host\x00", "ünï.example"])
def test_bad_ehlo_names_are_refused(name: str) -> None:
    with pytest.raises(LocalProtocolError):
        encode.ehlo(name)
    with pytest.raises(LocalProtocolError):
        encode.helo(name)


def test_negative_size_is_a_bug() -> None:
    with pytest.raises(LocalProtocolError):
        mail_from("a@b.c", size=-1, body_8bit=False, smtputf8=False)
