"""The one-click unsubscribe endpoint (RFC 8058): HTTP on the supervisor's event loop.

Responsible for: binding `unsubscribe.listen` (loopback by default; HTTPS when
`tls_cert`/`tls_key` are set, else behind a TLS-terminating proxy: README), reading one
bounded request per connection, and answering it:
  POST .../u/TOKEN  body List-Unsubscribe=One-Click (urlencoded or multipart/form-data,
                    RFC 8058 §3.2) -> the recipient is suppressed for the token's sender
                    domain, durably, *then* 200.  No cookie, no redirect, no second step.
  GET|HEAD .../u/TOKEN -> 200 and a confirmation page whose button POSTs the same
                    body.  Nothing is suppressed: spam filters' link scanners fetch every
                    URL of a message (RFC 8058 §6).
  a malformed token 400, a forged one 404 (nothing suppressed); a POST without the
  one-click body 400; another method 405; another path 404.
Only the path's last two segments count (`/u/TOKEN`), so a proxy may serve it under
any prefix of `url_base`.
Not responsible for: tokens (engine.unsubscribe.token) or writing the suppression
(the `act` callback: engine.suppress.service.SuppressionService.unsubscribe).

Why asyncio and a small parser rather than http.server: this endpoint faces the
internet (through a proxy or not); http.server spends a thread per connection (8 MB of
stack reserved each: 1 000 idle clients = 8 GB of address space), while here a waiting
connection is a coroutine and a 16 KB buffer, TLS is asyncio's with a handshake
deadline, and the suppression is written on the loop that owns the store's writer.  The
request line and header fields are parsed by the stdlib (`http.client.parse_headers`),
the body by `urllib.parse` and `email`; what is written here is framing and limits
(~60 lines).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import html
import http.client
import io
import ssl
from collections.abc import Awaitable, Callable
from email.message import Message
from urllib.parse import parse_qs, unquote, urlsplit

from engine.config import UnsubscribeSettings, parse_address
from engine.unsubscribe.token import Claim, Keyring, TokenError, verify

__all__ = ["UnsubscribeServer", "is_one_click", "tls_context"]

MAX_HEAD = 16 * 1024  # request line + header fields; a mailbox provider's POST is ~500 B
MAX_BODY = 16 * 1024  # "List-Unsubscribe=One-Click" is 26 bytes; multipart ~300
REQUEST_TIMEOUT = 10.0  # seconds for a whole request (no slow-loris connections)
HANDSHAKE_TIMEOUT = 10.0
MAX_CONNECTIONS = 1000  # at once; more are closed at once (each holds <= 32 KB)

Act = Callable[[Claim, str], Awaitable[None]]


class _Bad(Exception):
    def __init__(self, status: int, text: str, result: str) -> None:
        super().__init__(text)
        self.status = status
        self.result = result


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


def is_one_click(content_type: str, body: bytes) -> bool:
    """Whether a POST body says List-Unsubscribe=One-Click (RFC 8058 §3.2: urlencoded or
    multipart/form-data; a body with no content type is read as urlencoded)."""
    ctype = content_type.split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
        msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(head + body)
        for part in msg.walk():
            if part.is_multipart():
                continue
            if part.get_param("name", header="content-disposition") == "List-Unsubscribe":
                value = part.get_payload(decode=True)
                if isinstance(value, bytes) and value.strip() == b"One-Click":
                    return True
        return False
    try:
        fields = parse_qs(body.decode("ascii"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return False
    return "One-Click" in fields.get("List-Unsubscribe", [])


def _token_of(target: str) -> str | None:
    path = urlsplit(target).path
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[-2] == "u":
        return unquote(parts[-1])
    return None


def _page(claim: Claim) -> bytes:
    who, sender = html.escape(claim.recipient), html.escape(claim.sender_domain)
    listed = f" ({html.escape(claim.list_id)})" if claim.list_id else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width">'
        "<title>Unsubscribe</title></head><body>"
        f"<p>Stop mail from <b>{sender}</b>{listed} to <b>{who}</b>?</p>"
        '<form method="post"><input type="hidden" name="List-Unsubscribe" '
        'value="One-Click"><button type="submit">Unsubscribe</button></form>'
        "</body></html>\n"
    ).encode()


class UnsubscribeServer:
    def __init__(
        self,
        settings: UnsubscribeSettings,
        ring: Keyring,
        act: Act,
        count: Callable[[str], None],
    ) -> None:
        """`act(claim, client)` suppresses (durably) before returning; `count(result)`
        counts each request's outcome (volley_unsubscribe_requests_total{result})."""
        self._settings = settings
        self.ring = ring
        self._act = act
        self._count = count
        self._server: asyncio.Server | None = None
        self._open = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind now; raises OSError (busy, not ours) or ssl.SSLError (bad certificate)."""
        s = self._settings
        host, port = parse_address(s.listen, names=frozenset({"localhost"}), min_port=0)
        tls = None
        if s.tls_cert is not None and s.tls_key is not None:
            tls = tls_context(str(s.tls_cert), str(s.tls_key))
        self._server = await asyncio.start_server(
            self._serve,
            host,
            port,
            ssl=tls,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT if tls else None,
            limit=MAX_HEAD,
            reuse_address=True,
        )

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._open += 1
        try:
            if self._open > MAX_CONNECTIONS:
                return
            peer = writer.get_extra_info("peername")
            client = str(peer[0]) if isinstance(peer, tuple) and peer else ""
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    status, ctype, body, head_only = await self._answer(reader, client)
            except _Bad as e:
                self._count(e.result)
                status, ctype, body, head_only = e.status, "text/plain", f"{e}\n".encode(), False
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                return
            except asyncio.LimitOverrunError:
                self._count("bad_request")
                status, ctype, body, head_only = 431, "text/plain", b"request too large\n", False
            self._write(writer, status, ctype, body, head_only)
            with contextlib.suppress(ConnectionError, TimeoutError):
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    await writer.drain()
        finally:
            self._open -= 1
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(
        self, reader: asyncio.StreamReader, client: str
    ) -> tuple[int, str, bytes, bool]:
        head = await reader.readuntil(b"\r\n\r\n")
        line, _, rest = head.partition(b"\r\n")
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _Bad(400, "malformed request line", "bad_request")
        method, target = parts[0], parts[1]
        headers = http.client.parse_headers(io.BytesIO(rest))
        token = _token_of(target)
        if token is None:
            raise _Bad(404, "not found", "not_found")
        if method not in ("GET", "HEAD", "POST"):
            raise _Bad(405, "use POST (RFC 8058) or GET", "bad_request")
        try:
            claim = verify(self.ring, token)
        except TokenError as e:
            status = 400 if e.kind == "malformed" else 404
            raise _Bad(status, "no such unsubscribe link", e.kind) from None
        if method != "POST":
            self._count("page")
            return 200, "text/html; charset=utf-8", _page(claim), method == "HEAD"
        body = await self._body(reader, headers)
        if not is_one_click(headers.get("Content-Type", ""), body):
            raise _Bad(400, "expected the body List-Unsubscribe=One-Click", "bad_request")
        try:
            await self._act(claim, client)
        except Exception as e:  # the store failed: the sender's MTA retries later
            raise _Bad(503, f"try again later ({type(e).__name__})", "error") from None
        self._count("unsubscribed")
        text = f"Unsubscribed: no more mail from {claim.sender_domain} to this address.\n"
        return 200, "text/plain; charset=utf-8", text.encode(), False

    async def _body(self, reader: asyncio.StreamReader, headers: Message) -> bytes:
        if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
            data = b""
            while True:
                size_line = await reader.readuntil(b"\r\n")
                try:
                    size = int(size_line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise _Bad(400, "malformed chunked body", "bad_request") from None
                if size == 0:
                    return data
                if len(data) + size > MAX_BODY:
                    raise _Bad(413, "body too large", "bad_request")
                data += (await reader.readexactly(size + 2))[:-2]
        try:
            length = int(headers.get("Content-Length") or 0)
        except ValueError:
            raise _Bad(400, "malformed Content-Length", "bad_request") from None
        if not 0 <= length <= MAX_BODY:
            raise _Bad(413, "body too large", "bad_request")
        return await reader.readexactly(length) if length else b""

    def _write(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        ctype: str,
        body: bytes,
        head_only: bool,
    ) -> None:
        reason = http.client.responses.get(status, "")
        lines = [
            f"HTTP/1.1 {status} {reason}",
            f"Content-Type: {ctype}",
            f"Content-Length: {len(body)}",
            "Cache-Control: no-store",
            "Connection: close",
            "Referrer-Policy: no-referrer",  # the token is in the URL
            "X-Content-Type-Options: nosniff",
        ]
        if status == 405:
            lines.append("Allow: GET, HEAD, POST")
        if ctype.startswith("text/html"):
            lines.append("Content-Security-Policy: default-src 'none'; form-action 'self'")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if not head_only:
            writer.write(body)
