"""The AUTH exchange's payloads: PLAIN, LOGIN, and what is refused."""

from __future__ import annotations

import base64

import pytest

from engine.smtpd import replies as R
from engine.smtpd.replies import Refusal
from engine.smtpd.sasl import Challenge, Credentials, Exchange, SaslError, decode_plain


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def test_plain_with_and_without_an_initial_response() -> None:
    assert Exchange(b"PLAIN " + b64(b"\0u\0p")).first() == Credentials("PLAIN", "u", b"p")
    x = Exchange(b"plain")
    assert x.first() == Challenge(R.AUTH_EMPTY_CHALLENGE)
    assert x.line(b64(b"u\0u\0p w")) == Credentials("PLAIN", "u", b"p w")  # authzid = authcid


def test_login_asks_for_user_then_password() -> None:
    x = Exchange(b"LOGIN")
    assert x.first() == Challenge(R.AUTH_USERNAME)
    assert x.line(b64("jörg".encode())) == Challenge(R.AUTH_PASSWORD)
    assert x.line(b64(b"pw")) == Credentials("LOGIN", "jörg", b"pw")
    y = Exchange(b"LOGIN " + b64(b"ann"))
    assert y.first() == Challenge(R.AUTH_PASSWORD)


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (b"not base64!", Refusal.SYNTAX),
        (b64(b"only\0two"), Refusal.SYNTAX),
        (b64(b"\0\0pw"), Refusal.SYNTAX),  # no user name
        (b64(b"\0a\x01b\0pw"), Refusal.SYNTAX),  # a control character in it
        (b64(b"\0\xff\0pw"), Refusal.SYNTAX),  # not UTF-8
        (b64(b"boss\0me\0pw"), Refusal.AUTH_FAILED),  # acting for someone else
    ],
)
def test_unusable_plain_responses(response: bytes, reason: Refusal) -> None:
    with pytest.raises(SaslError) as e:
        decode_plain(response)
    assert e.value.reason is reason


def test_mechanisms_and_aborts() -> None:
    with pytest.raises(SaslError) as e:
        Exchange(b"CRAM-MD5")
    assert e.value.reply == R.AUTH_MECHANISM
    with pytest.raises(SaslError):
        Exchange(b"")
    with pytest.raises(SaslError) as e:
        Exchange(b"LOGIN").line(b"*")
    assert e.value.reply == R.AUTH_ABORTED
