"""engine.sendmail.message: stdin -> the drop, judged by intake's own parser."""

from __future__ import annotations

import io
from email import message_from_bytes, policy
from typing import Any

import pytest

from engine.drop.parse import DropEnvelope, parse_drop
from engine.sendmail.exits import Exit, Failure
from engine.sendmail.message import Drop, build_drop, read_message, repair

DEFAULT = "www-data@mta.example.com"


def _build(message: bytes, **kw: Any) -> Drop:
    args: dict[str, Any] = {
        "sender": None,
        "recipients": (),
        "extract": False,
        "full_name": None,
        "default_sender": DEFAULT,
        "max_recipients": 100,
        "max_size": 1 << 20,
    }
    args.update(kw)
    return build_drop(message, **args)


def _refused(message: bytes, **kw: Any) -> str:
    with pytest.raises(Failure) as info:
        _build(message, **kw)
    assert info.value.code is Exit.DATAERR
    return info.value.message


def _intake(drop: Drop) -> DropEnvelope:
    env = parse_drop(drop.data, max_recipients=100)
    assert isinstance(env, DropEnvelope), env
    return env


# -- reading ------------------------------------------------------------------------------
def test_a_lone_dot_ends_the_message_unless_i() -> None:
    text = b"Subject: x\n\nline\n..two dots stay\n.\nafter\n"
    assert read_message(io.BytesIO(text), ignore_dots=False, max_size=1000) == (
        b"Subject: x\n\nline\n..two dots stay\n"
    )
    assert read_message(io.BytesIO(text), ignore_dots=True, max_size=1000) == text
    crlf = b"Subject: x\r\n\r\nline\r\n.\r\nafter"
    assert read_message(io.BytesIO(crlf), ignore_dots=False, max_size=1000) == (
        b"Subject: x\r\n\r\nline\r\n"
    )


@pytest.mark.parametrize("ignore_dots", [False, True])
def test_reading_stops_past_the_size_limit(ignore_dots: bool) -> None:
    with pytest.raises(Failure) as info:
        read_message(io.BytesIO(b"x" * 5000 + b"\n"), ignore_dots=ignore_dots, max_size=4000)
    assert info.value.code is Exit.DATAERR and "max_message_size" in info.value.message


# -- repairs ------------------------------------------------------------------------------
def test_lf_becomes_crlf_and_an_mbox_from_line_goes() -> None:
    got = repair(b"From someone Thu Nov 26 12:00:00 2026\nSubject: x\n\nbody\r\nmore\n")
    assert got == b"Subject: x\r\n\r\nbody\r\nmore\r\n"


def test_a_line_that_is_not_a_field_starts_the_body() -> None:
    assert repair(b"hello\nworld\n") == b"\r\nhello\r\nworld\r\n"
    assert repair(b"Subject: x\n folded\nnot a field\n") == (
        b"Subject: x\r\n folded\r\n\r\nnot a field\r\n"
    )


def test_leading_x_sender_fields_move_below_the_first_other_field() -> None:
    got = repair(b"X-Sender: php@host\nBcc: b@x.example\nSubject: s\nTo: t@x.example\n\nb\n")
    assert got == (
        b"Subject: s\r\nX-Sender: php@host\r\nBcc: b@x.example\r\nTo: t@x.example\r\n\r\nb\r\n"
    )


# -- the drop -----------------------------------------------------------------------------
MSG = (
    b"From: News <news@example.com>\n"
    b"To: a@x.example, Bee <b@y.example>\n"
    b"Cc: c@x.example\n"
    b"Bcc: hidden@z.example\n"
    b"Subject: hi\n\nbody\n"
)


def test_t_takes_to_cc_bcc_and_adds_the_arguments() -> None:
    drop = _build(MSG, extract=True, recipients=("extra@w.example", "a@x.example"))
    assert drop.sender == "news@example.com"
    assert drop.recipients == (
        "extra@w.example",
        "a@x.example",
        "b@y.example",
        "c@x.example",
        "hidden@z.example",
    )
    env = _intake(drop)
    assert env.recipients == drop.recipients
    assert b"Bcc" not in env.message and b"hidden" not in env.message  # intake removed it
    assert drop.data.startswith(b"X-Sender: news@example.com\r\nX-Receiver: extra@w.example\r\n")


def test_without_t_only_the_arguments_are_recipients() -> None:
    drop = _build(MSG, recipients=("Only <only@w.example>, second@w.example",))
    assert drop.recipients == ("only@w.example", "second@w.example")
    assert b"Bcc" not in _intake(drop).message  # removed with or without -t


def test_envelope_sender_f_then_headers_then_the_login() -> None:
    assert _build(MSG, sender="bounce@example.com", extract=True).sender == "bounce@example.com"
    assert _build(MSG, sender="", extract=True).sender == ""
    with_rp = b"Return-Path: <rp@example.com>\n" + MSG
    assert _build(with_rp, extract=True).sender == "rp@example.com"
    bare = _build(b"Subject: cron\n\nout\n", recipients=("root@x.example",))
    assert bare.sender == DEFAULT
    assert bare.data.endswith(b"From: www-data@mta.example.com\r\nSubject: cron\r\n\r\nout\r\n")


def test_f_and_F_make_the_from_field_when_the_message_has_none() -> None:
    drop = _build(
        b"Subject: s\n\nb\n",
        sender="me@example.com",
        full_name="Jörg Ü",
        recipients=("a@x.example",),
    )
    message = message_from_bytes(_intake(drop).message, policy=policy.default)
    assert message["From"].addresses[0].display_name == "Jörg Ü"
    assert message["From"].addresses[0].addr_spec == "me@example.com"
    assert _build(MSG, full_name="Ignored", extract=True).data.count(b"From:") == 1


def test_a_body_only_message_is_sent_with_a_header_added() -> None:
    env = _intake(_build(b"hello\n", recipients=("root@x.example",)))
    assert env.message == b"From: www-data@mta.example.com\r\n\r\nhello\r\n"


@pytest.mark.parametrize(
    ("message", "kw", "reason"),
    [
        (MSG, {"recipients": ("not an address",)}, "invalid recipient address"),
        (MSG, {"recipients": ('"a<b"@x.example',)}, "cannot be sent over SMTP"),
        (MSG, {"recipients": ("user@[192.0.2.1]",)}, "address literals"),
        (MSG, {"sender": "bad@", "recipients": ("a@x.example",)}, "invalid sender"),
        (b"Subject: s\n\nb\n", {"extract": True}, "no recipients"),
        (b"From: x@y.example\nTo: Foo\n\nb\n", {"extract": True}, "To header"),
        (
            b"From: x@y.example\nSubject: \x01\n\nb\n",
            {"recipients": ("a@x.example",)},
            "control byte",
        ),
        (b"Subject: " + b"x" * 1000 + b"\n\nb\n", {"recipients": ("a@x.example",)}, "998"),
    ],
)
def test_what_intake_would_reject_is_refused_with_its_reason(
    message: bytes, kw: dict[str, Any], reason: str
) -> None:
    assert reason in _refused(message, **kw)


def test_recipient_and_size_limits_are_intakes() -> None:
    many = tuple(f"r{i}@x.example" for i in range(101))
    assert "too many recipients" in _refused(MSG, recipients=many)
    assert "max_message_size" in _refused(MSG, recipients=("a@x.example",), max_size=100)
