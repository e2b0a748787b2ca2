"""engine.unsubscribe.mail: the token in the Subject decides, never the From."""

from __future__ import annotations

import pytest

from engine.unsubscribe.mail import claim_from_mail
from engine.unsubscribe.token import Claim, Keyring, TokenError, make_token

RING = Keyring((b"k" * 64,))


def mail(subject: str) -> bytes:
    return (
        f"From: Someone Else <eve@evil.test>\r\nTo: unsub@bounces.test\r\nSubject: {subject}\r\n"
        "\r\nplease\r\n"
    ).encode()


def test_claim_from_subject() -> None:
    t = make_token(RING, "bob@x.test", "example.com", "weekly")
    assert claim_from_mail(mail(f"unsubscribe {t}"), RING) == Claim(
        "bob@x.test", "example.com", "weekly"
    )
    assert claim_from_mail(mail(f"Re: unsubscribe {t}"), RING).recipient == "bob@x.test"


def test_no_token_or_a_forged_one() -> None:
    with pytest.raises(TokenError) as e:
        claim_from_mail(mail("unsubscribe me please"), RING)
    assert e.value.kind == "malformed"
    forged = make_token(Keyring((b"o" * 64,)), "bob@x.test", "example.com")
    with pytest.raises(TokenError) as e:
        claim_from_mail(mail(f"unsubscribe {forged}"), RING)
    assert e.value.kind == "forged"
