"""engine.runtime.sevenbit: the 7-bit copy of a stored entry, its DKIM signatures of
ours renewed (checked with dkimpy against the public keys), the producer's left alone,
and what cannot be converted handed back with the reason."""

from __future__ import annotations

import dkim
import pytest

from engine.auth.dkim import Signer, unstuff
from engine.auth.keygen import keygen
from engine.config import DkimDomain
from engine.runtime.sevenbit import body_for, seven_bit_copy, strip_signatures
from engine.smtp.encode import wire_body
from tests.unit.auth.test_dkim import verifies

BODY = "Grüße — ünïcode body\r\n.dot line\r\n"
MESSAGE = (
    b"From: News <news@mail.example.com>\r\n"
    b"To: ann@dest.test\r\n"
    b"Subject: Hello\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n" + BODY.encode()
)


@pytest.fixture(scope="module")
def domains(tmp_path_factory: pytest.TempPathFactory) -> tuple[DkimDomain, ...]:
    d = tmp_path_factory.mktemp("keys")
    rsa = keygen("example.com", "rsa1", "rsa", 1024, d)
    ed = keygen("example.com", "ed1", "ed25519", 0, d)
    return (DkimDomain("example.com", "rsa1", rsa, also_sign=(("ed1", ed),)),)


def results(signer: Signer, wire: bytes) -> list[bool]:
    """Each DKIM-Signature of `wire`, verified against `signer`'s public keys."""
    headers = dkim.DKIM(unstuff(wire)).headers
    count = sum(1 for name, _ in headers if name.lower() == b"dkim-signature")
    return [verifies(signer, wire, idx) for idx in range(count)]


def test_a_signed_8bit_message_is_converted_and_signed_again(
    domains: tuple[DkimDomain, ...],
) -> None:
    signer = Signer(domains)
    signed = signer.sign(wire_body(MESSAGE))
    assert results(signer, signed) == [True, True]
    copy, why = seven_bit_copy(signed, signer)
    assert why is None and copy.isascii()
    assert results(signer, copy) == [True, True]  # two fresh signatures, both verify
    assert copy.count(b"DKIM-Signature:") == 2
    # The old signatures would not verify on the converted bytes: the check is not vacuous.
    old = signed[: signed.find(b"From:")]
    stale = old + strip_signatures(unstuff(copy), signer.keys)[0]
    assert results(signer, wire_body(stale)) == [False, False]


def test_a_foreign_signature_stays_and_unsigned_mail_is_not_signed_now(
    domains: tuple[DkimDomain, ...],
) -> None:
    signer = Signer(domains)
    foreign = b"DKIM-Signature: v=1; a=rsa-sha256; d=elsewhere.example; s=x;\r\n\tb=AAAA\r\n"
    copy, why = seven_bit_copy(wire_body(foreign + MESSAGE), signer)
    assert why is None and copy.startswith(foreign)  # kept (it will fail: not ours to renew)
    assert copy.count(b"DKIM-Signature:") == 1  # and no signature added to unsigned mail


def test_without_a_signer_the_copy_is_only_converted(domains: tuple[DkimDomain, ...]) -> None:
    signed = Signer(domains).sign(wire_body(MESSAGE))
    copy, why = seven_bit_copy(signed, None)
    assert why is None and copy.isascii()
    assert copy.count(b"DKIM-Signature:") == 2  # stale now; documented
    assert b"Content-Transfer-Encoding: quoted-printable\r\n" in copy


def test_an_unconvertible_message_comes_back_unchanged_with_the_reason() -> None:
    wire = wire_body(MESSAGE.replace(b"Subject: Hello", "Subject: Grüße".encode()))
    assert seven_bit_copy(wire, None) == (
        wire,
        "8-bit bytes in a header field (RFC 6532: only with SMTPUTF8)",
    )


def test_an_ascii_message_comes_back_as_is() -> None:
    wire = wire_body(b"Subject: x\r\n\r\nascii\r\n")
    assert seven_bit_copy(wire, None)[0] is wire


def test_dot_stuffing_survives_the_copy() -> None:
    copy, _ = seven_bit_copy(wire_body(MESSAGE + b".leading\r\n"), None)
    assert copy == wire_body(unstuff(copy))  # the copy is DATA wire form again
    assert b"\r\n..leading\r\n" in copy


def test_body_for_sends_8bit_as_is_to_a_server_with_8bitmime() -> None:
    wire = wire_body(MESSAGE)
    assert body_for(wire, {"8bit": True}, True, ()) == (wire, True, None)
    assert body_for(wire, {}, False, ()) == (wire, False, None)
    copy, is_8bit, why = body_for(wire, {"8bit": True}, False, ())
    assert copy.isascii() and not is_8bit and why is None


def test_strip_signatures_takes_only_ours() -> None:
    class Key:
        domain, selector = "example.com", "s1"

    head = (
        b"DKIM-Signature: v=1; d=Example.com; s=s1;\r\n\tb=x\r\n"
        b"DKIM-Signature: v=1; d=example.com; s=other; b=y\r\n"
        b"Dkim-Signature: garbage without tags\r\n"
        b"Subject: x\r\n\r\nbody\r\n"
    )
    stripped, n = strip_signatures(head, [Key()])  # type: ignore[list-item]
    assert n == 1 and stripped == head[head.find(b"DKIM-Signature: v=1; d=example.com; s=other") :]
