"""engine.admin.server: a real HTTP server on loopback; the token is checked before
anything else, JSON in and out, bounded bodies, answers from the event loop."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

import pytest

from engine.admin.server import AdminServer, is_loopback, split_listen

TOKEN = "t0ken-" + "x" * 40


def request(
    port: int, method: str, path: str, body: bytes | None = None, token: str | None = TOKEN
) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.load(resp)
    except urllib.error.HTTPError as e:
        with e:
            return e.code, dict(e.headers), json.load(e)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Mapping[str, str], Mapping[str, Any]]] = []

    async def handle(
        self, method: str, path: str, query: Mapping[str, str], body: Mapping[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        self.calls.append((method, path, query, body))
        if path == "/slow":
            await asyncio.Event().wait()  # never answers: the server's timeout must
        if path == "/boom":
            raise RuntimeError("bug")
        return 200, {"ok": True, "loop": asyncio.get_running_loop() is not None}


@pytest.fixture
async def served() -> Any:
    rec = Recorder()
    server = AdminServer("127.0.0.1:0", TOKEN, rec.handle, asyncio.get_running_loop(), timeout=0.5)
    server.serve()
    yield server.port, rec
    await asyncio.get_running_loop().run_in_executor(None, server.close)


async def call(*args: Any, **kwargs: Any) -> tuple[int, dict[str, str], Any]:
    return await asyncio.get_running_loop().run_in_executor(None, lambda: request(*args, **kwargs))


async def test_the_token_is_required_before_anything_is_read(served: Any) -> None:
    port, rec = served
    for token in (None, "", "wrong", TOKEN[:-1], TOKEN + "x"):
        status, headers, got = await call(port, "POST", "/v1/flush", b"{}", token=token)
        assert status == 401 and "bearer token" in got["error"]
        assert headers["WWW-Authenticate"] == 'Bearer realm="volley"'
        assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert rec.calls == []
    status, headers, got = await call(port, "POST", "/v1/flush?x=1", b'{"domain": "d.test"}')
    assert status == 200 and got == {"ok": True, "loop": True}
    assert rec.calls == [("POST", "/v1/flush", {"x": "1"}, {"domain": "d.test"})]
    assert headers["Cache-Control"] == "no-store"


async def test_bodies(served: Any) -> None:
    port, rec = served
    assert (await call(port, "POST", "/x", b"not json"))[0] == 400
    assert (await call(port, "POST", "/x", b"[1, 2]"))[2]["error"] == (
        "request body must be a JSON object"
    )
    assert (await call(port, "POST", "/x", b" " * (64 * 1024 + 1)))[0] == 413
    assert (await call(port, "GET", "/x"))[0] == 200  # no body: {}
    assert rec.calls[-1][3] == {}


async def test_a_slow_or_broken_handler_still_answers(served: Any) -> None:
    port, _ = served
    status, _, got = await call(port, "GET", "/slow")
    assert status == 504 and "no answer" in got["error"]
    status, _, got = await call(port, "GET", "/boom")
    assert status == 500 and "RuntimeError: bug" in got["error"]


async def test_a_busy_address_raises_at_construction() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OSError):
            AdminServer(
                f"127.0.0.1:{port}", TOKEN, Recorder().handle, asyncio.get_running_loop(), timeout=1
            )


def test_listen_helpers() -> None:
    assert split_listen("127.0.0.1:9109") == ("127.0.0.1", 9109)
    assert split_listen("[::1]:9109") == ("::1", 9109)
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1") and not is_loopback("x")
