"""MessageText: where the text ends, bounded memory past the limit, and its checks."""

from __future__ import annotations

import pytest

from engine.smtpd.text import MessageText, TextProblem


def test_the_text_ends_only_at_crlf_dot_crlf_and_the_rest_stays_buffered() -> None:
    r = MessageText(1000)
    buf = bytearray(b"a\r\n.x\r\n\n.\nb\r\n.\r\nNOOP\r\n")
    assert r.take(buf) == b"a\r\n.x\r\n\n.\nb\r\n"
    assert bytes(buf) == b"NOOP\r\n"


def test_an_empty_text_and_a_text_arriving_in_pieces() -> None:
    assert MessageText(10).take(bytearray(b".\r\n")) == b""
    r = MessageText(100)
    buf = bytearray()
    for piece in (b".", b".\r", b"\n.", b"\r", b"\n"):
        buf += piece
        got = r.take(buf)
    assert got == b"..\r\n" and buf == bytearray()


def test_text_past_the_limit_is_dropped_as_it_comes() -> None:
    r = MessageText(100)
    buf = bytearray()
    for _ in range(100):
        buf += b"x" * 50 + b"\r\n"
        assert r.take(buf) is None
        assert len(buf) <= 100 + 52 + 4
    buf += b".\r\n"
    data = r.take(buf)
    assert data is not None and r.problem(data) is TextProblem.TOO_BIG


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (b"fine\r\n", None),
        (b"a\nb\r\n", TextProblem.BARE_NEWLINE),
        (b"a\rb\r\n", TextProblem.BARE_NEWLINE),
        (b"a\r\r\n", TextProblem.BARE_NEWLINE),
        (b"a\0b\r\n", TextProblem.NUL),
        (b"x" * 11 + b"\r\n", TextProblem.TOO_BIG),
    ],
)
def test_problems(text: bytes, problem: TextProblem | None) -> None:
    assert MessageText(12).problem(text) is problem
