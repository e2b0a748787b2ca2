"""engine.feedback.fields: values, typed values, Message-IDs and report blocks."""

from __future__ import annotations

from email import message_from_bytes, policy

import pytest

from engine.feedback.fields import MAX_VALUE, blocks, message_id, returned_message_id, text, typed


def test_text_is_one_bounded_printable_line() -> None:
    assert text("a\r\n  b\tc") == "a b c"
    assert text("x\x00y\u2028z") == "x y z"
    assert text("é" * (MAX_VALUE + 5)) == "é" * MAX_VALUE
    assert text("bad \udcff byte") == "bad \ufffd byte"  # a surrogate-escaped byte


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("rfc822; a@b.example", ("rfc822", "a@b.example")),
        ("RFC822;<a@b.example>", ("rfc822", "a@b.example")),
        ("utf-8; J\\x{F6}rg@x.example", ("utf-8", "Jörg@x.example")),
        ("utf-8; bad\\x{D800}@x.example", ("utf-8", "bad?@x.example")),
        ("smtp; 550 5.1.1 no; really", ("smtp", "550 5.1.1 no; really")),
        ("a@b.example", (None, "a@b.example")),
        ("not a type; value", (None, "not a type; value")),
    ],
)
def test_typed(raw: str, expected: tuple[str | None, str]) -> None:
    assert typed(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("<a@b.example>", "<a@b.example>"),
        ("  <a@b.example> (comment)", "<a@b.example>"),
        ("a@b.example", "<a@b.example>"),
        ("", None),
        ("two words", None),
    ],
)
def test_message_id(raw: str, expected: str | None) -> None:
    assert message_id(raw) == expected


def test_blocks_of_each_part_shape() -> None:
    raw = (
        b"Content-Type: multipart/report; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: message/delivery-status\r\n\r\nA: 1\r\n\r\nB: 2\r\n\r\n\r\n"
        b"--b\r\nContent-Type: message/global-delivery-status\r\n\r\nC: 3\r\n\r\nD: 4\r\n"
        b"--b\r\nContent-Type: message/delivery-status\r\nContent-Transfer-Encoding: base64"
        b"\r\n\r\nRTogNQ0KDQpGOiA2DQo=\r\n"  # "E: 5\r\n\r\nF: 6\r\n"
        b"--b--\r\n"
    )
    msg = message_from_bytes(raw, policy=policy.compat32)
    parts = msg.get_payload()
    assert isinstance(parts, list)
    assert [dict(b.items()) for b in blocks(parts[0])] == [{"A": "1"}, {"B": "2"}]
    assert [dict(b.items()) for b in blocks(parts[1])] == [{"C": "3"}, {"D": "4"}]
    text_part = message_from_bytes(
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"RTogNQ0KDQpGOiA2DQo=\r\n",
        policy=policy.compat32,
    )
    assert [dict(b.items()) for b in blocks(text_part)] == [{"E": "5"}, {"F": "6"}]


def test_returned_message_id_from_headers_or_message() -> None:
    for ctype, inner in (
        (b"text/rfc822-headers", b"Message-ID: <h@x.example>\r\nTo: A <a@x.example>\r\n"),
        (b"message/rfc822", b"Message-Id: <h@x.example>\r\nTo: A <a@x.example>\r\n\r\nbody\r\n"),
    ):
        raw = (
            b"Content-Type: multipart/report; boundary=b\r\n\r\n--b\r\nContent-Type: "
            + ctype
            + b"\r\n\r\n"
            + inner
            + b"\r\n--b--\r\n"
        )
        msg = message_from_bytes(raw, policy=policy.compat32)
        assert returned_message_id(msg) == ("<h@x.example>", "A <a@x.example>")
    plain = message_from_bytes(b"Subject: x\r\n\r\nb", policy=policy.compat32)
    assert returned_message_id(plain) == (None, None)
