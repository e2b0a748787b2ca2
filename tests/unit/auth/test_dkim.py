"""engine.auth.dkim: keys, the signing domain, signing in wire form, not signing twice."""

from __future__ import annotations

import base64
from pathlib import Path

import dkim
import dkim.canonicalization as canon
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given
from hypothesis import strategies as st

from engine.auth.dkim import (
    DkimError,
    DkimKey,
    Signer,
    check_keys,
    from_domain,
    load_key,
    relaxed_body,
    unstuff,
)
from engine.config import ConfigError, DkimDomain, Settings
from engine.smtp.encode import wire_body


def write_pem(path: Path, key: object) -> Path:
    assert isinstance(
        key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
    )
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("keys")
    return {
        "rsa": write_pem(
            d / "rsa.pem", rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ),
        "ed25519": write_pem(d / "ed.pem", ed25519.Ed25519PrivateKey.generate()),
    }


MESSAGE = (
    b"From: News <news@mail.example.com>\r\n"
    b"To: ann@dest.test\r\n"
    b"Subject: Hello\r\n"
    b"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <m1@example.com>\r\n"
    b"\r\n"
    b"First line\r\n"
    b".a line that starts with a dot\r\n"
    b"Tabs\there  and  spaces \r\n"
)


RSA_512 = """-----BEGIN PRIVATE KEY-----
MIIBVAIBADANBgkqhkiG9w0BAQEFAASCAT4wggE6AgEAAkEAz+XLwCEsc4t0uONh
6n0kSCsqKv7zTXSaNCV5hwIgkWcoAgC/9O5y4oayJQnFsBEHJsLmrsrVm6cXj6UR
zp5KKQIDAQABAkAA31L6jGkWVwh3WiToCfxj/SJhKc61jX60J1AaO+0NDyLRGseM
W9EkA6Zi/sHZrYgr9omo8CzZgLDFMEmNwWixAiEA60QHGvoH+5sykMCioniEVDsD
0RSeTMxs83yfaf1Wd40CIQDiOEzRiP1GGPpj0S9tSOGNOUhHbaTRuGHqeHAE3lkY
DQIhAN33KN0C2VVBb8uyc77mBbOSml9BHLlIheKTybOuGU5hAiB9x532tztTuVmn
HE1Jb0dxtVLZ3D3TGbjfnJ10J4jUFQIgLTEUGi4DAqrcBGc8Za45mcsRkiHIaOvE
ruV1gzrC8qE=
-----END PRIVATE KEY-----
"""


def verifies(signer: Signer, wire: bytes, idx: int = 0) -> bool:
    records = {
        f"{k.selector}._domainkey.{k.domain}.".encode(): b"v=DKIM1; k="
        + (b"rsa" if k.algorithm == b"rsa-sha256" else b"ed25519")
        + b"; p="
        + k.public.encode()
        for k in signer.keys
    }
    try:
        return bool(
            dkim.DKIM(unstuff(wire)).verify(
                idx=idx, dnsfunc=lambda name, timeout=5: records.get(name)
            )
        )
    except dkim.ValidationError:  # dkimpy raises on a body hash mismatch
        return False


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_signs_what_the_receiver_reads_and_sends_it_byte_identical(
    keys: dict[str, Path], kind: str
) -> None:
    signer = Signer([DkimDomain("example.com", "s1", keys[kind])])
    wire = wire_body(MESSAGE)
    assert b"\r\n..a line" in wire  # dot-stuffed: transport only
    signed = signer.sign(wire)
    assert signed.endswith(wire)  # the signature is prepended, nothing else changes
    assert signed.startswith(b"DKIM-Signature: v=1; a=" + (b"rsa" if kind == "rsa" else b"ed25519"))
    assert b"c=relaxed/relaxed" in signed and b"d=example.com" in signed
    assert verifies(signer, signed)
    assert not verifies(signer, signed.replace(b"First line", b"First lime"))


def test_from_is_over_signed_and_list_unsubscribe_is_signed(keys: dict[str, Path]) -> None:
    signer = Signer([DkimDomain("example.com", "s1", keys["ed25519"])])
    msg = MESSAGE.replace(
        b"\r\n\r\n",
        b"\r\nList-Unsubscribe: <https://u.example.com/u/x>\r\n"
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\n",
        1,
    )
    signed = signer.sign(wire_body(msg))
    header = signed[: signed.index(b"From:")].decode()
    h = "".join(header.split("h=")[1].split(";")[0].split())
    names = h.split(":")
    assert names.count("from") == 2  # once more than present: a second From breaks it
    assert "list-unsubscribe" in names and "list-unsubscribe-post" in names
    assert verifies(signer, signed)
    added = signed.replace(b"From: News", b"From: Evil <evil@x.test>\r\nFrom: News", 1)
    assert not verifies(signer, added)


def test_also_sign_adds_a_second_signature_and_both_verify(keys: dict[str, Path]) -> None:
    signer = Signer(
        [DkimDomain("example.com", "rsa1", keys["rsa"], also_sign=(("ed1", keys["ed25519"]),))]
    )
    signed = signer.sign(wire_body(MESSAGE))
    assert signed.count(b"DKIM-Signature:") == 2
    assert verifies(signer, signed, 0) and verifies(signer, signed, 1)


def test_the_closest_configured_parent_of_the_from_domain_signs(keys: dict[str, Path]) -> None:
    signer = Signer(
        [
            DkimDomain("example.com", "s1", keys["ed25519"]),
            DkimDomain("mail.example.com", "s2", keys["ed25519"]),
        ]
    )
    assert signer.domain_for("mail.example.com") == "mail.example.com"
    assert signer.domain_for("News.Example.COM") == "example.com"
    assert signer.domain_for("example.org") is None
    assert signer.domain_for("com") is None
    assert b"d=mail.example.com" in signer.sign(wire_body(MESSAGE))


def test_mail_of_other_domains_or_without_from_is_left_alone(keys: dict[str, Path]) -> None:
    signer = Signer([DkimDomain("example.org", "s1", keys["rsa"])])
    wire = wire_body(MESSAGE)
    assert signer.sign(wire) is wire
    no_from = wire_body(b"To: a@b.test\r\nSubject: x\r\n\r\nbody\r\n")
    assert signer.sign(no_from) is no_from


def test_our_own_valid_signature_is_not_added_twice(keys: dict[str, Path]) -> None:
    signer = Signer([DkimDomain("example.com", "s1", keys["rsa"])])
    once = signer.sign(wire_body(MESSAGE))
    assert signer.sign(once) == once
    # A signature that no longer verifies (the body changed) is signed over again.
    broken = once.replace(b"First line", b"Other line")
    assert signer.sign(broken).count(b"DKIM-Signature:") == 2
    # Another selector's signature for the domain is not ours to vouch for: sign too.
    other = Signer([DkimDomain("example.com", "s9", keys["rsa"])]).sign(wire_body(MESSAGE))
    assert signer.sign(other).count(b"DKIM-Signature:") == 2


def test_relaxed_body_is_dkimpys_own_canonicalisation() -> None:
    for body in (b"", b"\r\n", b"a \r\n", b"a\t b  c \t\r\n\r\n\r\n", b" x\r\n  \r\n"):
        assert relaxed_body(body) == _dkimpy_relaxed(body)


@given(st.lists(st.sampled_from([b"a", b"b", b" ", b"\t", b"\r\n", b"  ", b"."]), max_size=60))
def test_relaxed_body_equals_dkimpy_on_any_whitespace(parts: list[bytes]) -> None:
    body = b"".join(parts)
    assert relaxed_body(body) == _dkimpy_relaxed(body)


def _dkimpy_relaxed(body: bytes) -> bytes:
    """dkimpy's Relaxed.canonicalize_body, from its own parts (Signer replaces the method)."""
    result: bytes = canon.correct_empty_body(
        canon.strip_trailing_lines(canon.compress_whitespace(canon.strip_trailing_whitespace(body)))
    )
    return result


def test_unstuff_reverses_dot_stuffing() -> None:
    assert unstuff(wire_body(b".a\r\n..b\r\nc\r\n")) == b".a\r\n..b\r\nc\r\n"


def test_load_key_reads_pem_and_ed25519_seeds(tmp_path: Path, keys: dict[str, Path]) -> None:
    rsa_key = load_key(keys["rsa"], "example.com", "s1")
    assert rsa_key.algorithm == b"rsa-sha256"
    ed = load_key(keys["ed25519"], "example.com", "s1")
    assert ed.algorithm == b"ed25519-sha256" and len(base64.b64decode(ed.public)) == 32
    seed = tmp_path / "seed"
    seed.write_bytes(ed.private + b"\n")  # dkimpy's own format: the base64 seed
    assert load_key(seed, "example.com", "s1").public == ed.public


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "cannot read"),
        (b"hello", "neither a PEM private key nor an Ed25519 seed"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not a usable"),
        ("rsa512", "512 bits"),
        ("ec", "RSA or Ed25519"),
    ],
)
def test_unusable_keys_say_why(tmp_path: Path, content: object, why: str) -> None:
    path = tmp_path / "key.pem"
    if content == "rsa512":  # cryptography refuses to make one: a throw-away from openssl
        path.write_text(RSA_512)
    elif content == "ec":
        write_pem(path, ec.generate_private_key(ec.SECP256R1()))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(DkimError, match=why):
        load_key(path, "example.com", "s1")


def test_dns_record_is_split_in_255_byte_strings(keys: dict[str, Path]) -> None:
    key = load_key(keys["rsa"], "example.com", "s2026")
    record = key.dns_record()
    assert record.startswith('s2026._domainkey.example.com. IN TXT "v=DKIM1; k=rsa; p=')
    strings = record.split(" IN TXT ")[1].split('" "')
    assert len(strings) == 2 and all(len(s.strip('"')) <= 255 for s in strings)
    short = DkimKey("example.com", "e1", b"ed25519-sha256", b"", "A" * 44).dns_record()
    assert (
        short
        == "s2026".replace("s2026", "e1")
        + '._domainkey.example.com. IN TXT "v=DKIM1; k=ed25519; p='
        + "A" * 44
        + '"'
    )


def test_check_keys_names_the_table_of_a_missing_key(tmp_path: Path, keys: dict[str, Path]) -> None:
    check_keys(Settings(dkim=(DkimDomain("example.com", "s1", keys["rsa"]),)))
    missing = Settings(
        dkim=(DkimDomain("example.com", "s1", keys["rsa"], also_sign=(("e1", tmp_path / "no"),)),)
    )
    with pytest.raises(ConfigError, match=r'dkim\."example.com" \(selector e1\): cannot read'):
        check_keys(missing)


@pytest.mark.parametrize(
    ("value", "domain"),
    [
        (b" news@Mail.Example.COM\r\n", "mail.example.com"),
        (b" Store News <news@sender.test>\r\n", "sender.test"),
        (b' "Smith, Ann (Sales)" <ann@b.example>', "b.example"),
        (b" ann@b.example (Ann Smith)", "b.example"),
        (b" =?utf-8?q?Caf=C3=A9?= <x@cafe.example>", "cafe.example"),
        (b" undisclosed-recipients:;", None),
        (b" no address here", None),
    ],
)
def test_from_domain_reads_the_usual_shapes_fast_and_the_rest_with_email_utils(
    value: bytes, domain: str | None
) -> None:
    assert from_domain(value) == domain
