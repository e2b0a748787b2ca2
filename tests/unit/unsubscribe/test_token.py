"""engine.unsubscribe.token: genuine tokens verify; forged, tampered or re-aimed ones don't."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from engine.unsubscribe.token import (
    Claim,
    Keyring,
    TokenError,
    ensure_secret,
    load_keyring,
    make_token,
    verify,
)

RING = Keyring((b"k" * 64,))


def _raw(token: str) -> bytearray:
    return bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))


def _token(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_round_trip_without_lookup() -> None:
    t = make_token(RING, "bob@x.test", "news.example.com", "weekly")
    assert verify(RING, t) == Claim("bob@x.test", "news.example.com", "weekly")
    assert t.isascii() and "=" not in t and "/" not in t and "+" not in t  # URL-safe
    assert verify(RING, make_token(RING, "bob@x.test", "example.com")).list_id == ""


def test_forged_and_tampered_tokens() -> None:
    t = make_token(RING, "bob@x.test", "example.com", "weekly")
    # Another key signed it.
    other = Keyring((b"o" * 64,))
    with pytest.raises(TokenError) as e:
        verify(RING, make_token(other, "bob@x.test", "example.com", "weekly"))
    assert e.value.kind == "forged"
    # The recipient swapped for another address of the same length: the tag no longer fits.
    raw = _raw(t)
    at = raw.index(b"bob@")
    raw[at : at + 3] = b"eve"
    with pytest.raises(TokenError) as e:
        verify(RING, _token(bytes(raw)))
    assert e.value.kind == "forged"
    # Every single bit flipped anywhere is refused.
    good = _raw(t)
    for i in range(len(good) * 8):
        bad = bytearray(good)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(TokenError):
            verify(RING, _token(bytes(bad)))


def test_replay_for_another_address_needs_its_own_tag() -> None:
    bob = make_token(RING, "bob@x.test", "example.com")
    eve = make_token(RING, "eve@x.test", "example.com")
    # Bob's tag on Eve's payload (a replay aimed at another address) is refused.
    spliced = _raw(eve)[:-16] + _raw(bob)[-16:]
    with pytest.raises(TokenError):
        verify(RING, _token(bytes(spliced)))
    assert verify(RING, bob).recipient == "bob@x.test"  # a replay of bob's own: bob again


def test_malformed() -> None:
    for bad in ("", "a", "!!!", "é" * 40, "A" * 5000, _token(b"\x02" + b"x" * 40)):
        with pytest.raises(TokenError) as e:
            verify(RING, bad)
        assert e.value.kind == "malformed", bad
    with pytest.raises(ValueError):
        make_token(RING, "a\0b@x.test", "example.com")


def test_rotation_and_the_secret_file(tmp_path: Path) -> None:
    path = tmp_path / "unsubscribe.key"
    assert ensure_secret(path) is True
    assert ensure_secret(path) is False  # never overwritten
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    old = load_keyring(path)
    t = make_token(old, "bob@x.test", "example.com")
    # A new key first: new tokens use it, tokens already sent still verify.
    path.write_text("n" * 64 + "\n# retired next month\n" + path.read_text())
    ring = load_keyring(path)
    assert ring.keys[0] == b"n" * 64 and verify(ring, t).recipient == "bob@x.test"
    assert verify(ring, make_token(ring, "a@x.test", "d.test")).recipient == "a@x.test"
    path.write_text("short\n")
    with pytest.raises(ValueError, match="shorter"):
        load_keyring(path)
    path.write_text("\n")
    with pytest.raises(ValueError, match="no key"):
        load_keyring(path)
