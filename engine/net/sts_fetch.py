"""The MTA-STS policy fetch: one HTTPS GET of https://mta-sts.<domain>/.well-known/mta-sts.txt.

Responsible for: looking up the policy host's addresses with the engine's own resolver
(so `dns.nameservers` and `smtp.ignore_target_hosts` apply, as for MX hosts), connecting
with TLS verified for `mta-sts.<domain>` (RFC 8461 §3.3: the certificate must chain to a
trusted root and match that name), sending the GET, and reading the answer under §3.3's
rules: only a 200 counts, redirects are not followed (a 3xx is a failure), the media type
must be text/plain (§3.2), at most MAX_BODY bytes, all within one deadline (TIMEOUT).
Every outcome is a value: `Fetched` (the text) or `FetchFailed` (one line saying why).
Not responsible for: parsing the policy (engine.sched.mta_sts), caching or retry timing
(engine.net.sts).

Why h11 and not an HTTP client library: a client (aiohttp, httpx) would need a custom
resolver (ours, not getaddrinfo), a custom port and our CA file plugged in, and brings 7-10
packages and 5-15 MB; what is left to write around h11 (0.25 MB, no dependencies, the
sans-IO parser the style anchors hold up) is one connection and one request, about 100
lines here.  No HTTP caching (§3.3) and no keep-alive: one request per connection.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import h11

from engine.net.dns import DnsAnswer, DnsClient, DnsFailureKind
from engine.net.tls import handshake_detail

__all__ = ["MAX_BODY", "POLICY_PATH", "TIMEOUT", "FetchFailed", "Fetched", "fetch_policy"]

POLICY_PATH = "/.well-known/mta-sts.txt"
MAX_BODY = 64 * 1024  # §3.3: "a reasonable limit is 64 KB"
TIMEOUT = 60.0  # §3.3: "a reasonable timeout is one minute"
_READ = 16 * 1024
_MAX_HEAD = 16 * 1024  # status line and headers: a policy host needs a few hundred bytes


@dataclass(frozen=True, slots=True)
class Fetched:
    text: str


@dataclass(frozen=True, slots=True)
class FetchFailed:
    detail: str
    try_next: bool = False  # the address failed, not the answer: another may do better


async def fetch_policy(
    domain: str,
    *,
    dns: DnsClient,
    port: int,
    context: ssl.SSLContext,
    usable: Callable[[Sequence[str]], Sequence[str]],
    timeout: float = TIMEOUT,
    max_body: int = MAX_BODY,
) -> Fetched | FetchFailed:
    """GET the policy of `domain` (an A-label).

    Args:
        dns: the resolver for mta-sts.<domain>'s A and AAAA records.
        port: 443, or `dns.mta_sts_port` in tests and labs.
        context: a verifying client context (engine.net.tls.verify_context).
        usable: keeps the addresses Volley may connect to (smtp.ignore_target_hosts).
    Returns:
        The policy text (UTF-8 decoded), or why there is none.  IPv4 addresses are tried
        before IPv6 ones; the next is tried only when one cannot be connected to.
    """
    host = f"mta-sts.{domain}"
    try:
        async with asyncio.timeout(timeout):
            addresses = await _addresses(dns, host)
            if isinstance(addresses, FetchFailed):
                return addresses
            allowed = usable(addresses)
            if not allowed:
                return FetchFailed(f"{host}: no usable address ({', '.join(addresses)})")
            failed = FetchFailed(f"{host}: no address")
            for address in allowed:
                got = await _get(host, address, port, context, max_body)
                if isinstance(got, Fetched) or not got.try_next:
                    return got
                failed = got
            return failed
    except TimeoutError:
        return FetchFailed(f"{host}: no policy within {timeout:g}s")


async def _addresses(dns: DnsClient, host: str) -> list[str] | FetchFailed:
    a, aaaa = await asyncio.gather(dns.query(host, "A"), dns.query(host, "AAAA"))
    out: list[str] = []
    trouble: list[str] = []
    for rtype, result in (("A", a), ("AAAA", aaaa)):
        if isinstance(result, DnsAnswer):
            out.extend(r.data for r in result.records if r.rtype == rtype)
        elif result.kind is DnsFailureKind.TEMPORARY:
            trouble.append(f"{rtype}: {result.detail}")
    if out:
        return out
    return FetchFailed(f"{host}: " + ("; ".join(trouble) or "no A or AAAA record"))


async def _get(
    host: str, address: str, port: int, context: ssl.SSLContext, max_body: int
) -> Fetched | FetchFailed:
    where = f"{host}[{address}]:{port}"
    try:
        reader, writer = await asyncio.open_connection(
            address, port, ssl=context, server_hostname=host
        )
    except ssl.SSLError as exc:  # verification included: §3.3 wants a valid certificate
        return FetchFailed(f"{where}: {handshake_detail(exc, host)}", try_next=True)
    except OSError as exc:
        return FetchFailed(f"{where}: {exc.strerror or exc}", try_next=True)
    try:
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)
        request = h11.Request(
            method="GET",
            target=POLICY_PATH,
            headers=[
                ("Host", host),
                ("User-Agent", "volley (MTA-STS)"),
                ("Accept", "text/plain"),
                ("Connection", "close"),
            ],
        )
        writer.write(conn.send(request) + (conn.send(h11.EndOfMessage()) or b""))
        await writer.drain()
        return await _response(conn, reader, where, max_body)
    except h11.RemoteProtocolError as exc:
        return FetchFailed(f"{where}: not HTTP/1.1: {exc}")
    except (OSError, ssl.SSLError) as exc:
        return FetchFailed(f"{where}: {type(exc).__name__}: {exc}")
    finally:
        writer.close()  # no wait_closed(): a peer that never answers our close_notify
        # would hold the fetch; the transport is torn down either way


async def _response(
    conn: h11.Connection, reader: asyncio.StreamReader, where: str, max_body: int
) -> Fetched | FetchFailed:
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(_READ))  # b"" at EOF: h11 then decides
            continue
        if isinstance(event, h11.Response):
            if event.status_code != 200:
                return FetchFailed(
                    f"{where}: HTTP {event.status_code} (only 200 counts; redirects are"
                    " not followed)"
                )
            media = _header(event.headers, b"content-type").split(b";")[0].strip().lower()
            if media != b"text/plain":
                shown = media.decode("ascii", "replace") or "none"
                return FetchFailed(f"{where}: content type {shown}, not text/plain")
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > max_body:
                return FetchFailed(f"{where}: policy larger than {max_body} bytes")
        elif isinstance(event, h11.EndOfMessage):
            try:
                return Fetched(bytes(body).decode("utf-8"))
            except UnicodeDecodeError:
                return FetchFailed(f"{where}: policy is not UTF-8 text")
        elif isinstance(event, h11.ConnectionClosed):
            return FetchFailed(f"{where}: closed before the end of the response")
        # h11.InformationalResponse (1xx): the final response follows


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes:
    for key, value in headers:
        if key == name:  # h11 lower-cases header names
            return bytes(value)
    return b""
