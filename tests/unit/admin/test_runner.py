"""engine.admin.runner: queue control starts whole or says in one line why not."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from engine.admin.runner import Admin, AdminStartError
from engine.config import Settings
from engine.telemetry.export import Exporter


def settings(tmp_path: Path, **kw: object) -> Settings:
    tmp_path.joinpath("spool").mkdir(exist_ok=True)
    kw.setdefault("admin_listen", "127.0.0.1:0")
    return Settings(
        spool_path=tmp_path / "spool",
        log_path=tmp_path / "delivery.jsonl",
        **kw,  # type: ignore[arg-type]
    )


def nothing(*args: object) -> None:
    """No workers in these tests."""


async def test_starts_and_stops(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    admin = Admin.open(settings(tmp_path), Exporter(), send=nothing, live=list)
    assert admin.server is not None and admin.server.port > 0
    token = tmp_path / "spool" / "admin.token"
    assert stat.S_IMODE(os.stat(token).st_mode) == 0o600
    assert (tmp_path / "spool" / "state.db").exists()
    assert "created the admin API token" in capsys.readouterr().err
    await admin.close()
    again = Admin.open(settings(tmp_path), Exporter(), send=nothing, live=list)
    assert capsys.readouterr().err == ""  # the token exists: nothing to say
    await again.close()


async def test_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = settings(tmp_path, admin_listen="0.0.0.0:0")
    (tmp_path / "spool" / "admin.token").write_text("tok\n")
    (tmp_path / "spool" / "admin.token").chmod(0o644)
    admin = Admin.open(s, Exporter(), send=nothing, live=list)
    err = capsys.readouterr().err
    assert "can be read or written by other users" in err
    assert "beyond loopback, without TLS" in err
    await admin.close()


async def test_off(tmp_path: Path) -> None:
    admin = Admin.open(settings(tmp_path, admin_listen=""), Exporter(), send=nothing, live=list)
    assert admin.server is None and not (tmp_path / "spool" / "admin.token").exists()
    await admin.close()


async def test_failures_are_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        s = settings(tmp_path, admin_listen=f"127.0.0.1:{busy.getsockname()[1]}")
        with pytest.raises(
            AdminStartError, match=r"^admin\.listen 127\.0\.0\.1:\d+: Address already in use$"
        ):
            Admin.open(s, Exporter(), send=nothing, live=list)
    s = settings(tmp_path, admin_token_file=tmp_path / "no" / "such" / "dir" / "token")
    with pytest.raises(
        AdminStartError, match=r"^admin\.token_file .*token: No such file or directory$"
    ):
        Admin.open(s, Exporter(), send=nothing, live=list)
    (tmp_path / "spool" / "state.db").write_bytes(b"garbage" * 1000)
    with pytest.raises(AdminStartError, match=r"^suspension store .*state\.db"):
        Admin.open(settings(tmp_path), Exporter(), send=nothing, live=list)
