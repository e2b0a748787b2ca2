"""ReplyParser: assembling replies from arbitrary byte chunks, refusing malformed ones."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.smtp import replies
from engine.smtp.errors import RemoteProtocolError
from engine.smtp.replies import (
    MAX_REPLY_BYTES,
    MAX_REPLY_LINE,
    MAX_REPLY_LINES,
    Reply,
    ReplyParser,
    _parse_enhanced,
)

EHLO = b"250-mx.example.net Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n"


def test_single_line_reply() -> None:
    assert ReplyParser().feed(b"220 mx.example.net ESMTP ready\r\n") == [
        Reply(220, ("mx.example.net ESMTP ready",))
    ]


def test_multi_line_reply_keeps_every_line_in_order() -> None:
    assert ReplyParser().feed(EHLO) == [
        Reply(250, ("mx.example.net Hello", "PIPELINING", "SIZE 10240000", "8BITMIME"))
    ]


def test_several_replies_in_one_chunk_come_out_in_order() -> None:
    replies = ReplyParser().feed(b"250 2.1.0 ok\r\n550 5.1.1 no such user\r\n354 go ahead\r\n")
    assert [r.code for r in replies] == [250, 550, 354]
    assert replies[1].enhanced == "5.1.1"


def test_code_alone_is_a_complete_line() -> None:
    # RFC 5321 §4.2: the text after the code is optional on the last line.
    assert ReplyParser().feed(b"250\r\n") == [Reply(250, ("",))]
    assert ReplyParser().feed(b"250-first\r\n250\r\n") == [Reply(250, ("first", ""))]


def test_bare_lf_is_tolerated() -> None:
    assert ReplyParser().feed(b"250-a\n250 b\n") == [Reply(250, ("a", "b"))]


def test_byte_at_a_time_gives_the_same_replies() -> None:
    parser = ReplyParser()
    out: list[Reply] = []
    for i in range(len(EHLO)):
        out += parser.feed(EHLO[i : i + 1])
    assert out == ReplyParser().feed(EHLO)


def test_cr_and_lf_split_across_chunks() -> None:
    parser = ReplyParser()
    assert parser.feed(b"250 ok\r") == []
    assert parser.buffered
    assert parser.feed(b"\n") == [Reply(250, ("ok",))]
    assert not parser.buffered


def test_buffered_reports_an_incomplete_multi_line_reply() -> None:
    parser = ReplyParser()
    assert parser.feed(b"250-first\r\n") == []
    assert parser.buffered


def test_non_utf8_text_is_replaced_not_fatal() -> None:
    (reply,) = ReplyParser().feed(b"550 caf\xe9 closed\r\n")
    assert reply.code == 550
    assert reply.lines == ("caf\ufffd closed",)


@given(st.lists(st.integers(min_value=0, max_value=len(EHLO)), max_size=6))
def test_any_chunking_gives_the_same_replies(cuts: list[int]) -> None:
    stream = EHLO + b"221 bye\r\n"
    points = sorted({0, len(stream), *cuts})
    parser = ReplyParser()
    out: list[Reply] = []
    for a, b in itertools.pairwise(points):
        out += parser.feed(stream[a:b])
    assert out == ReplyParser().feed(stream)


@pytest.mark.parametrize(
    "line",
    [
        b"25 short\r\n",
        b"abc text\r\n",
        b"150 one-hundreds are not SMTP\r\n",
        b"260 second digit above 5\r\n",
        b"2x0 letter\r\n",
        b"\r\n",
        b"250_underscore is not a separator\r\n",
        b"250text\r\n",
    ],
)
def test_malformed_line_raises(line: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        ReplyParser().feed(line)


def test_mixed_codes_within_one_reply_raise() -> None:
    with pytest.raises(RemoteProtocolError, match="code changed"):
        ReplyParser().feed(b"250-first\r\n251 second\r\n")


def test_line_at_limit_is_accepted_and_one_more_byte_is_not() -> None:
    ok = b"250 " + b"x" * (MAX_REPLY_LINE - 4)
    assert ReplyParser().feed(ok + b"\r\n")[0].code == 250
    with pytest.raises(RemoteProtocolError, match="longer than"):
        ReplyParser().feed(ok + b"x\r\n")


def test_endless_line_without_newline_is_refused_before_it_grows() -> None:
    parser = ReplyParser()
    parser.feed(b"250 " + b"x" * 1000)
    with pytest.raises(RemoteProtocolError, match="longer than"):
        parser.feed(b"x" * (MAX_REPLY_LINE + 10))


def test_endless_multi_line_reply_is_refused_at_its_line_limit() -> None:
    # Issue #11: an endless "220-" greeting grew a worker by 140 MB/s.
    parser = ReplyParser()
    line = b"220-xxxxxxxx\r\n"
    fed = 0
    with pytest.raises(RemoteProtocolError, match=f"longer than {MAX_REPLY_LINES} lines"):
        for _ in range(MAX_REPLY_LINES * 2):
            parser.feed(line)
            fed += 1
            assert parser.held <= MAX_REPLY_BYTES
    assert fed == MAX_REPLY_LINES - 1  # the 200th continuation line is the one refused
    assert parser.held == 0  # what it held is released


def test_a_reply_of_long_lines_is_refused_at_its_byte_limit() -> None:
    parser = ReplyParser()
    line = b"250-" + b"x" * (MAX_REPLY_LINE - 4) + b"\r\n"
    with pytest.raises(RemoteProtocolError, match=f"longer than {MAX_REPLY_BYTES} bytes"):
        for _ in range(MAX_REPLY_LINES):
            parser.feed(line)
            assert parser.held <= MAX_REPLY_BYTES


def test_a_reply_just_under_both_limits_is_accepted() -> None:
    text = b"x" * (MAX_REPLY_BYTES // MAX_REPLY_LINES - 4)
    data = (b"250-" + text + b"\r\n") * (MAX_REPLY_LINES - 1) + b"250 " + text + b"\r\n"
    (reply,) = ReplyParser().feed(data)
    assert len(reply.lines) == MAX_REPLY_LINES


def test_more_replies_than_asked_for_in_one_chunk_are_refused() -> None:
    flood = b"250 ok\r\n" * 10_000
    assert len(ReplyParser().feed(flood[:80], max_replies=10)) == 10
    with pytest.raises(RemoteProtocolError, match="more than 3 replies"):
        ReplyParser().feed(flood, max_replies=3)


def test_parser_stays_broken_after_an_error() -> None:
    parser = ReplyParser()
    with pytest.raises(RemoteProtocolError):
        parser.feed(b"xyz\r\n")
    with pytest.raises(RemoteProtocolError, match="already broken"):
        parser.feed(b"250 fine now\r\n")


_LINE_START = st.text(alphabet="245.0123456789\u0662\u0664\u0660 \tx", max_size=12)


@settings(max_examples=500, deadline=None)
@given(
    code=st.sampled_from([250, 354, 421, 450, 550, 554]),
    start=_LINE_START,
    rest=st.text(max_size=20),
    more=st.lists(st.text(max_size=5), max_size=2),
)
def test_cached_enhanced_is_the_parse_whatever_the_text(
    code: int, start: str, rest: str, more: list[str]
) -> None:
    # Unicode digits (\d matches them), codes longer than one digit, text glued to the
    # code, empty lines: the cache keyed on the first 10 characters never disagrees.
    reply = Reply(code, (start + rest, *more))
    assert reply.enhanced == _parse_enhanced(code, reply.lines[0])
    assert reply.enhanced == _parse_enhanced(code, reply.lines[0])  # from the cache this time
    assert Reply(code, ()).enhanced == _parse_enhanced(code, "")


def test_enhanced_cache_stays_bounded(monkeypatch) -> None:
    monkeypatch.setattr(replies, "_ENHANCED_CACHE", {})
    monkeypatch.setattr(replies, "_ENHANCED_CACHE_MAX", 10)
    for i in range(100):
        assert Reply(550, (f"5.{i}.1 no",)).enhanced == f"5.{i}.1"
    assert len(replies._ENHANCED_CACHE) <= 10
    assert Reply(250, ("Ok: queued as 4F3A",)).enhanced is None
    assert len(replies._ENHANCED_CACHE) <= 10
