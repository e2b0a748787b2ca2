"""engine.smtp.downgrade: 8-bit parts become quoted-printable, every other byte stays, and
what cannot be made 7-bit says why.  Decoding is checked with the stdlib's `email`
parser, which shares nothing with the byte surgery under test."""

from __future__ import annotations

import email
import email.policy
from email.message import Message

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.smtp.downgrade import MAX_DEPTH, Unconvertible, split_fields, to_7bit

TEXT = "Grüße aus Köln — ½ € \r\n.\r\ntrailing space \r\n" + "long " * 30 + "é\r\n"


def crlf(*lines: str) -> bytes:
    return "".join(line + "\r\n" for line in lines).encode()


def parse(message: bytes) -> Message:
    return email.message_from_bytes(message, policy=email.policy.compat32)


def leaves(message: bytes) -> list[bytes]:
    return [
        part.get_payload(decode=True)
        for part in parse(message).walk()
        if not part.is_multipart() and part.get_content_maintype() != "message"
    ]


def headers_of(block: bytes) -> list[bytes]:
    return split_fields(block[: block.find(b"\r\n\r\n") + 2])


SIMPLE = (
    crlf(
        "From: Änne <a@example.com>".encode("ascii", "replace").decode(),
        "To: b@example.net",
        "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
    )
    + TEXT.encode()
)


def test_ascii_is_returned_as_the_same_object() -> None:
    message = crlf("Subject: x", "", "plain ascii")
    assert to_7bit(message) is message


def test_a_text_part_becomes_quoted_printable_and_decodes_to_the_same_bytes() -> None:
    out = to_7bit(SIMPLE)
    assert out.isascii()
    before, after = headers_of(SIMPLE), headers_of(out)
    assert after == [*before[:-1], b"Content-Transfer-Encoding: quoted-printable\r\n"]
    assert leaves(out) == [TEXT.encode()]
    body = out[out.find(b"\r\n\r\n") + 4 :]
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))  # RFC 2045 §6.7
    assert b"\r\n.\r\n" not in body  # a lone "." is encoded (=2E)


def test_a_folded_transfer_encoding_field_is_replaced_whole() -> None:
    message = crlf(
        "Subject: x", "MIME-Version: 1.0", "Content-Transfer-Encoding:", "  8bit", "X-After: 1", ""
    )
    message += "é\r\n".encode()
    out = to_7bit(message)
    assert headers_of(out) == [
        b"Subject: x\r\n",
        b"MIME-Version: 1.0\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
        b"X-After: 1\r\n",
    ]


def test_a_missing_transfer_encoding_and_mime_version_are_added() -> None:
    out = to_7bit(crlf("Subject: x", "") + "é\r\n".encode())
    assert headers_of(out) == [
        b"Subject: x\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
        b"MIME-Version: 1.0\r\n",
    ]
    assert leaves(out) == ["é\r\n".encode()]


MULTIPART = (
    crlf(
        "From: a@example.com",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="outer"',
        "Content-Transfer-Encoding: 8bit",
        "",
        "This is the preamble.",
        "--outer",
        'Content-Type: multipart/alternative; boundary="inner"',
        "",
        "--inner",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
    )
    + "plain: ünïcode\r\n".encode()
    + crlf(
        "--inner  ",  # transport padding after a delimiter (RFC 2046 §5.1.1)
        "Content-Type: text/html; charset=utf-8",
        "",
    )
    + "<p>html: ünïcode</p>\r\n".encode()
    + crlf(
        "--inner--",
        "--outer",
        "Content-Type: application/octet-stream",
        "Content-Transfer-Encoding: base64",
        "",
        "AAECAwQ=",
        "--outer",
        "Content-Type: message/rfc822",
        "",
        "Subject: attached",
        "Content-Type: text/plain; charset=utf-8",
        "",
    )
    + "inner message: ß\r\n".encode()
    + crlf("--outer--", "epilogue")
)


def test_a_multipart_converts_only_its_8bit_leaves() -> None:
    out = to_7bit(MULTIPART)
    assert out.isascii()
    assert leaves(out) == leaves(MULTIPART)  # every part decodes to its original bytes
    # Delimiters, transport padding, preamble and epilogue are kept byte for byte.
    for kept in (
        b"This is the preamble.\r\n--outer\r\n",
        b"--inner  \r\n",
        b"--outer--\r\nepilogue\r\n",
        b"AAECAwQ=",
    ):
        assert kept in out
    # The multipart's own 8bit label became 7bit; each converted leaf says quoted-printable.
    assert headers_of(out)[3] == b"Content-Transfer-Encoding: 7bit\r\n"
    assert out.count(b"Content-Transfer-Encoding: quoted-printable") == 3
    assert out.count(b"Content-Transfer-Encoding: base64") == 1


def test_a_multipart_digest_part_is_a_message_by_default() -> None:
    message = (
        crlf(
            "MIME-Version: 1.0",
            'Content-Type: multipart/digest; boundary="d"',
            "",
            "--d",
            "",
            "Subject: one",
            "",
        )
        + "digest body é\r\n".encode()
        + crlf("--d--")
    )
    out = to_7bit(message)
    assert b"Subject: one\r\nContent-Transfer-Encoding: quoted-printable\r\n" in out
    inner = parse(out).get_payload()[0].get_payload()[0]
    # The CRLF before a delimiter belongs to the delimiter (RFC 2046 §5.1.1).
    assert inner.get_payload(decode=True) == "digest body é".encode()


def test_a_multipart_without_its_close_delimiter_runs_to_the_end() -> None:
    message = (
        crlf("MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="b"', "", "--b", "")
        + "é\r\n".encode()
    )
    out = to_7bit(message)
    assert out.endswith(b"--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=C3=A9\r\n")


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (crlf("Subject: Grüße", "", "ascii body"), "8-bit bytes in a header field"),
        (SIMPLE.replace(b"8bit", b"binary"), "Content-Transfer-Encoding: binary"),
        (
            SIMPLE.replace(b"8bit", b"base64"),
            "8-bit bytes in a part with Content-Transfer-Encoding: base64",
        ),
        (SIMPLE.replace(b"8bit", b"x-uuencode"), "Content-Transfer-Encoding: x-uuencode"),
        (
            SIMPLE.replace(b"text/plain", b"message/global"),
            "a message/global part cannot be made 7-bit",
        ),
        (
            MULTIPART.replace(
                b"Content-Type: text/html", "X-Ümlaut: 1\r\nContent-Type: text/html".encode()
            ),
            "header field",
        ),
        (MULTIPART.replace(b"This is the preamble.", "Präambel".encode()), "multipart preamble"),
        (MULTIPART.replace(b"\r\nepilogue", "\r\népilogue".encode()), "multipart epilogue"),
        (SIMPLE.replace(b"text/plain; charset=utf-8", b"multipart/mixed"), "without a boundary"),
        (
            SIMPLE.replace(b"text/plain; charset=utf-8", b'multipart/mixed; boundary="zz"'),
            "without its boundary",
        ),
    ],
)
def test_what_cannot_be_made_7bit_says_why(message: bytes, why: str) -> None:
    with pytest.raises(Unconvertible, match=why):
        to_7bit(message)


def test_nesting_is_bounded() -> None:
    message = "é\r\n".encode()
    for _ in range(MAX_DEPTH + 2):
        message = crlf("Content-Type: message/rfc822", "") + message
    with pytest.raises(Unconvertible, match="nested deeper"):
        to_7bit(message)


@given(st.binary(min_size=1, max_size=400))
def test_any_8bit_text_body_round_trips(payload: bytes) -> None:
    """Whatever the bytes (lines of any length, lone CRs and dots, trailing spaces), the
    copy is 7-bit and decodes to the original body."""
    body = payload.replace(b"\r", b"").replace(b"\n", b"\r\n") + b"\xc3\xa9\r\n"
    message = crlf("MIME-Version: 1.0", "Content-Type: text/plain", "") + body
    out = to_7bit(message)
    assert out.isascii()
    assert parse(out).get_payload(decode=True) == body
