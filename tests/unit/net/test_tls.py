"""engine.net.tls: contexts built once, failures described in one line, results read back."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from engine.model import ConnectFailure, FailureKind, Phase, TlsPolicy, TransportFailure
from engine.net.tls import (
    TlsResult,
    handshake_detail,
    opportunistic_context,
    tls_result,
    verify_context,
)
from engine.telemetry.catalog import TLS_POLICIES, TLS_RESULTS
from tests.support.tls_certs import LocalCA


def test_the_opportunistic_context_is_one_object_that_verifies_nothing() -> None:
    ctx = opportunistic_context()
    assert ctx is opportunistic_context()
    assert ctx.verify_mode is ssl.CERT_NONE and not ctx.check_hostname


def test_verify_contexts_check_the_name_and_are_cached_per_file_version(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path)
    ctx = verify_context(ca.cert_path)
    assert ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname
    assert verify_context(ca.cert_path) is ctx
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "Volley test CA"),),)]
    # A replaced file (same path, a SIGHUP later) is read again.
    (tmp_path / "other").mkdir()
    other = LocalCA(tmp_path / "other")
    ca.cert_path.write_bytes(other.cert_path.read_bytes())
    st = ca.cert_path.stat()
    os.utime(ca.cert_path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert verify_context(ca.cert_path) is not ctx
    system = verify_context(None)
    assert system is verify_context(None) and system.check_hostname


def _verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    exc.verify_code = code
    exc.verify_message = message
    return exc


def test_handshake_details() -> None:
    mismatch = _verify_error(62, "Hostname mismatch, certificate is not valid for 'mx1.x'.")
    assert handshake_detail(mismatch, "mx1.x") == (
        "certificate verify failed: hostname mismatch for mx1.x"
    )
    issuer = _verify_error(20, "unable to get local issuer certificate")
    assert handshake_detail(issuer, "mx1.x") == (
        "certificate verify failed: unable to get local issuer certificate for mx1.x"
    )
    size = ssl.SSLError(1, "[SSL: EXCESSIVE_MESSAGE_SIZE] excessive message size (_ssl.c:1006)")
    assert handshake_detail(size, "mx1.x") == "handshake failed: excessive message size"
    assert handshake_detail(ConnectionResetError(), "mx1.x") == (
        "handshake failed: ConnectionResetError"
    )


def _tls_failure(detail: str) -> ConnectFailure:
    return ConnectFailure(
        "mx", "127.0.0.2", failure=TransportFailure(Phase.STARTTLS, FailureKind.TLS, detail)
    )


class _Session:
    def __init__(self, tls_active: bool, tls_fallback: str | None = None) -> None:
        self.tls_active, self.tls_fallback = tls_active, tls_fallback


def test_tls_result_reads_what_happened() -> None:
    verify = TlsPolicy.VERIFY
    fails = {
        "certificate verify failed: hostname mismatch for mx": TlsResult.VERIFY_FAILED,
        "STARTTLS not offered": TlsResult.UNAVAILABLE,
        "STARTTLS refused: 454 4.7.0 TLS not available": TlsResult.UNAVAILABLE,
        "handshake failed: wrong version number": TlsResult.HANDSHAKE_FAILED,
    }
    for detail, result in fails.items():
        assert tls_result(verify, _tls_failure(detail)) is result
    refused = ConnectFailure(
        "mx", "127.0.0.2", failure=TransportFailure(Phase.CONNECT, FailureKind.REFUSED, "no")
    )
    assert tls_result(verify, refused) is None  # TLS never came into it
    opp = TlsPolicy.OPPORTUNISTIC
    assert tls_result(opp, _Session(True)) is TlsResult.OK  # type: ignore[arg-type]
    assert tls_result(opp, _Session(False)) is TlsResult.UNAVAILABLE  # type: ignore[arg-type]
    fell_back = _Session(False, "handshake failed: x")
    assert tls_result(opp, fell_back) is TlsResult.HANDSHAKE_FAILED  # type: ignore[arg-type]
    assert tls_result(TlsPolicy.DISABLED, _Session(False)) is None  # type: ignore[arg-type]


def test_the_metric_contract_names_every_result_and_policy() -> None:
    assert TLS_RESULTS == tuple(r.value for r in TlsResult)
    assert TLS_POLICIES == tuple(p.value for p in TlsPolicy if p is not TlsPolicy.DISABLED)
