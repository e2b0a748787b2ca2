"""engine.suppress.runner: what the supervisor opens, and one line for what fails."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from engine.config import Settings, UnsubscribeSettings
from engine.suppress.runner import Suppression, SuppressStartError
from tests.support.net import free_port


def settings(tmp_path: Path, **unsub: Any) -> Settings:
    u = UnsubscribeSettings(url_base="https://u.example.com", **unsub) if unsub else None
    return Settings(spool_path=tmp_path, log_path=tmp_path / "l.jsonl", unsubscribe=u)


async def test_opens_the_list_the_key_and_the_endpoint(tmp_path: Path, capsys) -> None:
    port = free_port(["127.0.0.1"])
    s = await Suppression.open(settings(tmp_path, listen=f"127.0.0.1:{port}"), print)
    assert (tmp_path / "suppression.db").exists()
    key = tmp_path / "unsubscribe.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert "created the unsubscribe key" in capsys.readouterr().err
    assert s.server is not None and s.server.port == port
    assert set(s.routes()) == {"/v1/suppressions", "/v1/suppressions/check"}
    replies: list[Any] = []
    assert not s.on_message(["metrics", [], [], []], replies.append)
    assert s.on_message(["suppress_events", []], replies.append)
    await s.close()
    # Without [unsubscribe]: the list only.
    s = await Suppression.open(settings(tmp_path), print)
    assert s.server is None
    await s.close()


async def test_failures_are_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SuppressStartError, match=f"unsubscribe.listen 127.0.0.1:{port}"):
            await Suppression.open(settings(tmp_path, listen=f"127.0.0.1:{port}"), print)
    (tmp_path / "bad.key").write_text("short\n")
    with pytest.raises(SuppressStartError, match=r"unsubscribe\.secret_file .*shorter"):
        await Suppression.open(settings(tmp_path, secret_file=tmp_path / "bad.key"), print)
    (tmp_path / "c.pem").write_text("not a certificate")
    with pytest.raises(SuppressStartError, match=r"unsubscribe\.tls_cert: cannot load"):
        await Suppression.open(
            settings(tmp_path, tls_cert=tmp_path / "c.pem", tls_key=tmp_path / "c.pem"), print
        )
    (tmp_path / "suppression.db").write_bytes(b"garbage" * 1000)
    with pytest.raises(SuppressStartError, match="suppression list"):
        await Suppression.open(settings(tmp_path), print)
