"""The admin API's HTTP transport: stdlib ThreadingHTTPServer, bridged into the event loop.

Responsible for: binding `admin.listen` (before any worker starts, so a bad or busy
address is one line and exit status 2), checking the bearer token on every request
before reading its body, JSON in and out, a body size limit, and handing each request to
the supervisor's event loop (`asyncio.run_coroutine_threadsafe`), where the service runs.
Not responsible for: routes (engine.admin.api) or TLS: it binds loopback by default; a
bind beyond it needs a TLS-terminating proxy in front (README, "Operating the queue").

Why the stdlib server: a few operator calls a minute need no framework, prometheus-client
already serves /metrics from a thread the same way, and no dependency is added (aiohttp
would be ~10 packages for the same eight routes).  Each request gets its own thread
(daemon: a stuck client never holds up shutdown); the work itself is on the loop, so
nothing here touches shared state.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import json
import socket
import threading
from collections.abc import Callable, Coroutine, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from engine.admin.token import token_matches
from engine.config import parse_address

__all__ = ["AdminServer", "Handle", "split_listen"]

Handle = Callable[
    [str, str, Mapping[str, str], Mapping[str, Any]],
    Coroutine[Any, Any, tuple[int, dict[str, Any]]],
]

MAX_BODY = 64 * 1024  # the largest request is a selector and a reason: well under 1 KB
READ_TIMEOUT = 10.0  # seconds a client may take to send its request (no slow-loris threads)


def split_listen(listen: str) -> tuple[str, int]:
    """("127.0.0.1", 9109) from "127.0.0.1:9109"; "[::1]:9109" -> ("::1", 9109)."""
    return parse_address(listen, names=frozenset({"localhost"}), min_port=0)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # a restart right after a stop must not fail on TIME_WAIT


class _Server6(_Server):
    address_family = socket.AF_INET6


class AdminServer:
    def __init__(
        self,
        listen: str,
        token: str,
        handle: Handle,
        loop: asyncio.AbstractEventLoop,
        *,
        timeout: float,
    ) -> None:
        """Binds now (raises OSError if the address is busy or not ours); `serve()`
        starts answering.  `timeout`: seconds a request may take on the loop."""
        host, port = split_listen(listen)
        cls = _Server6 if ":" in host else _Server
        self._httpd = cls((host, port), _handler(token, handle, loop, timeout))
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="admin-api", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def serve(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop answering (blocks up to serve_forever's 0.5 s poll) and unbind."""
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()


def _handler(
    token: str, handle: Handle, loop: asyncio.AbstractEventLoop, timeout: float
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "volley-admin"
        sys_version = ""
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            self.request.settimeout(READ_TIMEOUT)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def _serve(self, method: str) -> None:
            scheme, _, presented = (self.headers.get("Authorization") or "").partition(" ")
            if scheme.lower() != "bearer" or not token_matches(token, presented.strip()):
                # Before the body is read: an unauthenticated caller gets nothing parsed.
                why = "missing" if not presented else "wrong"
                self.close_connection = True
                self._reply(
                    401,
                    {"error": f"{why} bearer token (see admin.token_file)"},
                    {"WWW-Authenticate": 'Bearer realm="volley"'},
                )
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY:
                self.close_connection = True
                self._reply(413, {"error": f"request body must be 0..{MAX_BODY} bytes"})
                return
            try:
                body = json.loads(self.rfile.read(length)) if length else {}
            except (ValueError, UnicodeDecodeError) as e:
                self._reply(400, {"error": f"request body is not JSON: {e}"})
                return
            if not isinstance(body, dict):
                self._reply(400, {"error": "request body must be a JSON object"})
                return
            url = urlsplit(self.path)
            query = dict(parse_qsl(url.query))
            fut = asyncio.run_coroutine_threadsafe(handle(method, url.path, query, body), loop)
            try:
                status, payload = fut.result(timeout)
            except concurrent.futures.TimeoutError:
                fut.cancel()
                status, payload = 504, {"error": f"no answer within {timeout:g}s"}
            except Exception as e:  # a bug must answer 500, not kill the thread silently
                status, payload = 500, {"error": f"{type(e).__name__}: {e}"}
            self._reply(status, payload)

        def _reply(
            self, status: int, payload: dict[str, Any], headers: Mapping[str, str] | None = None
        ) -> None:
            data = (json.dumps(payload, ensure_ascii=False) + "\n").encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: every action that changes something is in the delivery log."""

    return Handler
