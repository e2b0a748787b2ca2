"""One-click unsubscribe tokens: who unsubscribes from whom, signed, verified without a lookup.

Responsible for: the secret file (`unsubscribe.secret_file`: created with 32 random bytes,
mode 0600, at first start when missing; one key per line, the first signs, every line
verifies, so a key can be rotated without breaking links already sent), making a token
for (recipient, sender domain, list id) and verifying one (`verify`: the claim, or
`TokenError` saying malformed or forged).
Not responsible for: acting on a token (engine.unsubscribe.server, .mail) or the headers
(engine.unsubscribe.headers).

Token = base64url(payload + tag), no padding, where
  payload = version (1 byte) | key id (2 bytes: SHA-256 of the key) |
            recipient "\\0" sender domain "\\0" list id   (UTF-8)
  tag     = HMAC-SHA256(key, payload), first 16 bytes (128 bits: capability-anchors §6)
The recipient is in the clear (base64 is no secret): a link names the address it came
to, which its reader knows.  Forging one for another address means forging the tag;
replaying one suppresses exactly the address, sender domain and list it names, which is
what its first use did.  `hmac.compare_digest`: the tag check takes the same time
however many bytes match.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Claim",
    "Keyring",
    "TokenError",
    "ensure_secret",
    "load_keyring",
    "make_token",
    "verify",
]

VERSION = 1
TAG_BYTES = 16  # 128 bits
MIN_KEY_CHARS = 32  # a hand-written key shorter than this is refused
MAX_TOKEN = 2048  # characters: the largest payload is ~600 bytes
MAX_FIELD = 254  # characters of an address or domain (RFC 5321 §4.5.3.1); list ids the same


class TokenError(ValueError):
    """`kind` is "malformed" (not a token at all: HTTP 400) or "forged" (well formed, but
    no key of ours signed it: HTTP 404)."""

    def __init__(self, kind: str, why: str) -> None:
        super().__init__(why)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Claim:
    recipient: str  # the address key (engine.suppress.model.address_key)
    sender_domain: str
    list_id: str  # "" when the message named none


@dataclass(frozen=True, slots=True)
class Keyring:
    keys: tuple[bytes, ...]  # the first signs

    def key_id(self, key: bytes) -> bytes:
        return hashlib.sha256(key).digest()[:2]


def ensure_secret(path: Path) -> bool:
    """Create `path` with a fresh random key (mode 0600) unless it exists; True if
    created.  O_EXCL: two processes starting at once cannot both write one."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return False
    try:
        os.write(fd, secrets.token_hex(32).encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def load_keyring(path: Path) -> Keyring:
    """Raises OSError (unreadable) or ValueError (no usable key)."""
    lines = [ln.strip() for ln in path.read_text("utf-8").splitlines()]
    keys = tuple(ln.encode("utf-8") for ln in lines if ln and not ln.startswith("#"))
    if not keys:
        raise ValueError("holds no key")
    if any(len(k) < MIN_KEY_CHARS for k in keys):
        raise ValueError(f"a key shorter than {MIN_KEY_CHARS} characters")
    return Keyring(keys)


def _tag(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()[:TAG_BYTES]


def make_token(ring: Keyring, recipient: str, sender_domain: str, list_id: str = "") -> str:
    """The token for `recipient` (an address key) unsubscribing from `sender_domain`."""
    fields = (recipient, sender_domain, list_id)
    if any("\0" in f or len(f) > MAX_FIELD for f in fields):
        raise ValueError("a token field holds NUL or is too long")
    key = ring.keys[0]
    payload = bytes([VERSION]) + ring.key_id(key) + "\0".join(fields).encode("utf-8")
    raw = payload + _tag(key, payload)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def verify(ring: Keyring, token: str) -> Claim:
    """The claim a genuine token makes; raises TokenError."""
    if not token or len(token) > MAX_TOKEN or not token.isascii():
        raise TokenError("malformed", "not a token")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("malformed", "not base64url") from None
    if len(raw) < 3 + TAG_BYTES or raw[0] != VERSION:
        raise TokenError("malformed", "not a token of this version")
    payload, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
    matched = False
    for key in ring.keys:
        # Every key is tried, whatever the key id says: the time does not tell which.
        good = hmac.compare_digest(_tag(key, payload), tag)
        matched |= good and ring.key_id(key) == payload[1:3]
    if not matched:
        raise TokenError("forged", "the token's signature does not match")
    try:
        recipient, sender_domain, list_id = payload[3:].decode("utf-8").split("\0")
    except ValueError:
        raise TokenError("malformed", "the token's fields are unreadable") from None
    if "@" not in recipient or not sender_domain:
        raise TokenError("malformed", "the token names no address or sender domain")
    return Claim(recipient, sender_domain, list_id)
