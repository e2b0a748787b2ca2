"""Tests for tests.support.tls_certs: the throw-away certificates name what they are for."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

from cryptography import x509

from tests.support.tls_certs import self_signed_context, write_self_signed


def test_self_signed_context_for_a_dns_name(tmp_path: Path) -> None:
    _, cert_path = self_signed_context("mx.dst.test", tmp_path)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mx.dst.test"]


def test_write_self_signed_for_an_ip_names_it_as_an_ip_address(tmp_path: Path) -> None:
    cert_path, key_path = write_self_signed("127.0.0.2", tmp_path)
    assert (cert_path, key_path) == (tmp_path / "cert.pem", tmp_path / "key.pem")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.2")]
    assert san.get_values_for_type(x509.DNSName) == []
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_path, key_path)  # a pair
