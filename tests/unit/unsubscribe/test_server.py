"""engine.unsubscribe.server: a real HTTP client against the endpoint on loopback."""

from __future__ import annotations

import asyncio
import http.client
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.config import UnsubscribeSettings
from engine.unsubscribe.server import UnsubscribeServer, is_one_click
from engine.unsubscribe.token import Claim, Keyring, make_token
from tests.support.tls_certs import write_self_signed

RING = Keyring((b"k" * 64,))
FORM = "application/x-www-form-urlencoded"


class Acts:
    def __init__(self) -> None:
        self.claims: list[tuple[Claim, str]] = []
        self.results: list[str] = []
        self.fail = False

    async def act(self, claim: Claim, client: str) -> None:
        if self.fail:
            raise OSError("disk full")
        self.claims.append((claim, client))


@pytest.fixture
async def served() -> AsyncIterator[tuple[UnsubscribeServer, Acts]]:
    acts = Acts()
    s = UnsubscribeSettings(url_base="https://u.example.com", listen="127.0.0.1:0")
    server = UnsubscribeServer(s, RING, acts.act, acts.results.append)
    await server.start()
    yield server, acts
    await server.close()


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


async def call(port: int, *args: object, **kw: object) -> tuple[int, dict[str, str], bytes]:
    return await asyncio.to_thread(request, port, *args, **kw)  # type: ignore[arg-type]


async def test_one_click_post_as_mailbox_providers_send_it(served) -> None:
    server, acts = served
    token = make_token(RING, "bob@x.test", "example.com", "weekly")
    status, headers, body = await call(
        server.port, "POST", f"/u/{token}", b"List-Unsubscribe=One-Click", {"Content-Type": FORM}
    )
    assert status == 200 and b"example.com" in body
    assert "set-cookie" not in headers and "location" not in headers
    assert acts.claims == [(Claim("bob@x.test", "example.com", "weekly"), "127.0.0.1")]
    assert acts.results == ["unsubscribed"]
    # Behind a proxy under a prefix, multipart (RFC 8058 allows it), chunked.
    multipart = (
        b'--XyZ\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
        b"One-Click\r\n--XyZ--\r\n"
    )
    status, _, _ = await call(
        server.port,
        "POST",
        f"/mail/u/{token}",
        multipart,
        {"Content-Type": "multipart/form-data; boundary=XyZ"},
    )
    assert status == 200
    chunked = b"1a\r\nList-Unsubscribe=One-Click\r\n0\r\n\r\n"
    status, _, _ = await call(
        server.port,
        "POST",
        f"/u/{token}",
        chunked,
        {"Content-Type": FORM, "Transfer-Encoding": "chunked"},
    )
    assert status == 200 and len(acts.claims) == 3


async def test_get_shows_a_page_and_suppresses_nothing(served) -> None:
    server, acts = served
    token = make_token(RING, "bob@x.test", "example.com")
    status, headers, body = await call(server.port, "GET", f"/u/{token}")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'method="post"' in body and b"bob@x.test" in body
    status, _, body = await call(server.port, "HEAD", f"/u/{token}")
    assert status == 200 and body == b""
    assert acts.claims == [] and acts.results == ["page", "page"]


async def test_bad_requests_suppress_nothing(served) -> None:
    server, acts = served
    good = make_token(RING, "bob@x.test", "example.com")
    forged = make_token(Keyring((b"o" * 64,)), "bob@x.test", "example.com")
    one_click = (b"List-Unsubscribe=One-Click", {"Content-Type": FORM})
    cases = [
        ("POST", f"/u/{forged}", *one_click, 404),
        ("POST", "/u/not-a-token", *one_click, 400),
        ("POST", f"/u/{good}", b"", {"Content-Type": FORM}, 400),
        ("POST", f"/u/{good}", b"List-Unsubscribe=Yes", {"Content-Type": FORM}, 400),
        ("POST", "/elsewhere", *one_click, 404),
        ("PUT", f"/u/{good}", *one_click, 405),
        ("POST", f"/u/{good}", b"x" * 20000, {"Content-Type": FORM}, 413),
        ("GET", f"/u/{good}", None, {"X-Big": "y" * 20000}, 431),
    ]
    for method, path, body, headers, want in cases:
        status, _, _ = await call(server.port, method, path, body, headers)
        assert status == want, (method, path, want)
    assert acts.claims == []
    assert set(acts.results) == {"forged", "malformed", "bad_request", "not_found"}


async def test_a_store_failure_is_a_503_so_the_sender_retries(served) -> None:
    server, acts = served
    acts.fail = True
    token = make_token(RING, "bob@x.test", "example.com")
    status, _, _ = await call(
        server.port, "POST", f"/u/{token}", b"List-Unsubscribe=One-Click", {"Content-Type": FORM}
    )
    assert status == 503 and acts.results == ["error"]


def test_is_one_click() -> None:
    assert is_one_click("", b"List-Unsubscribe=One-Click")
    assert is_one_click(FORM + "; charset=utf-8", b"a=b&List-Unsubscribe=One-Click")
    assert not is_one_click(FORM, b"\xff\xfe")
    assert not is_one_click("multipart/form-data; boundary=b", b"--b\r\n\r\nOne-Click\r\n--b--")


async def test_https_in_volley_itself(tmp_path: Path) -> None:
    cert, key = write_self_signed("127.0.0.1", tmp_path)
    acts = Acts()
    s = UnsubscribeSettings(
        url_base="https://u.example.com",
        listen="127.0.0.1:0",
        tls_cert=cert,
        tls_key=key,
    )
    server = UnsubscribeServer(s, RING, acts.act, acts.results.append)
    await server.start()
    token = make_token(RING, "bob@x.test", "example.com")

    def post() -> int:
        ctx = ssl.create_default_context(cafile=str(cert))
        c = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=10, context=ctx)
        try:
            c.request("POST", f"/u/{token}", b"List-Unsubscribe=One-Click", {"Content-Type": FORM})
            return c.getresponse().status
        finally:
            c.close()

    try:
        assert await asyncio.to_thread(post) == 200
        assert [c.recipient for c, _ in acts.claims] == ["bob@x.test"]
        # Plain HTTP to the TLS port gets nothing suppressed.
        with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
            await call(server.port, "POST", f"/u/{token}", b"List-Unsubscribe=One-Click", {})
        assert len(acts.claims) == 1
    finally:
        await server.close()
