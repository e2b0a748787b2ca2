"""engine.admin.client: the API's address and token from the settings, and one clear line
for every way a call can fail."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from engine.admin.client import AdminClient, AdminError, api_url
from engine.admin.server import AdminServer
from engine.config import Settings


def test_api_url() -> None:
    assert api_url("127.0.0.1:9109") == "http://127.0.0.1:9109"
    assert api_url("0.0.0.0:9109") == "http://127.0.0.1:9109"  # a wildcard bind: loopback
    assert api_url("[::]:9109") == "http://[::1]:9109"
    assert api_url("[::1]:1") == "http://[::1]:1"


def test_settings_problems_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AdminError, match="admin API is off"):
        AdminClient.from_settings(Settings(spool_path=tmp_path, admin_listen=""))
    with pytest.raises(AdminError, match=r"no admin token at .*is `volley run` running"):
        AdminClient.from_settings(Settings(spool_path=tmp_path))
    (tmp_path / "admin.token").write_text("tok\n")
    client = AdminClient.from_settings(Settings(spool_path=tmp_path, admin_listen="[::]:7"))
    assert client.base == "http://[::1]:7"

    def denied(path: Path) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("engine.admin.client.read_token", denied)
    with pytest.raises(AdminError, match="run this as the user who runs Volley"):
        AdminClient.from_settings(Settings(spool_path=tmp_path))


def test_nothing_listening_is_one_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connection refused
        with pytest.raises(AdminError, match=r"connection refused.*volley run"):
            AdminClient(f"http://127.0.0.1:{port}", "tok", timeout=5).call("GET", "/v1/queue")


async def test_answers_and_refusals_from_a_real_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://192.0.2.1:1")  # must not be used
    seen: list[Any] = []

    async def handle(method: str, path: str, query: Any, body: Any) -> tuple[int, dict[str, Any]]:
        seen.append((method, path, dict(query), dict(body)))
        if path == "/bad":
            return 400, {"error": "domain: not a domain"}
        return 200, {"fine": 1}

    loop = asyncio.get_running_loop()
    server = AdminServer("127.0.0.1:0", "right", handle, loop, timeout=5)
    server.serve()
    base = f"http://127.0.0.1:{server.port}"
    try:

        def calls() -> list[Any]:
            out: list[Any] = []
            good = AdminClient(base, "right", timeout=5)
            out.append(good.call("POST", "/v1/x", {"a": 1}, {"limit": 5, "domain": None}))
            for client, path in ((good, "/bad"), (AdminClient(base, "wrong", timeout=5), "/v1/x")):
                try:
                    client.call("GET", path)
                except AdminError as e:
                    out.append(str(e))
            return out

        got = await loop.run_in_executor(None, calls)
    finally:
        await loop.run_in_executor(None, server.close)
    assert got[0] == {"fine": 1}
    assert seen[0] == ("POST", "/v1/x", {"limit": "5"}, {"a": 1})
    assert got[1] == "domain: not a domain (HTTP 400)"
    assert got[2].startswith(f"the admin API at {base} refused the token (wrong bearer token")
