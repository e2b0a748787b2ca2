"""DKIM signing at intake (RFC 6376; Ed25519, RFC 8463): one signature per configured key.

Responsible for: loading signing keys (RSA >= 1024 bits or Ed25519, the type read from the
key), choosing the signing domain for a message (its From domain, or the closest parent
of it, that has a `[dkim."domain"]` table), not signing twice (a message already carrying
a signature of ours that verifies is left alone), and signing a message in DATA wire
form: the signature covers what the receiver will read (the un-dot-stuffed message) and
is prepended to the wire form, so the bytes sent are the bytes signed.
Not responsible for: when to sign (intake calls `Signer.sign` once, after every header
Volley adds, and stores the result: retries send the stored bytes), DNS (the public key
is the sender's to publish: `volley dkim keygen` prints the record), or verification of
inbound mail.

dkimpy does the canonicalisation and the signature header; its RSA is pure Python
(~115 signatures/s per core on a 5 KB message, dependency-facts §7), so RSA goes through
OpenSSL (`cryptography`) instead, with the parsed key cached: ~1 500/s through dkimpy's
canonicaliser (bench/README.md).  `_openssl_rsa` swaps the two functions dkimpy looks up
for that, for our key objects only: any other caller of dkimpy sees its own behaviour;
and its relaxed body canonicalisation for `relaxed_body`, which gives the same bytes.
"""

from __future__ import annotations

import base64
import email.utils
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dkim
import dkim.canonicalization
import dkim.util
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from dkim.canonicalization import correct_empty_body, strip_trailing_lines

from engine.config import DkimDomain, Settings

__all__ = [
    "DkimError",
    "DkimKey",
    "Signer",
    "check_keys",
    "from_domain",
    "load_key",
    "relaxed_body",
    "signer_for",
    "unstuff",
]

RSA_SHA256 = b"rsa-sha256"
ED25519_SHA256 = b"ed25519-sha256"
MIN_RSA_BITS = 1024  # RFC 8301 §3.2: verifiers must refuse shorter keys

# Signed by default (capability-anchors §3, RFC 6376 §5.4.1, RFC 8058 §4 for the two
# List-Unsubscribe fields); each is listed once per occurrence in the message.
DEFAULT_HEADERS = (
    "from",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "to",
    "cc",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "list-id",
    "feedback-id",
)
# Listed once more than they occur, so that a field added in transit (a second From, a
# second Subject) breaks the signature: "over-signing" (RFC 6376 §8.15).
DEFAULT_OVER_SIGN = ("from", "reply-to", "subject", "date", "to", "cc", "message-id")


class DkimError(ValueError):
    """A key that cannot be used, or a message that cannot be signed; says why."""


@dataclass(frozen=True, slots=True)
class DkimKey:
    domain: str
    selector: str
    algorithm: bytes  # RSA_SHA256 or ED25519_SHA256
    private: bytes  # what dkimpy takes: _RsaKey (bytes carrying the parsed key) or a seed
    public: str  # base64 of the public key, the DNS record's p=

    def dns_record(self) -> str:
        """`<selector>._domainkey.<domain>. IN TXT "..."`, strings split at 255 bytes."""
        k = "rsa" if self.algorithm == RSA_SHA256 else "ed25519"
        value = f"v=DKIM1; k={k}; p={self.public}"
        strings = " ".join(f'"{value[i : i + 255]}"' for i in range(0, len(value), 255))
        return f"{self.selector}._domainkey.{self.domain}. IN TXT {strings}"


class _RsaKey(bytes):
    """PEM bytes that also carry the key OpenSSL parsed (dkimpy passes them along)."""

    key: rsa.RSAPrivateKey


def load_key(path: Path, domain: str, selector: str) -> DkimKey:
    """The key in `path`: PEM (RSA PKCS#1 or PKCS#8, Ed25519 PKCS#8) or a base64 Ed25519
    seed (dkimpy's own format).

    Raises:
        DkimError: unreadable, not a key, RSA shorter than 1024 bits, another type.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DkimError(f"cannot read {path}: {e.strerror}") from None
    if b"-----BEGIN" in data:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as e:
            raise DkimError(f"{path} is not a usable private key: {e}") from None
    else:
        try:
            seed = base64.b64decode(data.strip(), validate=True)
            key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        except ValueError:
            raise DkimError(f"{path} is neither a PEM private key nor an Ed25519 seed") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise DkimError(f"{path}: RSA key of {key.key_size} bits, RFC 8301 wants >= 1024")
        pem = _RsaKey(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        pem.key = key
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return DkimKey(domain, selector, RSA_SHA256, pem, base64.b64encode(public).decode())
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return DkimKey(
            domain,
            selector,
            ED25519_SHA256,
            base64.b64encode(raw),
            base64.b64encode(public).decode(),
        )
    raise DkimError(f"{path}: a {type(key).__name__}; DKIM signs with RSA or Ed25519")


def unstuff(wire: bytes) -> bytes:
    """The message a receiver reads from DATA wire form (RFC 5321 §4.5.2)."""
    message = wire.replace(b"\r\n..", b"\r\n.")
    return message[1:] if message.startswith(b"..") else message


@dataclass(frozen=True, slots=True)
class _Domain:
    name: str
    keys: tuple[DkimKey, ...]
    headers: tuple[bytes, ...]
    over_sign: frozenset[bytes]


class Signer:
    """Signs messages for the configured domains; one per worker (keys parsed once)."""

    def __init__(self, domains: Sequence[DkimDomain]) -> None:
        _openssl_rsa()
        self._domains: dict[str, _Domain] = {}
        for d in domains:
            keys = [load_key(d.key, d.domain, d.selector)]
            keys += [load_key(path, d.domain, sel) for sel, path in d.also_sign]
            headers = tuple(h.lower().encode() for h in (d.headers or DEFAULT_HEADERS))
            if b"from" not in headers:
                headers = (b"from", *headers)  # RFC 6376 §5.4: From must be signed
            over = d.over_sign if d.over_sign is not None else DEFAULT_OVER_SIGN
            self._domains[d.domain] = _Domain(
                d.domain, tuple(keys), headers, frozenset(h.lower().encode() for h in over)
            )

    @property
    def keys(self) -> list[DkimKey]:
        return [k for d in self._domains.values() for k in d.keys]

    def domain_for(self, from_domain: str) -> str | None:
        """The configured signing domain of a From domain: itself or its closest parent."""
        labels = from_domain.lower().rstrip(".").split(".")
        for i in range(len(labels) - 1):
            candidate = ".".join(labels[i:])
            if candidate in self._domains:
                return candidate
        return None

    def sign(self, wire: bytes) -> bytes:
        """`wire` (DATA wire form) with a DKIM-Signature per key of its signing domain
        prepended; unchanged when its From domain has none, or when it already carries a
        signature of one of our keys that verifies.

        Raises:
            DkimError: the message cannot be signed (dkimpy refused its header section).
        """
        message = unstuff(wire)
        # dkimpy splits the whole message into lines to find its header section (80 µs
        # of a 5 KB message's ~300): give it the header section only, then the body as
        # the same CRLF bytes its own split-and-join would make of it.
        end = message.find(b"\r\n\r\n")
        try:
            signer = dkim.DKIM(message if end < 0 else message[: end + 4])
        except dkim.DKIMException as e:
            raise DkimError(f"cannot sign: {e}") from None
        if end >= 0:
            signer.body = message[end + 4 :]
        headers: list[tuple[bytes, bytes]] = signer.headers
        domain = self._signing_domain(headers)
        if domain is None:
            return wire
        cfg = self._domains[domain]
        if self._already_signed(message, headers, cfg):
            return wire
        counts: dict[bytes, int] = {}
        for name, _ in headers:
            counts[name.lower()] = counts.get(name.lower(), 0) + 1
        include = [
            h
            for h in cfg.headers
            for _ in range(counts.get(h, 0) + (1 if h in cfg.over_sign else 0))
        ]
        signatures = []
        try:
            for key in cfg.keys:
                signatures.append(
                    signer.sign(
                        key.selector.encode(),
                        domain.encode(),
                        key.private,
                        signature_algorithm=key.algorithm,
                        canonicalize=(b"relaxed", b"relaxed"),
                        include_headers=include,
                    )
                )
        except dkim.DKIMException as e:
            raise DkimError(f"cannot sign for {domain}: {e}") from None
        # Folded continuation lines start with whitespace, never ".": no stuffing needed.
        return b"".join(signatures) + wire

    def _signing_domain(self, headers: list[tuple[bytes, bytes]]) -> str | None:
        for name, value in headers:
            if name.lower() == b"from":
                domain = from_domain(value)
                return None if domain is None else self.domain_for(domain)
        return None

    def _already_signed(
        self, message: bytes, headers: list[tuple[bytes, bytes]], cfg: _Domain
    ) -> bool:
        """A signature by one of our own keys for this domain that verifies (checked
        against our public key: no DNS)."""
        ours = {k.selector.encode(): k for k in cfg.keys}
        index = 0
        for name, value in headers:
            if name.lower() != b"dkim-signature":
                continue
            try:
                tags = dkim.util.parse_tag_value(value)
            except dkim.DKIMException:
                index += 1
                continue
            key = ours.get(tags.get(b"s", b""))
            if tags.get(b"d", b"").lower() == cfg.name.encode() and key is not None:
                record = _txt(key)

                def lookup(name: bytes, timeout: int = 5, record: bytes = record) -> bytes:
                    return record

                try:
                    if dkim.DKIM(message).verify(idx=index, dnsfunc=lookup):
                        return True
                except dkim.DKIMException:
                    pass
            index += 1
        return False


_PLAIN_ADDRESS = re.compile(
    rb"\s*(?:[^\s<>\"(),:;@]+@([A-Za-z0-9.-]+)\s*|[^<>\"]*<[^<>\"@]+@([A-Za-z0-9.-]+)>\s*)"
)


def from_domain(value: bytes) -> str | None:
    """The domain of the (first) address of a From field value, lower case.

    The usual shapes (`a@b.example`, `Name <a@b.example>`) are read with one regex; the
    rest (quoted names, comments, groups, encoded words) with the stdlib's parser:
    getaddresses was 80 µs of a 270 µs Ed25519 signature."""
    m = _PLAIN_ADDRESS.fullmatch(value.rstrip(b"\r\n"))
    if m is not None:
        return (m.group(1) or m.group(2)).decode("ascii").lower()
    addresses = email.utils.getaddresses([value.decode("utf-8", "replace")])
    if addresses and "@" in addresses[0][1]:
        return addresses[0][1].rpartition("@")[2].strip().lower() or None
    return None


def _txt(key: DkimKey) -> bytes:
    k = b"rsa" if key.algorithm == RSA_SHA256 else b"ed25519"
    return b"v=DKIM1; k=" + k + b"; p=" + key.public.encode()


@functools.lru_cache(maxsize=4)
def signer_for(domains: tuple[DkimDomain, ...]) -> Signer | None:
    """The worker's Signer for these settings (keys loaded once per configuration)."""
    return Signer(domains) if domains else None


def check_keys(settings: Settings) -> None:
    """Load every configured key (at start and on reload): a missing or unusable key is
    a configuration error naming the table, not a failure of each message.

    Raises:
        engine.config.ConfigError
    """
    from engine.config import ConfigError

    for d in settings.dkim:
        for selector, path in ((d.selector, d.key), *d.also_sign):
            try:
                load_key(path, d.domain, selector)
            except DkimError as e:
                raise ConfigError(f'dkim."{d.domain}" (selector {selector}): {e}') from None


_TRAILING_WSP = re.compile(rb"[\t ]+\r\n")
_WSP_TO_COMPRESS = re.compile(rb"\t[\t ]*| [\t ]+")  # what "[\t ]+" -> " " changes


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 §3.4.4, byte-identical to dkimpy's Relaxed.canonicalize_body, ~20x faster
    on text: dkimpy replaces every "[\t ]+" with " ", so each single space between words
    is a regex match (~1 000 in the bench's 5 KB body: 180 µs, half of an Ed25519
    signature); here only tabs and runs of two or more match, and a body with neither
    (the usual case) is only scanned, not rewritten."""
    if b"\t" in body or b"  " in body:
        body = _WSP_TO_COMPRESS.sub(b" ", _TRAILING_WSP.sub(b"\r\n", body))
    elif b" \r\n" in body:
        body = body.replace(b" \r\n", b"\r\n")  # one space before CRLF: the only WSP run
    canonical: bytes = correct_empty_body(strip_trailing_lines(body))
    return canonical


@functools.cache
def _openssl_rsa() -> None:
    """Route dkimpy's RSA signing through OpenSSL for `_RsaKey`s, and its relaxed body
    canonicalisation through `relaxed_body` (see the docstring)."""
    dkim.canonicalization.Relaxed.canonicalize_body = staticmethod(relaxed_body)
    parse = dkim.parse_pem_private_key
    sign = dkim.RSASSA_PKCS1_v1_5_sign

    def parse_pem_private_key(data: bytes) -> Any:
        return data.key if isinstance(data, _RsaKey) else parse(data)

    def rsassa_pkcs1_v1_5_sign(hash: Any, private_key: Any) -> bytes:
        if isinstance(private_key, rsa.RSAPrivateKey) and hash.name == "sha256":
            return private_key.sign(hash.digest(), padding.PKCS1v15(), Prehashed(hashes.SHA256()))
        return bytes(sign(hash, private_key))

    dkim.parse_pem_private_key = parse_pem_private_key
    dkim.RSASSA_PKCS1_v1_5_sign = rsassa_pkcs1_v1_5_sign
