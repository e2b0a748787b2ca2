"""engine.unsubscribe.headers: the fields read in one pass, the two fields appended."""

from __future__ import annotations

from engine.unsubscribe.headers import (
    ONE_CLICK,
    MessageFields,
    add_unsubscribe,
    read_fields,
    unsubscribe_url,
)

MSG = (
    b"From: News <news@News.Example.com>\r\n"
    b"To: bob@x.test\r\n"
    b"List-Id: Weekly news\r\n <weekly.news.example.com>\r\n"
    b"Subject: hi\r\n"
    b"\r\n"
    b"..body line\r\n"
)


def test_read_fields() -> None:
    assert read_fields(MSG) == MessageFields("news.example.com", False, "weekly.news.example.com")
    other = b"From: a@b.test\r\nX-Campaign-ID:  spring-2026 \r\nList-Unsubscribe: <x>\r\n\r\n"
    assert read_fields(other) == MessageFields("b.test", True, "spring-2026")
    assert read_fields(b"Subject: no from\r\n\r\nbody\r\n").from_domain is None
    assert (
        read_fields(b"From: a@B\xc3\xbccher.example\r\n\r\n").from_domain == "xn--bcher-kva.example"
    )


def test_add_unsubscribe_appends_to_the_header_section() -> None:
    url = unsubscribe_url("https://u.example.com", "TOKEN")
    out = add_unsubscribe(MSG, url, "unsub@bounces.example.com", "TOKEN")
    head, _, body = out.partition(b"\r\n\r\n")
    assert body == b"..body line\r\n"  # byte-identical, still stuffed
    assert head.startswith(MSG.partition(b"\r\n\r\n")[0])
    assert head.endswith(
        b"\r\nList-Unsubscribe: <https://u.example.com/u/TOKEN>,\r\n"
        b" <mailto:unsub@bounces.example.com?subject=unsubscribe%20TOKEN>\r\n"
        + ONE_CLICK.rstrip(b"\r\n")
    )
    assert read_fields(out).has_list_unsubscribe
    bare = add_unsubscribe(b"From: a@b.test\r\n", url, None, "TOKEN")
    assert (
        bare
        == b"From: a@b.test\r\nList-Unsubscribe: <https://u.example.com/u/TOKEN>\r\n" + ONE_CLICK
    )
