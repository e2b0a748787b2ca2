"""`volley passwd USER --config FILE`, through the real command line."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from engine.cli import main
from engine.smtpd.auth import UsersFile


def _config(tmp_path: Path, users: Path | None) -> Path:
    cfg = tmp_path / "volley.toml"
    cfg.write_text("[smtpd]\n" + (f'users_file = "{users}"\n' if users else ""))
    return cfg


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_a_user_is_added_then_changed_from_a_pipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    users = tmp_path / "users"
    cfg = _config(tmp_path, users)
    _stdin(monkeypatch, b"first secret\n")
    assert main(["passwd", "alice", "--config", str(cfg)]) == 0
    assert "added alice" in capsys.readouterr().out
    _stdin(monkeypatch, b"second\r\n")
    assert main(["passwd", "alice", "--config", str(cfg)]) == 0
    assert "changed the password of alice" in capsys.readouterr().out
    f = UsersFile(users)
    assert f.check("alice", b"second") and not f.check("alice", b"first secret")


def test_refusals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _stdin(monkeypatch, b"pw\n")
    assert main(["passwd", "alice", "--config", str(_config(tmp_path, None))]) == 2
    assert "smtpd.users_file is not set" in capsys.readouterr().err
    cfg = _config(tmp_path, tmp_path / "users")
    _stdin(monkeypatch, b"\n")
    assert main(["passwd", "alice", "--config", str(cfg)]) == 2
    assert "empty password" in capsys.readouterr().err
    _stdin(monkeypatch, b"pw\n")
    assert main(["passwd", "a:b", "--config", str(cfg)]) == 2
    assert not (tmp_path / "users").exists()
