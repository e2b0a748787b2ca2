"""engine.smtp.auth: the mechanism chosen from EHLO, and the lines each one sends — read
back by Volley's own server-side decoder (engine.smtpd.sasl), which shares no code with
it, and by the stdlib's base64."""

from __future__ import annotations

import base64

import pytest

from engine.smtp import LocalProtocolError
from engine.smtp.auth import (
    CANCEL,
    AuthExchange,
    Mechanism,
    choose_mechanism,
    offered_mechanisms,
)
from engine.smtpd.sasl import Credentials, Exchange


@pytest.mark.parametrize(
    ("extensions", "chosen"),
    [
        ({"AUTH": "LOGIN PLAIN CRAM-MD5"}, Mechanism.PLAIN),  # PLAIN first, whatever order
        ({"AUTH": "login"}, Mechanism.LOGIN),  # case-insensitive
        ({"AUTH": "CRAM-MD5 XOAUTH2"}, None),  # nothing we speak
        ({"AUTH": ""}, None),
        ({"SIZE": "1000"}, None),  # no AUTH at all
        ({"AUTH=LOGIN": "PLAIN"}, Mechanism.PLAIN),  # the old "AUTH=" form
        ({"AUTH=LOGIN": ""}, Mechanism.LOGIN),
    ],
)
def test_choose_mechanism_prefers_plain(
    extensions: dict[str, str], chosen: Mechanism | None
) -> None:
    assert choose_mechanism(extensions) is chosen


def test_offered_mechanisms_merges_both_forms_once() -> None:
    got = offered_mechanisms({"AUTH": "PLAIN LOGIN", "AUTH=LOGIN": "PLAIN"})
    assert got == ("PLAIN", "LOGIN")


def test_plain_is_one_line_with_the_initial_response() -> None:
    exchange = AuthExchange(Mechanism.PLAIN, "ses-user", "pä ss:w0rd")
    line = exchange.start()
    verb, mechanism, response = line.rstrip(b"\r\n").split(b" ")
    assert (verb, mechanism) == (b"AUTH", b"PLAIN") and line.endswith(b"\r\n")
    # RFC 4616: empty authzid, NUL, authcid, NUL, password, in UTF-8.
    assert base64.b64decode(response) == "\0ses-user\0pä ss:w0rd".encode()
    server = Exchange(line[5:].rstrip(b"\r\n"))
    assert server.first() == Credentials("PLAIN", "ses-user", "pä ss:w0rd".encode())
    # A server that asks for more than PLAIN has gets "*" (cancel, RFC 4954 §4).
    assert exchange.answer() == CANCEL


def test_login_sends_user_then_password_after_each_334() -> None:
    exchange = AuthExchange(Mechanism.LOGIN, "relay-user", "s3cret")
    assert exchange.start() == b"AUTH LOGIN\r\n"
    server = Exchange(b"LOGIN")
    server.first()  # 334 VXNlcm5hbWU6
    server.line(exchange.answer().rstrip(b"\r\n"))  # 334 UGFzc3dvcmQ6
    assert server.line(exchange.answer().rstrip(b"\r\n")) == Credentials(
        "LOGIN", "relay-user", b"s3cret"
    )
    assert exchange.answer() == CANCEL  # a third 334: nothing left to say


def test_forget_drops_the_password() -> None:
    exchange = AuthExchange(Mechanism.LOGIN, "u", "s3cret")
    exchange.start()
    exchange.forget()
    assert exchange.answer() == CANCEL


@pytest.mark.parametrize(("user", "password"), [("u\0x", "p"), ("u", "p\0x")])
def test_nul_is_refused_before_anything_is_sent(user: str, password: str) -> None:
    with pytest.raises(LocalProtocolError) as e:
        AuthExchange(Mechanism.PLAIN, user, password)
    assert "p\0x" not in str(e.value)
