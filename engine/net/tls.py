"""TLS for outbound SMTP (and the MTA-STS policy fetch): client contexts and outcomes.

Responsible for: building the client `SSLContext`s once and handing out the same object
afterwards (`opportunistic_context`: no verification; `verify_context`: the system CA
store or `smtp.tls_ca_file`), running a handshake on an open connection (`handshake`:
after STARTTLS's 220, or right after connect for implicit TLS), turning a failed
handshake into one line of text
(`handshake_detail`: "certificate verify failed: hostname mismatch for mx1.example"), and
reading what TLS did to one connection attempt (`TlsResult`, `tls_result`) for metrics.
Not responsible for: the STARTTLS exchange itself (engine.net.session), deciding which
policy applies to a destination (engine.config, engine.sched.mta_sts), or counting.

Why cached: creating a context is not free (measured on this 2-core machine, Python
3.11, OpenSSL 3: 0.13 ms unverified, 0.28 ms verifying against a one-certificate CA file,
20 ms verifying against the system store, which parses ~140 CA certificates), and a
worker opens hundreds of connections per second.  One context per CA file serves every
connection: OpenSSL contexts are safe to share between connections.

Invariants: a verify context always has `check_hostname` on and `CERT_REQUIRED`; the
opportunistic one never verifies (RFC 7435: most MX certificates do not match the MX
name, so checking them without DANE or MTA-STS would only turn TLS off).
"""

from __future__ import annotations

import asyncio
import enum
import functools
import os
import re
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from engine.model import ConnectFailure, FailureKind, Phase, TlsPolicy, TransportFailure

if TYPE_CHECKING:
    from engine.net.session import SmtpSession
    from engine.net.wire import Wire

__all__ = [
    "STARTTLS_NOT_OFFERED",
    "STARTTLS_REFUSED",
    "VERIFY_FAILED",
    "TlsResult",
    "handshake",
    "handshake_detail",
    "opportunistic_context",
    "tls_result",
    "verify_context",
]

# The texts engine.net.session puts in a TLS `TransportFailure`, so `tls_result` can tell
# the cases apart without another field on every failure value.
VERIFY_FAILED = "certificate verify failed"
STARTTLS_NOT_OFFERED = "STARTTLS not offered"
STARTTLS_REFUSED = "STARTTLS refused"

# "[SSL: EXCESSIVE_MESSAGE_SIZE] excessive message size (_ssl.c:1006)": the middle is news.
_SSL_NOISE = re.compile(r"^\[SSL: \w+\] | \(_ssl\.c:\d+\)$")

# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH: its own text repeats the name in quotes.
_HOSTNAME_MISMATCH = 62


class TlsResult(enum.Enum):
    """What TLS did to one connection attempt (volley_tls_sessions_total{result})."""

    OK = "ok"  # encrypted (and verified, where the policy asks)
    VERIFY_FAILED = "verify_failed"  # the certificate did not verify for the MX name
    UNAVAILABLE = "unavailable"  # STARTTLS not offered, or refused
    HANDSHAKE_FAILED = "handshake_failed"  # no common ground, a reset in the handshake, ...


@functools.cache
def opportunistic_context() -> ssl.SSLContext:
    """Client context that does not verify certificates: the MTA norm without DANE or
    MTA-STS (RFC 7435 opportunistic security)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def verify_context(ca_file: Path | None) -> ssl.SSLContext:
    """Client context that verifies the chain and the host name: the system CA store, or
    only the CAs of `ca_file` (PEM).  Cached per file *version* (path, size, mtime), so a
    CA file replaced before a SIGHUP is read again, and an unchanged one never is.

    Raises:
        OSError, ssl.SSLError: the file cannot be read or holds no certificate
            (engine.config checks it at load time, so only a file changed since does).
    """
    if ca_file is None:
        return _verify_context(None, 0, 0)
    st = os.stat(ca_file)
    return _verify_context(str(ca_file), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _verify_context(ca_file: str | None, _size: int, _mtime_ns: int) -> ssl.SSLContext:
    # create_default_context: CERT_REQUIRED, check_hostname, TLS 1.2+ and OpenSSL's
    # default ciphers; with cafile it trusts that file only, not the system store.
    return ssl.create_default_context(cafile=ca_file)


def handshake_detail(exc: BaseException, host: str) -> str:
    """One line for a failed handshake with `host`, for logs and DSNs."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code == _HOSTNAME_MISMATCH:
            why = "hostname mismatch"
        else:
            why = (exc.verify_message or exc.reason or str(exc)).lower()
        return f"{VERIFY_FAILED}: {why} for {host}"
    if isinstance(exc, ssl.SSLError):
        text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
        return f"handshake failed: {_SSL_NOISE.sub('', text) or exc.reason}"
    return f"handshake failed: {type(exc).__name__}: {exc}".rstrip(": ")


def tls_result(policy: TlsPolicy, got: SmtpSession | ConnectFailure) -> TlsResult | None:
    """What TLS did to one attempt under `policy` (`got`: the SmtpSession or the
    ConnectFailure open_session returned); None when there is nothing to count (TLS off,
    or the attempt failed before STARTTLS could be offered)."""
    if policy is TlsPolicy.DISABLED:
        return None
    if isinstance(got, ConnectFailure):
        failure = got.failure
        if failure is None or failure.kind is not FailureKind.TLS:
            return None
        if failure.detail.startswith(VERIFY_FAILED):
            return TlsResult.VERIFY_FAILED
        if failure.detail.startswith((STARTTLS_NOT_OFFERED, STARTTLS_REFUSED)):
            return TlsResult.UNAVAILABLE
        return TlsResult.HANDSHAKE_FAILED
    if got.tls_active:
        return TlsResult.OK
    if got.tls_fallback is not None:
        return TlsResult.HANDSHAKE_FAILED  # opportunistic: handshake failed, went on plain
    return TlsResult.UNAVAILABLE


async def handshake(
    wire: Wire, mx_host: str, context: ssl.SSLContext, phase: Phase = Phase.STARTTLS
) -> None:
    """Run the TLS handshake after 220 to STARTTLS (or, `phase` CONNECT, right after
    connect: implicit TLS); record a TLS failure on the wire."""
    transport = wire.transport
    assert transport is not None
    try:
        tls_transport = await wire.loop.start_tls(
            transport,
            wire,
            context,
            server_hostname=mx_host or None,
            ssl_handshake_timeout=wire.timeouts.starttls,
        )
    except asyncio.CancelledError:
        wire.detach()
        raise
    except Exception as exc:  # any failure here is "the handshake failed"
        wire.detach()
        wire.failure = wire.failure or TransportFailure(
            phase, FailureKind.TLS, handshake_detail(exc, mx_host)
        )
        return
    if tls_transport is None:  # typed Optional: the transport closed during the handshake
        wire.detach()
        wire.failure = wire.failure or TransportFailure(
            phase, FailureKind.TLS, "closed in handshake"
        )
        return
    wire.transport = tls_transport
    if phase is Phase.STARTTLS:
        wire.proto.tls_established()
