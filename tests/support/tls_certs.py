"""Throw-away TLS certificates for tests: self-signed ones, and a test CA that signs others.

Responsible for: `write_self_signed` (a certificate and its key as PEM files, for a DNS name
or an IP address), `self_signed_context` (a server SSLContext for
`Receiver(tls_context=...)`, plus the certificate file a client can trust), and `LocalCA`
(one CA certificate a client trusts, e.g. as Volley's `smtp.tls_ca_file`, and server
contexts with certificates it signs for any names: MX hosts, MTA-STS policy hosts).
Not responsible for: serving TLS (tests.support.receiver), or anything a real CA does (no
chain, no revocation): these certificates are for loopback tests only.
"""

from __future__ import annotations

import atexit
import datetime
import ipaddress
import shutil
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["LocalCA", "self_signed_context", "write_self_signed"]


def self_signed_context(
    hostname: str, directory: Path | None = None
) -> tuple[ssl.SSLContext, Path]:
    """A server SSLContext with a fresh self-signed certificate for `hostname`.

    The certificate names `hostname` as a DNS name, or as an IP address if it is one, so a
    client that trusts the returned PEM file (`ssl.create_default_context(cafile=path)`)
    verifies it. The key is EC P-256: a 2048-bit RSA key takes 50-100 ms to generate.

    Args:
        hostname: the name (or IP) clients will check.
        directory: where to write `cert.pem`; default a temporary directory removed at exit.

    Returns:
        (server context for `Receiver(tls_context=...)`, path of the PEM certificate).
    """
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="volley-tls-"))
        atexit.register(shutil.rmtree, directory, True)
    cert_path, key_path = write_self_signed(hostname, directory)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    key_path.unlink()  # the context holds the key; only the certificate is needed on disk
    return ctx, cert_path


def write_self_signed(
    hostname: str, directory: Path, *, padding_names: int = 0
) -> tuple[Path, Path]:
    """Write a throw-away self-signed certificate for `hostname` (a DNS name or an IP) and
    its key as PEM files in `directory`; returns (cert path, key path).  `padding_names`
    extra subjectAltNames make the certificate as large as a hostile server wants
    (about 40 bytes each)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        alt = x509.DNSName(hostname)
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [alt, *(x509.DNSName(f"pad{i:06d}.{hostname}") for i in range(padding_names))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class LocalCA:
    """A certificate authority for one test: `cert_path` is its certificate (PEM), to be
    trusted by the client; `server_context(*names)` serves a certificate it signed for
    `names` (DNS names).  Keys are EC P-256 (fast to make)."""

    def __init__(self, directory: Path | None = None) -> None:
        if directory is None:
            directory = Path(tempfile.mkdtemp(prefix="volley-ca-"))
            atexit.register(shutil.rmtree, directory, True)
        self.directory = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Volley test CA")])
        now = datetime.datetime.now(datetime.UTC)
        public = self._key.public_key()
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_path = directory / "ca.pem"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self._issued = 0

    def server_context(self, *names: str) -> ssl.SSLContext:
        """A server SSLContext whose certificate this CA signed for `names`."""
        if not names:
            raise ValueError("a certificate needs at least one name")
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        ca_ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), False
            )
            .sign(self._key, hashes.SHA256())
        )
        self._issued += 1
        cert_path = self.directory / f"server{self._issued}.pem"
        key_path = self.directory / f"server{self._issued}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_path, key_path)
        key_path.unlink()
        return ctx


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
